import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Pgoutput } from 'pg-logical-replication';
import type { RelationInfo, Transaction } from '../pg/transaction.js';
import { TransactionAssembler } from './transaction-assembler.js';

const items: Pgoutput.MessageRelation = {
  tag: 'relation',
  relationOid: 16384,
  schema: 'public',
  name: 'items',
  replicaIdentity: 'full',
  columns: [
    {
      name: 'id',
      flags: 1,
      typeOid: 23,
      typeMod: -1,
      typeSchema: null,
      typeName: null,
      parser: (raw: unknown) => raw,
    },
  ],
  keyColumns: ['id'],
};

function assembler(): {
  assembler: TransactionAssembler;
  transactions: Transaction[];
  relations: RelationInfo[];
} {
  const transactions: Transaction[] = [];
  const relations: RelationInfo[] = [];
  const handlers = {
    onTransaction: (transaction: Transaction) =>
      Promise.resolve(void transactions.push(transaction)),
    onRelation: (relation: RelationInfo) => Promise.resolve(void relations.push(relation)),
  };
  return { assembler: new TransactionAssembler(handlers), transactions, relations };
}

const begin = (xid: number): Pgoutput.MessageBegin => ({
  tag: 'begin',
  xid,
  commitLsn: '0/200',
  commitTime: 0n,
});
const commit: Pgoutput.MessageCommit = {
  tag: 'commit',
  flags: 0,
  commitLsn: '0/200',
  commitEndLsn: '0/230',
  commitTime: 0n,
};

test('hands on a transaction whole, at its commit, with its changes in order', async () => {
  const { assembler: a, transactions, relations } = assembler();
  await a.add(items);
  await a.add(begin(7));
  await a.add({ tag: 'insert', relation: items, new: { id: '1' } });
  await a.add({ tag: 'update', relation: items, key: null, old: { id: '1' }, new: { id: '2' } });
  await a.add({ tag: 'delete', relation: items, key: { id: '2' }, old: null });
  await a.add({ tag: 'truncate', cascade: false, restartIdentity: false, relations: [items] });
  assert.equal(transactions.length, 0);
  await a.add(commit);

  assert.deepEqual(relations, [
    {
      oid: 16384,
      schema: 'public',
      name: 'items',
      columns: [{ name: 'id', typeOid: 23, typeMod: -1 }],
      keyColumns: ['id'],
    },
  ]);
  const [transaction] = transactions;
  assert.equal(transactions.length, 1);
  assert.equal(transaction?.xid, 7);
  assert.equal(transaction?.commitLsn, 0x200n);
  assert.equal(transaction?.endLsn, 0x230n);
  assert.deepEqual(
    transaction?.changes.map((change) => change.kind),
    ['insert', 'update', 'delete', 'truncate'],
  );
  // The parser reuses one object per relation; so does what shapes see.
  for (const change of transaction?.changes ?? []) {
    const relation = change.kind === 'truncate' ? change.relations[0] : change.relation;
    assert.equal(relation, relations[0]);
  }
  assert.deepEqual(transaction?.changes[2], {
    kind: 'delete',
    relation: relations[0],
    oldRow: { id: '2' },
  });
});

test('refuses changes and commits outside a transaction, and deletes without a row', async () => {
  const { assembler: a } = assembler();
  assert.throws(() => a.add({ tag: 'insert', relation: items, new: { id: '1' } }), {
    name: 'ReplicationError',
    message: 'insert outside a transaction',
  });
  assert.throws(() => a.add(commit), { message: 'commit without begin' });
  await a.add(begin(8));
  assert.throws(() => a.add({ tag: 'delete', relation: items, key: null, old: null }), {
    message: 'delete without old row',
  });
});
