import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HEADERS, WS_FRAME_TYPES, type WsMessagesFrame } from '@sluice/protocol';
import { FetchError, MalformedResponseError } from './errors.js';
import { frameError, frameResponse, subscribeParams, upgradeSecret } from './socket-frames.js';

const PLAN = { offset: '5_0', handle: 'H', live: true, cursor: '1' } as const;
const SOURCE = 'ws://a.test/v1/ws';

test('a subscribe carries the shape params only, as the query string has them', () => {
  assert.deepEqual(
    subscribeParams(
      {
        table: 'items',
        where: 'id = $1',
        params: { 1: '4' },
        columns: '"id","v"',
        replica: 'full',
        secret: 's',
        tenant: 't',
      },
      'changes_only',
    ),
    {
      table: 'items',
      where: 'id = $1',
      params: { 1: '4' },
      columns: '"id","v"',
      replica: 'full',
      log: 'changes_only',
    },
  );
});

test('the secret of the upgrade: the secret param, else a bearer authorization header', () => {
  assert.equal(upgradeSecret({ secret: 'p' }, { Authorization: 'Bearer h' }), 'p');
  assert.equal(upgradeSecret({}, { Authorization: 'Bearer h' }), 'h');
  assert.equal(upgradeSecret({}, { authorization: 'bearer  x y' }), 'x y');
  assert.equal(upgradeSecret({}, { authorization: 'Basic abc' }), undefined);
  assert.equal(upgradeSecret({}, {}), undefined);
});

test('a messages frame is the response event of its long-poll; a malformed one is refused', () => {
  const frame: WsMessagesFrame = {
    type: WS_FRAME_TYPES.messages,
    id: 's1',
    handle: 'H',
    offset: '6_2',
    messages: [{ headers: { control: 'up-to-date' } }],
  };
  const { event, messages } = frameResponse(PLAN, frame, SOURCE);
  assert.deepEqual(
    { ...event, now: 0 },
    {
      type: 'response',
      request: PLAN,
      handle: 'H',
      offset: '6_2',
      schema: undefined,
      fallbackMode: false,
      upToDate: true,
      now: 0,
    },
  );
  assert.equal(messages.length, 1);
  const partial = frameResponse(PLAN, { ...frame, messages: [] }, SOURCE);
  assert.equal(partial.event.upToDate, false);
  for (const bad of [
    { ...frame, messages: 'x' },
    { ...frame, messages: [1] },
    { ...frame, offset: 5 },
    { ...frame, schema: [] },
  ]) {
    assert.throws(
      () => frameResponse(PLAN, bad as unknown as WsMessagesFrame, SOURCE),
      MalformedResponseError,
    );
  }
});

test('an error frame is the FetchError of its HTTP answer', () => {
  const error = frameError(
    {
      type: WS_FRAME_TYPES.error,
      id: 's1',
      status: 503,
      code: 'SLUICE_ERR_OVERLOADED',
      message: 'busy',
      retry_after: 1,
    },
    SOURCE,
  );
  assert.ok(error instanceof FetchError);
  assert.equal(error.status, 503);
  assert.deepEqual(error.json, { code: 'SLUICE_ERR_OVERLOADED', message: 'busy' });
  assert.deepEqual(error.headers, { [HEADERS.retryAfter]: '1' });
  assert.equal(error.url, SOURCE);
});
