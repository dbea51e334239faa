// The baselines of bench:transfer, each a minimal Node HTTP server in its own process (started by transfer.ts):
//   upload <dir>  : writes each request body (curl -T) to a new file in <dir>, fsyncs it, answers 201, removes it
//   serve <file>  : serves <file> on every GET with fs.createReadStream (what a plain Node file server does)
// Each prints its port on stdout once listening.
import { createReadStream, createWriteStream, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';

const [mode, target] = process.argv.slice(2);
let uploads = 0;

const server = createServer((req, res) => {
  if (mode === 'upload') {
    const path = join(target, `upload-${++uploads}`);
    // `flush` fsyncs before 'close', which pipeline waits for: the answer leaves once the bytes are on disk.
    pipeline(req, createWriteStream(path, { flush: true })).then(
      async () => {
        res.writeHead(201).end();
        await rm(path, { force: true });
      },
      (error) => res.writeHead(500).end(String(error)),
    );
  } else {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': statSync(target).size });
    pipeline(createReadStream(target), res).catch(() => res.destroy());
  }
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`${(server.address() as { port: number }).port}\n`));
