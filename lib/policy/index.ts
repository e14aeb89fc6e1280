/** The rule language and the policy engine: the public API of lib/policy's DSL part. */
export { compileRules, compileRuleFiles, DEFAULT_REJECT, DEFAULT_TEMPFAIL } from './rule-compiler.js';
export type { CompileOptions, CompiledRule, CompiledRuleset, RuleSource } from './rule-compiler.js';
export { PolicyEngine } from './policy-engine.js';
export type { PolicyEngineOptions, RuleTrace } from './policy-engine.js';
export { runRuleTests, explainScenario, TEST_PROXY_NAME } from './rule-tester.js';
export type { RuleCoverage, TestCaseResult } from './rule-tester.js';
export type { Scenario, CompiledTest, TestExpectation } from './rule-scenario-types.js';
export { describeExpectation } from './rule-scenario-types.js';
export { playScenario, SCENARIO_DEFAULTS } from './rule-scenario.js';
export { factProviders, scenarioScanResults, DEFAULT_SCENARIO_TIME } from './fact-providers.js';
export { MemoryLockStore } from './lock-store-memory.js';
export type { MemoryLockStoreOptions } from './lock-store-memory.js';
export { FIELDS, VARIABLES } from './rule-fields.js';
export { parseIp, parseCidr, CidrSet } from './ip-match.js';
