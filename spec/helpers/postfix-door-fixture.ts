/**
 * Set-up shared by the specs that put a door (filter, policy) behind a real private Postfix: a temp dir, a SQLite
 * lock store, the door, then Postfix wired to the door's ports; all stopped and removed after the suite.
 */
import type { Door } from '../../lib/daemon/door.js';
import type { LockStore } from '../../lib/policy/lock-store.js';
import { requirePeer } from './ci-guard.js';
import { postfixAvailable, startPostfix, type PostfixInstance, type PostfixOptions } from './postfix.js';
import { lockStoreIn } from './postfix-door-deps.js';
import { swaksAvailable } from './swaks.js';
import { makeTempDir } from './temp-dir.js';

export interface PostfixDoorFixture {
  /** The private Postfix (set in before()). */
  readonly pf: PostfixInstance;
}

/**
 * Call inside `describe`. before(): requires Postfix and swaks (fails under CI=true), makes a temp dir and a lock
 * store, awaits `create` (which creates the door and says how Postfix is configured: snippets, the example ports
 * mapped to the door's), starts the door, then Postfix. after(): stops Postfix, the door (500 ms drain), the
 * lock store, and removes the temp dir.
 */
export function usePostfixDoor(
  tempPrefix: string,
  create: (env: { readonly dir: string; readonly locks: LockStore }) => Promise<{ readonly door: Door; readonly postfix: PostfixOptions }>,
): PostfixDoorFixture {
  let temp: ReturnType<typeof makeTempDir> | undefined;
  let locks: LockStore | undefined;
  let door: Door | undefined;
  let pf: PostfixInstance | undefined;
  before(async function () {
    requirePeer(this, postfixAvailable && swaksAvailable, 'postfix (root), smtp-sink and swaks');
    temp = makeTempDir(tempPrefix);
    locks = lockStoreIn(temp.path);
    const created = await create({ dir: temp.path, locks });
    door = created.door;
    await door.start();
    pf = await startPostfix(created.postfix);
  });
  after(async () => {
    await pf?.stop();
    await door?.stop(500);
    await locks?.close();
    temp?.remove();
  });
  return {
    get pf(): PostfixInstance {
      if (!pf) throw new Error('Postfix is not running (before() failed or has not run)');
      return pf;
    },
  };
}
