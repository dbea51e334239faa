// A TCP path to a server (Redis) that a test can cut, as a network partition between one replica and that server would.
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { registerCleanup } from './cleanup';

export interface CuttableProxy {
  readonly port: number;
  /** Drops the connections through it and refuses new ones until mended. */
  cut(): void;
  /** Lets connections through again (the partition heals). */
  mend(): void;
  /**
   * Stops carrying the data of the connections through it, silently, without closing them (a NAT or load balancer
   * that dropped them); connections made after it pass.
   */
  stall(): void;
  close(): Promise<void>;
}

/** Listens on a free port of 127.0.0.1 and forwards every connection to host:port; closed after the run at the latest. */
export async function cuttableProxy(host: string, port: number): Promise<CuttableProxy> {
  const sockets = new Set<Socket>();
  const pairs = new Set<[Socket, Socket]>();
  let open = true;
  const server = createServer((client) => {
    if (!open) return void client.destroy();
    const upstream = connect({ host, port });
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
    }
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    client.once('close', () => pairs.delete(pair));
    client.pipe(upstream).pipe(client);
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const cut = () => {
    open = false;
    for (const socket of sockets) socket.destroy();
  };
  const close = registerCleanup(() => {
    cut();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const stall = () => {
    for (const [client, upstream] of pairs) {
      client.unpipe(upstream);
      upstream.unpipe(client);
      // Read and dropped: what is sent goes nowhere, and nothing comes back.
      client.on('data', () => undefined);
      upstream.on('data', () => undefined);
    }
    pairs.clear();
  };
  return {
    port: (server.address() as AddressInfo).port,
    cut,
    stall,
    mend: () => void (open = true),
    close,
  };
}
