// Loaded into the bench's server by the idle-shapes measure: SIGUSR2 runs a full garbage
// collection (through the in-process inspector, so no --expose-gc), so the RSS read after it
// counts what the shapes hold rather than garbage not yet collected.
import { Session } from 'node:inspector';

const session = new Session();
session.connect();
process.on('SIGUSR2', () => {
  session.post('HeapProfiler.collectGarbage', () => process.stderr.write('gc\n'));
});
