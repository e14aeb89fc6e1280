import assert from 'node:assert/strict';
import { formatDuration, parseDuration, parseSize } from '../../lib/core/units.js';

describe('core/units', () => {
  it('parses durations with units, bare numbers as seconds', () => {
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('90'), 90_000);
    assert.equal(parseDuration('5m'), 300_000);
    assert.equal(parseDuration('1H'), 3_600_000);
    assert.equal(parseDuration('2d'), 172_800_000);
    assert.equal(parseDuration('1.5h'), 5_400_000);
    for (const bad of ['', 'h', '5x', '-1s', '1e9s']) assert.equal(parseDuration(bad), undefined, bad);
  });
  it('parses sizes in binary units', () => {
    assert.equal(parseSize('512'), 512);
    assert.equal(parseSize('10KB'), 10_240);
    assert.equal(parseSize('50mb'), 52_428_800);
    assert.equal(parseSize('1G'), 1_073_741_824);
    for (const bad of ['', 'MB', '5TB', '-3']) assert.equal(parseSize(bad), undefined, bad);
  });
  it('formats durations exactly', () => {
    assert.equal(formatDuration(3_600_000), '1h');
    assert.equal(formatDuration(93_600_000), '1d2h');
    assert.equal(formatDuration(1500), '1500ms');
  });
});
