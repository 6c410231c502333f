import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SluiceError } from '../errors/sluice-error.js';
import { orderBySql, parseOrderBy } from './order-by.js';
import { DEFAULT_WHERE_LIMITS as LIMITS } from './where-limits.js';

const SERVED = ['id', 'title', 'Created At', 'weird"name'];

/** The ORDER BY Sluice would send for `text`. */
async function rebuilt(text: string): Promise<string> {
  return orderBySql(await parseOrderBy(text, LIMITS), SERVED);
}

async function refused(text: string, message: RegExp): Promise<void> {
  await assert.rejects(rebuilt(text), (error: unknown) => {
    assert.ok(error instanceof SluiceError, `not a SluiceError: ${String(error)}`);
    assert.equal(error.code, 'SLUICE_ERR_SHAPE_INVALID');
    assert.equal(error.details.field, 'order_by');
    assert.match(error.message, message);
    return true;
  });
}

test('columns with directions and NULLS placement are rebuilt, quoted by Sluice', async () => {
  assert.equal(await rebuilt('id'), '"id"');
  assert.equal(await rebuilt('ID desc'), '"id" DESC');
  assert.equal(
    await rebuilt('"Created At" DESC NULLS LAST, title asc nulls first, id'),
    '"Created At" DESC NULLS LAST, "title" ASC NULLS FIRST, "id"',
  );
  assert.equal(await rebuilt('"weird""name" NULLS FIRST'), '"weird""name" NULLS FIRST');
  // What TanStack DB's compiler sends.
  assert.equal(await rebuilt('"title" DESC NULLS LAST'), '"title" DESC NULLS LAST');
});

test('injection attempts and anything but a column are refused, naming what was refused', async () => {
  await refused('id; DROP TABLE items', /list of columns/);
  await refused('id; DROP TABLE items; --', /list of columns/);
  await refused('(SELECT 1)', /a subquery is not allowed/);
  await refused('pg_sleep(10)', /a function call is not allowed/);
  await refused('lower(title)', /a function call is not allowed/);
  await refused('1', /a constant \(or a column position\) is not allowed/);
  await refused("'x'", /a constant/);
  await refused('id + 1', /an expression is not allowed/);
  await refused('id::text', /a cast is not allowed/);
  await refused('$1', /a parameter is not allowed/);
  await refused('title COLLATE "C"', /COLLATE is not allowed/);
  await refused('id USING <', /not USING/);
  await refused('items.id', /table.column/);
  await refused('*', /syntax error/);
  await refused('items.*', /table.column or \*/);
  await refused('id LIMIT 1', /list of columns/);
  await refused('id UNION SELECT 1', /syntax error|list of columns/);
  await refused('id) x', /At location \d+: syntax error/);
  await refused('', /must not be empty/);
  await refused('id\0', /NUL/);
});

test('only columns the shape serves may be ordered by', async () => {
  await refused('secret', /unknown column "secret": not served by this shape/);
  await refused('id, "Title"', /unknown column "Title"/);
});

test('the where clause limits bound the text and its tree', async () => {
  const limits = { ...LIMITS, maxLength: 20 };
  await assert.rejects(parseOrderBy('id, title, id, title, id', limits), /SLUICE_WHERE_MAX_LENGTH/);
  const few = { ...LIMITS, maxNodes: 3 };
  await assert.rejects(parseOrderBy('id, title, id, title', few), /SLUICE_WHERE_MAX_NODES/);
});
