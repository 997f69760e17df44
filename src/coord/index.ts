// Chooses the coordinator for a configuration: Redis when `fleet` is set, else the single-process one.
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import { LocalCoordinator } from './local.ts';
import { RedisCoordinator } from './redis.ts';
import type { Coordinator } from './types.ts';

export function createCoordinator(config: Config, log: Logger): Coordinator {
  return config.fleet ? new RedisCoordinator(config.fleet, log) : new LocalCoordinator();
}
