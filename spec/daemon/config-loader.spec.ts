import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_LIMITS } from '../../lib/core/limits.js';
import { DiagnosticsError, formatDiagnostic, type Diagnostic } from '../../lib/core/errors.js';
import { configSchema } from '../../lib/daemon/config-definition.js';
import { keyPaths } from '../../lib/daemon/config-schema.js';
import { loadConfig, parseConfig } from '../../lib/daemon/config-loader.js';
import { repoRoot } from '../helpers/paths.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const FILE = '/etc/sluice/sluice.yaml';
const MIN = 'intercept:\n  - listen: 127.0.0.1:10025\n    upstream: 127.0.0.1:25\n';

function errorsOf(text: string): Diagnostic[] {
  try {
    parseConfig(text, FILE);
  } catch (err) {
    if (err instanceof DiagnosticsError) return [...err.diagnostics];
    throw err;
  }
  assert.fail('expected the configuration to be refused');
}

function firstLines(text: string): string[] {
  return errorsOf(text).map((d) => formatDiagnostic(d).split('\n')[0] as string);
}

describe('config loader', () => {
  describe('defaults', () => {
    it('fills every section from a minimal file', () => {
      const c = parseConfig(MIN, FILE);
      assert.equal(c.file, FILE);
      assert.equal(c.stateDir, '/etc/sluice/.state');
      assert.deepEqual(c.limits, DEFAULT_LIMITS);
      assert.deepEqual(c.log, { level: 'info', format: 'text', addresses: 'plain', hashSalt: '' });
      assert.equal(c.drainTimeout, 30_000);
      assert.equal(c.locks.store, 'sqlite');
      assert.equal(c.locks.path, '/etc/sluice/.state/locks.sqlite');
      assert.equal(c.locks.sweepInterval, 60_000);
      assert.deepEqual(c.locks.redis, { url: 'redis://127.0.0.1:6379', prefix: 'sluice:' });
      assert.equal(c.quarantine.dir, '/etc/sluice/.state/quarantine');
      assert.deepEqual(c.dns, { servers: [], timeout: 5000, retries: 2, cacheSize: 10_000 });
      assert.deepEqual(c.spf, { enabled: true, skipAuthenticated: true });
      assert.deepEqual(c.scanners, { onFailure: 'tempfail', verdictHeaders: false });
      assert.deepEqual(c.rules, []);
      assert.equal(c.milter, undefined);
      assert.deepEqual(c.intercept, [
        {
          name: 'intercept',
          listen: { kind: 'tcp', host: '127.0.0.1', port: 10025 },
          mode: 'fixed',
          upstream: { host: '127.0.0.1', port: 25 },
          proxyTrusted: [],
          transparent: false,
          bindPort: false,
          starttls: 'forbid',
          bareLf: 'reject',
          holdMaxSize: 256 * 1024,
          holdMessagesUpTo: 0,
          holdMemory: 64 * 1024,
          scanReadAhead: 16 * 1024 * 1024,
          scanReadAheadTotal: 64 * 1024 * 1024,
          proxyHeaderTimeout: 5000,
          maxPending: 1000,
          greetDelay: 0,
          workers: 1,
        },
      ]);
    });

    it('reads the intercept hold spool and PROXY header keys', () => {
      const c = parseConfig(
        'intercept:\n  - { listen: 127.0.0.1:10025, mode: proxy, proxy_trusted: [127.0.0.1], hold_memory: 8KB, hold_dir: spool, proxy_header_timeout: 1500ms, max_pending: 20 }\n',
        FILE,
      );
      const l = c.intercept[0];
      assert.equal(l?.holdMemory, 8 * 1024);
      assert.equal(l?.holdDir, '/etc/sluice/spool');
      assert.equal(l?.proxyHeaderTimeout, 1500);
      assert.equal(l?.maxPending, 20);
    });

    it('refuses out-of-range intercept hold spool and PROXY header values', () => {
      assert.deepEqual(firstLines('intercept:\n  - { listen: 127.0.0.1:10025, upstream: 127.0.0.1:25, hold_memory: 10, proxy_header_timeout: 0, max_pending: 0 }\n'), [
        '/etc/sluice/sluice.yaml:2:69: error[config/value]: intercept[0].hold_memory: 10 bytes is out of range (1024 to 67108864)',
        '/etc/sluice/sluice.yaml:2:95: error[config/value]: intercept[0].proxy_header_timeout: 0ms is out of range (1ms to 600s)',
        '/etc/sluice/sluice.yaml:2:111: error[config/value]: intercept[0].max_pending: expected an integer from 1 to 1000000, got 0',
      ]);
    });

    it('converts units and resolves paths against the file', () => {
      const c = parseConfig(
        `state_dir: /var/lib/sluice
rules: [a.rules, /abs/dir]
limits: { message_size: 10MB, idle_timeout: 1h30m, command_line: 1KB }
locks: { store: memory, allow: [192.0.2.0/24, "auth:postmaster"] }
dns: { servers: ["192.0.2.53", "[2001:db8::53]:5353"] }
scanners:
  filter: { command: [/bin/cat], mode: file }
  clamd: { address: 127.0.0.1:3310 }
hooks:
  notify: [/usr/bin/logger, -t, sluice]
  page: { command: [pager], timeout: 5s }
milter: { listen: "inet:10027@127.0.0.1" }
policyd: { listen: unix:run/policy.sock }
filter: { listen: "[::1]:10028", next_hop: 127.0.0.1 }
`,
        FILE,
      );
      assert.deepEqual(c.rules, ['/etc/sluice/a.rules', '/abs/dir']);
      assert.equal(c.limits.messageSize, 10 * 1024 * 1024);
      assert.equal(c.limits.idleTimeout, 90 * 60_000);
      assert.equal(c.limits.commandLine, 1024);
      assert.deepEqual(c.locks.allow, ['client:192.0.2.0/24', 'auth:postmaster']);
      assert.deepEqual(c.dns.servers, [{ host: '192.0.2.53', port: 53 }, { host: '2001:db8::53', port: 5353 }]);
      assert.equal(c.scanners.filter?.tempDir, '/var/lib/sluice/tmp');
      assert.deepEqual(c.scanners.clamd, { address: { kind: 'tcp', host: '127.0.0.1', port: 3310 }, timeout: 60_000, maxSize: 25 * 1024 * 1024 });
      assert.deepEqual(c.hooks['notify'], { command: ['/usr/bin/logger', '-t', 'sluice'], timeout: 30_000 });
      assert.deepEqual(c.hooks['page'], { command: ['pager'], timeout: 5000 });
      assert.deepEqual(c.milter?.listen, { kind: 'tcp', host: '127.0.0.1', port: 10027 });
      assert.deepEqual(c.policyd?.listen, { kind: 'unix', path: '/etc/sluice/run/policy.sock' });
      assert.deepEqual(c.filter, {
        listen: { kind: 'tcp', host: '::1', port: 10028 },
        nextHop: { host: '127.0.0.1', port: 25 },
        xforward: true,
        maxMessageSize: DEFAULT_LIMITS.messageSize,
        allowFrom: [
          { address: '127.0.0.0', prefix: 8, family: 4 },
          { address: '::1', prefix: 128, family: 6 },
        ],
      });
    });
  });

  describe('errors', () => {
    it('names the key path, the position and the nearest known key for an unknown key', () => {
      const [d, ...rest] = errorsOf(MIN + 'log:\n  levle: debug\n');
      assert.equal(rest.length, 0);
      assert.equal(formatDiagnostic(d as Diagnostic), [
        '/etc/sluice/sluice.yaml:5:3: error[config/unknown-key]: unknown key log.levle',
        '  5 |   levle: debug',
        '    |   ^^^^^',
        '  hint: did you mean "level"?',
      ].join('\n'));
    });

    it('lists the known keys when nothing is near', () => {
      const [d] = errorsOf(MIN + 'spf:\n  zzzzzzzz: 1\n');
      assert.equal(d?.hint, 'known keys in spf: enabled, skip_authenticated');
    });

    it('reports every problem at once, in file order', () => {
      assert.deepEqual(
        firstLines(`log:
  format: jsno
limits:
  idle_timeout: 30
  message_size: 10 parsecs
  recipients: -1
intercept:
  - listen: 127.0.0.1:10025
    mode: fixed
  - listen: 127.0.0.1:99999
    mode: proxy
    upstream: 192.0.2.1:25
milter:
  max_packet: 1MB
drain_timeot: 5s
`),
        [
          '/etc/sluice/sluice.yaml:2:11: error[config/value]: log.format: expected one of text, json, got "jsno"',
          '/etc/sluice/sluice.yaml:4:17: error[config/value]: limits.idle_timeout: 30 has no unit; write e.g. 30s or 30ms',
          '/etc/sluice/sluice.yaml:5:17: error[config/value]: limits.message_size: "10 parsecs" is not a size; write a number of bytes or use a unit: KB, MB, GB (e.g. 10MB)',
          '/etc/sluice/sluice.yaml:6:15: error[config/value]: limits.recipients: expected an integer from 1 to 100000, got -1',
          '/etc/sluice/sluice.yaml:8:5: error[config/missing-key]: missing key intercept[0].upstream',
          '/etc/sluice/sluice.yaml:10:13: error[config/value]: intercept[1].listen: port 99999 is out of range (0..65535); a listen address is host:port, [v6]:port or unix:/path',
          '/etc/sluice/sluice.yaml:14:3: error[config/missing-key]: missing key milter.listen',
          '/etc/sluice/sluice.yaml:15:1: error[config/unknown-key]: unknown key drain_timeot',
        ],
      );
    });

    it('reads scanners.verdict_headers as a switch or a mapping of names', () => {
      assert.deepEqual(parseConfig(MIN + 'scanners: { verdict_headers: true }\n', FILE).scanners.verdictHeaders, { virus: 'X-Virus-Status', spamStatus: 'X-Spam-Status', spamScore: 'X-Spam-Score' });
      assert.deepEqual(parseConfig(MIN + 'scanners: { verdict_headers: { virus: X-AV, spam_score: false } }\n', FILE).scanners.verdictHeaders, { virus: 'X-AV', spamStatus: 'X-Spam-Status', spamScore: false });
      const [d] = errorsOf(MIN + 'scanners: { verdict_headers: { virus: "X Bad:" } }\n');
      assert.equal(d?.message, 'scanners.verdict_headers.virus: expected a header name (printable ASCII, no colon) or false, got "X Bad:"');
    });

    it('reads a unix socket mode as a quoted octal string', () => {
      assert.equal(parseConfig('milter: { listen: unix:m.sock, socket_mode: "0600" }\n', FILE).milter?.socketMode, 0o600);
      assert.equal(parseConfig('milter: { listen: unix:m.sock }\n', FILE).milter?.socketMode, 0o660);
      const [d] = errorsOf('milter: { listen: unix:m.sock, socket_mode: 0660 }\n');
      assert.equal(d?.message, 'milter.socket_mode: expected an octal file mode in quotes such as "0660", got 660');
      assert.equal(d?.hint, 'quote it: YAML reads a bare 0660 as a decimal number');
    });

    it('suggests the value for a near-miss word', () => {
      const [d] = errorsOf(MIN + 'log: { format: jsno }\n');
      assert.equal(d?.hint, 'did you mean "json"?');
    });

    it('checks cross-field rules of an intercept listener', () => {
      assert.deepEqual(
        firstLines(`intercept:
  - listen: 127.0.0.1:10025
    mode: proxy
    bind_port: true
  - listen: 127.0.0.1:10026
    upstream: 127.0.0.1:10026
`),
        [
          '/etc/sluice/sluice.yaml:2:5: error[config/missing-key]: missing key intercept[0].proxy_trusted',
          '/etc/sluice/sluice.yaml:4:16: error[config/conflict]: intercept[0].bind_port: needs transparent: true',
          '/etc/sluice/sluice.yaml:6:15: error[config/conflict]: intercept[1].upstream: 127.0.0.1:10026 is the listener itself (a loop)',
        ],
      );
    });

    it('refuses a shell string where a command (argv) is expected', () => {
      const [d] = errorsOf(MIN + 'hooks:\n  notify: "logger -t x"\n');
      assert.equal(formatDiagnostic(d as Diagnostic).split('\n')[0], '/etc/sluice/sluice.yaml:5:11: error[config/type]: hooks.notify: expected a command as a list of words, e.g. ["/usr/local/bin/notify", "--host"]');
    });

    it('needs at least one door', () => {
      assert.deepEqual(firstLines('log: { level: info }\n'), ['/etc/sluice/sluice.yaml:1:1: error[config/no-door]: no door is enabled']);
      assert.deepEqual(firstLines(''), ['/etc/sluice/sluice.yaml:1:1: error[config/no-door]: no door is enabled']);
    });

    it('accepts user together with a transparent listener (the drop keeps CAP_NET_ADMIN)', () => {
      const c = parseConfig('user: sluice\nintercept:\n  - { listen: "0.0.0.0:10025", mode: tproxy, transparent: true }\n', FILE);
      assert.equal(c.user, 'sluice');
      assert.equal(c.intercept[0]?.transparent, true);
    });

    it('takes DNS list answer codes as IPv4 addresses, ranges and CIDRs, and refuses anything else where it is written', () => {
      const c = parseConfig(MIN + 'dns_lists:\n  - { name: bl, zone: bl.test, listed: [127.0.0.2, 127.0.0.4-127.0.0.11, 127.0.1.0/24] }\n', FILE);
      assert.deepEqual(c.dnsLists[0]?.listed, ['127.0.0.2', '127.0.0.4-127.0.0.11', '127.0.1.0/24']);
      assert.deepEqual(c.dnsLists[0]?.errorCodes, ['127.255.255.0/24']);
      assert.deepEqual(firstLines(MIN + 'dns_lists:\n  - { name: bl, zone: bl.test, listed: ["2001:db8::/32", 127.0.0.9-127.0.0.2], error_codes: [5] }\n'), [
        '/etc/sluice/sluice.yaml:5:41: error[config/value]: dns_lists[0].listed[0]: not an IPv4 CIDR: "2001:db8::/32"',
        '/etc/sluice/sluice.yaml:5:58: error[config/value]: dns_lists[0].listed[1]: range runs backwards: "127.0.0.9-127.0.0.2"',
        '/etc/sluice/sluice.yaml:5:94: error[config/value]: dns_lists[0].error_codes[0]: expected an IPv4 address, range or CIDR, got 5',
      ]);
      // What the DNS list provider would refuse at start (a one-label zone) is refused at load.
      assert.deepEqual(firstLines(MIN + 'dns_lists: [{ name: bl, zone: localhost }]\n'), [
        '/etc/sluice/sluice.yaml:4:31: error[config/value]: dns_lists[0].zone: zone "localhost" is not a DNS name',
      ]);
    });

    it('refuses two doors on one address', () => {
      assert.deepEqual(firstLines(MIN + 'policyd: { listen: 127.0.0.1:10025 }\n'), [
        '/etc/sluice/sluice.yaml:4:10: error[config/conflict]: policyd.listen: the address is already used by intercept[0]',
      ]);
    });

    it('reports YAML syntax errors and duplicate keys with positions', () => {
      assert.deepEqual(firstLines(MIN + 'log: {level: info\n'), [
        '/etc/sluice/sluice.yaml:5:1: error[config/yaml]: Flow map in block collection must be sufficiently indented and end with a }',
      ]);
      const dup = errorsOf(MIN + 'drain_timeout: 1s\ndrain_timeout: 2s\n');
      assert.equal(dup[0]?.code, 'config/duplicate-key');
      assert.equal(dup[0]?.location?.line, 5);
    });

    it('refuses a top level that is not a mapping', () => {
      assert.deepEqual(firstLines('- a\n- b\n'), ['/etc/sluice/sluice.yaml:1:1: error[config/type]: the file: expected a mapping of configuration keys, got a list']);
    });

    it('says when the file cannot be read', async () => {
      await assert.rejects(loadConfig('/nonexistent/sluice.yaml'), (err: unknown) => {
        assert.ok(err instanceof DiagnosticsError);
        assert.equal(err.message, 'error[config/read]: cannot read /nonexistent/sluice.yaml: no such file');
        return true;
      });
    });
  });

  describe('conf/sluice.yaml', () => {
    it('is valid and runs the intercept door on loopback in fixed mode', async () => {
      const c = await loadConfig(join(repoRoot, 'conf', 'sluice.yaml'));
      assert.equal(c.intercept.length, 1);
      assert.deepEqual(c.intercept[0]?.listen, { kind: 'tcp', host: '127.0.0.1', port: 10025 });
      assert.deepEqual(c.intercept[0]?.upstream, { host: '127.0.0.1', port: 25 });
      assert.equal(c.stateDir, join(repoRoot, 'conf', '.state'));
      assert.deepEqual(c.rules, [join(repoRoot, 'conf', 'rules')]);
    });

    it('documents every key the schema knows', () => {
      const text = readFileSync(join(repoRoot, 'conf', 'sluice.yaml'), 'utf8');
      const paths = keyPaths(configSchema);
      assert.ok(paths.length > 90, `only ${paths.length} key paths found`);
      assert.ok(paths.includes('hooks.*.timeout') && paths.includes('intercept[].bare_lf'));
      for (const path of paths) {
        const key = path.slice(path.lastIndexOf('.') + 1).replace('[]', '');
        assert.match(text, new RegExp(`^[\\s#]*(- )?${key}:`, 'm'), `conf/sluice.yaml does not document ${path}`);
      }
    });

    it('reads a file from disk relative to a cwd', async () => {
      const tmp = makeTempDir();
      try {
        writeFileSync(join(tmp.path, 'x.yaml'), MIN);
        const c = await loadConfig('x.yaml', tmp.path);
        assert.equal(c.stateDir, join(tmp.path, '.state'));
      } finally {
        tmp.remove();
      }
    });
  });
});

describe('config loader: milter door options', () => {
  it('maps milter.delay_reject (on by default, like smtpd_delay_reject) and no_reply (off) to the door', async () => {
    const { milterDoorOptions } = await import('../../lib/daemon/door-wiring.js');
    const base = parseConfig('milter:\n  listen: 127.0.0.1:10027\n', FILE);
    assert.ok(base.milter);
    assert.deepEqual([milterDoorOptions(base.milter).delayReject, milterDoorOptions(base.milter).noReply], [true, false]);
    const off = parseConfig('milter:\n  listen: 127.0.0.1:10027\n  delay_reject: false\n  no_reply: true\n', FILE);
    assert.ok(off.milter);
    assert.deepEqual([milterDoorOptions(off.milter).delayReject, milterDoorOptions(off.milter).noReply], [false, true]);
    assert.equal(milterDoorOptions(off.milter).listen, 'inet:10027@127.0.0.1');
    assert.deepEqual(firstLines('milter:\n  listen: 127.0.0.1:10027\n  delay_rejct: true\n').map((l) => l.replace(/^.*error/, 'error')), [
      'error[config/unknown-key]: unknown key milter.delay_rejct',
    ]);
  });
});
