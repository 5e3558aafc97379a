/**
 * Experiment grids as values: one description (`GridSpec`: datasets × methods × seeds, preset,
 * `--set` overrides, cache directory, executor) parsed from a command line and expanded into an
 * ordered list of tasks, each the exact `pipeline` command line it runs. Every task is an ordinary
 * pipeline run on a shared cache, so shared upstream stages are computed once. The executors
 * (`local.ts`, `slurm_executor.ts`) run that list; `record.ts` keeps what happened. Nothing here
 * touches processes or files.
 * @module
 */

import { join } from "node:path";
import { requestedBackend } from "../numerics/backend.ts";
import { type OptionSpec, parseCommandLine } from "../core/cli.ts";
import { type PipelineError, pipelineError } from "../core/errors.ts";
import { type Method, METHODS, presetConfig, PRESETS } from "../study/obd.ts";

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
  teacher: {
    type: "string",
    help:
      "teacher of every task: train, auto, a CORL / authors' .pt checkpoint or a saved teacher directory (the same as --set teacher.source=…)",
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

const SPEC_FLAGS = [
  "datasets",
  "methods",
  "seeds",
  "preset",
  "set",
  "teacher",
  "backend",
  "cache-dir",
] as const;

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
  const teacher = str("teacher");
  // --teacher is one setting, passed to every task as --set teacher.source=… after the others.
  const set = [
    ...((v.set as string[] | undefined) ?? []),
    ...(teacher !== undefined ? [`teacher.source=${teacher}`] : []),
  ];
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

/**
 * The whole command line of a task: the Deno executable, permissions, the pipeline script and its
 * arguments, with the task's own log under the grid's run directory (`<gridDir>/tasks/<name>/`).
 */
export function taskCommand(
  denoPath: string,
  permissions: readonly string[],
  task: GridTask,
  gridDir: string,
): string[] {
  return [
    denoPath,
    "run",
    "--no-prompt",
    ...permissions,
    PIPELINE_SCRIPT,
    ...task.args,
    "--run-dir",
    join(gridDir, "tasks", task.name),
  ];
}

/** Quotes one word for a POSIX shell. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

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

/** A task as a phrase for report lines. */
export const describeTask = (t: GridTask) => `${t.dataset} ${t.method} seed ${t.seed}`;
