// The conformance scenarios (test/support/conformance-scenarios.ts) with three clients on every
// shape: the official @electric-sql/client over long-polls, @sluice/client over long-polls
// (`liveTransport: 'long-poll'`) and @sluice/client over its WebSocket (`liveTransport:
// 'websocket'`, with the `ws` package's WebSocket, as Node 20 needs; docs/protocol.md §12). Each
// scenario ends with all three equal to SELECT in Postgres and to each other. The WebSocket
// streams must never long-poll (their live changes came over the socket, which the tap shows),
// the long-poll ones must.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { PARAMS, WS_FRAME_TYPES } from '@sluice/protocol';
import { startPostgres, type TestPostgres } from '@sluice/harness';
import { conformanceScenarios, type SluiceShape } from '../support/conformance-scenarios.js';
import { unrefClientSaveTimers } from '../support/shape-oracle.js';
import { tapWebSockets } from '../support/web-socket-tap.js';

unrefClientSaveTimers();

let postgres: TestPostgres;
before(async () => {
  postgres = await startPostgres();
});
after(async () => {
  await postgres.stop();
});

const tap = tapWebSockets();

const liveRequests = (client: SluiceShape) =>
  client.requests.filter((url) => url.searchParams.get(PARAMS.live) === 'true');

conformanceScenarios(
  () => postgres,
  [
    {
      name: "Sluice's client over long-polls",
      options: { liveTransport: 'long-poll' },
      verify: (client) => {
        if (client.stream.isUpToDate && client.stream.options.subscribe !== false) {
          assert.ok(liveRequests(client).length > 0, 'the long-poll stream long-polled');
        }
      },
    },
    {
      name: "Sluice's client over its WebSocket",
      options: { liveTransport: 'websocket', webSocket: tap.WebSocket },
      verify: (client) =>
        assert.deepEqual(
          liveRequests(client).map(String),
          [],
          'the WebSocket stream never long-polled',
        ),
    },
  ],
);

test('the WebSocket streams were served over sockets', (t) => {
  t.diagnostic(
    `${tap.opened.length} sockets; frames: ${JSON.stringify(Object.fromEntries(tap.frames))}; ${tap.changes} changes`,
  );
  assert.ok(tap.opened.length > 0, 'sockets were opened');
  assert.ok((tap.frames.get(WS_FRAME_TYPES.messages) ?? 0) > 0, 'messages frames arrived');
  assert.ok(tap.changes > 100, `changes arrived over the sockets (${tap.changes})`);
  assert.ok(tap.statuses.includes('live'), 'the server pushed its status');
  assert.equal(tap.frames.get(WS_FRAME_TYPES.error) ?? 0, 0, 'no error frame');
});
