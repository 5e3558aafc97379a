/**
 * The Slurm executor: a grid's tasks as one job array (`slurmScript`), submitted and followed
 * through the Slurm client (`slurm.ts`) until every task has ended.
 * @module
 */

import {
  errorLine,
  type GridReporter,
  type GridSpec,
  type GridTask,
  shellQuote,
  stagesComputedOf,
  type TaskOutcome,
} from "./spec.ts";
import {
  arrayTaskStates,
  renderArrayScript,
  submitArray,
  taskLogPaths,
  type TaskStatus,
  waitForArray,
} from "./slurm.ts";

/** Options of the Slurm job script beyond the grid's own. */
export interface SlurmScriptOptions {
  /** Directory of the array tasks' logs. */
  readonly logDir: string;
  /** The tasks' working directory: the repository root. */
  readonly chdir: string;
  /** Slurm job name (`--job-name`), also the prefix of the log files. */
  readonly jobName: string;
}

/**
 * The job-array script of a grid: array index = task index, each running its exact command with
 * `exec` (so the task's exit status is the pipeline's). `indices` restricts the array (resubmission).
 */
export function slurmScript(
  spec: GridSpec,
  tasks: readonly GridTask[],
  commands: ReadonlyMap<number, readonly string[]>,
  indices: readonly number[],
  options: SlurmScriptOptions,
): string {
  const cases = tasks.map((t) => `  ${t.index}) exec ${commands.get(t.index)!.map(shellQuote).join(" ")} ;;`);
  const command = [
    `# obd grid: ${tasks.length} tasks (${spec.datasets.join(",")} × ${spec.methods.join(",")} × seeds ${
      spec.seeds.join(",")
    })`,
    `case "$SLURM_ARRAY_TASK_ID" in`,
    ...cases,
    `  *) echo "obd grid: no task $SLURM_ARRAY_TASK_ID in this grid" >&2; exit 2 ;;`,
    "esac",
  ].join("\n");
  return renderArrayScript({
    jobName: options.jobName,
    array: indices,
    command,
    logDir: options.logDir,
    chdir: options.chdir,
    ...(spec.slurm.partition !== undefined ? { partition: spec.slurm.partition } : {}),
    ...(spec.slurm.gpusPerJob !== undefined ? { gpus: spec.slurm.gpusPerJob } : {}),
    ...(spec.slurm.time !== undefined ? { time: spec.slurm.time } : {}),
  });
}

/**
 * Submits `script` (a `slurmScript`) as one job array and follows it until every task has ended,
 * with a progress line whenever the counts change; outcomes come from Slurm's task states and
 * each task's logs (its error line, its JSON summary).
 */
export async function runSlurm(
  tasks: readonly GridTask[],
  scriptPath: string,
  options: {
    readonly logDir: string;
    readonly jobName: string;
    readonly attempt: number;
    readonly pollMs?: number;
    readonly report: GridReporter;
    /** Called once the array is queued (to record its job id before waiting). */
    readonly onSubmitted?: (jobId: string) => Promise<void>;
  },
): Promise<{ jobId: string; outcomes: TaskOutcome[] }> {
  const jobId = await submitArray(scriptPath, { array: tasks.map((t) => t.index) });
  options.report(`[grid] submitted Slurm array job ${jobId} with ${tasks.length} task(s): ${scriptPath}`);
  await options.onSubmitted?.(jobId);
  let last = "";
  const started = performance.now();
  const final = await waitForArray(jobId, {
    pollMs: options.pollMs ?? 3000,
    onProgress: (counts) => {
      const line = Object.entries(counts).map(([s, n]) => `${n} ${s.toLowerCase()}`).join(", ");
      if (line !== last) {
        options.report(
          `[grid] job ${jobId}: ${line} (${((performance.now() - started) / 1000).toFixed(0)} s)`,
        );
      }
      last = line;
    },
  });
  const outcomes: TaskOutcome[] = [];
  for (const task of tasks) {
    const state: TaskStatus | undefined = final.get(task.index) ??
      (await arrayTaskStates(jobId)).get(task.index);
    const logs = taskLogPaths(options.logDir, options.jobName, jobId, task.index);
    const [out, err] = await Promise.all(
      [logs.output, logs.error].map((p) => Deno.readTextFile(p).catch(() => "")),
    );
    const ok = state?.state === "COMPLETED" && state.exitCode === 0;
    const stagesComputed = stagesComputedOf(out);
    outcomes.push({
      index: task.index,
      ok,
      attempt: options.attempt,
      exitCode: state?.exitCode ?? -1,
      logs: [logs.output, logs.error],
      slurm: { jobId, state: state?.state ?? "UNKNOWN" },
      ...(ok ? {} : {
        error: err.trim() || out.trim()
          ? errorLine(`${out}\n${err}`)
          : `Slurm task ended ${state?.state ?? "in an unknown state"} without output`,
      }),
      ...(stagesComputed ? { stagesComputed } : {}),
    });
  }
  return { jobId, outcomes };
}
