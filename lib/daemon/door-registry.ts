/**
 * Which doors a configuration enables, and how each kind of door is built. A door kind is wired by registering
 * one builder that maps its config section onto the door module's own options (see door-wiring.ts); tests
 * register their own builders to exercise the lifecycle without real doors.
 */
import type { Door, DoorDeps } from './door.js';
import type { FilterDoorConfig, InterceptListenerConfig, MilterConfig, PolicydConfig, SluiceConfig } from './config-types.js';
import { formatHostPort, formatListen } from './config-units.js';

export type DoorKind = 'intercept' | 'milter' | 'filter' | 'policyd';

export interface DoorSettings {
  intercept: InterceptListenerConfig;
  milter: MilterConfig;
  filter: FilterDoorConfig;
  policyd: PolicydConfig;
}

/** One door the configuration asks for. */
export interface DoorPlan<K extends DoorKind = DoorKind> {
  /** Identity across reloads: "intercept:edge", "milter". */
  readonly key: string;
  readonly kind: K;
  readonly name: string;
  readonly settings: DoorSettings[K];
  /** The configured listen address, as written back for logs. */
  readonly listen: string;
}

export type DoorBuilder<K extends DoorKind> = (settings: DoorSettings[K], config: SluiceConfig, deps: DoorDeps) => Door;

export class DoorRegistry {
  private readonly builders = new Map<DoorKind, DoorBuilder<DoorKind>>();

  register<K extends DoorKind>(kind: K, builder: DoorBuilder<K>): this {
    this.builders.set(kind, builder as unknown as DoorBuilder<DoorKind>);
    return this;
  }

  has(kind: DoorKind): boolean {
    return this.builders.has(kind);
  }

  /** Builds (does not start) the door for a plan. */
  create(plan: DoorPlan, config: SluiceConfig, deps: DoorDeps): Door {
    const builder = this.builders.get(plan.kind);
    if (!builder) throw new Error(`the ${plan.kind} door is not available in this build`);
    return builder(plan.settings, config, deps);
  }
}

export function planDoors(config: SluiceConfig): DoorPlan[] {
  const plans: DoorPlan[] = config.intercept.map((l) => ({ key: `intercept:${l.name}`, kind: 'intercept' as const, name: l.name, settings: l, listen: formatHostPort(l.listen) }));
  if (config.milter) plans.push({ key: 'milter', kind: 'milter', name: 'milter', settings: config.milter, listen: formatListen(config.milter.listen) });
  if (config.filter) plans.push({ key: 'filter', kind: 'filter', name: 'filter', settings: config.filter, listen: formatListen(config.filter.listen) });
  if (config.policyd) plans.push({ key: 'policyd', kind: 'policyd', name: 'policyd', settings: config.policyd, listen: formatListen(config.policyd.listen) });
  return plans;
}

/** True when two plans build the same door (same settings), so a reload can keep it and just update its deps. */
export function samePlan(a: DoorPlan, b: DoorPlan): boolean {
  return a.key === b.key && stableJson(a.settings) === stableJson(b.settings);
}

function stableJson(v: unknown): string {
  return JSON.stringify(v, (_k, value: unknown) =>
    value && typeof value === 'object' && !Array.isArray(value) ? Object.fromEntries(Object.entries(value as Record<string, unknown>).sort(([x], [y]) => (x < y ? -1 : 1))) : value,
  );
}
