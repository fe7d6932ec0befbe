const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Matches the duration strings of the config format: "500ms", "90s", "15m", "12h", "30d". */
export const durationPattern = /^(\d+)(ms|s|m|h|d)$/;

/** Converts a duration string that already matched `durationPattern` to milliseconds. */
export function durationMs(text: string): number {
  const m = durationPattern.exec(text);
  if (!m) throw new TypeError(`not a duration: ${text}`);
  return Number(m[1]) * (units[m[2] as string] as number);
}
