import assert from 'node:assert/strict';
import { editDistance, MAX_EDIT_WORD, nearest } from '../../lib/core/edit-distance.js';

describe('core/edit-distance', () => {
  it('counts inserts, deletes and substitutions', () => {
    assert.equal(editDistance('', ''), 0);
    assert.equal(editDistance('kitten', 'sitting'), 3);
    assert.equal(editDistance('abc', ''), 3);
    assert.equal(editDistance('flaw', 'lawn'), 2);
  });

  it('never compares words longer than the bound', () => {
    const long = 'a'.repeat(MAX_EDIT_WORD + 1);
    assert.equal(editDistance(long, `${long}b`), MAX_EDIT_WORD + 2);
    assert.equal(nearest(long, [`${long}b`]), undefined);
  });

  it('suggests the first nearest candidate within the tolerance, case-insensitively unless told', () => {
    assert.equal(nearest('stauts', ['status', 'start']), 'status');
    assert.equal(nearest('stauts', ['start', 'status', 'stats']), 'stats');
    assert.equal(nearest('zzzzzz', ['level', 'format']), undefined);
    assert.equal(nearest('LOCKS', ['locks']), 'locks');
    assert.equal(nearest('LOCKS', ['locks'], { ignoreCase: false, tolerance: 2 }), undefined);
    assert.equal(nearest('lcks', ['locks', 'lock'], { tolerance: 1 }), 'locks');
  });
});
