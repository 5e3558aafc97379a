/**
 * `deno task grid --datasets a,b --methods dbc,avpbc --seeds 0,1,2 [options]`: runs every
 * (dataset, method, seed) of a grid as its own `pipeline` command on one shared cache, locally on
 * `--workers` subprocesses or as a Slurm job array (`--executor slurm`), then summarizes all of them
 * into one report in the grid's run directory (`data/runs/<stamp>-grid-…/`) and prints Table 1.
 * Failed tasks are listed with their log and error line; `--resubmit-failed <run dir>` reruns only
 * those (what they had finished is cached). The last stdout line is a JSON summary; the exit status
 * is 1 when a task failed.
 * @module
 */

import { join, resolve } from "node:path";
import { BACKEND_ENV, initBackend, requestedBackend } from "../numerics/backend.ts";
import { helpText } from "../core/cli.ts";
import { formatError, type PipelineError, toPipelineError } from "../core/errors.ts";
import { checkGridPermissions, taskPermissions, workerPermissions, workerTask } from "../grid/permissions.ts";
import {
  expandGrid,
  GRID_OPTIONS,
  type GridSpec,
  type GridTask,
  parseGridArgs,
  shellQuote,
  taskCommand,
  type TaskOutcome,
} from "../grid/spec.ts";
import { failedIndices, type GridRecord, type GridStatus, readGrid } from "../grid/record.ts";
import { runLocal } from "../grid/local.ts";
import { runSlurm, slurmScript } from "../grid/slurm_executor.ts";
import { writeJsonAtomic } from "../core/atomic.ts";
import { fileMetricsLog } from "../core/metrics.ts";
import { presetConfig, runStudy, type StudyResult, withSeed } from "../study/obd.ts";
import { consoleProgress } from "../core/progress.ts";
import { locateTeacherSource } from "../stages/teacher.ts";
import { table1Path, writeStudyReport } from "../report/report.ts";
import { createRuntime } from "../core/runtime.ts";
import { exitWithError, isError, openRun, runCommand } from "./common.ts";

const USAGE =
  "deno task grid --datasets a,b --methods dbc,avpbc [--seeds 0,1,2] [options]  |  deno task grid --resubmit-failed <run dir>";
const JOB_NAME = "obd-grid";
const log = (line: string) => console.error(line);

async function main(args: string[]): Promise<void> {
  const request = parseGridArgs(args);
  if (isError(request)) exitWithError(request);
  if (request.mode === "help") {
    console.log(helpText(USAGE, GRID_OPTIONS));
    return;
  }

  // The grid: a new one, or the recorded one whose failed tasks are resubmitted.
  let record: GridRecord;
  let status: GridStatus;
  let spec: GridSpec;
  let dir: string;
  let indices: number[];
  if (request.mode === "new") {
    spec = request.spec;
    const own = checkGridPermissions(spec); // before anything is created or run
    if (own) exitWithError(own);
    // A teacher file every task would import: refused once, here, if missing or damaged.
    const config = presetConfig(spec.preset, spec.set);
    if (!isError(config) && !["train", "auto"].includes(config.teacher.source)) {
      await locateTeacherSource(config.teacher.source).catch((e) =>
        exitWithError(toPipelineError(e, "teacher"))
      );
    }
    const tasks = expandGrid(spec);
    dir = openRun("grid").dir;
    record = { spec, tasks: tasks.map((t) => ({ ...t, command: [] })), createdAt: new Date().toISOString() };
    status = { attempts: [], outcomes: {} };
    indices = tasks.map((t) => t.index);
  } else {
    const read = await readGrid(request.dir);
    if (isError(read)) exitWithError(read);
    ({ record, status } = read);
    const o = request.overrides;
    spec = {
      ...record.spec,
      ...(o.executor ? { executor: o.executor } : {}),
      ...(o.workers ? { workers: o.workers } : {}),
      slurm: { ...record.spec.slurm, ...o.slurm },
    };
    dir = request.dir;
    indices = failedIndices(record, status);
    const own = checkGridPermissions(spec);
    if (own) exitWithError(own);
    log(
      `[grid] ${dir}: ${indices.length} of ${record.tasks.length} task(s) to resubmit${
        indices.length ? `: ${indices.join(", ")}` : ""
      }`,
    );
  }
  const backendName = requestedBackend(spec.backend, Deno.env.get(BACKEND_ENV));
  if (isError(backendName)) exitWithError(backendName);
  const pipelineFlags = taskPermissions(
    await Deno.readTextFile(new URL("../deno.json", import.meta.url)),
    workerTask(backendName),
  );
  const metrics = fileMetricsLog(join(dir, "metrics.jsonl"));
  // Commands are rebuilt with this Deno (its path may have changed since the grid was recorded).
  const commands = new Map(
    record.tasks.map((t) =>
      [t.index, taskCommand(Deno.execPath(), workerPermissions(pipelineFlags, spec), t, dir)] as const
    ),
  );
  if (request.mode === "new") {
    record = { ...record, tasks: record.tasks.map((t) => ({ ...t, command: commands.get(t.index)! })) };
    await writeJsonAtomic(join(dir, "grid.json"), record);
    await writeJsonAtomic(join(dir, "status.json"), status);
  }
  const selected: GridTask[] = record.tasks.filter((t) => indices.includes(t.index));
  const attempt = status.attempts.length + 1;
  const logDir = resolve(dir, "tasks");
  log(
    `[grid] ${record.tasks.length} task(s): ${spec.datasets.join(",")} × ${spec.methods.join(",")} × seeds ${
      spec.seeds.join(",")
    }; preset ${spec.preset}${
      spec.set.length ? ` with ${spec.set.join(" ")}` : ""
    }; cache ${spec.cacheDir}; executor ${spec.executor}; run ${dir}`,
  );

  if (request.dryRun) {
    if (spec.executor === "slurm" && selected.length) {
      console.log(
        slurmScript(spec, record.tasks, commands, indices, { logDir, chdir: Deno.cwd(), jobName: JOB_NAME }),
      );
    } else {
      for (const t of selected) console.log(commands.get(t.index)!.map(shellQuote).join(" "));
    }
    log(`[grid] dry run: nothing was ${spec.executor === "slurm" ? "submitted" : "run"}`);
    metrics.close();
    return;
  }

  let saving = Promise.resolve();
  const save = (outcome?: TaskOutcome, attemptInfo?: GridStatus["attempts"][number]) => {
    status = {
      attempts: attemptInfo ? [...status.attempts, attemptInfo] : status.attempts,
      outcomes: outcome ? { ...status.outcomes, [outcome.index]: outcome } : status.outcomes,
    };
    const snapshot = status;
    saving = saving.then(() => writeJsonAtomic(join(dir, "status.json"), snapshot));
    return saving;
  };
  metrics.log({ event: "attempt", attempt, executor: spec.executor, indices });
  let outcomes: TaskOutcome[] = [];
  if (selected.length) {
    const startedAt = new Date().toISOString();
    try {
      if (spec.executor === "local") {
        await save(undefined, { attempt, executor: "local", indices, startedAt });
        outcomes = await runLocal(selected, commands, {
          workers: spec.workers,
          logDir,
          attempt,
          report: log,
          onOutcome: (o) => {
            metrics.log({ event: "task", ...o });
            return save(o);
          },
        });
      } else {
        const scriptPath = resolve(dir, `slurm-attempt${attempt}.sh`);
        await Deno.mkdir(logDir, { recursive: true });
        await Deno.writeTextFile(
          scriptPath,
          slurmScript(spec, record.tasks, commands, indices, {
            logDir,
            chdir: Deno.cwd(),
            jobName: JOB_NAME,
          }),
        );
        const ran = await runSlurm(selected, scriptPath, {
          logDir,
          jobName: JOB_NAME,
          attempt,
          report: log,
          onSubmitted: (jobId) => save(undefined, { attempt, executor: "slurm", indices, startedAt, jobId }),
        });
        outcomes = ran.outcomes;
        for (const o of outcomes) {
          metrics.log({ event: "task", ...o });
          await save(o);
        }
      }
    } catch (e) {
      metrics.close();
      exitWithError({ ...toPipelineError(e), stage: "grid" });
    }
  }

  // One report over every task that has succeeded so far (this attempt's and earlier ones).
  const summary = await summarizeGrid(spec, record, status, dir);
  const failed = record.tasks.filter((t) => !status.outcomes[t.index]?.ok).map((t) => ({
    index: t.index,
    dataset: t.dataset,
    method: t.method,
    seed: t.seed,
    error: status.outcomes[t.index]?.error ?? "not run",
    logs: status.outcomes[t.index]?.logs ?? [],
  }));
  for (const f of failed) {
    log(
      `[grid] failed: task ${f.index} (${f.dataset} ${f.method} seed ${f.seed}): ${f.error} — log ${
        f.logs.join(" ") || "none"
      }`,
    );
  }
  if (failed.length) log(`[grid] rerun only these with: deno task grid --resubmit-failed ${dir}`);
  if (summary.table1) console.log(summary.table1);
  const result = {
    grid: dir,
    tasks: record.tasks.length,
    attempt,
    ran: outcomes.length,
    succeeded: record.tasks.length - failed.length,
    failed,
    stagesComputedByTasks: sumCounts(outcomes.map((o) => o.stagesComputed ?? {})),
    stagesComputedBySummary: summary.executions,
    summaryErrors: summary.errors,
    report: summary.files.find((f) => f.endsWith("/report.md")) ?? null,
  };
  metrics.log({ event: "done", ...result });
  metrics.close();
  console.log(JSON.stringify(result));
  if (failed.length || summary.errors.length) Deno.exit(1);
}

function sumCounts(counts: readonly Readonly<Record<string, number>>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const c of counts) for (const [k, n] of Object.entries(c)) out[k] = (out[k] ?? 0) + n;
  return out;
}

/**
 * Runs each (dataset, seed)'s study in this process over the methods whose tasks succeeded — every
 * stage is then a cache hit — and writes one report for all of them into the grid's directory.
 */
async function summarizeGrid(
  spec: GridSpec,
  record: GridRecord,
  status: GridStatus,
  dir: string,
): Promise<{ files: string[]; table1?: string; executions: Record<string, number>; errors: string[] }> {
  const done = record.tasks.filter((t) => status.outcomes[t.index]?.ok);
  if (!done.length) return { files: [], executions: {}, errors: [] };
  const config = presetConfig(spec.preset, spec.set);
  const backendName = requestedBackend(spec.backend, Deno.env.get(BACKEND_ENV));
  if (isError(config) || isError(backendName)) {
    return {
      files: [],
      executions: {},
      errors: [formatError((isError(config) ? config : backendName) as PipelineError)],
    };
  }
  let backend = await initBackend(backendName);
  if (isError(backend) && backendName !== "wasm") {
    // The summary only reads what the tasks cached; the backend matters for a stage it computes.
    log(
      `[grid] summary: backend ${backendName} unavailable here (${
        formatError(backend)
      }); summarizing on wasm`,
    );
    backend = await initBackend("wasm");
  }
  if (isError(backend)) return { files: [], executions: {}, errors: [formatError(backend)] };
  const rt = createRuntime({
    cacheRoot: spec.cacheDir,
    backend: backend.label,
    progress: consoleProgress(),
    report: (l) => log(`  ${l}`),
  });
  const results: StudyResult[] = [];
  const errors: string[] = [];
  for (const dataset of spec.datasets) {
    for (const seed of spec.seeds) {
      const methods = spec.methods.filter((m) =>
        done.some((t) => t.dataset === dataset && t.seed === seed && t.method === m)
      );
      if (!methods.length) continue;
      log(`[grid] summary: ${dataset} seed ${seed}, methods ${methods.join(",")}`);
      const study = await runStudy(rt, dataset, { methods }, withSeed(config, seed))();
      if (study._tag === "Left") errors.push(`${dataset} seed ${seed}: ${formatError(study.left)}`);
      else results.push(study.right);
    }
  }
  const executions = Object.fromEntries(rt.executions);
  if (rt.executions.size) {
    log(
      `[grid] summary: computed stages no task had cached: ${
        JSON.stringify(executions)
      } (an entry a task wrote was missing or failed its checksums, and was recomputed)`,
    );
  }
  if (!results.length) return { files: [], executions, errors };
  try {
    const files = await writeStudyReport(dir, results, {
      runName: dir.split("/").pop()!,
      backend: backend.label,
      config,
    });
    return { files, table1: await Deno.readTextFile(table1Path(dir)), executions, errors };
  } catch (e) {
    return {
      files: [],
      executions,
      errors: [...errors, formatError({ ...toPipelineError(e), stage: "summarize" })],
    };
  }
}

if (import.meta.main) await runCommand(main);
