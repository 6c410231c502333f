import { PARAMS, SUBSET_FIELDS, SUBSET_PARAM_PREFIX } from '@sluice/protocol';
import type { SubsetSpec } from '../shapes/subset-query.js';
import type { ValidationErrors } from './shape-request.js';

type Query = Record<string, string | string[] | undefined>;

/** A subset's fields as sent, before validation (query-string text or JSON values). */
interface RawSubset {
  where: unknown;
  params: unknown;
  limit: unknown;
  offset: unknown;
  orderBy: unknown;
}

/** A subset as validated: its fields, or every problem found, by field (`errors.subset`). */
export type SubsetParse = { subset: SubsetSpec } | { errors: ValidationErrors };

/** Whether a `GET /v1/shape` asks for a subset snapshot: any `subset__*` parameter does. */
export function isSubsetQuery(query: Query): boolean {
  return Object.keys(query).some((key) => key.startsWith(SUBSET_PARAM_PREFIX));
}

/**
 * The subset of a `GET /v1/shape?…&subset__where=…` (docs/protocol.md §3.10). Problems are
 * listed by subset field (`where`, `params`, …), for `errors.subset`. `subset__where_expr` and
 * `subset__order_by_expr` (structured copies the official client adds) are ignored.
 */
export function parseSubsetQuery(query: Query): SubsetParse {
  const errors: ValidationErrors = {};
  const single = (name: string, field: string): string | undefined => {
    const value = query[name];
    if (Array.isArray(value)) return fail(errors, field, 'must be given once');
    return value;
  };
  const paramsText = single(PARAMS.subsetParams, SUBSET_FIELDS.params);
  let params: unknown;
  if (paramsText !== undefined) {
    try {
      params = JSON.parse(paramsText);
    } catch {
      fail(errors, SUBSET_FIELDS.params, 'must be a JSON object such as {"1":"value"}');
    }
  }
  return validateSubset(
    {
      where: single(PARAMS.subsetWhere, SUBSET_FIELDS.where),
      params,
      limit: single(PARAMS.subsetLimit, SUBSET_FIELDS.limit),
      offset: single(PARAMS.subsetOffset, SUBSET_FIELDS.offset),
      orderBy: single(PARAMS.subsetOrderBy, SUBSET_FIELDS.orderBy),
    },
    errors,
  );
}

/**
 * The subset of a `POST /v1/shape` JSON body: `{where, params, limit, offset, order_by}` at its
 * top level or inside `subset` (both as Electric accepts). `where_expr` and `order_by_expr` are
 * ignored. Numbers may be JSON numbers or their text.
 */
export function parseSubsetBody(body: unknown): SubsetParse {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return {
      errors: {
        body: ['must be a JSON object: {"where", "params", "limit", "offset", "order_by"}'],
      },
    };
  }
  const outer = body as Record<string, unknown>;
  const nested = outer[SUBSET_FIELDS.subset];
  const fields =
    typeof nested === 'object' && nested !== null && !Array.isArray(nested)
      ? (nested as Record<string, unknown>)
      : outer;
  return validateSubset(
    {
      where: fields[SUBSET_FIELDS.where],
      params: fields[SUBSET_FIELDS.params],
      limit: fields[SUBSET_FIELDS.limit],
      offset: fields[SUBSET_FIELDS.offset],
      orderBy: fields[SUBSET_FIELDS.orderBy],
    },
    {},
  );
}

function fail(errors: ValidationErrors, field: string, reason: string): undefined {
  (errors[field] ??= []).push(reason);
  return undefined;
}

/** Every field checked at once, so one 400 names every problem. */
function validateSubset(raw: RawSubset, errors: ValidationErrors): SubsetParse {
  const where = optionalText(raw.where, SUBSET_FIELDS.where, errors);
  const orderBy = optionalText(raw.orderBy, SUBSET_FIELDS.orderBy, errors);
  const limit = optionalInteger(raw.limit, 1, SUBSET_FIELDS.limit, errors);
  const offset = optionalInteger(raw.offset, 0, SUBSET_FIELDS.offset, errors);
  const params = raw.params === undefined ? [] : subsetParams(raw.params, errors);
  if ((raw.limit !== undefined || raw.offset !== undefined) && raw.orderBy === undefined) {
    fail(errors, SUBSET_FIELDS.orderBy, 'is required when limit or offset is given');
  }
  if (params !== undefined && params.length > 0 && raw.where === undefined) {
    fail(errors, SUBSET_FIELDS.params, 'given without a where clause');
  }
  if (Object.keys(errors).length > 0 || params === undefined) return { errors };
  return { subset: { where, params, limit, offset, orderBy } };
}

function optionalText(value: unknown, field: string, errors: ValidationErrors): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') return fail(errors, field, 'must be a string');
  return value;
}

/** A JSON number or its decimal text, an integer from `min` up to 2^53 − 1. */
function optionalInteger(
  value: unknown,
  min: number,
  field: string,
  errors: ValidationErrors,
): number | undefined {
  if (value === undefined || value === null) return undefined;
  const number =
    typeof value === 'number'
      ? value
      : typeof value === 'string' && /^[0-9]{1,16}$/.test(value)
        ? Number(value)
        : NaN;
  if (!Number.isSafeInteger(number) || number < min) {
    return fail(
      errors,
      field,
      `must be an integer of at least ${min}, got ${JSON.stringify(value)}`,
    );
  }
  return number;
}

/**
 * `{"1":"a","2":"b"}` as a list of `$1…$n` values: keys are integers from 1 without gaps, values
 * text (numbers and booleans as their text; the official client sends bigints as strings). A
 * list (`["a","b"]`) is taken as `$1, $2, …` too.
 */
export function subsetParams(value: unknown, errors: ValidationErrors): string[] | undefined {
  const entries: [string, unknown][] = Array.isArray(value)
    ? value.map((item, i) => [String(i + 1), item])
    : typeof value === 'object' && value !== null
      ? Object.entries(value)
      : [];
  if (!Array.isArray(value) && (typeof value !== 'object' || value === null)) {
    return fail(errors, SUBSET_FIELDS.params, 'must be a JSON object such as {"1":"value"}');
  }
  const values = new Map<number, string>();
  for (const [key, item] of entries) {
    if (!/^[1-9][0-9]{0,5}$/.test(key)) {
      fail(
        errors,
        SUBSET_FIELDS.params,
        `${JSON.stringify(key)}: keys must be integers from 1 to 999999`,
      );
      continue;
    }
    const text =
      typeof item === 'string'
        ? item
        : typeof item === 'number' && Number.isFinite(item)
          ? String(item)
          : typeof item === 'boolean'
            ? String(item)
            : undefined;
    if (text === undefined) {
      fail(errors, SUBSET_FIELDS.params, `${key}: must be a string, a number or a boolean`);
    } else if (text.includes('\0')) {
      fail(errors, SUBSET_FIELDS.params, `${key} must not contain a NUL character`);
    } else {
      values.set(Number(key), text);
    }
  }
  if (errors[SUBSET_FIELDS.params]) return undefined;
  const list: string[] = [];
  for (let i = 1; i <= values.size; i++) {
    const text = values.get(i);
    if (text === undefined) {
      return fail(
        errors,
        SUBSET_FIELDS.params,
        `must be numbered from 1 without gaps: ${i} is missing`,
      );
    }
    list.push(text);
  }
  return list;
}
