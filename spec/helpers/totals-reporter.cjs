'use strict';
// Mocha reporter: the usual spec output, then one closing line "N passed, N failed, N skipped" that CI reads.
// Under CI=true a skipped (pending) test is a failure of the run: a skipped suite must never report green.
const Mocha = require('mocha');
const { EVENT_RUN_END, EVENT_TEST_PASS, EVENT_TEST_FAIL, EVENT_TEST_PENDING } = Mocha.Runner.constants;

class TotalsReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    const totals = { passed: 0, failed: 0, skipped: 0, skippedTitles: [] };
    runner.on(EVENT_TEST_PASS, () => totals.passed++);
    runner.on(EVENT_TEST_FAIL, () => totals.failed++);
    runner.on(EVENT_TEST_PENDING, (test) => {
      totals.skipped++;
      totals.skippedTitles.push(test.fullTitle());
    });
    runner.once(EVENT_RUN_END, () => {
      if (process.env.CI === 'true' && totals.skipped > 0) {
        process.stdout.write(`\nCI=true: ${totals.skipped} test(s) were skipped, which fails the run:\n`);
        for (const t of totals.skippedTitles.slice(0, 50)) process.stdout.write(`  - ${t}\n`);
        process.exitCode = 1;
      }
      process.stdout.write(`\n${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped\n`);
    });
  }
}

module.exports = TotalsReporter;
