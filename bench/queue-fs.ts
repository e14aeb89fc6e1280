/**
 * Where the Postfix benchmarks keep Postfix's queue: a journaled ext4 file system made for the run, like the
 * /var/spool/postfix of a production host, instead of whatever the machine's temp directory sits on.
 *
 * Why: this machine's root file system is ext4 WITHOUT a journal (`/sys/fs/ext4/vda/journal_task` reads
 * `<none>`). Without a journal, ext4 will not reuse an inode freed in the last minute or more (`recently_deleted`
 * in ialloc.c), so every new queue file scans past all the files Postfix deleted recently. Postfix alone then slows
 * down the longer it runs (measured: 613 falling to 439 msgs/s over ten back-to-back 1000-message blocks) and
 * swings with the recent past, which made it look slower than it is and the milter's share smaller. On a journaled
 * ext4 the same blocks ran at 654-747 msgs/s with no drift.
 *
 * The file system is an image file in the temp directory (preallocated, so the root file system allocates nothing
 * while the benchmark runs), loop-mounted; it needs root and a loop device. The scenarios find it through TMPDIR,
 * which the driver hands to its children. Without root or a loop device the benchmark says so and uses the temp
 * directory as it is.
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface QueueFs {
  /** The directory to use as TMPDIR for Postfix instances and sockets. */
  readonly dir: string;
  /** What it is, for the report. */
  readonly description: string;
  /** Unmounts and removes the image (a no-op for the plain temp directory). */
  release(): Promise<void>;
}

const IMAGE_BYTES = 2 * 1024 * 1024 * 1024;

function command(cmd: string, args: readonly string[], timeoutMs = 60_000): Promise<{ ok: boolean; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs }, (err, stdout, stderr) => resolve({ ok: !err, out: `${String(stdout)}${String(stderr)}`.trim() }));
  });
}

/** The machine's temp directory as it is. */
export function plainQueueFs(why: string): QueueFs {
  return { dir: tmpdir(), description: `the temp directory ${tmpdir()} as it is (${why})`, release: async () => {} };
}

/**
 * Makes and mounts a journaled ext4 for the run; falls back to the temp directory (with the reason in its
 * description) when it cannot.
 */
export async function journaledQueueFs(): Promise<QueueFs> {
  if (process.getuid?.() !== 0) return plainQueueFs('a journaled file system needs root to mount');
  const work = mkdtempSync(join(tmpdir(), 'sluice-queue-fs-'));
  // Postfix's daemons run as `postfix` and must get through to the queue.
  chmodSync(work, 0o755);
  const image = join(work, 'queue.ext4');
  const mountPoint = join(work, 'mnt');
  const cleanup = (): void => rmSync(work, { recursive: true, force: true });
  const steps: Array<[string, string[]]> = [
    ['fallocate', ['-l', String(IMAGE_BYTES), image]],
    ['mkfs.ext4', ['-q', '-F', '-O', 'has_journal', image]],
    ['mkdir', [mountPoint]],
    ['mount', ['-o', 'loop', image, mountPoint]],
  ];
  for (const [cmd, args] of steps) {
    const r = await command(cmd, args);
    if (!r.ok) {
      cleanup();
      return plainQueueFs(`could not make a journaled ext4: ${cmd} failed: ${r.out.slice(0, 160) || 'no output'}`);
    }
  }
  chmodSync(mountPoint, 0o1777);
  let released = false;
  return {
    dir: mountPoint,
    description: `a journaled ext4 made for the run (${IMAGE_BYTES / 2 ** 30} GiB image, loop-mounted at ${mountPoint})`,
    async release(): Promise<void> {
      if (released) return;
      released = true;
      // A Postfix that has just stopped may still hold the mount for a moment; in the end, detach it lazily
      // (the kernel frees it once the last user lets go), so the image is never deleted through a live mount.
      let unmounted = false;
      for (let attempt = 0; attempt < 10 && !unmounted; attempt++) {
        unmounted = (await command('umount', [mountPoint])).ok;
        if (!unmounted) await new Promise((r) => setTimeout(r, 500));
      }
      if (!unmounted) unmounted = (await command('umount', ['-l', mountPoint])).ok;
      if (unmounted) cleanup();
      else process.stderr.write(`could not unmount ${mountPoint}; left in place\n`);
    },
  };
}
