import type { FastifyBaseLogger } from 'fastify';
import { Cluster } from 'ioredis';
import type { RedisClient, RedisConnection } from './redis-connection.js';
import type { StorageChannel } from './shape-storage.js';

/**
 * The servers sharing a Redis storage talk over one pub/sub channel. Subscribing takes a
 * connection of its own (a subscribed Redis connection can do nothing else): a duplicate of the
 * storage's, with its reconnect backoff and timeouts, that queues the SUBSCRIBE until it
 * connects and subscribes again after every reconnect (ioredis' `autoResubscribe`). It is sent a
 * PING every health-check interval, so a connection that died silently is replaced (its socket
 * timeout) rather than missing messages for good. Publishing goes through the storage's
 * connection, so its breaker and health cover it.
 */
export class RedisChannel implements StorageChannel {
  readonly #connection: RedisConnection;
  readonly #name: string;
  readonly #subscriber: RedisClient;
  readonly #messageListeners: ((message: string) => void)[] = [];
  readonly #subscribedListeners: (() => void)[] = [];
  readonly #timer: NodeJS.Timeout;

  constructor(
    connection: RedisConnection,
    name: string,
    healthCheckIntervalMs: number,
    log: FastifyBaseLogger,
  ) {
    this.#connection = connection;
    this.#name = name;
    // Commands wait for the connection (the SUBSCRIBE, however long Redis is down).
    const waiting = { enableOfflineQueue: true, maxRetriesPerRequest: null };
    const { redis } = connection;
    this.#subscriber =
      redis instanceof Cluster
        ? redis.duplicate(undefined, { ...redis.options, ...waiting })
        : redis.duplicate(waiting);
    // Down or not, the storage's connection reports Redis' health; this one only reconnects.
    this.#subscriber.on('error', (error: Error) =>
      log.debug({ err: error }, 'redis subscription connection failed'),
    );
    this.#subscriber.on('message', (channel: string, message: string) => {
      if (channel !== this.#name) return;
      for (const listener of this.#messageListeners) listener(message);
    });
    // 'ready' follows the SUBSCRIBE ioredis sends again after a reconnect.
    this.#subscriber.on('ready', () => {
      for (const listener of this.#subscribedListeners) listener();
    });
    this.#timer = setInterval(() => {
      if (this.#subscriber.status === 'ready') this.#subscriber.ping().catch(() => undefined);
    }, healthCheckIntervalMs);
    this.#timer.unref();
  }

  /** Subscribes, once connected: does not wait for it (Redis may be down at start). */
  open(): void {
    this.#subscriber.subscribe(this.#name).catch(() => undefined);
  }

  async publish(message: string): Promise<void> {
    await this.#connection.run((redis) => redis.publish(this.#name, message));
  }

  onMessage(listener: (message: string) => void): void {
    this.#messageListeners.push(listener);
  }

  onSubscribed(listener: () => void): void {
    this.#subscribedListeners.push(listener);
  }

  close(): void {
    clearInterval(this.#timer);
    this.#subscriber.disconnect();
  }
}
