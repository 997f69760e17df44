// Start-up failures tied to the setting an operator must change (issue 11 item 11). Its own module so that
// `serve` can tell them apart without loading the proxy (the primary of `workers: N` never runs it).

/** A start-up failure, tied to the setting an operator must change (issue 11 item 11): `serve` prints it as one line. */
export class StartupError extends Error {
  readonly setting: string;
  readonly value: string;
  readonly code: string | undefined;
  constructor(setting: string, value: string, cause: unknown) {
    const code = (cause as NodeJS.ErrnoException | undefined)?.code;
    super(`${setting} ${value}: ${code ?? (cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = 'StartupError';
    this.setting = setting;
    this.value = value;
    this.code = code;
  }
}

/** Runs one start-up step, blaming `setting` (with its value) when it throws. */
export async function step<T>(setting: string, value: string, fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw err instanceof StartupError ? err : new StartupError(setting, value, err);
  }
}
