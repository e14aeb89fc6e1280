/**
 * A private NSD (authoritative DNS server from Debian) on a free loopback port, serving zone files the test
 * writes, in the foreground with its own config, pid, state and log in a temp dir. `stop()` kills it and
 * removes the dir. Used by the DNS integration suite.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSocket } from 'node:dgram';
import dnsPacket from 'dns-packet';
import { freePort } from './ports.js';
import { makeTempDir } from './temp-dir.js';

export const NSD_BIN = '/usr/sbin/nsd';
export const nsdAvailable = (): boolean => existsSync(NSD_BIN);

export interface NsdZone {
  /** Zone origin without the trailing dot, e.g. "test". */
  readonly origin: string;
  /** Zone file text (with $ORIGIN/$TTL and an SOA). */
  readonly text: string;
}

export interface NsdInstance {
  readonly host: string;
  readonly port: number;
  /** "127.0.0.1:port" for the resolver's `servers`. */
  readonly address: string;
  stop(): Promise<void>;
  log(): string;
}

async function answersSoa(port: number, origin: string): Promise<boolean> {
  return await new Promise((resolve) => {
    const s = createSocket('udp4');
    const t = setTimeout(() => {
      s.close();
      resolve(false);
    }, 200);
    s.on('message', () => {
      clearTimeout(t);
      s.close();
      resolve(true);
    });
    s.on('error', () => {
      clearTimeout(t);
      s.close();
      resolve(false);
    });
    s.send(dnsPacket.encode({ type: 'query', id: 7, questions: [{ type: 'SOA', name: origin }] }), port, '127.0.0.1');
  });
}

export async function startNsd(zones: readonly NsdZone[]): Promise<NsdInstance> {
  const dir = makeTempDir('sluice-nsd-');
  const port = await freePort();
  const host = '127.0.0.1';
  const conf = [
    'server:',
    `  ip-address: ${host}@${port}`,
    `  port: ${port}`,
    '  username: ""',
    '  chroot: ""',
    `  zonesdir: "${dir.path}"`,
    `  pidfile: "${join(dir.path, 'nsd.pid')}"`,
    `  xfrdfile: "${join(dir.path, 'xfrd.state')}"`,
    `  xfrdir: "${dir.path}"`,
    `  zonelistfile: "${join(dir.path, 'zone.list')}"`,
    `  logfile: "${join(dir.path, 'nsd.log')}"`,
    '  server-count: 1',
    '  verbosity: 1',
    '  reuseport: no',
    '  hide-version: yes',
    'remote-control:',
    '  control-enable: no',
  ];
  for (const z of zones) {
    const file = `${z.origin}.zone`;
    writeFileSync(join(dir.path, file), z.text);
    conf.push('zone:', `  name: "${z.origin}."`, `  zonefile: "${file}"`);
  }
  const confPath = join(dir.path, 'nsd.conf');
  writeFileSync(confPath, conf.join('\n') + '\n');
  const child: ChildProcess = spawn(NSD_BIN, ['-d', '-c', confPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const log = (): string => {
    let file = '';
    try {
      file = readFileSync(join(dir.path, 'nsd.log'), 'utf8');
    } catch {
      /* none yet */
    }
    return output + file;
  };
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(t);
    }
    dir.remove();
  };
  const deadline = Date.now() + 8000;
  const first = zones[0]?.origin ?? '.';
  while (Date.now() < deadline) {
    if (child.exitCode !== null) break;
    if (await answersSoa(port, first)) return { host, port, address: `${host}:${port}`, stop, log };
    await new Promise((r) => setTimeout(r, 100));
  }
  const text = log();
  await stop();
  throw new Error(`nsd did not start: ${text}`);
}
