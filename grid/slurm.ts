/**
 * A small Slurm client: renders job-array scripts, submits them with `sbatch` and follows their
 * tasks through Slurm's command-line tools. It knows nothing about what the tasks compute.
 *
 * Task states come from `sacct` when Slurm accounting (slurmdbd) is set up, else from the
 * controller (`scontrol show job`), which keeps finished jobs for `MinJobAge` seconds only
 * (300 by default; `tests/setup-slurm.sh` sets 3600). Without slurmdbd plain `sacct` is refused
 * ("accounting storage is disabled"), and `sacct --completion` over jobcomp/filetxt cannot tell
 * array tasks apart, so it is not used.
 *
 * Failures throw a `PipelineFailure`: kind `backend` when the tools or the controller are missing,
 * `config` when `sbatch` refuses a script or an option is malformed.
 * @module
 */
import { fail } from "../core/errors.ts";

/** A Slurm job state as the tools print it (`PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, …). */
export type JobState =
  | "PENDING"
  | "RUNNING"
  | "COMPLETING"
  | "COMPLETED"
  | "FAILED"
  | "CANCELLED"
  | "TIMEOUT"
  | "NODE_FAIL"
  | "OUT_OF_MEMORY"
  | "PREEMPTED"
  | (string & Record<never, never>);

/** States after which a task will not run again by itself. */
export const FINAL_STATES: ReadonlySet<string> = new Set([
  "COMPLETED",
  "FAILED",
  "CANCELLED",
  "TIMEOUT",
  "NODE_FAIL",
  "OUT_OF_MEMORY",
  "PREEMPTED",
  "BOOT_FAIL",
  "DEADLINE",
  "REVOKED",
]);

/** The state of one array task. */
export interface TaskStatus {
  /** The array index (`$SLURM_ARRAY_TASK_ID`). */
  readonly index: number;
  /** Its state, first word only (`CANCELLED by 0` → `CANCELLED`). */
  readonly state: JobState;
  /** The script's exit status (0 while it has not finished). */
  readonly exitCode: number;
  /** The signal that ended it, 0 if none. */
  readonly signal: number;
}

/** Options of `renderArrayScript`. */
export interface ArrayScriptOptions {
  /** `--job-name`; also the prefix of the log files. No whitespace. */
  readonly jobName: string;
  /** The indices to run: a Slurm list (`0-9`, `2,5`, `0-99%10`) or the indices themselves. */
  readonly array: string | readonly number[];
  /** The shell command(s) each task runs; `$SLURM_ARRAY_TASK_ID` is its index. */
  readonly command: string;
  /** Directory of the logs `<jobName>_<jobId>_<index>.out` / `.err` (see `taskLogPaths`). */
  readonly logDir: string;
  /** `--partition`. */
  readonly partition?: string;
  /** GPUs per task, as `--gres=gpu:G` (default) or `--gpus-per-task=G` (see `gpuOption`). */
  readonly gpus?: number;
  /** Which sbatch option requests the GPUs; `gres` also works without select/cons_tres. */
  readonly gpuOption?: "gres" | "gpus-per-task";
  /** `--time`, e.g. `90` (minutes) or `2:00:00`. */
  readonly time?: string | number;
  /** `--cpus-per-task`. */
  readonly cpusPerTask?: number;
  /** `--chdir`: the working directory of every task. */
  readonly chdir?: string;
  /** Further sbatch options, each one `#SBATCH` line, e.g. `--mem=8G`. */
  readonly extra?: readonly string[];
}

/** Parses a Slurm index list (`0-9`, `2,5`, `1-9:2`, `[4-9%2]`) into sorted unique indices. */
export function parseIndexList(list: string): number[] {
  const body = list.trim().replace(/^\[|\]$/g, "").replace(/%\d+$/, "");
  const out = new Set<number>();
  for (const part of body.split(",")) {
    const m = /^(\d+)(?:-(\d+)(?::(\d+))?)?$/.exec(part.trim());
    if (!m) fail("config", `not a Slurm array index list: '${list}'`, "write it like 0-9, 2,5 or 0-99:3");
    const [from, to, step] = [Number(m[1]), Number(m[2] ?? m[1]), Number(m[3] ?? 1)];
    if (to < from || step < 1) fail("config", `empty range '${part}' in Slurm array list '${list}'`);
    for (let i = from; i <= to; i += step) out.add(i);
  }
  return [...out].sort((a, b) => a - b);
}

/** Writes indices as a compact Slurm list: `[0,1,2,5,7,8]` → `0-2,5,7-8`. */
export function formatIndexList(indices: readonly number[]): string {
  const sorted = [...new Set(indices)].sort((a, b) => a - b);
  if (sorted.length === 0) fail("config", "an empty set of array indices", "submit at least one index");
  if (sorted.some((i) => !Number.isInteger(i) || i < 0)) {
    fail("config", `array indices must be non-negative integers: ${sorted.join(",")}`);
  }
  const parts: string[] = [];
  for (let s = 0; s < sorted.length;) {
    let e = s;
    while (e + 1 < sorted.length && sorted[e + 1] === sorted[e] + 1) e++;
    parts.push(e === s ? `${sorted[s]}` : `${sorted[s]}-${sorted[e]}`);
    s = e + 1;
  }
  return parts.join(",");
}

/** The `--array` value for a list or indices, validated. */
function arrayList(array: string | readonly number[]): string {
  if (typeof array !== "string") return formatIndexList(array);
  parseIndexList(array);
  return array.trim();
}

/** Where the logs of task `index` of job `jobId` are, for a script rendered with `logDir`/`jobName`. */
export function taskLogPaths(
  logDir: string,
  jobName: string,
  jobId: string,
  index: number,
): { output: string; error: string } {
  const stem = `${logDir.replace(/\/+$/, "")}/${jobName}_${jobId}_${index}`;
  return { output: `${stem}.out`, error: `${stem}.err` };
}

/** The text of an sbatch script running `command` once per index of `array`. */
export function renderArrayScript(opts: ArrayScriptOptions): string {
  const word = (name: string, value: string) => {
    if (value === "" || /\s/.test(value)) {
      fail("config", `sbatch ${name} must be one word without spaces: '${value}'`);
    }
    return value;
  };
  const count = (name: string, value: number) => {
    if (!Number.isInteger(value) || value < 1) {
      fail("config", `sbatch ${name} must be a positive integer: ${value}`);
    }
    return value;
  };
  const logs = `${word("--output", opts.logDir).replace(/\/+$/, "")}/${
    word("--job-name", opts.jobName)
  }_%A_%a`;
  const lines = [
    "#!/bin/sh",
    `#SBATCH --job-name=${opts.jobName}`,
    `#SBATCH --array=${arrayList(opts.array)}`,
    `#SBATCH --output=${logs}.out`,
    `#SBATCH --error=${logs}.err`,
  ];
  if (opts.partition !== undefined) lines.push(`#SBATCH --partition=${word("--partition", opts.partition)}`);
  if (opts.gpus !== undefined) {
    const g = count("GPU count", opts.gpus);
    lines.push(
      opts.gpuOption === "gpus-per-task" ? `#SBATCH --gpus-per-task=${g}` : `#SBATCH --gres=gpu:${g}`,
    );
  }
  if (opts.time !== undefined) lines.push(`#SBATCH --time=${word("--time", String(opts.time))}`);
  if (opts.cpusPerTask !== undefined) {
    lines.push(`#SBATCH --cpus-per-task=${count("--cpus-per-task", opts.cpusPerTask)}`);
  }
  if (opts.chdir !== undefined) lines.push(`#SBATCH --chdir=${word("--chdir", opts.chdir)}`);
  for (const option of opts.extra ?? []) lines.push(`#SBATCH ${word("option", option)}`);
  lines.push("", opts.command.trim(), "");
  return lines.join("\n");
}

interface Output {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a Slurm tool; a missing tool is a typed `backend` error. */
async function tool(name: string, args: readonly string[]): Promise<Output> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(name, { args: [...args], stdout: "piped", stderr: "piped", stdin: "null" })
      .output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      fail(
        "backend",
        `Slurm's '${name}' is not on PATH`,
        "install Slurm (Debian: slurm-wlm) or run tests/setup-slurm.sh",
      );
    }
    throw e;
  }
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes).trim();
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

const oneLine = (text: string) => text.replace(/\s*\n\s*/g, "; ");

/** Options of `submitArray`. */
export interface SubmitOptions {
  /** Overrides the script's `--array`, e.g. to resubmit only the indices that failed. */
  readonly array?: string | readonly number[];
}

/** Submits an array script with `sbatch --parsable`; returns the array's job id. */
export async function submitArray(scriptPath: string, options: SubmitOptions = {}): Promise<string> {
  const args = ["--parsable"];
  if (options.array !== undefined) args.push(`--array=${arrayList(options.array)}`);
  const out = await tool("sbatch", [...args, scriptPath]);
  const id = out.stdout.split(/\s+/).pop()?.split(";")[0] ?? "";
  if (out.code !== 0 || !/^\d+$/.test(id)) {
    fail(
      "config",
      `sbatch refused ${scriptPath}: ${oneLine(out.stderr || out.stdout) || `exit code ${out.code}`}`,
      "check the script's #SBATCH options (partition, GPUs, time) against `sinfo`",
    );
  }
  return id;
}

function exitStatus(text: string | undefined): { exitCode: number; signal: number } {
  const [code, signal] = (text ?? "0:0").split(":").map(Number);
  return { exitCode: code || 0, signal: signal || 0 };
}

const byIndex = (tasks: Map<number, TaskStatus>) => new Map([...tasks].sort((a, b) => a[0] - b[0]));

/**
 * Parses `sacct -j <id> --format=JobID,State,ExitCode --parsable2 --noheader` output into tasks of
 * array `jobId`; steps (`123_4.batch`) are skipped, pending ranges (`123_[4-9]`) expanded.
 */
export function parseSacct(jobId: string, text: string): Map<number, TaskStatus> {
  const tasks = new Map<number, TaskStatus>();
  for (const line of text.split("\n")) {
    const [id, state, exit] = line.trim().split("|");
    const m = new RegExp(`^${jobId}_(\\[[^\\]]+\\]|\\d+)$`).exec(id ?? "");
    if (!m || !state) continue;
    for (const index of parseIndexList(m[1])) {
      tasks.set(index, { index, state: state.split(" ")[0], ...exitStatus(exit) });
    }
  }
  return byIndex(tasks);
}

/**
 * Parses `scontrol -o show job <id>` output (one job per line) into tasks of array `jobId`; the
 * pending rest of an array is one line with a list (`ArrayTaskId=2-3,7,9-11%2`), expanded.
 */
export function parseScontrol(jobId: string, text: string): Map<number, TaskStatus> {
  const tasks = new Map<number, TaskStatus>();
  for (const line of text.split("\n")) {
    const field = (key: string) => new RegExp(`(?:^|\\s)${key}=(\\S+)`).exec(line)?.[1];
    const list = field("ArrayTaskId");
    const state = field("JobState");
    if (field("ArrayJobId") !== jobId || list === undefined || state === undefined) continue;
    for (const index of parseIndexList(list)) {
      tasks.set(index, { index, state, ...exitStatus(field("ExitCode")) });
    }
  }
  return byIndex(tasks);
}

/** Whether `sacct` works here; learnt from its first answer (false without slurmdbd). */
let sacctWorks: boolean | undefined;

/**
 * The state and exit code of every task of array `jobId`, by index: from `sacct` when accounting
 * works, else from the controller (`scontrol show job`), which forgets a job `MinJobAge` seconds
 * after it ended.
 */
export async function arrayTaskStates(jobId: string): Promise<Map<number, TaskStatus>> {
  if (!/^\d+$/.test(jobId)) {
    fail("config", `not a Slurm job id: '${jobId}'`, "pass the id submitArray returned");
  }
  if (sacctWorks !== false) {
    const out = await tool("sacct", [
      "-j",
      jobId,
      "--format=JobID,State,ExitCode",
      "--parsable2",
      "--noheader",
    ]);
    if (out.code === 0) {
      sacctWorks = true;
      const tasks = parseSacct(jobId, out.stdout);
      if (tasks.size > 0) return tasks;
    } else if (/accounting storage is disabled/i.test(`${out.stdout} ${out.stderr}`)) {
      sacctWorks = false;
    }
  }
  const out = await tool("scontrol", ["-o", "show", "job", jobId]);
  const tasks = out.code === 0 ? parseScontrol(jobId, out.stdout) : new Map<number, TaskStatus>();
  if (tasks.size === 0) {
    fail(
      "backend",
      `Slurm knows no array job ${jobId}${out.code === 0 ? "" : ` (${oneLine(out.stderr)})`}`,
      sacctWorks
        ? "check the job id"
        : "without accounting (slurmdbd) the controller forgets finished jobs after MinJobAge seconds; raise it in slurm.conf",
    );
  }
  return tasks;
}

/** Tasks per state, e.g. `{ COMPLETED: 8, FAILED: 1, RUNNING: 1 }`. */
export function countStates(tasks: ReadonlyMap<number, TaskStatus>): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const { state } of tasks.values()) counts[state] = (counts[state] ?? 0) + 1;
  return counts;
}

/** Options of `waitForArray`. */
export interface WaitOptions {
  /** Called after every poll with the counts by state and the tasks. */
  readonly onProgress?: (counts: Record<string, number>, tasks: ReadonlyMap<number, TaskStatus>) => void;
  /** Time between polls, ms (default 5000). */
  readonly pollMs?: number;
  /** Give up after this long, ms (default: never), with a `backend` error. */
  readonly timeoutMs?: number;
}

/** Polls `arrayTaskStates` until every task is in a final state; resolves with the final states. */
export async function waitForArray(
  jobId: string,
  options: WaitOptions = {},
): Promise<Map<number, TaskStatus>> {
  const pollMs = options.pollMs ?? 5000;
  const deadline = performance.now() + (options.timeoutMs ?? Infinity);
  while (true) {
    const tasks = await arrayTaskStates(jobId);
    options.onProgress?.(countStates(tasks), tasks);
    if ([...tasks.values()].every((t) => FINAL_STATES.has(t.state))) return tasks;
    if (performance.now() + pollMs > deadline) {
      fail(
        "backend",
        `Slurm array ${jobId} still unfinished after ${options.timeoutMs} ms: ${
          JSON.stringify(countStates(tasks))
        }`,
        "see `squeue -j " + jobId + "` for why tasks are pending",
      );
    }
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

/** Whether Slurm can take jobs here: `sbatch` is on PATH and the controller answers `scontrol ping`. */
export async function slurmAvailable(): Promise<{ ok: true } | { ok: false; reason: string }> {
  try {
    if ((await tool("sbatch", ["--version"])).code !== 0) {
      return { ok: false, reason: "'sbatch --version' fails" };
    }
    const ping = await tool("scontrol", ["ping"]);
    if (ping.code !== 0 || !/\bUP\b/.test(ping.stdout)) {
      return {
        ok: false,
        reason: `the Slurm controller does not answer: ${oneLine(ping.stdout || ping.stderr)}`,
      };
    }
    return { ok: true };
  } catch (e) {
    return { ok: false, reason: e instanceof Error ? e.message : String(e) };
  }
}
