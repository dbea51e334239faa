// Small helpers of the store-level benchmarks that run no server (store-deltas.ts). The benchmarks that drive a
// server start it in its own process and talk to it only through its API: see server-process.ts.

export function flag(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index > 0 ? Number(process.argv[index + 1]) : fallback;
}

export const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);
