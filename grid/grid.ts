/**
 * Experiment grids: one description (`GridSpec`: datasets × methods × seeds, preset, `--set`
 * overrides, cache directory, executor) expanded into an ordered list of tasks, each the exact
 * `pipeline` command line it runs. Two executors run that same list: local worker subprocesses
 * (`runLocal`) and a Slurm job array (`slurmScript`/`runSlurm`). Every task is an ordinary pipeline
 * run on a shared cache, so shared upstream stages are computed once (the runtime's per-entry locks
 * make concurrent tasks wait for each other) and a resubmitted task reuses what its earlier attempt
 * finished. What happened is kept in the grid's run directory: `grid.json` (spec and tasks),
 * `status.json` (each task's latest outcome) and one log per task and attempt.
 *
 * The pure parts (parsing, expansion, command lines, the job script) are separate from the effects
 * (processes, files, Slurm), which stay in the executors and in `commands/grid.ts`.
 * @module
 */

import { isAbsolute, join, relative, resolve } from "node:path";
import { requestedBackend } from "../numerics/backend.ts";
import { type OptionSpec, parseCommandLine } from "../core/cli.ts";
import { type PipelineError, pipelineError, toPipelineError } from "../core/errors.ts";
import { type Method, METHODS, presetConfig, PRESETS } from "../study/obd.ts";
import {
  arrayTaskStates,
  renderArrayScript,
  submitArray,
  taskLogPaths,
  type TaskStatus,
  waitForArray,
} from "./slurm.ts";

/** Where a grid's tasks run. */
export const EXECUTORS = ["local", "slurm"] as const;
/** One of {@link EXECUTORS}. */
export type Executor = (typeof EXECUTORS)[number];

/** The script every task runs, relative to the repository root. */
export const PIPELINE_SCRIPT = "commands/pipeline.ts";

/** A grid of pipeline runs. */
export interface GridSpec {
  /** Datasets to run: `embedded`, D4RL aliases or HDF5 paths. */
  readonly datasets: readonly string[];
  /** Distillation methods to run, each one of `METHODS`. */
  readonly methods: readonly Method[];
  /** Distillation seeds (non-negative integers); every dataset × method runs once per seed. */
  readonly seeds: readonly number[];
  /** Name of the settings preset every task starts from (a key of `PRESETS`, e.g. `quick`). */
  readonly preset: string;
  /** `--set section.name=value` overrides, passed to every task. */
  readonly set: readonly string[];
  /** Tensor backend of every task (`wasm`, `cpu`, `tensorflow`); the pipeline's default when absent. */
  readonly backend?: string;
  /** The cache all tasks share (default `data/cache`). */
  readonly cacheDir: string;
  /** Where the tasks run: local worker subprocesses or a Slurm job array. */
  readonly executor: Executor;
  /** Local worker processes (local executor). */
  readonly workers: number;
  /** Slurm job options (slurm executor). */
  readonly slurm: { readonly partition?: string; readonly gpusPerJob?: number; readonly time?: string };
}

/** One run of the grid. */
export interface GridTask {
  /** Position in the grid, also the Slurm array index. */
  readonly index: number;
  /** The dataset this task distills, as named in the grid. */
  readonly dataset: string;
  /** The distillation method it runs. */
  readonly method: Method;
  /** Its distillation seed. */
  readonly seed: number;
  /** A file-name-safe label, e.g. `003-embedded-dbc-s1`. */
  readonly name: string;
  /** The pipeline command's arguments (after the script). */
  readonly args: readonly string[];
}

/** How one task ended in its latest attempt. */
export interface TaskOutcome {
  /** The task's index in the grid (`GridTask.index`). */
  readonly index: number;
  /** Whether it succeeded: exit status 0 (and, for Slurm, the task's state `COMPLETED`). */
  readonly ok: boolean;
  /** Which attempt of the grid this outcome is from, counting from 1. */
  readonly attempt: number;
  /** Exit status of the pipeline command (of the Slurm task for the slurm executor). */
  readonly exitCode: number;
  /** Wall-clock time of the run, in seconds (local executor only). */
  readonly seconds?: number;
  /** The command's one-line error (`error[stage/kind]: …`), or why it did not run. */
  readonly error?: string;
  /** Where its output went. */
  readonly logs: readonly string[];
  /** Stages the task computed rather than reused (from its JSON summary line). */
  readonly stagesComputed?: Readonly<Record<string, number>>;
  /** Slurm job id and final state, for the slurm executor. */
  readonly slurm?: { readonly jobId: string; readonly state: string };
}

/** The grid command's options (shared by its parser and `--help`). */
export const GRID_OPTIONS = {
  datasets: { type: "string", help: "comma-separated datasets: embedded, D4RL aliases or HDF5 paths" },
  methods: { type: "string", help: `comma-separated methods: ${METHODS.join(", ")}` },
  seeds: { type: "string", help: "comma-separated distillation seeds, e.g. 0,1,2 (default 0)" },
  preset: { type: "string", help: `settings preset: ${Object.keys(PRESETS).join(", ")} (default quick)` },
  set: {
    type: "string",
    multiple: true,
    help: "override one setting in every task, e.g. --set distill.outerSteps=50",
  },
  backend: { type: "string", help: "tensor backend of every task: wasm (default), cpu, tensorflow" },
  "cache-dir": { type: "string", help: "cache shared by all tasks (default data/cache)" },
  executor: { type: "string", help: `where tasks run: ${EXECUTORS.join(", ")} (default local)` },
  workers: { type: "string", help: "local worker processes (default 2)" },
  partition: { type: "string", help: "Slurm partition" },
  "gpus-per-job": { type: "string", help: "GPUs per Slurm array task" },
  time: { type: "string", help: "Slurm time limit per task, e.g. 01:00:00" },
  "dry-run": { type: "boolean", help: "print the tasks (local) or the job script (slurm) and run nothing" },
  "resubmit-failed": {
    type: "string",
    help: "rerun only the failed tasks of the grid in this run directory",
  },
  help: { type: "boolean", help: "show this help" },
} as const satisfies Readonly<Record<string, OptionSpec>>;

/** What the grid command was asked to do. */
export type GridRequest =
  | { readonly mode: "new"; readonly spec: GridSpec; readonly dryRun: boolean }
  | {
    readonly mode: "resubmit";
    readonly dir: string;
    /** Executor options given with `--resubmit-failed`; they replace those recorded in the grid. */
    readonly overrides: Partial<Pick<GridSpec, "executor" | "workers" | "slurm">>;
    readonly dryRun: boolean;
  }
  | { readonly mode: "help" };

const SPEC_FLAGS = ["datasets", "methods", "seeds", "preset", "set", "backend", "cache-dir"] as const;

/** Parses the grid command line into a request, or the first mistake as a config error. */
export function parseGridArgs(args: readonly string[]): GridRequest | PipelineError {
  const parsed = parseCommandLine(args, GRID_OPTIONS, 0);
  if ("kind" in parsed) return parsed;
  const v = parsed.values;
  if (v.help) return { mode: "help" };
  const str = (name: string) => v[name] as string | undefined;
  const executorOptions = parseExecutorOptions(str);
  if ("kind" in executorOptions) return executorOptions;
  const dryRun = Boolean(v["dry-run"]);
  const resubmit = str("resubmit-failed");
  if (resubmit !== undefined) {
    const given = SPEC_FLAGS.filter((f) => v[f] !== undefined);
    if (given.length) {
      return pipelineError(
        "config",
        `--resubmit-failed takes the grid from ${join(resubmit, "grid.json")}, but --${
          given[0]
        } was given too`,
        "drop the grid's own options; only --executor, --workers, --partition, --gpus-per-job, --time and --dry-run apply",
      );
    }
    return { mode: "resubmit", dir: resubmit, overrides: executorOptions, dryRun };
  }
  const list = (name: string) => (str(name) ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  const datasets = [...new Set(list("datasets"))];
  if (!datasets.length) {
    return pipelineError(
      "config",
      "--datasets is missing",
      "e.g. --datasets embedded or --datasets hopper-m-r,walker2d-m-r",
    );
  }
  const methodNames = [...new Set(list("methods"))];
  if (!methodNames.length) {
    return pipelineError(
      "config",
      "--methods is missing",
      `e.g. --methods dbc,avpbc (methods: ${METHODS.join(", ")})`,
    );
  }
  const unknown = methodNames.find((m) => !(METHODS as readonly string[]).includes(m));
  if (unknown) {
    return pipelineError("config", `--methods: no method "${unknown}"`, `methods: ${METHODS.join(", ")}`);
  }
  const seedTexts = str("seeds") === undefined ? ["0"] : list("seeds");
  const seeds = [...new Set(seedTexts.map(Number))];
  const badSeed = seedTexts.find((s) => !/^\d+$/.test(s));
  if (badSeed !== undefined || !seeds.length) {
    return pipelineError(
      "config",
      `--seeds ${str("seeds")}: seeds are non-negative integers`,
      "e.g. --seeds 0,1,2",
    );
  }
  const preset = str("preset") ?? "quick";
  const set = (v.set as string[] | undefined) ?? [];
  const config = presetConfig(preset, set);
  if ("kind" in config) return config;
  const backend = str("backend");
  if (backend !== undefined) {
    const checked = requestedBackend(backend, undefined);
    if (typeof checked !== "string") return checked;
  }
  return {
    mode: "new",
    dryRun,
    spec: {
      datasets,
      methods: methodNames as Method[],
      seeds,
      preset,
      set,
      ...(backend !== undefined ? { backend } : {}),
      cacheDir: str("cache-dir") ?? "data/cache",
      executor: executorOptions.executor ?? "local",
      workers: executorOptions.workers ?? 2,
      slurm: executorOptions.slurm ?? {},
    },
  };
}

function parseExecutorOptions(
  str: (name: string) => string | undefined,
): Partial<Pick<GridSpec, "executor" | "workers" | "slurm">> | PipelineError {
  const out: { executor?: Executor; workers?: number; slurm?: GridSpec["slurm"] } = {};
  const executor = str("executor");
  if (executor !== undefined) {
    if (!(EXECUTORS as readonly string[]).includes(executor)) {
      return pipelineError(
        "config",
        `--executor ${executor}: no such executor`,
        `executors: ${EXECUTORS.join(", ")}`,
      );
    }
    out.executor = executor as Executor;
  }
  const count = (name: string): number | PipelineError | undefined => {
    const text = str(name);
    if (text === undefined) return undefined;
    return /^[1-9]\d*$/.test(text)
      ? Number(text)
      : pipelineError("config", `--${name} ${text} is not a positive integer`, `e.g. --${name} 2`);
  };
  const workers = count("workers");
  if (typeof workers === "object") return workers;
  if (workers !== undefined) out.workers = workers;
  const gpus = count("gpus-per-job");
  if (typeof gpus === "object") return gpus;
  const time = str("time");
  if (time !== undefined && !/^(\d+-)?\d+(:\d{2}){0,2}$/.test(time)) {
    return pipelineError(
      "config",
      `--time ${time} is not a Slurm time limit`,
      "e.g. --time 01:30:00, --time 90 (minutes) or --time 1-00:00:00",
    );
  }
  const partition = str("partition");
  if (partition !== undefined && !/^[A-Za-z0-9_.,-]+$/.test(partition)) {
    return pipelineError(
      "config",
      `--partition ${partition} is not a partition name`,
      "see `sinfo` for the partitions",
    );
  }
  if (partition !== undefined || gpus !== undefined || time !== undefined) {
    out.slurm = {
      ...(partition !== undefined ? { partition } : {}),
      ...(gpus !== undefined ? { gpusPerJob: gpus } : {}),
      ...(time !== undefined ? { time } : {}),
    };
  }
  return out;
}

/** The grid's tasks in order: datasets, then methods, then seeds. */
export function expandGrid(spec: GridSpec): GridTask[] {
  const tasks: GridTask[] = [];
  const width = String(spec.datasets.length * spec.methods.length * spec.seeds.length - 1).length;
  for (const dataset of spec.datasets) {
    for (const method of spec.methods) {
      for (const seed of spec.seeds) {
        const index = tasks.length;
        const label = dataset.split("/").pop()!.replace(/\.(hdf5|h5)$/, "").replace(/[^A-Za-z0-9_.-]+/g, "_");
        tasks.push({
          index,
          dataset,
          method,
          seed,
          name: `${String(index).padStart(Math.max(3, width), "0")}-${label}-${method}-s${seed}`,
          args: taskArgs(spec, dataset, method, seed),
        });
      }
    }
  }
  return tasks;
}

/**
 * The pipeline arguments of one task. `--until evaluate`: tasks fill the cache; the grid writes one
 * report for all of them.
 */
export function taskArgs(spec: GridSpec, dataset: string, method: Method, seed: number): string[] {
  return [
    dataset,
    "--method",
    method,
    "--seed",
    String(seed),
    "--preset",
    spec.preset,
    ...spec.set.flatMap((s) => ["--set", s]),
    "--cache-dir",
    spec.cacheDir,
    ...(spec.backend !== undefined ? ["--backend", spec.backend] : []),
    "--until",
    "evaluate",
  ];
}

/** The `--allow-*`/`--deny-*` flags of a task in a deno.json text. */
export function taskPermissions(denoJsonText: string, task: string): string[] {
  const command: string | undefined = JSON.parse(denoJsonText).tasks?.[task];
  if (!command) {
    throw pipelineError("config", `deno.json has no task "${task}"`, "restore the task from the repository");
  }
  return command.split(/\s+/).filter((t) => /^--(allow|deny)-/.test(t));
}

/**
 * `flags` with more paths granted: each `--allow-read=`/`--allow-write=` list is extended (or the
 * flag added); an unscoped `--allow-read`/`--allow-write` already grants everything.
 */
export function widenPermissions(
  flags: readonly string[],
  extra: { readonly read?: readonly string[]; readonly write?: readonly string[] },
): string[] {
  let out = [...flags];
  for (const [kind, paths] of [["read", extra.read ?? []], ["write", extra.write ?? []]] as const) {
    if (!paths.length || out.includes(`--allow-${kind}`)) continue;
    const at = out.findIndex((f) => f.startsWith(`--allow-${kind}=`));
    if (at < 0) {
      out = [...out, `--allow-${kind}=${[...new Set(paths)].join(",")}`];
      continue;
    }
    const current = out[at].slice(`--allow-${kind}=`.length).split(",");
    out[at] = `--allow-${kind}=${[...new Set([...current, ...paths])].join(",")}`;
  }
  return out;
}

const inside = (path: string, dir: string) => {
  const rel = relative(resolve(dir), resolve(path));
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
};

/** Whether a dataset argument names a file (rather than `embedded` or a D4RL alias). */
const isPath = (dataset: string) => dataset.includes("/") || /\.(hdf5|h5)$/.test(dataset);

/**
 * A worker's permissions: the `pipeline` task's, plus reading and writing the cache directory and
 * reading dataset files where they lie outside what the task grants, plus `/etc/hostname` so that
 * its cache locks name their host (which lets a lock of a crashed worker be broken at once).
 */
export function workerPermissions(
  pipelineFlags: readonly string[],
  spec: Pick<GridSpec, "cacheDir" | "datasets">,
): string[] {
  const read = [spec.cacheDir, ...spec.datasets.filter(isPath)].filter((p) => !inside(p, "."));
  const write = inside(spec.cacheDir, "data") ? [] : [spec.cacheDir];
  return widenPermissions(pipelineFlags, { read: [...read, "/etc/hostname"], write });
}

/**
 * The deno.json task whose permissions a worker gets: `pipeline-native` (FFI for libtensorflow)
 * for the `tensorflow` backend, else `pipeline`.
 */
export function workerTask(backend: string): "pipeline" | "pipeline-native" {
  return backend === "tensorflow" ? "pipeline-native" : "pipeline";
}

/**
 * What the grid process itself must be allowed, to summarize in-process: reading (and, for a
 * stage not yet cached, writing) the cache, and reading dataset files. Returns the first missing
 * permission as a config error naming the flags to add, so a grid fails before it runs anything.
 */
export function checkGridPermissions(
  spec: Pick<GridSpec, "cacheDir" | "datasets">,
): PipelineError | undefined {
  const needs: [Deno.PermissionDescriptor, string][] = [
    [{ name: "read", path: spec.cacheDir }, `--allow-read=.,${spec.cacheDir}`],
    [{ name: "write", path: spec.cacheDir }, `--allow-write=data,${spec.cacheDir}`],
    ...spec.datasets.filter(isPath).map((
      d,
    ): [Deno.PermissionDescriptor, string] => [{ name: "read", path: d }, `--allow-read=.,${d}`]),
  ];
  for (const [descriptor, flag] of needs) {
    if (Deno.permissions.querySync(descriptor).state !== "granted") {
      const what = `${descriptor.name} ${(descriptor as { path: string }).path}`;
      return pipelineError(
        "config",
        `the grid summarizes its tasks itself and may not ${what}`,
        `run it as deno run <the grid task's flags, with ${flag}> commands/grid.ts …, or keep the cache and datasets under data/`,
      );
    }
  }
  return undefined;
}

/**
 * The whole command line of a task: the Deno executable, permissions, the pipeline script and its
 * arguments, with the task's own log under the grid's run directory (`<gridDir>/tasks/<name>/`).
 */
export function taskCommand(denoPath: string, permissions: readonly string[], task: GridTask, gridDir: string): string[] {
  return [denoPath, "run", "--no-prompt", ...permissions, PIPELINE_SCRIPT, ...task.args, "--run-dir", join(gridDir, "tasks", task.name)];
}

/** Quotes one word for a POSIX shell. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

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

// ---------------------------------------------------------------------------------------------
// The record of a grid in its run directory.

/** `grid.json`: what the grid is. */
export interface GridRecord {
  /** The grid as parsed from the command line. */
  readonly spec: GridSpec;
  /** Its tasks in order, each with the exact command line it runs. */
  readonly tasks: readonly (GridTask & { readonly command: readonly string[] })[];
  /** ISO time at which the grid was created. */
  readonly createdAt: string;
}

/** `status.json`: the latest outcome of every task that ran, and the attempts made. */
export interface GridStatus {
  /** Every attempt so far, in order: its number, executor, task indices, ISO start time and (Slurm) array job id. */
  readonly attempts: readonly {
    readonly attempt: number;
    readonly executor: Executor;
    readonly indices: readonly number[];
    readonly startedAt: string;
    readonly jobId?: string;
  }[];
  /** The latest outcome of every task that ran, keyed by task index. */
  readonly outcomes: Readonly<Record<string, TaskOutcome>>;
}

/** Reads a grid's record and status, as typed errors that name the file. */
export async function readGrid(
  dir: string,
): Promise<{ record: GridRecord; status: GridStatus } | PipelineError> {
  const read = async (name: string) => {
    const path = join(dir, name);
    try {
      return JSON.parse(await Deno.readTextFile(path));
    } catch (e) {
      const cause = e instanceof SyntaxError ? "is not valid JSON" : toPipelineError(e).message;
      throw pipelineError(
        "input",
        `${path} ${cause}`,
        "give --resubmit-failed the run directory a grid wrote (data/runs/<stamp>-grid-…)",
      );
    }
  };
  try {
    const record = await read("grid.json") as GridRecord;
    const status = await read("status.json").catch(() => ({ attempts: [], outcomes: {} })) as GridStatus;
    return { record, status };
  } catch (e) {
    return toPipelineError(e);
  }
}



/** The indices whose latest outcome is not a success (never run counts as failed). */
export function failedIndices(record: GridRecord, status: GridStatus): number[] {
  return record.tasks.filter((t) => !status.outcomes[t.index]?.ok).map((t) => t.index);
}

// ---------------------------------------------------------------------------------------------
// Executors.

/** Where an executor reports: one line per event (stderr in the command). */
export type GridReporter = (line: string) => void;

/** The last line of a task's output that is a one-line pipeline error, else its last non-empty line. */
export function errorLine(output: string): string {
  const lines = output.split("\n").map((l) => l.trim()).filter(Boolean);
  return [...lines].reverse().find((l) => l.startsWith("error[")) ?? lines[lines.length - 1] ?? "(no output)";
}

/** The stages a task computed, from the JSON summary line the pipeline command prints last. */
export function stagesComputedOf(stdout: string): Record<string, number> | undefined {
  const line = stdout.split("\n").map((l) => l.trim()).filter((l) => l.startsWith("{")).pop();
  if (!line) return undefined;
  try {
    return JSON.parse(line).stagesComputed;
  } catch {
    return undefined;
  }
}

const describeTask = (t: GridTask) => `${t.dataset} ${t.method} seed ${t.seed}`;

/**
 * Runs `tasks` on `workers` local subprocesses, each task's output in `logDir/<name>.log`
 * (`.attemptN.log` after the first attempt). A failing task is recorded and the others go on;
 * `onOutcome` sees every outcome as it comes (to save the status).
 */
export async function runLocal(
  tasks: readonly GridTask[],
  commands: ReadonlyMap<number, readonly string[]>,
  options: {
    readonly workers: number;
    readonly logDir: string;
    readonly attempt: number;
    readonly report: GridReporter;
    readonly onOutcome: (o: TaskOutcome) => Promise<void>;
  },
): Promise<TaskOutcome[]> {
  await Deno.mkdir(options.logDir, { recursive: true });
  const queue = [...tasks];
  const outcomes: TaskOutcome[] = [];
  const running = new Set<number>();
  const total = tasks.length;
  const status = () =>
    `${outcomes.length}/${total} finished (${outcomes.filter((o) => !o.ok).length} failed), running: ${
      [...running].join(", ") || "none"
    }`;
  const runOne = async (task: GridTask): Promise<TaskOutcome> => {
    const log = join(
      options.logDir,
      `${task.name}${options.attempt > 1 ? `.attempt${options.attempt}` : ""}.log`,
    );
    const [program, ...args] = commands.get(task.index)!;
    const started = performance.now();
    const file = await Deno.open(log, { create: true, write: true, truncate: true });
    const encoder = new TextEncoder();
    await file.write(encoder.encode(`$ ${commands.get(task.index)!.map(shellQuote).join(" ")}\n`));
    let stdout = "";
    let stderr = "";
    let code: number;
    try {
      const child = new Deno.Command(program, { args, stdout: "piped", stderr: "piped", stdin: "null" })
        .spawn();
      // Both streams go to the log as they come; each is kept whole for its JSON line / error line.
      let writing = Promise.resolve();
      const pump = async (stream: ReadableStream<Uint8Array>, keep: (s: string) => void) => {
        for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
          keep(chunk);
          writing = writing.then(async () => void await file.write(encoder.encode(chunk)));
        }
      };
      await Promise.all([pump(child.stdout, (s) => (stdout += s)), pump(child.stderr, (s) => (stderr += s))]);
      code = (await child.status).code;
      await writing;
    } catch (e) {
      code = 127;
      stderr += `\nerror[grid/io]: could not start ${program}: ${toPipelineError(e).message}\n`;
      await file.write(encoder.encode(stderr));
    } finally {
      file.close();
    }
    const seconds = +((performance.now() - started) / 1000).toFixed(1);
    const stagesComputed = stagesComputedOf(stdout);
    return {
      index: task.index,
      ok: code === 0,
      attempt: options.attempt,
      exitCode: code,
      seconds,
      logs: [log],
      ...(code === 0 ? {} : { error: errorLine(stderr) }),
      ...(stagesComputed ? { stagesComputed } : {}),
    };
  };
  const worker = async () => {
    for (let task = queue.shift(); task; task = queue.shift()) {
      running.add(task.index);
      options.report(`[grid] task ${task.index} (${describeTask(task)}): started; ${status()}`);
      const outcome = await runOne(task);
      running.delete(task.index);
      outcomes.push(outcome);
      await options.onOutcome(outcome);
      options.report(
        outcome.ok
          ? `[grid] task ${task.index} (${describeTask(task)}): done in ${outcome.seconds} s, computed ${
            JSON.stringify(outcome.stagesComputed ?? {})
          }; ${status()}`
          : `[grid] task ${task.index} (${
            describeTask(task)
          }): FAILED (exit ${outcome.exitCode}) ${outcome.error} — log ${outcome.logs[0]}; ${status()}`,
      );
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.workers, tasks.length) }, worker));
  return outcomes.sort((a, b) => a.index - b.index);
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
