/** Entry point of an intercept worker process, forked by the daemon (lib/intercept/worker-pool.ts). */
import { runInterceptWorker } from './intercept-worker.js';

await runInterceptWorker(process.argv.slice(2));
