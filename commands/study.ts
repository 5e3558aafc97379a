/**
 * `deno task study diversity <dataset> [options]`: the SDW paper's analysis as a study — equal-size
 * subsets of one dataset that differ in state quality or state diversity, BC students trained on
 * each to a ladder of final training losses, normalized return against training loss (one SVG per
 * targets, with 95 % bootstrap bands), the tables, and whether the paper's crossing appears.
 *
 * Runs in this process (default) or as grid tasks (`--executor local|slurm`): one task per targets ×
 * seed × subset, each this command restricted to its part and stopped after the evaluations, on one
 * shared cache; this process then reads every result from the cache and writes the report. The last
 * stdout line is one JSON object with the points, the crossing verdicts and the stages computed.
 * @module
 */

import { join, resolve } from "node:path";
import { helpText, parseCommandLine } from "../core/cli.ts";
import { pipelineError, toPipelineError } from "../core/errors.ts";
import { createRuntime } from "../core/runtime.ts";
import { taskPermissions, workerPermissions } from "../grid/permissions.ts";
import { runLocal } from "../grid/local.ts";
import { runSlurm, slurmScript } from "../grid/slurm_executor.ts";
import { EXECUTORS, type GridSpec, type GridTask, shellQuote } from "../grid/spec.ts";
import { BACKEND_ENV, initBackend, requestedBackend } from "../numerics/backend.ts";
import { diversityReport, writeDiversityReport } from "../report/diversity.ts";
import { SUBSET_KINDS, TARGETS, type Targets } from "../stages/subsets.ts";
import type { Method } from "../study/obd.ts";
import {
  DIVERSITY_PRESETS,
  DIVERSITY_UNTIL,
  type DiversityConfig,
  diversityConfig,
  runDiversityStudy,
  validateDiversityConfig,
} from "../study/diversity.ts";
import { exitWithError, isError, openRun } from "./common.ts";

const STAGES = ["load", "density", "teacher", "subset", "subset-students", "subset-evaluation"] as const;

const OPTIONS = {
  size: { type: "string", help: "states per subset (default 256)" },
  seeds: { type: "string", help: "comma-separated seeds (default: the preset's; quick 0, full 0,1,2,3,4)" },
  targets: {
    type: "string",
    help: "the actions students imitate: data, teacher or both (default: quick data, full both)",
  },
  subsets: { type: "string", help: `comma-separated subsets: ${SUBSET_KINDS.join(", ")} (default all)` },
  students: { type: "string", help: "students per subset, level and seed" },
  episodes: { type: "string", help: "episodes per student" },
  quick: {
    type: "boolean",
    help: "the quick preset (minutes on the embedded data); default the full preset",
  },
  set: { type: "string", multiple: true, help: "override one setting, e.g. --set levels.steps=10,100,1000" },
  until: {
    type: "string",
    help: `stop after: ${DIVERSITY_UNTIL.join(", ")} (default evaluation, then the report)`,
  },
  force: { type: "string", multiple: true, help: `recompute a stage even if cached (${STAGES.join(", ")})` },
  "cache-dir": { type: "string", help: "where stage outputs are cached (default data/cache)" },
  "run-dir": { type: "string", help: "where the report goes (default a new data/runs/<stamp>-diversity-…)" },
  backend: { type: "string", help: `tensor backend: wasm (default), cpu, tensorflow (or ${BACKEND_ENV})` },
  executor: { type: "string", help: `run as grid tasks: ${EXECUTORS.join(", ")} (default: in this process)` },
  workers: { type: "string", help: "local grid workers (default 2)" },
  partition: { type: "string", help: "Slurm partition" },
  time: { type: "string", help: "Slurm time limit per task, e.g. 01:00:00" },
  "dry-run": {
    type: "boolean",
    help: "with --executor: print the task commands (or the Slurm script), run nothing",
  },
  "no-report": { type: "boolean", help: "compute and cache only (what grid tasks do)" },
  help: { type: "boolean", help: "show this help" },
} as const;
const USAGE = "deno task study diversity [embedded|<d4rl alias>|<file.hdf5>] [options]";

const list = (v: unknown) => String(v).split(",").map((s) => s.trim()).filter(Boolean);

function positiveInt(name: string, raw: unknown): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) {
    throw pipelineError("config", `--${name} ${raw} is not a positive integer`, `e.g. --${name} 4`);
  }
  return n;
}

/** The config from the preset and the options, or a thrown config error. */
function configFrom(v: Record<string, unknown>): DiversityConfig {
  const made = diversityConfig(v.quick ? "quick" : "full", (v.set as string[] | undefined) ?? []);
  if (isError(made)) throw made;
  let config: DiversityConfig = made;
  if (v.size !== undefined) config = { ...config, size: positiveInt("size", v.size) };
  if (v.students !== undefined) config = { ...config, students: positiveInt("students", v.students) };
  if (v.episodes !== undefined) config = { ...config, episodes: positiveInt("episodes", v.episodes) };
  if (v.seeds !== undefined) {
    const seeds = list(v.seeds).map(Number);
    if (!seeds.length || seeds.some((s) => !Number.isInteger(s) || s < 0)) {
      throw pipelineError(
        "config",
        `--seeds ${v.seeds} is not a list of non-negative integers`,
        "e.g. --seeds 0,1,2",
      );
    }
    config = { ...config, seeds };
  }
  if (v.targets !== undefined) {
    const t = String(v.targets);
    if (t !== "both" && !(TARGETS as readonly string[]).includes(t)) {
      throw pipelineError("config", `--targets ${t} is unknown`, "choose data, teacher or both");
    }
    config = { ...config, targets: t === "both" ? [...TARGETS] : [t as Targets] };
  }
  if (v.subsets !== undefined) config = { ...config, subsets: list(v.subsets) as DiversityConfig["subsets"] };
  validateDiversityConfig(config);
  return config;
}

/** The options that reproduce `config` in a task (a grid task gets its own targets, seed and subset). */
function taskArgs(
  dataset: string,
  config: DiversityConfig,
  part: { targets: Targets; seed: number; subset: string },
  v: Record<string, unknown>,
  cacheDir: string,
): string[] {
  return [
    "diversity",
    dataset,
    ...(v.quick ? ["--quick"] : []),
    ...((v.set as string[] | undefined) ?? []).flatMap((s) => ["--set", s]),
    "--size",
    String(config.size),
    "--students",
    String(config.students),
    "--episodes",
    String(config.episodes),
    "--targets",
    part.targets,
    "--seeds",
    String(part.seed),
    "--subsets",
    part.subset,
    "--cache-dir",
    cacheDir,
    ...(v.backend !== undefined ? ["--backend", String(v.backend)] : []),
    "--no-report",
  ];
}

/** Runs the study's parts as grid tasks; returns the number that failed. */
async function runAsGrid(
  dataset: string,
  config: DiversityConfig,
  v: Record<string, unknown>,
  cacheDir: string,
  dir: string,
): Promise<number> {
  const executor = String(v.executor);
  if (!(EXECUTORS as readonly string[]).includes(executor)) {
    throw pipelineError("config", `--executor ${executor} is unknown`, `choose ${EXECUTORS.join(" or ")}`);
  }
  // Workers get the study task's permissions, widened to a cache or dataset outside them as the
  // grid's are, but may not start processes themselves.
  const flags = workerPermissions(
    taskPermissions(await Deno.readTextFile(new URL("../deno.json", import.meta.url)), "study")
      .filter((f) => !f.startsWith("--allow-run")),
    { cacheDir, datasets: [dataset] },
  );
  const tasks: GridTask[] = [];
  const commands = new Map<number, string[]>();
  for (const targets of config.targets) {
    for (const seed of config.seeds) {
      for (const subset of config.subsets) {
        const index = tasks.length;
        const name = `${String(index).padStart(3, "0")}-${subset}-${targets}-s${seed}`;
        const args = taskArgs(dataset, config, { targets, seed, subset }, v, cacheDir);
        // GridTask's method slot labels the task in the executors' progress lines.
        tasks.push({ index, dataset, method: `${subset}/${targets}` as Method, seed, name, args });
        commands.set(index, [
          Deno.execPath(),
          "run",
          "--no-prompt",
          ...flags,
          "commands/study.ts",
          ...args,
          "--run-dir",
          join(dir, "tasks", name),
        ]);
      }
    }
  }
  const logDir = resolve(dir, "tasks");
  const spec: GridSpec = {
    datasets: [dataset],
    methods: tasks.map((t) => t.method),
    seeds: config.seeds,
    preset: v.quick ? "quick" : "full",
    set: (v.set as string[] | undefined) ?? [],
    cacheDir,
    executor: executor as GridSpec["executor"],
    workers: v.workers !== undefined ? positiveInt("workers", v.workers) : 2,
    slurm: {
      ...(v.partition !== undefined ? { partition: String(v.partition) } : {}),
      ...(v.time !== undefined ? { time: String(v.time) } : {}),
    },
  };
  const jobName = "obd-diversity";
  const indices = tasks.map((t) => t.index);
  if (v["dry-run"]) {
    if (executor === "slurm") {
      console.log(slurmScript(spec, tasks, commands, indices, { logDir, chdir: Deno.cwd(), jobName }));
    } else for (const t of tasks) console.log(commands.get(t.index)!.map(shellQuote).join(" "));
    return -1;
  }
  const report = (l: string) => console.error(l);
  let outcomes;
  if (executor === "local") {
    outcomes = await runLocal(tasks, commands, {
      workers: spec.workers,
      logDir,
      attempt: 1,
      report,
      onOutcome: () => Promise.resolve(),
    });
  } else {
    await Deno.mkdir(logDir, { recursive: true });
    const scriptPath = resolve(dir, "slurm.sh");
    await Deno.writeTextFile(
      scriptPath,
      slurmScript(spec, tasks, commands, indices, { logDir, chdir: Deno.cwd(), jobName }),
    );
    outcomes = (await runSlurm(tasks, scriptPath, { logDir, jobName, attempt: 1, report })).outcomes;
  }
  for (const o of outcomes.filter((o) => !o.ok)) {
    console.error(
      `[study] task ${tasks[o.index].name} failed: ${o.error ?? "exit " + o.exitCode} — log ${
        o.logs.join(" ")
      }`,
    );
  }
  return outcomes.filter((o) => !o.ok).length;
}

async function main(args: string[]): Promise<void> {
  const parsed = parseCommandLine(args, OPTIONS, 2);
  if (isError(parsed)) exitWithError(parsed);
  const v = parsed.values;
  if (v.help) {
    console.log(helpText(USAGE, OPTIONS) + `\npresets: ${Object.keys(DIVERSITY_PRESETS).join(", ")}\n`);
    return;
  }
  const [which, dataset = "embedded"] = parsed.positionals;
  if (which !== "diversity") {
    exitWithError(
      pipelineError("config", which ? `no study "${which}"` : "no study named", `usage: ${USAGE}`),
    );
  }
  let config: DiversityConfig;
  try {
    config = configFrom(v);
  } catch (e) {
    exitWithError(toPipelineError(e));
  }
  const until = (v.until as string | undefined) ?? "evaluation";
  if (!(DIVERSITY_UNTIL as readonly string[]).includes(until)) {
    exitWithError(
      pipelineError("config", `--until ${until}: no such stage`, `stages: ${DIVERSITY_UNTIL.join(", ")}`),
    );
  }
  const force = (v.force as string[] | undefined) ?? [];
  const unknown = force.find((s) => !(STAGES as readonly string[]).includes(s));
  if (unknown) {
    exitWithError(
      pipelineError("config", `--force ${unknown}: no such stage`, `stages: ${STAGES.join(", ")}`),
    );
  }
  if (force.length && v.executor !== undefined) {
    exitWithError(
      pipelineError(
        "config",
        "--force with --executor would recompute the stage in every task",
        "run with --force once without --executor (or clear that stage's cache directory), then the grid",
      ),
    );
  }
  const backendName = requestedBackend(v.backend as string | undefined, Deno.env.get(BACKEND_ENV));
  if (isError(backendName)) exitWithError(backendName);
  const cacheRoot = (v["cache-dir"] as string | undefined) ?? "data/cache";
  let run: ReturnType<typeof openRun>;
  try {
    run = openRun(`diversity-${dataset.split("/").pop()}`, v["run-dir"] as string | undefined);
  } catch (e) {
    const cause = toPipelineError(e);
    exitWithError(
      pipelineError(
        "config",
        `cannot open the run directory ${v["run-dir"] ?? "under data/runs"}: ${cause.message}`,
        "the study task may write only under data/: give --run-dir data/…",
      ),
    );
  }
  console.error(`study diversity: dataset ${dataset}, cache ${cacheRoot}, run ${run.dir}`);
  console.error(`config: ${JSON.stringify(config)}`);
  run.metrics.log({ event: "start", study: "diversity", dataset, config });

  let failedTasks = 0;
  if (v.executor !== undefined) {
    try {
      failedTasks = await runAsGrid(dataset, config, v, cacheRoot, run.dir);
    } catch (e) {
      run.metrics.close();
      exitWithError({ ...toPipelineError(e), stage: "grid" });
    }
    if (failedTasks < 0) { // dry run
      run.metrics.close();
      return;
    }
    if (failedTasks > 0) {
      run.metrics.close();
      exitWithError(
        pipelineError(
          "io",
          `${failedTasks} task(s) failed`,
          "see their logs above; rerun the same command to finish (what they cached is kept)",
        ),
      );
    }
  }
  const backend = await initBackend(backendName);
  if (isError(backend)) exitWithError(backend);
  console.error(
    `backend ${backend.label} (${backend.threads} thread(s)${
      backend.blas ? `, matmuls on ${backend.blas.vendor} ${backend.blas.version}` : ", no BLAS"
    })`,
  );
  const rt = createRuntime({
    cacheRoot,
    backend: backend.label,
    force,
    progress: run.progress,
    metrics: run.metrics,
    report: (l) => console.error(`  ${l}`),
  });
  const started = performance.now();
  const result = await runDiversityStudy(rt, dataset, config, until as (typeof DIVERSITY_UNTIL)[number])();
  if (result._tag === "Left") {
    run.metrics.log({ event: "failed", error: result.left });
    run.metrics.close();
    exitWithError(result.left);
  }
  const summary: Record<string, unknown> = {
    study: "diversity",
    dataset,
    seconds: +((performance.now() - started) / 1000).toFixed(1),
    stagesComputed: Object.fromEntries(rt.executions),
  };
  if (until === "evaluation" && !v["no-report"]) {
    const report = diversityReport(result.right);
    let files: string[];
    try {
      files = await writeDiversityReport(run.dir, report);
    } catch (e) {
      run.metrics.close();
      exitWithError({ ...toPipelineError(e), stage: "report" });
    }
    console.log(report.markdown);
    summary.report = files.find((f) => f.endsWith("report.md"));
    summary.figures = files.filter((f) => f.endsWith(".svg"));
    summary.crossings = report.crossings.map((c) => ({
      targets: c.targets,
      subset: c.kind,
      verdict: c.verdict,
    }));
    summary.points = report.points.map((p) => ({
      targets: p.targets,
      subset: p.kind,
      level: p.level,
      loss: +p.loss.toFixed(4),
      mean: +p.mean.toFixed(2),
      low: +p.low.toFixed(2),
      high: +p.high.toFixed(2),
    }));
  }
  run.metrics.log({ event: "done", ...summary });
  run.metrics.close();
  console.log(JSON.stringify(summary));
}

if (import.meta.main) await main(Deno.args);
