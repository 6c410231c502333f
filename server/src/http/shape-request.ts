import { PARAMS, parseRequestOffset, type RequestOffset } from '@sluice/protocol';
import {
  InvalidIdentifierError,
  parseColumnList,
  parseTableIdentifier,
} from '../shapes/table-identifier.js';
import type { ShapeDefinition } from '../shapes/shape-definition.js';

/** A validated `GET /v1/shape` request. */
export interface ShapeRequest {
  definition: ShapeDefinition;
  offset: RequestOffset;
  /** The raw offset text, echoed in the ETag. */
  offsetText: string;
  handle: string | undefined;
  live: boolean;
  cursor: string | undefined;
}

/** 400 body fields, per parameter (PROTOCOL.md §2). */
export type ValidationErrors = Record<string, string[]>;

type Query = Record<string, string | string[] | undefined>;

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

  const liveText = single(query, PARAMS.live, errors);
  const live = liveText !== undefined && liveText !== 'false';
  if (live && startsOver) fail(errors, PARAMS.live, `is not allowed with offset=${offsetText}`);

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
  if (query[PARAMS.where] !== undefined) {
    // Serving the whole table for a filtered request would be a silently wrong answer.
    fail(errors, PARAMS.where, 'where clauses are not supported by this server yet');
  }

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
    },
    offset,
    offsetText,
    handle: startsOver ? undefined : handle,
    live,
    cursor: single(query, PARAMS.cursor, errors) || undefined,
  };
}

export function isValidationErrors(
  value: ShapeRequest | ValidationErrors,
): value is ValidationErrors {
  return !('definition' in value);
}
