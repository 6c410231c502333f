// An HTTP proxy in front of a Sluice server that passes plain HTTP requests through and refuses
// WebSocket upgrades (403) until told to let them through: a corporate proxy that blocks
// WebSockets, and then stops blocking them. Upgrades let through are piped to the server as
// they are, so the socket is the server's own.
import { createServer, request, type IncomingMessage } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';

export interface UpgradeGate {
  /** `http://127.0.0.1:<port>`: use it in place of the server's base URL. */
  readonly baseUrl: string;
  /** Upgrades refused and let through so far. */
  readonly upgrades: { refused: number; passed: number };
  /** Whether upgrades are let through (false at first). */
  allowUpgrades: boolean;
  close(): Promise<void>;
}

/** The request line and headers of `request`, as the server is to receive them. */
function head(req: IncomingMessage): string {
  const lines = [`${req.method} ${req.url} HTTP/1.1`];
  for (let i = 0; i < req.rawHeaders.length; i += 2)
    lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
  return `${lines.join('\r\n')}\r\n\r\n`;
}

export async function startUpgradeGate(targetBaseUrl: string): Promise<UpgradeGate> {
  const target = new URL(targetBaseUrl);
  const port = Number(target.port);
  const open = new Set<Duplex>();
  const upgrades = { refused: 0, passed: 0 };
  const server = createServer((req, res) => {
    const upstream = request(
      { host: target.hostname, port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    // A client that gives up (an aborted long-poll) ends the upstream request too.
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  });
  const gate: UpgradeGate = {
    baseUrl: '',
    upgrades,
    allowUpgrades: false,
    close: async () => {
      for (const socket of open) socket.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  server.on('upgrade', (req: IncomingMessage, client: Duplex, rest: Buffer) => {
    if (!gate.allowUpgrades) {
      upgrades.refused++;
      client.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    upgrades.passed++;
    const upstream: Socket = connect(port, target.hostname, () => {
      upstream.write(head(req));
      upstream.write(rest);
      client.pipe(upstream).pipe(client);
    });
    open.add(client).add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: gatePort } = server.address() as AddressInfo;
  return Object.assign(gate, { baseUrl: `http://127.0.0.1:${gatePort}` });
}
