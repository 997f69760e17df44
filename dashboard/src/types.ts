// The payloads the admin listener streams, typed from the server's own view builders so the page and the
// API cannot drift apart (type-only imports: nothing from the server is bundled).
import type { dashboardSnapshot, liveView } from '../../src/admin/views.ts';
import type { Point } from '../../src/observe/timeline.ts';

export type { Point };
export type Snapshot = ReturnType<typeof dashboardSnapshot>;
export type Live = ReturnType<typeof liveView>;
export type Tick = Live & { point: Point };
export type BackendRow = Live['backends'][number]['backends'][number];
export type Failure = NonNullable<Live['failures']>[number];
