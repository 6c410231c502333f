import type { FastifyBaseLogger } from 'fastify';
import type { ShapeRegistry } from '../shapes/shape-registry.js';
import type { StatusMonitor } from '../status/status-monitor.js';
import type { ShapeStorage } from '../storage/shape-storage.js';

/** The storage record naming the server that writes a shared storage. */
const WRITER_RECORD = 'writer';

interface WriterRecord {
  instance: string;
  since: string;
}

/**
 * Run with the replication lock held, before the stream starts, by a server whose storage other
 * servers share (Redis): the lock makes it the one writer, and its registry must hold what the
 * storage holds now. A server that never loaded its shapes (it waited for the lock) loads them;
 * one whose shapes another server has written since (it lost the lock for a while) reloads
 * them, since its logs' view of the storage is stale. Then it names itself the writer.
 */
export async function takeOverStorage(
  storage: ShapeStorage,
  registry: ShapeRegistry,
  status: StatusMonitor,
  instance: string,
  log: FastifyBaseLogger,
): Promise<void> {
  const previous = await readWriter(storage);
  if (!registry.loadStarted) {
    registry.load();
    await registry.loaded;
  } else if (previous !== undefined && previous.instance !== instance) {
    log.warn(
      { previous: previous.instance },
      'another server wrote the shapes meanwhile: reloading them',
    );
    await registry.reload();
  }
  const record: WriterRecord = { instance, since: new Date().toISOString() };
  await storage.writeRecord(WRITER_RECORD, JSON.stringify(record));
  status.reportStorageServers(instance, instance);
  log.info({ instance }, 'this server writes the shared shape storage');
}

/** The server that last took the shared storage over, if any did. */
export async function readWriter(storage: ShapeStorage): Promise<WriterRecord | undefined> {
  const text = await storage.readRecord(WRITER_RECORD);
  try {
    return text === undefined ? undefined : (JSON.parse(text) as WriterRecord);
  } catch {
    return undefined;
  }
}
