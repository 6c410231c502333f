import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PerClientGate } from './per-client-gate.js';

test('each client has its own cap; leaving frees a place', () => {
  const gate = new PerClientGate(2);
  assert.ok(gate.tryEnter('a'));
  assert.ok(gate.tryEnter('a'));
  assert.equal(gate.tryEnter('a'), false);
  assert.ok(gate.tryEnter('b'));
  gate.leave('a');
  assert.ok(gate.tryEnter('a'));
  assert.equal(gate.tryEnter('a'), false);
});
