// The lab's scenarios, in the order of issue 6, then those of issue 9.
import type { Scenario } from '../scenario.ts';
import { blackHole } from './black-hole.ts';
import { capacityLimited } from './capacity-limited.ts';
import { flaky5xx } from './flaky-5xx.ts';
import { keepaliveRace } from './keepalive-race.ts';
import { midBodyReset } from './mid-body-reset.ts';
import { nodeDies } from './node-dies.ts';
import { originDownWarm } from './origin-down-warm.ts';
import { overload } from './overload.ts';
import { rollingRestart } from './rolling-restart.ts';
import { slowOrigin } from './slow-origin.ts';
import { solePartialFailure } from './sole-backend-partial-failure.ts';
import { thunderingHerd } from './thundering-herd.ts';

export const SCENARIOS: readonly Scenario[] = [originDownWarm, nodeDies, slowOrigin, keepaliveRace, thunderingHerd, overload, capacityLimited, flaky5xx, midBodyReset, rollingRestart, blackHole, solePartialFailure];

export function findScenario(name: string): Scenario | undefined {
  return SCENARIOS.find((s) => s.name === name);
}
