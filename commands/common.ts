/**
 * What every command does the same way: report a typed error as one line and exit non-zero, and
 * open the run directory with its metrics log and progress reporter.
 * @module
 */

import { formatError, type PipelineError, pipelineError, toPipelineError } from "../core/errors.ts";
import { fileMetricsLog, type MetricsLog } from "../core/metrics.ts";
import { consoleProgress, type ProgressFactory } from "../core/progress.ts";
import { checkOutputPath } from "../core/paths.ts";

/** Prints `error` as one line on stderr and exits with status 1 (2 for usage errors). */
export function exitWithError(error: PipelineError): never {
  console.error(formatError(error));
  Deno.exit(error.kind === "config" ? 2 : 1);
}

/**
 * Runs a command's `main` so that nothing leaves it as a stack trace: an exception, a rejected
 * promise nobody awaited, or an error event becomes one `error[…]` line and a non-zero exit.
 */
export async function runCommand(main: (args: string[]) => Promise<void>): Promise<void> {
  const toLine = (event: Event & { reason?: unknown; error?: unknown }) => {
    event.preventDefault();
    exitWithError(toPipelineError("reason" in event ? event.reason : event.error));
  };
  globalThis.addEventListener("unhandledrejection", toLine);
  globalThis.addEventListener("error", toLine);
  try {
    await main(Deno.args);
  } catch (e) {
    exitWithError(toPipelineError(e));
  }
}

/** Checks an output path with `checkOutputPath` (core/paths.ts), exiting with its one line if refused. */
export function checkedOutput(path: string, option: string): string {
  try {
    checkOutputPath(path, option);
  } catch (e) {
    exitWithError(toPipelineError(e));
  }
  return path;
}

/**
 * An output that must not exist yet (`--out` of collect, density, teacher train and import): inside what
 * the task may write and not there already, or one line and exit. Results are never overwritten.
 */
export async function freshOutput(path: string, option = "--out"): Promise<string> {
  checkedOutput(path, option);
  if (await Deno.stat(path).then(() => true, () => false)) {
    exitWithError(
      pipelineError(
        "config",
        `${path} already exists`,
        `choose another ${option} or delete it; results are never overwritten`,
      ),
    );
  }
  return path;
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
  checkedOutput(dir, "--run-dir");
  const interval = Number(Deno.env.get("OBD_PROGRESS_INTERVAL_MS") ?? "") || undefined;
  let metrics: MetricsLog;
  try {
    metrics = fileMetricsLog(`${dir}/metrics.jsonl`);
  } catch (e) {
    exitWithError(toPipelineError(e, `run directory ${dir}`));
  }
  return {
    dir,
    metrics,
    progress: consoleProgress({ lineIntervalMs: interval }),
  };
}
