import assert from 'node:assert/strict';
import { formatDuration } from '../../lib/core/units.js';

describe('core/units', () => {
  it('formats durations exactly', () => {
    assert.equal(formatDuration(3_600_000), '1h');
    assert.equal(formatDuration(93_600_000), '1d2h');
    assert.equal(formatDuration(1500), '1500ms');
    assert.equal(formatDuration(0), '0s');
  });
});
