// The conformance suite: the official @electric-sql/client (1.5.x) and @sluice/client side by
// side against a real Sluice and Postgres (the scenarios are in test/support/conformance-scenarios.ts).
// Sluice's client runs with its defaults (`liveTransport: 'auto'`): long-polls on Node 20, which
// has no global WebSocket, its WebSocket on Node 22 and 24 (.ci/other-nodes). ws-conformance.test.ts
// runs the same scenarios with each transport chosen explicitly.
import { after, before } from 'node:test';
import { startPostgres, type TestPostgres } from '@sluice/harness';
import { conformanceScenarios } from '../support/conformance-scenarios.js';
import { unrefClientSaveTimers } from '../support/shape-oracle.js';

unrefClientSaveTimers();

let postgres: TestPostgres;
before(async () => {
  postgres = await startPostgres();
});
after(async () => {
  await postgres.stop();
});

conformanceScenarios(() => postgres, [{ name: "Sluice's client" }]);
