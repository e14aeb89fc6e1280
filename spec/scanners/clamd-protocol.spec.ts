import assert from 'node:assert/strict';
import { instreamChunkHeader, parseClamdScanReply } from '../../lib/scanners/clamd-protocol.js';
import { parseScannerAddress, formatScannerAddress, ScannerAddressError } from '../../lib/scanners/scanner-address.js';

describe('clamd protocol', () => {
  it('parses OK, FOUND, size-limit and ERROR replies', () => {
    assert.deepEqual(parseClamdScanReply('stream: OK\0'), { kind: 'clean' });
    assert.deepEqual(parseClamdScanReply('stream: Eicar-Test-Signature FOUND\0'), { kind: 'virus', name: 'Eicar-Test-Signature' });
    assert.deepEqual(parseClamdScanReply('1: stream: Win.Test.EICAR_HDB-1 FOUND'), { kind: 'virus', name: 'Win.Test.EICAR_HDB-1' });
    assert.equal(parseClamdScanReply('INSTREAM size limit exceeded. ERROR\0').kind, 'size-limit');
    assert.deepEqual(parseClamdScanReply('stream: Can\'t allocate memory ERROR'), { kind: 'error', message: "Can't allocate memory" });
    assert.equal(parseClamdScanReply('garbage').kind, 'error');
    assert.equal(parseClamdScanReply('').kind, 'error');
  });

  it('frames chunk lengths big-endian', () => {
    assert.deepEqual([...instreamChunkHeader(0x01020304)], [1, 2, 3, 4]);
    assert.deepEqual([...instreamChunkHeader(0)], [0, 0, 0, 0]);
  });

  it('parses scanner addresses', () => {
    assert.deepEqual(parseScannerAddress('/run/clamav/clamd.ctl'), { kind: 'unix', path: '/run/clamav/clamd.ctl' });
    assert.deepEqual(parseScannerAddress('unix:/x/y'), { kind: 'unix', path: '/x/y' });
    assert.deepEqual(parseScannerAddress('127.0.0.1:3310'), { kind: 'tcp', host: '127.0.0.1', port: 3310 });
    assert.deepEqual(parseScannerAddress('[::1]:783'), { kind: 'tcp', host: '::1', port: 783 });
    assert.equal(formatScannerAddress(parseScannerAddress('[::1]:783')), '[::1]:783');
    assert.throws(() => parseScannerAddress('clamd.sock'), ScannerAddressError);
    assert.throws(() => parseScannerAddress('unix:rel'), ScannerAddressError);
    assert.throws(() => parseScannerAddress('h:70000'), ScannerAddressError);
  });
});
