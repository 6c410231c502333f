// A TanStack DB collection (`@tanstack/db` + `@tanstack/electric-db-collection`) of any table's
// shape on Sluice, read-only: the subquery tests follow shapes whose rows move in and out with
// other tables, which is what the collection's tag index and move-in/move-out handling are for.
// `rows()` gives the collection's rows reduced to the table's columns, for the oracle.
import { BasicIndex, createCollection, type Collection } from '@tanstack/db';
import {
  electricCollectionOptions,
  type ElectricCollectionUtils,
} from '@tanstack/electric-db-collection';
import type { Row } from '@electric-sql/client';
import type { SyncMode } from './tanstack-items.js';

export type TableCollection<T extends Row = Row> = Collection<
  T,
  string,
  ElectricCollectionUtils<T>
>;

export interface TableCollectionHandle<T extends Row = Row> {
  collection: TableCollection<T>;
  /** The collection's rows, only the given columns (it may add virtual properties). */
  rows: () => Row[];
  /** Errors the collection's stream reported. */
  streamErrors: unknown[];
  /** Every request its stream sent, as `METHOD url`. */
  requests: string[];
}

export interface TableShape {
  table: string;
  where: string;
  /** Values of `$1…` in `where`. */
  params?: string[];
  /** The table's columns (primary key `id` among them), as the rows name them. */
  columns: readonly string[];
}

let created = 0;

/** `T`: the row type live queries see (the columns' parsed values). */
export function tableCollection<T extends Row = Row>(
  shapeUrl: string,
  shape: TableShape,
  syncMode: SyncMode,
): TableCollectionHandle<T> {
  const streamErrors: unknown[] = [];
  const requests: string[] = [];
  const fetchClient: typeof fetch = (input, init) => {
    const target = input instanceof Request ? input.url : input.toString();
    requests.push(`${init?.method ?? 'GET'} ${target}`);
    return fetch(input, init);
  };
  const collection = createCollection(
    electricCollectionOptions<T>({
      // Ids must be unique per process: TanStack DB keeps collections by id.
      id: `${shape.table}-${syncMode}-${++created}`,
      syncMode,
      // Every table here has an integer primary key `id`.
      getKey: (row) => String(row.id as number),
      startSync: true,
      autoIndex: 'eager',
      defaultIndexType: BasicIndex,
      shapeOptions: {
        url: shapeUrl,
        params: {
          table: shape.table,
          where: shape.where,
          ...(shape.params ? { params: shape.params } : {}),
        },
        fetchClient,
        // Keep following through restarts (409s are not errors); record anything else.
        onError: (error) => {
          streamErrors.push(error);
        },
      },
    }),
  ) as unknown as TableCollection<T>;
  const rows = () =>
    collection.toArray.map((row) =>
      Object.fromEntries(shape.columns.map((column) => [column, (row as Row)[column]])),
    ) as Row[];
  return { collection, rows, streamErrors, requests };
}
