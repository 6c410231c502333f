import { PARAMS, parseRequestOffset, type RequestOffset } from '@sluice/protocol';
import {
  InvalidIdentifierError,
  parseColumnList,
  parseTableIdentifier,
} from '../pg/table-identifier.js';
import type { ShapeDefinition } from '../shapes/shape-definition.js';

/** A validated `GET /v1/shape` request. */
export interface ShapeRequest {
  definition: ShapeDefinition;
  offset: RequestOffset;
  /** The raw offset text, echoed in the ETag. */
  offsetText: string;
  handle: string | undefined;
  live: boolean;
  /** A live request to answer as an SSE stream (`live_sse`, docs/protocol.md §3.9). */
  sse: boolean;
  cursor: string | undefined;
}

/** 400 body fields, per parameter (docs/protocol.md §2). */
export type ValidationErrors = Record<string, string[]>;

type Query = Record<string, string | string[] | undefined>;

/** The characters of the handles Sluice makes (live and fallback ones), with room to spare. */
const HANDLE = /^[A-Za-z0-9_-]{1,128}$/;

/** One value per parameter: a repeated parameter is a client bug we report, not guess at. */
function single(query: Query, name: string, errors: ValidationErrors): string | undefined {
  const value = query[name];
  if (Array.isArray(value)) {
    (errors[name] ??= []).push('must be given once');
    return undefined;
  }
  return value;
}

function fail(errors: ValidationErrors, name: string, reason: string): undefined {
  (errors[name] ??= []).push(reason);
  return undefined;
}

/** Validates every parameter at once, so one 400 names every problem. */
export function parseShapeRequest(query: Query): ShapeRequest | ValidationErrors {
  const errors: ValidationErrors = {};

  const tableText = single(query, PARAMS.table, errors);
  let table: ShapeDefinition['table'] | undefined;
  if (tableText === undefined || tableText === '') {
    if (!errors.table) fail(errors, PARAMS.table, 'is required');
  } else {
    try {
      table = parseTableIdentifier(tableText);
    } catch (error) {
      if (!(error instanceof InvalidIdentifierError)) throw error;
      fail(errors, PARAMS.table, error.message);
    }
  }

  const offsetText = single(query, PARAMS.offset, errors);
  let offset: RequestOffset | undefined;
  if (offsetText === undefined) {
    if (!errors.offset) fail(errors, PARAMS.offset, 'is required');
  } else {
    offset = parseRequestOffset(offsetText);
    if (offset === undefined) {
      fail(errors, PARAMS.offset, 'has invalid format: use -1, now, <tx>_<op> or <tx>_inf');
    }
  }

  const handle = single(query, PARAMS.handle, errors) || undefined;
  const startsOver = offset === 'before-all' || offset === 'now';
  if (offset !== undefined && !startsOver && handle === undefined) {
    fail(errors, PARAMS.handle, `is required when offset is not -1 or now`);
  }
  // A handle is echoed in response headers: anything but what Sluice makes is refused here.
  if (!startsOver && handle !== undefined && !HANDLE.test(handle)) {
    fail(errors, PARAMS.handle, 'must be 1 to 128 letters, digits, _ or -');
  }

  const liveText = single(query, PARAMS.live, errors);
  const live = liveText !== undefined && liveText !== 'false';
  if (live && startsOver) fail(errors, PARAMS.live, `is not allowed with offset=${offsetText}`);
  // Read like `live`; the older name counts only when the newer one is absent, as in Electric.
  const sseName = query[PARAMS.liveSse] !== undefined ? PARAMS.liveSse : PARAMS.experimentalLiveSse;
  const sseText = single(query, sseName, errors);
  const sse = sseText !== undefined && sseText !== 'false';
  if (sse && !live) fail(errors, sseName, 'is only allowed with live=true');

  let columns: string[] | undefined;
  const columnsText = single(query, PARAMS.columns, errors);
  if (columnsText !== undefined) {
    try {
      columns = parseColumnList(columnsText);
    } catch (error) {
      if (!(error instanceof InvalidIdentifierError)) throw error;
      fail(errors, PARAMS.columns, error.message);
    }
  }

  const replica = single(query, PARAMS.replica, errors) ?? 'default';
  if (replica !== 'default' && replica !== 'full') {
    fail(errors, PARAMS.replica, `must be default or full, got "${replica}"`);
  }
  const log = single(query, PARAMS.log, errors) ?? 'full';
  if (log !== 'full' && log !== 'changes_only') {
    fail(errors, PARAMS.log, `must be full or changes_only, got "${log}"`);
  }
  const where = single(query, PARAMS.where, errors);
  const params = parseWhereParams(query, errors);
  if (params !== undefined && where === undefined && !errors.where) {
    fail(errors, PARAMS.params, 'given without a where clause');
  }

  const cursor = single(query, PARAMS.cursor, errors) || undefined;
  if (
    Object.keys(errors).length > 0 ||
    !table ||
    offset === undefined ||
    offsetText === undefined
  ) {
    return errors;
  }
  return {
    definition: {
      table,
      columns,
      replica: replica as ShapeDefinition['replica'],
      log: log as ShapeDefinition['log'],
      ...(where === undefined ? {} : { where, params: params ?? [] }),
    },
    offset,
    offsetText,
    handle: startsOver ? undefined : handle,
    live,
    sse,
    cursor,
  };
}

const PARAM_KEY = /^params\[(.*)\]$/;

/**
 * `params[1]=…&params[2]=…` as a list: keys are integers from 1 without gaps, each given once
 * (docs/protocol.md §2). Undefined when there are none.
 */
function parseWhereParams(query: Query, errors: ValidationErrors): string[] | undefined {
  const values = new Map<number, string>();
  for (const [key, value] of Object.entries(query)) {
    const match = PARAM_KEY.exec(key);
    if (!match) continue;
    const index = /^[1-9][0-9]{0,5}$/.test(match[1]!) ? Number(match[1]) : undefined;
    if (index === undefined) {
      fail(errors, PARAMS.params, `${key}: keys must be integers from 1 to 999999`);
    } else if (typeof value !== 'string') {
      fail(errors, PARAMS.params, `${key} must be given once`);
    } else if (value.includes('\0')) {
      // Postgres text cannot hold one: refused here rather than failing in the database.
      fail(errors, PARAMS.params, `${key} must not contain a NUL character (%00)`);
    } else {
      values.set(index, value);
    }
  }
  if (query[PARAMS.params] !== undefined) {
    fail(errors, PARAMS.params, 'must be given as params[1]=…, params[2]=…');
  }
  // A bad key was reported already; a gap it leaves would only repeat it.
  if (values.size === 0 || errors.params) return undefined;
  const list: string[] = [];
  for (let i = 1; i <= values.size; i++) {
    const value = values.get(i);
    if (value === undefined) {
      return fail(
        errors,
        PARAMS.params,
        `must be numbered from 1 without gaps: params[${i}] is missing`,
      );
    }
    list.push(value);
  }
  return list;
}

export function isValidationErrors(
  value: ShapeRequest | ValidationErrors,
): value is ValidationErrors {
  return !('definition' in value);
}
