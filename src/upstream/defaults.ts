// The built-in pool settings, read from the schema itself (so defaults are declared once, in
// config/schema.ts): used when a pool or backend is built without a configuration (tests, tools).
import { ConfigSchema, type HealthConfig, type OverloadConfig, type ProbeConfig, type RetryConfig } from '../config/schema.ts';

export type SectionDefaults = { health: HealthConfig; probe: ProbeConfig; retries: RetryConfig; overload: OverloadConfig };

let cached: SectionDefaults | undefined;

export function sectionDefaults(): SectionDefaults {
  if (!cached) {
    const c = ConfigSchema.parse({ backends: [{ name: 'x', url: 'http://127.0.0.1:1' }] });
    cached = { health: c.health, probe: c.probes, retries: c.retries, overload: c.overload };
  }
  return cached;
}
