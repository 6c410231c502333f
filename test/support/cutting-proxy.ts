// A TCP proxy in front of a Sluice server (HTTP and WebSocket alike) that can cut its client
// connections in the middle of what the server is sending: a WebSocket frame or an HTTP response
// body arrives in part, then the connection is reset. The harness's fault proxy (test/harness)
// breaks whole connections to Postgres; this one picks the moment, so a test can show that a
// batch half received is neither applied nor lost.
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

export interface CuttingProxy {
  /** `http://127.0.0.1:<proxy port>`: use it in place of the server's base URL. */
  readonly baseUrl: string;
  /** Open client connections. */
  readonly connectionCount: number;
  /** Connections cut in the middle of a server → client chunk so far, by kind. */
  readonly cuts: Record<ConnectionKind, number>;
  /**
   * Arms a cut on every connection (of `kind`, when given) open now and every one opened until
   * it fires: the next server → client chunk of at least `minBytes` is forwarded only in part,
   * then both sides are reset. Resolves once `count` connections were cut that way.
   */
  cutMidChunk(options?: {
    minBytes?: number;
    count?: number;
    kind?: ConnectionKind;
  }): Promise<void>;
  close(): Promise<void>;
}

/** A connection whose first request asked for `Upgrade: websocket`, or any other. */
export type ConnectionKind = 'websocket' | 'http';

interface Link {
  client: Socket;
  upstream: Socket;
  kind: ConnectionKind | undefined;
  /** Set once cut: what the server sends after that is lost with the connection. */
  cut: boolean;
}

const UPGRADE = /^upgrade:\s*websocket\s*$/im;

/** An RST rather than a FIN: the peer sees the connection break, as on a real network fault. */
function reset(socket: Socket): void {
  if (socket.destroyed) return;
  if (socket.connecting) socket.destroy();
  else socket.resetAndDestroy();
}

export async function startCuttingProxy(targetBaseUrl: string): Promise<CuttingProxy> {
  const target = new URL(targetBaseUrl);
  const links = new Set<Link>();
  const cuts: Record<ConnectionKind, number> = { websocket: 0, http: 0 };
  let armed:
    { minBytes: number; remaining: number; kind?: ConnectionKind; done: () => void } | undefined;

  const cut = (link: Link, chunk: Buffer): void => {
    link.cut = true;
    // Half the chunk (at least one byte): the receiver holds a part of a frame or body.
    link.client.write(chunk.subarray(0, Math.max(1, chunk.length >> 1)), () => {
      reset(link.client);
      reset(link.upstream);
    });
    cuts[link.kind ?? 'http']++;
    if (armed && --armed.remaining <= 0) {
      const { done } = armed;
      armed = undefined;
      done();
    }
  };

  const server: Server = createServer({ noDelay: true }, (client) => {
    const upstream = connect({ host: target.hostname, port: Number(target.port) });
    upstream.setNoDelay(true);
    const link: Link = { client, upstream, kind: undefined, cut: false };
    links.add(link);
    const forget = () => {
      links.delete(link);
      reset(client);
      reset(upstream);
    };
    client.on('error', forget).on('close', forget);
    upstream.on('error', forget).on('close', forget);
    client.on('data', (chunk: Buffer) => {
      link.kind ??= UPGRADE.test(chunk.toString('latin1')) ? 'websocket' : 'http';
      if (!upstream.write(chunk)) client.pause();
    });
    upstream.on('drain', () => client.resume());
    upstream.on('data', (chunk: Buffer) => {
      if (link.cut) return;
      const due =
        armed && chunk.length >= armed.minBytes && (armed.kind ?? link.kind) === link.kind;
      if (due) return cut(link, chunk);
      if (!client.write(chunk)) upstream.pause();
    });
    client.on('drain', () => upstream.resume());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  return {
    baseUrl: `http://127.0.0.1:${port}`,
    get connectionCount() {
      return links.size;
    },
    get cuts() {
      return { ...cuts };
    },
    cutMidChunk({ minBytes = 4_096, count = 1, kind } = {}) {
      return new Promise<void>((done) => {
        armed = { minBytes, remaining: count, ...(kind ? { kind } : {}), done };
      });
    },
    async close() {
      for (const link of links) {
        reset(link.client);
        reset(link.upstream);
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
