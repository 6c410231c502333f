// Samples the CPU of the process it is loaded into and writes a .cpuprofile when it exits (open it
// in Chrome DevTools or speedscope). Node refuses --cpu-prof in NODE_OPTIONS; this does the same:
//   BENCH_SERVER_NODE_OPTIONS="--import ./test/bench/cpu-profile.mjs" BENCH_ONLY=latency npm run bench
// Profiles go to BENCH_PROFILE_DIR (default: the temp folder), one per server process.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const session = new Session();
session.connect();
session.post('Profiler.enable');
session.post('Profiler.setSamplingInterval', { interval: 200 });
session.post('Profiler.start');
process.on('exit', () => {
  // An in-thread inspector session answers synchronously, so this runs before the process ends.
  session.post('Profiler.stop', (error, result) => {
    if (error) return;
    const file = join(
      process.env.BENCH_PROFILE_DIR ?? tmpdir(),
      `sluice-${process.pid}.cpuprofile`,
    );
    writeFileSync(file, JSON.stringify(result.profile));
    process.stderr.write(`CPU profile written to ${file}\n`);
  });
});
