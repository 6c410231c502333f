import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RelationInfo, Row } from '../pg/transaction.js';
import type { FilterNode } from '../where/filter-spec.js';
import type { PgType, ScalarType } from '../where/pg-type.js';
import { ShapeRouter } from './shape-router.js';
import type { RowChange, Shape } from './shape.js';

// Fake shapes: the router reads nothing but metadata.relationOid and metadata.filter. Each fake
// gets a name so that assertions compare identities, not structures (two shapes with the same
// clause are still two shapes).

const ITEMS = 1001;
const OTHER = 2002;

const names = new Map<Shape, string>();

function shape(name: string, root?: FilterNode, relationOid = ITEMS): Shape {
  const filter = root && { source: name, root };
  const fake = { metadata: { relationOid, filter } } as unknown as Shape;
  names.set(fake, name);
  return fake;
}

function router(...shapes: Shape[]): ShapeRouter {
  const r = new ShapeRouter();
  for (const s of shapes) r.add(s);
  return r;
}

const type = (scalar: ScalarType): PgType => ({ scalar, array: false });
const col = (name: string, scalar: ScalarType = 'int4'): FilterNode => ({
  op: 'column',
  name,
  type: type(scalar),
});
const lit = (value: string | null, scalar: ScalarType = 'int4'): FilterNode => ({
  op: 'const',
  type: type(scalar),
  value,
});
const cast = (scalar: ScalarType, arg: FilterNode): FilterNode => ({
  op: 'cast',
  type: type(scalar),
  arg,
});
const compare = (
  operator: '=' | '>' | '<>',
  left: FilterNode,
  right: FilterNode,
  domain: ScalarType = 'int4',
): FilterNode => ({ op: 'compare', operator, domain: type(domain), text: undefined, left, right });
const eq = (left: FilterNode, right: FilterNode, domain: ScalarType = 'int4') =>
  compare('=', left, right, domain);
const inList = (
  arg: FilterNode,
  list: FilterNode[],
  domain: ScalarType = 'int4',
  negated = false,
): FilterNode => ({ op: 'in', negated, domain: type(domain), arg, list });
const and = (...args: FilterNode[]): FilterNode => ({ op: 'and', args });
const or = (...args: FilterNode[]): FilterNode => ({ op: 'or', args });

function relation(oid = ITEMS): RelationInfo {
  return {
    oid,
    schema: 'public',
    name: oid === ITEMS ? 'items' : 'other',
    columns: [],
    keyColumns: [],
  };
}
const insert = (newRow: Row, oid = ITEMS): RowChange => ({
  kind: 'insert',
  relation: relation(oid),
  newRow,
});
const update = (oldRow: Row | undefined, newRow: Row, oid = ITEMS): RowChange => ({
  kind: 'update',
  relation: relation(oid),
  oldRow,
  newRow,
});
const remove = (oldRow: Row, oid = ITEMS): RowChange => ({
  kind: 'delete',
  relation: relation(oid),
  oldRow,
});

/** The candidates' names, sorted; fails on a shape reported twice. */
function candidates(r: ShapeRouter, change: RowChange): string[] {
  const found = [...r.candidates(change)];
  assert.equal(new Set(found).size, found.length, 'a shape is listed twice');
  return found.map((s) => names.get(s) ?? '<unknown shape>').sort();
}

test('an unfiltered shape is a candidate for every change of its table', () => {
  const all = shape('all');
  const r = router(all);
  assert.deepEqual(candidates(r, insert({ id: '1' })), ['all']);
  assert.deepEqual(candidates(r, update({ id: '1' }, { id: '2' })), ['all']);
  assert.deepEqual(candidates(r, update(undefined, { id: '2' })), ['all']);
  assert.deepEqual(candidates(r, remove({ id: '3' })), ['all']);
});

test('an unfiltered shape stays a candidate next to indexed shapes', () => {
  const r = router(shape('all'), shape('id=5', eq(col('id'), lit('5'))));
  assert.deepEqual(candidates(r, insert({ id: '1' })), ['all']);
  assert.deepEqual(candidates(r, insert({ id: '5' })), ['all', 'id=5']);
  assert.deepEqual(candidates(r, remove({ id: '7' })), ['all']);
});

test('shapes whose clause has no equality term are always candidates', () => {
  const greater = shape('id>5', compare('>', col('id'), lit('5')));
  const either = shape('id=5 or id=6', or(eq(col('id'), lit('5')), eq(col('id'), lit('6'))));
  const notEqual = shape('id<>5', compare('<>', col('id'), lit('5')));
  const notIn = shape('id not in (5)', inList(col('id'), [lit('5')], 'int4', true));
  const indexed = shape('id=9', eq(col('id'), lit('9')));
  const r = router(greater, either, notEqual, notIn, indexed);
  const scanned = ['id<>5', 'id=5 or id=6', 'id>5', 'id not in (5)'].sort();
  assert.deepEqual(candidates(r, insert({ id: '1' })), scanned);
  assert.deepEqual(candidates(r, insert({ id: '5' })), scanned);
  assert.deepEqual(candidates(r, insert({ id: '9' })), [...scanned, 'id=9'].sort());
  assert.deepEqual(candidates(r, insert({ id: null })), scanned);
});

test('an equality shape is a candidate only for rows holding its value', () => {
  const five = shape('id=5', eq(col('id'), lit('5')));
  const six = shape('id=6', eq(col('id'), lit('6')));
  const r = router(five, six);
  assert.deepEqual(candidates(r, insert({ id: '5', title: 'a' })), ['id=5']);
  assert.deepEqual(candidates(r, insert({ id: '6' })), ['id=6']);
  assert.deepEqual(candidates(r, insert({ id: '7' })), []);
  assert.deepEqual(candidates(r, insert({ id: '55' })), []);
});

test('shapes with the same constant are all candidates', () => {
  const r = router(shape('a', eq(col('id'), lit('5'))), shape('b', eq(col('id'), lit('5'))));
  assert.deepEqual(candidates(r, insert({ id: '5' })), ['a', 'b']);
  assert.deepEqual(candidates(r, insert({ id: '4' })), []);
});

test('the constant may be on either side of =', () => {
  const r = router(shape('5=id', eq(lit('5'), col('id'))));
  assert.deepEqual(candidates(r, insert({ id: '5' })), ['5=id']);
  assert.deepEqual(candidates(r, insert({ id: '6' })), []);
});

test('a param is indexed like a constant', () => {
  const param: FilterNode = { op: 'param', index: 1, type: type('int4'), value: '8' };
  const r = router(shape('id=$1', eq(col('id'), param)));
  assert.deepEqual(candidates(r, insert({ id: '8' })), ['id=$1']);
  assert.deepEqual(candidates(r, insert({ id: '1' })), []);
});

test('an IN list makes a shape a candidate for each of its values', () => {
  const r = router(shape('id in (1,3)', inList(col('id'), [lit('1'), lit('3')])));
  assert.deepEqual(candidates(r, insert({ id: '1' })), ['id in (1,3)']);
  assert.deepEqual(candidates(r, insert({ id: '3' })), ['id in (1,3)']);
  assert.deepEqual(candidates(r, insert({ id: '2' })), []);
});

test('an AND is indexed by its first equality term', () => {
  const status = (value: string) => eq(col('status', 'text'), lit(value, 'text'), 'text');
  // id > 5 is not an equality; status = 'open' is the first that is; id = 7 comes after it.
  const clause = and(compare('>', col('id'), lit('5')), status('open'), eq(col('id'), lit('7')));
  const r = router(shape('open', clause));
  assert.deepEqual(candidates(r, insert({ id: '1', status: 'open' })), ['open']);
  assert.deepEqual(candidates(r, insert({ id: '7', status: 'closed' })), []);
  assert.deepEqual(candidates(r, insert({ id: '7', status: null })), []);
});

test('an AND without an equality term is always a candidate', () => {
  const clause = and(compare('>', col('id'), lit('5')), compare('<>', col('id'), lit('9')));
  const r = router(shape('range', clause), shape('id=1', eq(col('id'), lit('1'))));
  assert.deepEqual(candidates(r, insert({ id: '2' })), ['range']);
});

test('an AND nested in an AND still yields its equality term', () => {
  const clause = and(compare('>', col('id'), lit('0')), and(eq(col('id'), lit('4'))));
  const r = router(shape('nested', clause));
  assert.deepEqual(candidates(r, insert({ id: '4' })), ['nested']);
  assert.deepEqual(candidates(r, insert({ id: '3' })), []);
});

test('an update reaches the shapes of its old row and of its new row', () => {
  const five = shape('id=5', eq(col('id'), lit('5')));
  const six = shape('id=6', eq(col('id'), lit('6')));
  const seven = shape('id=7', eq(col('id'), lit('7')));
  const r = router(five, six, seven);
  // Moving out of id=5 must reach it (it sends a delete), moving into id=6 too.
  assert.deepEqual(candidates(r, update({ id: '5' }, { id: '6' })), ['id=5', 'id=6']);
  assert.deepEqual(candidates(r, update({ id: '5' }, { id: '1' })), ['id=5']);
  assert.deepEqual(candidates(r, update({ id: '1' }, { id: '7' })), ['id=7']);
  assert.deepEqual(candidates(r, update({ id: '5' }, { id: '5' })), ['id=5']);
  assert.deepEqual(candidates(r, update({ id: '1' }, { id: '2' })), []);
});

test('an update without an old row is routed by its new row', () => {
  const r = router(shape('id=5', eq(col('id'), lit('5'))));
  assert.deepEqual(candidates(r, update(undefined, { id: '5' })), ['id=5']);
  assert.deepEqual(candidates(r, update(undefined, { id: '6' })), []);
});

test('an update moving a row out of an AND shape reaches it through the indexed column', () => {
  const status = eq(col('status', 'text'), lit('open', 'text'), 'text');
  const r = router(shape('open', and(status, compare('>', col('id'), lit('0')))));
  const oldRow = { id: '1', status: 'open' };
  assert.deepEqual(candidates(r, update(oldRow, { id: '1', status: 'closed' })), ['open']);
  assert.deepEqual(candidates(r, update({ id: '1', status: 'closed' }, oldRow)), ['open']);
});

test('a delete is routed by its old row', () => {
  const r = router(shape('id=5', eq(col('id'), lit('5'))));
  assert.deepEqual(candidates(r, remove({ id: '5' })), ['id=5']);
  assert.deepEqual(candidates(r, remove({ id: '6' })), []);
});

test("shapes of other tables are never candidates, whatever the row's values", () => {
  const r = router(
    shape('other all', undefined, OTHER),
    shape('other id=5', eq(col('id'), lit('5')), OTHER),
    shape('other id>0', compare('>', col('id'), lit('0')), OTHER),
    shape('items id=5', eq(col('id'), lit('5'))),
  );
  assert.deepEqual(candidates(r, insert({ id: '5' })), ['items id=5']);
  assert.deepEqual(candidates(r, insert({ id: '5' }, OTHER)), [
    'other all',
    'other id=5',
    'other id>0',
  ]);
  assert.deepEqual(candidates(r, insert({ id: '5' }, 3003)), []);
  assert.deepEqual(candidates(router(), insert({ id: '5' })), []);
});

test('a NULL constant matches no row, not even a NULL one', () => {
  const r = router(shape('id=null', eq(col('id'), lit(null))));
  assert.deepEqual(candidates(r, insert({ id: null })), []);
  assert.deepEqual(candidates(r, insert({ id: '0' })), []);
  assert.deepEqual(candidates(r, insert({})), []);
});

test('a NULL in an IN list adds no key, the other values still do', () => {
  const r = router(shape('in (null,5)', inList(col('id'), [lit(null), lit('5')])));
  assert.deepEqual(candidates(r, insert({ id: '5' })), ['in (null,5)']);
  assert.deepEqual(candidates(r, insert({ id: null })), []);
});

test('a NULL or missing row value reaches no equality shape, but the other row of an update does', () => {
  const r = router(shape('id=5', eq(col('id'), lit('5'))), shape('all'));
  assert.deepEqual(candidates(r, insert({ id: null })), ['all']);
  assert.deepEqual(candidates(r, insert({ title: 'no id column' })), ['all']);
  assert.deepEqual(candidates(r, update({ id: '5' }, { id: null })), ['all', 'id=5']);
  assert.deepEqual(candidates(r, update({ id: null }, { id: '5' })), ['all', 'id=5']);
});

test('an int8 column compared with an int4 constant cast to int8', () => {
  const clause = eq(col('big', 'int8'), cast('int8', lit('5', 'int4')), 'int8');
  const r = router(shape('big=5', clause));
  assert.deepEqual(candidates(r, insert({ big: '5' })), ['big=5']);
  assert.deepEqual(candidates(r, insert({ big: '6' })), []);
  assert.deepEqual(candidates(r, insert({ big: '4294967301' })), []); // 5 + 2^32
});

test('int8 keys are exact beyond 2^53', () => {
  const clause = eq(col('big', 'int8'), lit('9007199254740993', 'int8'), 'int8');
  const r = router(shape('big', clause));
  assert.deepEqual(candidates(r, insert({ big: '9007199254740993' })), ['big']);
  assert.deepEqual(candidates(r, insert({ big: '9007199254740992' })), []);
});

test('an int4 column widened to int8 is indexed by its value', () => {
  const clause = eq(cast('int8', col('id', 'int4')), lit('7', 'int8'), 'int8');
  const r = router(shape('id::int8=7', clause), shape('id=7', eq(col('id'), lit('7'))));
  // Two type signatures on one column: two indexes, both consulted.
  assert.deepEqual(candidates(r, insert({ id: '7' })), ['id::int8=7', 'id=7']);
  assert.deepEqual(candidates(r, insert({ id: '8' })), []);
});

test('a text column cast to a number is not indexed (05 equals 5 after the cast)', () => {
  const clause = eq(cast('int4', col('code', 'text')), lit('5'));
  const r = router(shape('code::int=5', clause), shape('id=1', eq(col('id'), lit('1'))));
  assert.deepEqual(candidates(r, insert({ id: '2', code: '05' })), ['code::int=5']);
  assert.deepEqual(candidates(r, insert({ id: '2', code: 'x' })), ['code::int=5']);
});

test('numeric keys ignore trailing zeros: 1.5 = 1.50', () => {
  const clause = eq(col('amount', 'numeric'), lit('1.50', 'numeric'), 'numeric');
  const r = router(shape('amount=1.50', clause));
  assert.deepEqual(candidates(r, insert({ amount: '1.5' })), ['amount=1.50']);
  assert.deepEqual(candidates(r, insert({ amount: '1.50' })), ['amount=1.50']);
  assert.deepEqual(candidates(r, insert({ amount: '1.500000' })), ['amount=1.50']);
  assert.deepEqual(candidates(r, insert({ amount: '1.51' })), []);
  assert.deepEqual(candidates(r, insert({ amount: '15' })), []);
  assert.deepEqual(candidates(r, insert({ amount: '0.15' })), []);
});

test('numeric zero and integral values: 0 = 0.00, 10 = 10.0 but not 1', () => {
  const r = router(
    shape('zero', eq(col('n', 'numeric'), lit('0', 'numeric'), 'numeric')),
    shape('ten', eq(col('n', 'numeric'), lit('10.0', 'numeric'), 'numeric')),
  );
  assert.deepEqual(candidates(r, insert({ n: '0.00' })), ['zero']);
  assert.deepEqual(candidates(r, insert({ n: '10' })), ['ten']);
  assert.deepEqual(candidates(r, insert({ n: '1' })), []);
  assert.deepEqual(candidates(r, insert({ n: '100' })), []);
});

test('an integer column compared as numeric: 1 = 1.0, and 1.5 matches no integer', () => {
  const r = router(
    shape('id=1.0', eq(cast('numeric', col('id')), lit('1.0', 'numeric'), 'numeric')),
    shape('id=1.5', eq(cast('numeric', col('id')), lit('1.5', 'numeric'), 'numeric')),
  );
  assert.deepEqual(candidates(r, insert({ id: '1' })), ['id=1.0']);
  assert.deepEqual(candidates(r, insert({ id: '2' })), []);
});

test('text keys are exact: case, spaces and accents all count', () => {
  const r = router(shape('Alice', eq(col('name', 'text'), lit('Alice', 'text'), 'text')));
  assert.deepEqual(candidates(r, insert({ name: 'Alice' })), ['Alice']);
  assert.deepEqual(candidates(r, insert({ name: 'alice' })), []);
  assert.deepEqual(candidates(r, insert({ name: 'ALICE' })), []);
  assert.deepEqual(candidates(r, insert({ name: 'Alice ' })), []);
  assert.deepEqual(candidates(r, insert({ name: 'Alicé' })), []);
});

test('an empty text constant is a key like any other, distinct from NULL', () => {
  const r = router(shape('empty', eq(col('name', 'text'), lit('', 'text'), 'text')));
  assert.deepEqual(candidates(r, insert({ name: '' })), ['empty']);
  assert.deepEqual(candidates(r, insert({ name: null })), []);
});

test('bool equality is indexed by truth value', () => {
  const r = router(shape('done', eq(col('done', 'bool'), lit('t', 'bool'), 'bool')));
  assert.deepEqual(candidates(r, insert({ done: 't' })), ['done']);
  assert.deepEqual(candidates(r, insert({ done: 'f' })), []);
});

test('float equality is not indexed, so such shapes are always candidates', () => {
  const r = router(shape('f=1', eq(col('f', 'float8'), lit('1', 'float8'), 'float8')));
  assert.deepEqual(candidates(r, insert({ f: '2' })), ['f=1']);
});

test('shapes on different columns are indexed separately', () => {
  const r = router(
    shape('a=1', eq(col('a'), lit('1'))),
    shape('b=1', eq(col('b'), lit('1'))),
    shape('b=2', eq(col('b'), lit('2'))),
  );
  assert.deepEqual(candidates(r, insert({ a: '1', b: '2' })), ['a=1', 'b=2']);
  assert.deepEqual(candidates(r, insert({ a: '2', b: '1' })), ['b=1']);
  assert.deepEqual(candidates(r, update({ a: '1', b: '3' }, { a: '3', b: '1' })), ['a=1', 'b=1']);
});

test('a removed equality shape is no longer a candidate; others with its key stay', () => {
  const a = shape('a', eq(col('id'), lit('5')));
  const b = shape('b', eq(col('id'), lit('5')));
  const r = router(a, b);
  r.remove(a);
  assert.deepEqual(candidates(r, insert({ id: '5' })), ['b']);
  r.remove(b);
  assert.deepEqual(candidates(r, insert({ id: '5' })), []);
});

test('a key held by one shape, then three, then one again, then two: exactly the live ones', () => {
  // The router holds a lone shape per key without a Set: every transition must keep the count.
  const [a, b, c] = ['a', 'b', 'c'].map((name) => shape(name, eq(col('id'), lit('5'))));
  const r = router(a!);
  r.add(a!); // added twice: still once
  assert.deepEqual(candidates(r, insert({ id: '5' })), ['a']);
  r.add(b!);
  r.add(c!);
  assert.deepEqual(candidates(r, insert({ id: '5' })), ['a', 'b', 'c']);
  r.remove(a!);
  r.remove(c!);
  assert.deepEqual(candidates(r, insert({ id: '5' })), ['b']);
  r.remove(c!); // already gone
  r.add(a!);
  assert.deepEqual(candidates(r, insert({ id: '5' })), ['a', 'b']);
  r.remove(b!);
  r.remove(a!);
  assert.deepEqual(candidates(r, insert({ id: '5' })), []);
});

test('removing the last shape of an index, then adding to it again', () => {
  const first = shape('first', inList(col('id'), [lit('1'), lit('2')]));
  const r = router(first, shape('all'));
  r.remove(first);
  assert.deepEqual(candidates(r, insert({ id: '1' })), ['all']);
  assert.deepEqual(candidates(r, insert({ id: '2' })), ['all']);
  const second = shape('second', eq(col('id'), lit('2')));
  r.add(second);
  assert.deepEqual(candidates(r, insert({ id: '1' })), ['all']);
  assert.deepEqual(candidates(r, insert({ id: '2' })), ['all', 'second']);
});

test('removing the last shape of a table leaves nothing behind', () => {
  const only = shape('only', eq(col('id'), lit('5')));
  const r = router(only);
  r.remove(only);
  assert.deepEqual(candidates(r, insert({ id: '5' })), []);
  r.add(only);
  assert.deepEqual(candidates(r, insert({ id: '5' })), ['only']);
});

test('removing scanned shapes, and shapes never added, is harmless', () => {
  const all = shape('all');
  const greater = shape('id>5', compare('>', col('id'), lit('5')));
  const five = shape('id=5', eq(col('id'), lit('5')));
  const r = router(all, greater, five);
  r.remove(all);
  assert.deepEqual(candidates(r, insert({ id: '5' })), ['id=5', 'id>5']);
  r.remove(shape('stranger', eq(col('id'), lit('5'))));
  r.remove(shape('stranger elsewhere', undefined, OTHER));
  r.remove(all);
  assert.deepEqual(candidates(r, insert({ id: '5' })), ['id=5', 'id>5']);
  r.remove(greater);
  assert.deepEqual(candidates(r, insert({ id: '1' })), []);
  assert.deepEqual(candidates(r, insert({ id: '5' })), ['id=5']);
});

test('removing a shape whose only constant is NULL does not disturb its index', () => {
  const five = shape('id=5', eq(col('id'), lit('5')));
  const nothing = shape('id=null', eq(col('id'), lit(null)));
  const r = router(five, nothing);
  r.remove(five);
  const again = shape('again', eq(col('id'), lit('5')));
  r.add(again);
  r.remove(nothing);
  assert.deepEqual(candidates(r, insert({ id: '5' })), ['again']);
  r.remove(again);
  assert.deepEqual(candidates(r, insert({ id: '5' })), []);
});

test('10,000 equality shapes on one column: a change meets exactly the matching one', () => {
  const r = new ShapeRouter();
  const shapes: Shape[] = [];
  for (let i = 0; i < 10_000; i++) {
    const s = shape(`id=${i}`, eq(col('id'), lit(String(i))));
    shapes.push(s);
    r.add(s);
  }
  const found = [...r.candidates(insert({ id: '1234' }))];
  assert.equal(found.length, 1);
  assert.equal(found[0], shapes[1234]);
  assert.equal([...r.candidates(insert({ id: '10000' }))].length, 0);
  assert.deepEqual(candidates(r, update({ id: '9999' }, { id: '0' })), ['id=0', 'id=9999']);
  assert.deepEqual(candidates(r, remove({ id: '42' })), ['id=42']);

  const all = shape('all');
  r.add(all);
  assert.deepEqual(candidates(r, insert({ id: '7' })), ['all', 'id=7']);
  r.remove(shapes[7]!);
  assert.deepEqual(candidates(r, insert({ id: '7' })), ['all']);
});
