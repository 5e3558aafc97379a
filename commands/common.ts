/**
 * What every command does the same way: report a typed error as one line and exit non-zero, and
 * open the run directory with its metrics log and progress reporter.
 * @module
 */

import { formatError, type PipelineError } from "../core/errors.ts";
import { fileMetricsLog, type MetricsLog } from "../core/metrics.ts";
import { consoleProgress, type ProgressFactory } from "../core/progress.ts";

/** Prints `error` as one line on stderr and exits with status 1 (2 for usage errors). */
export function exitWithError(error: PipelineError): never {
  console.error(formatError(error));
  Deno.exit(error.kind === "config" ? 2 : 1);
}

/** True when a parse/validation result is a `PipelineError`. */
export function isError(x: unknown): x is PipelineError {
  return typeof x === "object" && x !== null && "kind" in x && "message" in x;
}

/**
 * The run's services: `<dir>/metrics.jsonl` and console progress; `dir` defaults to a new
 * `data/runs/<stamp>-<name>-<nonce>/`.
 */
export function openRun(
  name: string,
  dir?: string,
): { dir: string; metrics: MetricsLog; progress: ProgressFactory } {
  const stamp = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 23);
  dir ??= `data/runs/${stamp}-${name.replace(/[^A-Za-z0-9_.-]+/g, "_")}-${crypto.randomUUID().slice(0, 4)}`;
  const interval = Number(Deno.env.get("OBD_PROGRESS_INTERVAL_MS") ?? "") || undefined;
  return {
    dir,
    metrics: fileMetricsLog(`${dir}/metrics.jsonl`),
    progress: consoleProgress({ lineIntervalMs: interval }),
  };
}
