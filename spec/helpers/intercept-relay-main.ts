/**
 * Standalone byte relay for e2e tests: `node intercept-relay-main.js '<ListenerOptions JSON>' [connectTimeoutMs]`.
 * Prints "READY <address>" once listening and one JSON line per RelayEvent; exits on SIGTERM or stdin close.
 */
import type { ListenerOptions } from '../../lib/intercept/listener.js';
import { startByteRelay } from './intercept-relay.js';

const opts = JSON.parse(process.argv[2] ?? '{}') as ListenerOptions;
const timeout = Number(process.argv[3] ?? '5000');
const out = (line: string): boolean => process.stdout.write(line + '\n');

startByteRelay(opts, (e) => out(JSON.stringify(e)), undefined, timeout).then(
  (relay) => {
    out(`READY ${relay.listener.address}`);
    const stop = (): void => {
      void relay.close().then(() => process.exit(0));
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  },
  (err: Error) => {
    out(`FAILED ${err.message}`);
    process.exit(1);
  },
);
