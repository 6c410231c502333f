import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RequestOffset } from '@sluice/protocol';
import {
  chooseDegradedAnswer,
  chooseFallbackHandleAnswer,
  type DegradedChoice,
  type FallbackHandleChoice,
} from './degraded-choice.js';

const HELD = 'held-handle';
const CATCH_UP: RequestOffset = { tx: 5n, op: 0 };

type Offset = 'before-all' | 'now' | 'catch-up';
/** The request's handle: none, the held shape's, one the server never made, a fallback one. */
type Handle = 'none' | 'held' | 'unknown' | 'fallback';
type Held = 'none' | 'ready' | 'not ready';

interface Row {
  offset: Offset;
  handle: Handle;
  held: Held;
  /** Stored logs known to continue the slot. */
  checked: boolean;
  databaseDown: boolean;
  answer: DegradedChoice;
}

const HANDLES: Record<Handle, string | undefined> = {
  none: undefined,
  held: HELD,
  unknown: 'gone-handle',
  fallback: '1a2b3c4d-fallback-17000000000000abcd',
};

// prettier-ignore
const TABLE: Row[] = [
  // Initial requests: fresh fallback rows, unless they name the held shape's handle.
  { offset: 'before-all', handle: 'none',     held: 'none',      checked: true,  databaseDown: false, answer: 'fallback-rows' },
  { offset: 'before-all', handle: 'none',     held: 'ready',     checked: true,  databaseDown: false, answer: 'fallback-rows' },
  { offset: 'before-all', handle: 'none',     held: 'ready',     checked: false, databaseDown: true,  answer: 'fallback-rows' },
  { offset: 'before-all', handle: 'held',     held: 'ready',     checked: true,  databaseDown: false, answer: 'serve-log' },
  { offset: 'before-all', handle: 'held',     held: 'ready',     checked: true,  databaseDown: true,  answer: 'serve-log' },
  { offset: 'before-all', handle: 'held',     held: 'ready',     checked: false, databaseDown: false, answer: 'fallback-rows' },
  { offset: 'before-all', handle: 'held',     held: 'ready',     checked: false, databaseDown: true,  answer: 'not-ready' },
  { offset: 'before-all', handle: 'held',     held: 'not ready', checked: true,  databaseDown: false, answer: 'fallback-rows' },
  { offset: 'before-all', handle: 'fallback', held: 'none',      checked: true,  databaseDown: false, answer: 'fallback-rows' },
  // offset=now: the held shape's log if it can be trusted, else up-to-date under a new handle.
  { offset: 'now',        handle: 'none',     held: 'none',      checked: true,  databaseDown: false, answer: 'nothing-new' },
  { offset: 'now',        handle: 'none',     held: 'none',      checked: false, databaseDown: true,  answer: 'nothing-new' },
  { offset: 'now',        handle: 'none',     held: 'not ready', checked: true,  databaseDown: false, answer: 'nothing-new' },
  { offset: 'now',        handle: 'none',     held: 'ready',     checked: true,  databaseDown: false, answer: 'serve-log' },
  { offset: 'now',        handle: 'none',     held: 'ready',     checked: false, databaseDown: false, answer: 'refetch-fallback' },
  { offset: 'now',        handle: 'none',     held: 'ready',     checked: false, databaseDown: true,  answer: 'not-ready' },
  // A fallback handle has no log, whatever the registry holds.
  { offset: 'catch-up',   handle: 'fallback', held: 'none',      checked: true,  databaseDown: false, answer: 'fallback-handle' },
  { offset: 'catch-up',   handle: 'fallback', held: 'ready',     checked: true,  databaseDown: false, answer: 'fallback-handle' },
  { offset: 'catch-up',   handle: 'fallback', held: 'ready',     checked: false, databaseDown: true,  answer: 'fallback-handle' },
  // The held shape's own handle: its log, once it is known to continue the slot.
  { offset: 'catch-up',   handle: 'held',     held: 'ready',     checked: true,  databaseDown: false, answer: 'serve-log' },
  { offset: 'catch-up',   handle: 'held',     held: 'ready',     checked: true,  databaseDown: true,  answer: 'serve-log' },
  { offset: 'catch-up',   handle: 'held',     held: 'ready',     checked: false, databaseDown: false, answer: 'refetch-fallback' },
  { offset: 'catch-up',   handle: 'held',     held: 'ready',     checked: false, databaseDown: true,  answer: 'not-ready' },
  { offset: 'catch-up',   handle: 'held',     held: 'not ready', checked: true,  databaseDown: false, answer: 'refetch-fallback' },
  // A handle the server does not hold: start again, from fallback rows.
  { offset: 'catch-up',   handle: 'unknown',  held: 'none',      checked: true,  databaseDown: false, answer: 'refetch-fallback' },
  { offset: 'catch-up',   handle: 'unknown',  held: 'none',      checked: false, databaseDown: true,  answer: 'refetch-fallback' },
  { offset: 'catch-up',   handle: 'unknown',  held: 'ready',     checked: true,  databaseDown: false, answer: 'refetch-fallback' },
];

const OFFSETS: Record<Offset, RequestOffset> = {
  'before-all': 'before-all',
  now: 'now',
  'catch-up': CATCH_UP,
};

for (const row of TABLE) {
  const facts = `held ${row.held}, ${row.checked ? 'checked' : 'unchecked'}, database ${row.databaseDown ? 'down' : 'up'}`;
  test(`degraded: offset ${row.offset}, handle ${row.handle}, ${facts} → ${row.answer}`, () => {
    const handle = HANDLES[row.handle];
    const choice = chooseDegradedAnswer(
      { offset: OFFSETS[row.offset], handle },
      {
        fallbackHandle: row.handle === 'fallback',
        held: row.held === 'none' ? undefined : { handle: HELD, ready: row.held === 'ready' },
        continuityChecked: row.checked,
        databaseDown: row.databaseDown,
      },
    );
    assert.equal(choice, row.answer);
  });
}

test('degraded with the storage down: no log is served, fresh rows are', () => {
  const held = { handle: HELD, ready: true };
  const facts = { fallbackHandle: false, held, continuityChecked: true, storageDown: true };
  const choose = (offset: Offset, databaseDown: boolean) =>
    chooseDegradedAnswer({ offset: OFFSETS[offset], handle: HELD }, { ...facts, databaseDown });
  assert.equal(choose('before-all', false), 'fallback-rows');
  assert.equal(choose('catch-up', false), 'refetch-fallback');
  assert.equal(choose('catch-up', true), 'not-ready');
  // The same request with the storage answering reads the log.
  assert.equal(
    chooseDegradedAnswer(
      { offset: CATCH_UP, handle: HELD },
      { ...facts, storageDown: false, databaseDown: false },
    ),
    'serve-log',
  );
});

interface HandleRow {
  heldInVain: boolean;
  closing: boolean;
  degraded: boolean;
  answer: FallbackHandleChoice;
}

// prettier-ignore
const FALLBACK_HANDLE_TABLE: HandleRow[] = [
  // Held for the whole long-poll: up-to-date again, unless the server is closing.
  { heldInVain: true,  closing: true,  degraded: true,  answer: 'shutting-down' },
  { heldInVain: true,  closing: true,  degraded: false, answer: 'shutting-down' },
  { heldInVain: true,  closing: false, degraded: true,  answer: 'nothing-new' },
  { heldInVain: true,  closing: false, degraded: false, answer: 'nothing-new' },
  // Not held (not live), or woken by replication coming back: refetch once it is back.
  { heldInVain: false, closing: false, degraded: true,  answer: 'nothing-new' },
  { heldInVain: false, closing: true,  degraded: true,  answer: 'nothing-new' },
  { heldInVain: false, closing: false, degraded: false, answer: 'refetch-live' },
  { heldInVain: false, closing: true,  degraded: false, answer: 'refetch-live' },
];

for (const row of FALLBACK_HANDLE_TABLE) {
  const { heldInVain, closing, degraded, answer } = row;
  test(`fallback handle: held in vain ${heldInVain}, closing ${closing}, degraded ${degraded} → ${answer}`, () => {
    assert.equal(chooseFallbackHandleAnswer({ heldInVain, closing, degraded }), answer);
  });
}
