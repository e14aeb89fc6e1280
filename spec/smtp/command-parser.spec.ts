import assert from 'node:assert/strict';
import fc from 'fast-check';
import { formatCommand, parseCommand, strayByte } from '../../lib/smtp/command-parser.js';

describe('parseCommand', () => {
  it('parses verbs case-insensitively', () => {
    assert.deepEqual(parseCommand('eHlO client.example'), { verb: 'EHLO', name: 'client.example' });
    assert.deepEqual(parseCommand('quit'), { verb: 'QUIT', arg: '' });
    assert.deepEqual(parseCommand('XCLIENT ADDR=1.2.3.4'), { verb: 'XCLIENT', arg: 'ADDR=1.2.3.4' });
  });

  it('parses MAIL FROM with params, liberal spacing and bare addresses', () => {
    assert.deepEqual(parseCommand('MAIL FROM:<a@b.example> SIZE=1000 BODY=8BITMIME'), { verb: 'MAIL', address: 'a@b.example', params: { SIZE: '1000', BODY: '8BITMIME' } });
    assert.deepEqual(parseCommand('mail from: <a@b>'), { verb: 'MAIL', address: 'a@b', params: {} });
    assert.deepEqual(parseCommand('MAIL FROM:a@b'), { verb: 'MAIL', address: 'a@b', params: {} });
    assert.deepEqual(parseCommand('MAIL FROM:<>'), { verb: 'MAIL', address: '', params: {} });
    assert.deepEqual(parseCommand('RCPT TO:<@r1,@r2:u@d> NOTIFY=NEVER'), { verb: 'RCPT', address: 'u@d', params: { NOTIFY: 'NEVER' } });
  });

  it('rejects malformed paths without throwing', () => {
    assert.equal(parseCommand('MAIL <a@b>').verb, 'INVALID');
    assert.equal(parseCommand('MAIL FROM:<a@b').verb, 'INVALID');
    assert.equal(parseCommand('RCPT TO:<>').verb, 'INVALID');
    assert.equal(parseCommand('MAIL FROM:<a@b> SIZE=big').verb, 'INVALID');
    assert.equal(parseCommand('MAIL FROM:<a@b>junk').verb, 'INVALID');
    assert.equal(parseCommand('').verb, 'INVALID');
    assert.equal(parseCommand('\0\0\0').verb, 'INVALID');
  });

  it('parses AUTH with and without an initial response', () => {
    assert.deepEqual(parseCommand('auth plain AGEAYg=='), { verb: 'AUTH', mechanism: 'PLAIN', initial: 'AGEAYg==' });
    assert.deepEqual(parseCommand('AUTH LOGIN'), { verb: 'AUTH', mechanism: 'LOGIN' });
  });

  it('property: parse(format(x)) = x for MAIL/RCPT', () => {
    const atom = fc.stringMatching(/^[a-z0-9.+-]{1,20}$/);
    fc.assert(
      fc.property(fc.constantFrom('MAIL' as const, 'RCPT' as const), atom, atom, fc.dictionary(fc.stringMatching(/^[A-Z][A-Z0-9]{0,8}$/), fc.stringMatching(/^[a-z0-9]{1,10}$/), { maxKeys: 5 }), (verb, l, d, params) => {
        delete params['SIZE'];
        delete params['BODY'];
        const cmd = { verb, address: `${l}@${d}`, params: { ...params } };
        const line = formatCommand(cmd);
        assert.deepEqual(parseCommand(line.slice(0, -2)), cmd);
      }),
    );
  });

  it('property: never throws on arbitrary bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), (b) => void parseCommand(Buffer.from(b))));
  });
});

describe('parseCommand: SMTPUTF8', () => {
  it('decodes a UTF-8 address as UTF-8 and other bytes as latin1', () => {
    assert.deepEqual(parseCommand(Buffer.from('RCPT TO:<jörg@exämple.de>', 'utf8')), { verb: 'RCPT', address: 'jörg@exämple.de', params: {} });
    assert.deepEqual(parseCommand(Buffer.from([...Buffer.from('RCPT TO:<a'), 0xff, ...Buffer.from('@b>')])), { verb: 'RCPT', address: 'a\u00ff@b', params: {} });
  });
});

describe('strayByte', () => {
  it('names a CR or NUL inside a command line, and nothing else', () => {
    assert.equal(strayByte(Buffer.from('NOOP x\rRCPT TO:<v@x>')), 'bare CR');
    assert.equal(strayByte(Buffer.from('MAIL FROM:<a@b>\0')), 'NUL');
    assert.equal(strayByte(Buffer.from('NOOP\r\0')), 'bare CR');
    assert.equal(strayByte(Buffer.from('MAIL FROM:<a@b> SIZE=1 \t\x7f\xff')), undefined);
    assert.equal(strayByte(Buffer.alloc(0)), undefined);
  });
});
