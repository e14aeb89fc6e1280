import assert from 'node:assert/strict';
import { configureAddressPrivacy, makeAddressRenderer, renderAddress, renderAddresses } from '../../lib/core/address-privacy.js';

describe('core/address-privacy', () => {
  afterEach(() => configureAddressPrivacy('plain'));

  it('plain shows the address as written, bounded in length', () => {
    const r = makeAddressRenderer('plain');
    assert.equal(r('Alice@Example.org'), 'Alice@Example.org');
    assert.equal(r(''), '');
    assert.equal(r('a'.repeat(400)).length, 321);
  });

  it('hash gives a stable, case-insensitive, salted token; the null sender stays <>', () => {
    const a = makeAddressRenderer('hash', 'pepper');
    const b = makeAddressRenderer('hash', 'other');
    assert.match(a('alice@example.org'), /^sha256:[0-9a-f]{16}$/);
    assert.equal(a('alice@example.org'), a('ALICE@example.ORG'));
    assert.notEqual(a('alice@example.org'), a('bob@example.org'));
    assert.notEqual(a('alice@example.org'), b('alice@example.org'));
    assert.equal(a(''), '<>');
  });

  it('off hides addresses entirely', () => {
    const r = makeAddressRenderer('off');
    assert.equal(r('alice@example.org'), '-');
    assert.equal(r(''), '<>');
  });

  it('renderAddress follows the configured mode', () => {
    configureAddressPrivacy('off');
    assert.deepEqual(renderAddresses(['a@b', 'c@d']), ['-', '-']);
    configureAddressPrivacy('plain');
    assert.equal(renderAddress('a@b'), 'a@b');
  });
});
