/**
 * The benchmarks' options: `--flag value` pairs read from `Deno.args`. A bad value throws, naming
 * the flag and what it needs.
 * @module
 */

/** The value after `flag`, or `fallback` when the flag is absent. */
export function stringArg(flag: string, fallback: string): string {
  const i = Deno.args.indexOf(flag);
  return i >= 0 && Deno.args[i + 1] !== undefined ? Deno.args[i + 1] : fallback;
}

/** An integer ≥ `min` (default 0). */
export function intArg(flag: string, fallback: number, min = 0): number {
  const v = Number(stringArg(flag, String(fallback)));
  if (!Number.isInteger(v) || v < min) throw new Error(`${flag} needs an integer ≥ ${min}`);
  return v;
}

/** A number > 0. */
export function positiveArg(flag: string, fallback: number): number {
  const v = Number(stringArg(flag, String(fallback)));
  if (!(v > 0)) throw new Error(`${flag} needs a positive number`);
  return v;
}

/** Comma-separated positive integers, e.g. `--bc-steps 1000,3000`. */
export function intListArg(flag: string, fallback: readonly number[]): number[] {
  const values = stringArg(flag, fallback.join(",")).split(",").map(Number);
  if (!values.every((v) => Number.isInteger(v) && v > 0)) {
    throw new Error(`${flag} needs comma-separated positive integers, e.g. 1000,3000`);
  }
  return values;
}
