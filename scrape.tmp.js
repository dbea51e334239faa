// time GET /metrics with N idle TCP connections open to the server
const net = require('net'); const { mkdtempSync } = require('fs'); const { join } = require('path'); const { tmpdir } = require('os');
const sp = require('/work/main/dist/scripts/bench/server-process.js');
(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sc-'));
  const server = await sp.startServer(join(dir, 'data'), {}, { logFile: join(dir, 'server.log') });
  const port = Number(new URL(server.url).port);
  const socks = [];
  const N = Number(process.env.N || 10000);
  for (let i = 0; i < N; i++) { const s = net.connect(port, '127.0.0.1'); s.on('error', () => {}); socks.push(s); if (i % 500 === 0) await new Promise(r => setTimeout(r, 20)); }
  await new Promise(r => setTimeout(r, 2000));
  const times = [];
  for (let i = 0; i < 15; i++) { const t = performance.now(); await fetch(`${server.url}/metrics`).then(r => r.text()); times.push(performance.now() - t); await new Promise(r => setTimeout(r, 100)); }
  times.sort((a, b) => a - b);
  console.log('scrape ms median', times[7].toFixed(1), 'min', times[0].toFixed(1), 'max', times[14].toFixed(1));
  for (const s of socks) s.destroy();
  await sp.stopServer(server);
})();
