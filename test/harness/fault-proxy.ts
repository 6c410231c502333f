import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

/**
 * - `pass`: bytes flow both ways untouched.
 * - `reset`: every connection is torn down with a TCP RST, and new ones are reset on accept.
 * - `blackhole`: a network partition where TCP stays "up": connections are accepted and kept
 *   open, but nothing is forwarded or answered, FINs included.
 * - `delay`: bytes flow with `delayMs` of added latency per chunk in each direction.
 */
export type FaultMode = 'pass' | 'reset' | 'blackhole' | 'delay';

export interface FaultModeOptions {
  /** Latency added to each chunk in `delay` mode, in milliseconds. */
  delayMs?: number;
}

export interface ProxyTarget {
  host: string;
  port: number;
}

/**
 * Tears a socket down so that the peer sees ECONNRESET rather than an orderly close: a server under
 * test must survive both, and the RST path is the one a graceful close never exercises.
 */
function abort(socket: Socket): void {
  if (socket.destroyed) return;
  // resetAndDestroy on a socket that is still connecting only resets once the connect succeeds;
  // an upstream that never connected has no peer to tell, so a plain destroy is enough.
  // Node 20 never closes the handle of a socket reset after its FIN was sent (end()), which keeps
  // the process alive; such a socket's peer has seen an orderly close already anyway.
  if (socket.connecting || socket.writableEnded || typeof socket.resetAndDestroy !== 'function')
    socket.destroy();
  else socket.resetAndDestroy();
}

interface Chunk {
  due: number;
  data: Buffer;
}

/** A plain backend stream starts with Authentication, ErrorResponse or NegotiateProtocolVersion. */
const FIRST_MESSAGE_TYPES = new Set(Buffer.from('REv'));
/** 'N': the backend's one-byte refusal of an SSLRequest or GSSENCRequest. */
const ENCRYPTION_REFUSED = 0x4e;

/**
 * Follows the message framing of the backend (server→client) side of the Postgres protocol, so
 * that bytes can be injected between two messages. Every backend message is a type byte and an
 * int32 big-endian length that counts itself but not the type byte, split across chunks anyhow.
 *
 * The one exception is encryption negotiation: an SSLRequest or GSSENCRequest is answered with a
 * single byte before any message. Knowing that without reading the client's side works because
 * a plain backend stream always starts with one of `FIRST_MESSAGE_TYPES`: a leading `N` is a
 * refusal (and plain messages follow), and any other first byte (`S` or `G`, then TLS or GSS, or
 * a TLS record of a direct SSL connection) makes the stream opaque: nothing can be injected.
 */
class BackendFraming {
  #state: 'start' | 'framed' | 'opaque' = 'start';
  readonly #header = Buffer.alloc(5);
  #headerBytes = 0;
  /** Bytes of the current message's body still to come. */
  #remaining = 0;

  /** Between two messages, and after at least one (so never before or inside the startup). */
  get atBoundary(): boolean {
    return this.#state === 'framed' && this.#headerBytes === 0 && this.#remaining === 0;
  }

  get framed(): boolean {
    return this.#state === 'framed';
  }

  /**
   * Follows `data` as the next bytes of the stream; returns how many were taken. With
   * `stopAtBoundary`, it stops right after the first message that ends within `data`.
   */
  feed(data: Buffer, stopAtBoundary: boolean): number {
    let taken = 0;
    while (taken < data.length && this.#state !== 'opaque') {
      if (this.#remaining > 0) {
        const n = Math.min(this.#remaining, data.length - taken);
        taken += n;
        this.#remaining -= n;
      } else {
        const byte = data[taken++] ?? 0;
        if (this.#state === 'start' && this.#headerBytes === 0 && !FIRST_MESSAGE_TYPES.has(byte)) {
          if (byte !== ENCRYPTION_REFUSED) this.#state = 'opaque';
          continue;
        }
        this.#header[this.#headerBytes++] = byte;
        if (this.#headerBytes < this.#header.length) continue;
        this.#headerBytes = 0;
        const length = this.#header.readUInt32BE(1);
        if (length < 4) {
          this.#state = 'opaque'; // not the Postgres protocol: stop guessing
          continue;
        }
        this.#state = 'framed';
        this.#remaining = length - 4;
      }
      if (stopAtBoundary && this.atBoundary) return taken;
    }
    return data.length;
  }
}

/**
 * One direction of a proxied connection. All writes go through here so that delayed and
 * undelayed chunks share one queue and can never overtake each other, whatever the mode does.
 * The server→client lane also follows the message framing, to inject messages between two.
 */
class Lane {
  #queue: Chunk[] = [];
  #timer: NodeJS.Timeout | undefined;
  #finishing = false;
  readonly #framing: BackendFraming | undefined;
  /** Messages to write as soon as the bytes written so far end at a message boundary. */
  #injections: Buffer[] = [];

  constructor(
    readonly source: Socket,
    readonly dest: Socket,
    options: { backendFraming?: boolean } = {},
  ) {
    if (options.backendFraming) this.#framing = new BackendFraming();
    // Backpressure: the source is paused when the destination's buffer is full (see #write).
    dest.on('drain', () => source.resume());
  }

  /**
   * Queues `message` to be written right after the message the destination is in the middle of
   * (at once when it is between two). Returns false when the stream's framing is not known.
   */
  inject(message: Buffer): boolean {
    if (!this.#framing?.framed || this.dest.destroyed || this.dest.writableEnded) return false;
    this.#injections.push(message);
    this.#writeInjections();
    return true;
  }

  send(data: Buffer, delayMs: number): void {
    if (this.#queue.length === 0 && delayMs <= 0) {
      this.#write(data);
      return;
    }
    this.#queue.push({ due: performance.now() + delayMs, data });
    this.#schedule();
  }

  /** Sends the source's FIN on to the destination once everything queued before it is out. */
  finish(): void {
    this.#finishing = true;
    if (this.#queue.length === 0) this.#end();
  }

  /** Delivers everything queued right away (leaving `delay` for `pass`). */
  flush(): void {
    this.#clearTimer();
    for (const chunk of this.#queue.splice(0)) this.#write(chunk.data);
    if (this.#finishing) this.#end();
  }

  /** Forgets queued bytes, like packets in flight when the network breaks. */
  discard(): void {
    this.#clearTimer();
    this.#queue.length = 0;
    this.#injections.length = 0;
    this.#finishing = false;
  }

  #schedule(): void {
    if (this.#timer !== undefined) return;
    const head = this.#queue[0];
    if (!head) return;
    const wait = Math.max(0, Math.ceil(head.due - performance.now()));
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#pump();
    }, wait);
  }

  #pump(): void {
    // Timers run on the event loop's millisecond clock and can fire a fraction early by
    // performance.now(); re-checking here is what lets tests rely on delayMs as a lower bound.
    const now = performance.now();
    while (this.#queue[0] && this.#queue[0].due <= now) {
      const chunk = this.#queue.shift();
      if (chunk) this.#write(chunk.data);
    }
    if (this.#queue.length > 0) this.#schedule();
    else if (this.#finishing) this.#end();
  }

  #write(data: Buffer): void {
    if (this.dest.destroyed || this.dest.writableEnded) return;
    const framing = this.#framing;
    if (!framing) {
      this.#put(data);
      return;
    }
    // Cut at the first message boundary while an injection waits for one.
    for (let rest = data; rest.length > 0;) {
      const taken = framing.feed(rest, this.#injections.length > 0);
      this.#put(rest.subarray(0, taken));
      rest = rest.subarray(taken);
      this.#writeInjections();
    }
  }

  #writeInjections(): void {
    if (this.#injections.length === 0 || !this.#framing?.atBoundary) return;
    if (this.dest.destroyed || this.dest.writableEnded) return;
    for (const message of this.#injections.splice(0)) this.#put(message);
  }

  #put(data: Buffer): void {
    if (!this.dest.write(data)) this.source.pause();
  }

  #end(): void {
    if (!this.dest.destroyed && !this.dest.writableEnded) this.dest.end();
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/** A client connection and, unless it arrived during a blackhole, its connection to the target. */
class Link {
  toUpstream: Lane | undefined;
  toClient: Lane | undefined;
  /**
   * Set once the link has lost bytes to a blackhole. Its protocol state on either side is then
   * unknowable, so it is never forwarded again: it is reset when the blackhole ends.
   */
  blackholed = false;

  constructor(
    readonly client: Socket,
    readonly upstream: Socket | undefined,
  ) {
    if (upstream) {
      this.toUpstream = new Lane(client, upstream);
      this.toClient = new Lane(upstream, client, { backendFraming: true });
    }
  }

  get lanes(): Lane[] {
    return [this.toUpstream, this.toClient].filter((lane) => lane !== undefined);
  }

  get closed(): boolean {
    return this.client.destroyed && (this.upstream?.destroyed ?? true);
  }

  abort(): void {
    for (const lane of this.lanes) lane.discard();
    abort(this.client);
    if (this.upstream) abort(this.upstream);
  }
}

/**
 * An in-process TCP proxy to put between a server under test and Postgres, to break the network
 * on demand. Listens on 127.0.0.1 on a free port; point the server at `url(originalUrl)`.
 *
 * Leaving `blackhole` (for any other mode) resets every connection that was black-holed, both
 * towards the client and towards the target: bytes were lost, so the Postgres protocol on those
 * connections is out of step and forwarding again would only produce garbage. This matches what
 * a client sees after a real partition heals (its next write gets a RST, or it has timed out).
 *
 * Besides breaking the network, it can make Postgres appear to say something it never said:
 * `injectToClients` slips a message into what the clients receive, between two real messages.
 */
export class FaultProxy {
  readonly host = '127.0.0.1';
  #server: Server;
  #target: ProxyTarget;
  #links = new Set<Link>();
  #mode: FaultMode = 'pass';
  #delayMs = 0;
  #closed = false;

  private constructor(server: Server, target: ProxyTarget) {
    this.#server = server;
    this.#target = target;
    server.on('connection', (socket) => this.#accept(socket));
  }

  /** Starts a proxy to `target`; call `close()` when done. */
  static async start(target: ProxyTarget): Promise<FaultProxy> {
    // allowHalfOpen so a FIN is just another event to forward (or to lose in a blackhole) instead
    // of Node closing our side of the socket behind the proxy's back.
    const server = createServer({ allowHalfOpen: true, noDelay: true });
    const proxy = new FaultProxy(server, target);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, proxy.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // After listening, errors (e.g. EMFILE on accept) must not crash the test process.
    server.on('error', () => {});
    return proxy;
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  get target(): ProxyTarget {
    return { ...this.#target };
  }

  get mode(): FaultMode {
    return this.#mode;
  }

  /** Live client connections, black-holed ones included. */
  get connectionCount(): number {
    let count = 0;
    for (const link of this.#links) if (!link.client.destroyed) count++;
    return count;
  }

  /** `originalUrl` with its host and port replaced by the proxy's. */
  url(originalUrl: string): string {
    const url = new URL(originalUrl);
    url.hostname = this.host;
    url.port = String(this.port);
    return url.toString();
  }

  setMode(mode: FaultMode, options: FaultModeOptions = {}): void {
    if (mode === 'delay') {
      const delayMs = options.delayMs;
      if (delayMs === undefined || !Number.isFinite(delayMs) || delayMs < 0) {
        throw new RangeError(`delay mode needs a non-negative delayMs, got ${String(delayMs)}`);
      }
      this.#delayMs = delayMs;
    } else {
      this.#delayMs = 0;
    }
    const previous = this.#mode;
    this.#mode = mode;

    switch (mode) {
      case 'reset':
        this.resetAll();
        break;
      case 'blackhole':
        this.blackholeCurrent();
        break;
      case 'pass':
      case 'delay':
        if (previous === 'blackhole') {
          for (const link of this.#links) if (link.blackholed) this.#drop(link);
        }
        // Chunks queued under a longer delay go out now rather than lingering behind a shorter
        // (or no) delay; order is still kept because they leave before anything newer.
        if (mode === 'pass')
          for (const link of this.#links) for (const lane of link.lanes) lane.flush();
        break;
    }
  }

  /**
   * Sends `message`, one complete backend protocol message (type byte, then an int32 length that
   * counts itself), to the client of every current connection, as if Postgres had sent it. It
   * goes in at a message boundary: right after the message the client is in the middle of, at
   * once if it is between two. Returns how many connections got it (queued or written).
   * Connections left out: black-holed ones, ones whose server has not sent a first message yet,
   * and encrypted ones (SSL or GSS: the proxy cannot see their framing).
   */
  injectToClients(message: Buffer): number {
    if (message.length < 5 || message.readUInt32BE(1) !== message.length - 1) {
      throw new RangeError('injectToClients takes one message: type byte, int32 length, body');
    }
    let count = 0;
    for (const link of this.#links) {
      if (!link.blackholed && link.toClient?.inject(message)) count++;
    }
    return count;
  }

  /**
   * Black-holes every current connection while new ones are handled by the mode as usual: the
   * connections a NAT or firewall silently forgot, next to a network that works again.
   */
  blackholeCurrent(): void {
    for (const link of this.#links) {
      link.blackholed = true;
      // Bytes still waiting in a delay queue were in flight when the partition hit.
      for (const lane of link.lanes) lane.discard();
      // A source paused for backpressure would never be read again; reading and dropping
      // keeps the "network" swallowing bytes instead of pushing back on the sender.
      link.client.resume();
      link.upstream?.resume();
    }
  }

  /**
   * Sends new connections to `target` from now on and resets the current ones: a failover that
   * moves the address clients use (a DNS name or virtual IP) to another server.
   */
  retarget(target: ProxyTarget): void {
    this.#target = { ...target };
    this.resetAll();
  }

  /** Resets every current connection once, leaving the mode as it is. */
  resetAll(): void {
    for (const link of [...this.#links]) this.#drop(link);
  }

  /** Destroys every connection and stops listening. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const closing = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const link of [...this.#links]) this.#drop(link);
    await closing;
  }

  #drop(link: Link): void {
    link.abort();
    this.#links.delete(link);
  }

  #accept(client: Socket): void {
    client.on('error', () => {});
    if (this.#closed || this.#mode === 'reset') {
      abort(client);
      return;
    }
    client.setNoDelay(true);

    if (this.#mode === 'blackhole') {
      // The connection is accepted (the partition is "after" the proxy) but never reaches the
      // target, so the client waits for an answer that never comes.
      const link = new Link(client, undefined);
      link.blackholed = true;
      this.#links.add(link);
      client.on('data', () => {});
      client.on('close', () => {
        if (link.closed) this.#links.delete(link);
      });
      return;
    }

    const upstream = connect({
      host: this.#target.host,
      port: this.#target.port,
      allowHalfOpen: true,
      noDelay: true,
    });
    upstream.on('error', () => {});
    const link = new Link(client, upstream);
    this.#links.add(link);
    this.#wire(link, client, upstream, link.toUpstream);
    this.#wire(link, upstream, client, link.toClient);
  }

  #wire(link: Link, source: Socket, other: Socket, lane: Lane | undefined): void {
    source.on('data', (data: Buffer) => {
      if (link.blackholed) return;
      lane?.send(data, this.#mode === 'delay' ? this.#delayMs : 0);
    });
    source.on('end', () => {
      if (!link.blackholed) lane?.finish();
    });
    source.on('close', (hadError) => {
      // An abortive close (RST, connect refused) is passed on as one, so the server under test sees
      // the same kind of failure it would without the proxy. Within a blackhole nothing crosses.
      if (hadError && !link.blackholed) {
        lane?.discard();
        abort(other);
      }
      if (link.closed) this.#links.delete(link);
    });
  }
}

/** Starts a `FaultProxy` in `pass` mode in front of `target`. */
export function startFaultProxy(target: ProxyTarget): Promise<FaultProxy> {
  return FaultProxy.start(target);
}

/** Where a Postgres URL points: the target for a proxy in front of it. */
export function proxyTargetOf(url: string): ProxyTarget {
  const parsed = new URL(url);
  return { host: parsed.hostname, port: Number(parsed.port || 5432) };
}
