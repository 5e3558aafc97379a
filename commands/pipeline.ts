/**
 * `deno task pipeline [dataset] [options]`: the main command. Runs a study of one dataset — load →
 * teacher → density → distill → evaluate for each method, the baselines once — then writes the
 * summary (tables, plots, report.md) into `data/runs/<run>/` and prints Table 1. The dataset is
 * `embedded` (default, offline), a D4RL alias such as `hopper-m-r`, or a path to a D4RL-layout HDF5
 * file. The last line on stdout is one JSON object describing the run.
 * @module
 */

import { d4rlAliases } from "../datasets/d4rl.ts";
import { datasetMeanScore } from "../stages/load.ts";
import { BACKEND_ENV, initBackend, requestedBackend } from "../numerics/backend.ts";
import { helpText, parseCommandLine } from "../core/cli.ts";
import { pipelineError, toPipelineError } from "../core/errors.ts";
import {
  DEFAULT_METHODS,
  type Method,
  METHODS,
  presetConfig,
  PRESETS,
  runStudy,
  STAGE_NAMES,
  UNTIL_STAGES,
  type UntilStage,
  withSeed,
} from "../study/obd.ts";
import { table1Path, writeStudyReport } from "../report/report.ts";
import { createRuntime } from "../core/runtime.ts";
import { exitWithError, isError, openRun } from "./common.ts";

const OPTIONS = {
  method: {
    type: "string",
    multiple: true,
    help: `method(s) to compare, repeatable or comma-separated: ${METHODS.join(", ")} (default ${DEFAULT_METHODS.join(",")})`,
  },
  preset: { type: "string", help: `settings preset: ${Object.keys(PRESETS).join(", ")} (default quick)` },
  seed: { type: "string", help: "distillation seed (teacher, densities and baselines are shared by seeds; default the preset's)" },
  set: { type: "string", multiple: true, help: "override one setting, e.g. --set distill.outerSteps=500" },
  until: { type: "string", help: `stop after this stage: ${UNTIL_STAGES.join(", ")} (default summarize)` },
  force: { type: "string", multiple: true, help: `recompute a stage even if cached (${STAGE_NAMES.join(", ")})` },
  "cache-dir": { type: "string", help: "where stage outputs are cached (default data/cache)" },
  "run-dir": { type: "string", help: "where this run's log and report go (default a new data/runs/<stamp>-<dataset>-…)" },
  backend: { type: "string", help: `tensor backend: wasm (default), cpu, tensorflow (or ${BACKEND_ENV})` },
  help: { type: "boolean", help: "show this help" },
} as const;
const USAGE = "deno task pipeline [embedded|<d4rl alias>|<file.hdf5>] [options]";

/** `--method a,b --method c` → the methods, or the first unknown name as an error. */
function parseMethods(values: readonly string[] | undefined) {
  const names = (values ?? []).flatMap((v) => v.split(",")).map((s) => s.trim()).filter(Boolean);
  const unknown = names.find((n) => !(METHODS as readonly string[]).includes(n));
  if (unknown) return pipelineError("config", `--method ${unknown}: no such method`, `methods: ${METHODS.join(", ")}`);
  return names.length ? [...new Set(names)] as Method[] : [...DEFAULT_METHODS];
}

async function main(args: string[]): Promise<void> {
  const parsed = parseCommandLine(args, OPTIONS, 1);
  if (isError(parsed)) exitWithError(parsed);
  if (parsed.values.help) {
    console.log(helpText(USAGE, OPTIONS) + `\ndatasets: embedded, ${d4rlAliases().join(", ")}, or a path\n`);
    return;
  }
  const v = parsed.values;
  const presetName = (v.preset as string | undefined) ?? "quick";
  let config = presetConfig(presetName, (v.set as string[] | undefined) ?? []);
  if (isError(config)) exitWithError(config);
  if (v.seed !== undefined) {
    const seed = Number(v.seed);
    if (!Number.isInteger(seed) || seed < 0) exitWithError(pipelineError("config", `--seed ${v.seed} is not a non-negative integer`, "e.g. --seed 1"));
    config = withSeed(config, seed);
  }
  const methods = parseMethods(v.method as string[] | undefined);
  if (isError(methods)) exitWithError(methods);
  const until = (v.until as string | undefined) ?? "summarize";
  if (!(UNTIL_STAGES as readonly string[]).includes(until)) {
    exitWithError(pipelineError("config", `--until ${until}: no such stage`, `stages: ${UNTIL_STAGES.join(", ")}`));
  }
  const force = (v.force as string[] | undefined) ?? [];
  const unknownStage = force.find((s) => !(STAGE_NAMES as readonly string[]).includes(s));
  if (unknownStage) exitWithError(pipelineError("config", `--force ${unknownStage}: no such stage`, `stages: ${STAGE_NAMES.join(", ")}`));
  const backendName = requestedBackend(v.backend as string | undefined, Deno.env.get(BACKEND_ENV));
  if (isError(backendName)) exitWithError(backendName);
  const backend = await initBackend(backendName);
  if (isError(backend)) exitWithError(backend);

  const dataset = parsed.positionals[0] ?? "embedded";
  const cacheRoot = (v["cache-dir"] as string | undefined) ?? "data/cache";
  const run = openRun(`pipeline-${dataset.split("/").pop()}`, v["run-dir"] as string | undefined);
  console.error(
    `pipeline: dataset ${dataset}, methods ${methods.join(",")}, preset ${presetName}, seed ${config.distill.seed}, backend ${backend.label} (${backend.threads} threads, tfjs ${backend.tfjsVersion}), cache ${cacheRoot}; log ${run.dir}/metrics.jsonl`,
  );
  console.error(`config (${presetName}${(v.set as string[] | undefined)?.length ? " with --set" : ""}): ${JSON.stringify(config)}`);
  run.metrics.log({ event: "start", dataset, methods, preset: presetName, config, backend: backend.label, threads: backend.threads, cacheRoot });
  const rt = createRuntime({ cacheRoot, backend: backend.label, force, progress: run.progress, metrics: run.metrics, report: (l) => console.error(`  ${l}`) });
  const result = await runStudy(rt, dataset, { methods, until: until as UntilStage }, config)();
  if (result._tag === "Left") {
    run.metrics.log({ event: "failed", error: result.left });
    run.metrics.close();
    exitWithError(result.left);
  }
  const study = result.right;
  let written: string[] = [];
  if (until === "summarize") {
    try {
      written = await writeStudyReport(run.dir, [study], { runName: run.dir.split("/").pop()!, backend: backend.label, config });
    } catch (e) {
      run.metrics.close();
      exitWithError({ ...toPipelineError(e), stage: "summarize" });
    }
    console.log(await Deno.readTextFile(table1Path(run.dir)));
  }
  const d = study.dataset.value;
  const round = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? null : +x.toFixed(2));
  const teacher = study.teacher?.value;
  const baselines = study.baselines?.value.baselines;
  const summary = {
    dataset,
    env: d.env,
    transitions: d.n,
    seed: config.distill.seed,
    datasetMeanNormalizedReturn: round(datasetMeanScore(d)),
    teacher: teacher ? { algorithm: teacher.algorithm, steps: teacher.training.steps, normalizedReturn: round(teacher.evaluation?.meanNormalizedScore) } : null,
    baselines: baselines
      ? Object.fromEntries(Object.entries(baselines).map(([name, score]) => [name, round(score?.meanNormalizedScore)]))
      : null,
    methods: study.runs.map(({ method, distilled, evaluation }) => ({
      method,
      ...(distilled
        ? {
          synsetSize: distilled.value.size,
          outerSteps: distilled.value.curve.length,
          finalOuterLoss: round(distilled.value.curve[distilled.value.curve.length - 1]?.outerLoss),
          curve: distilled.value.curve.filter((p) => p.evaluation).map((p) => [p.step, round(p.evaluation!.meanNormalizedScore)]),
        }
        : {}),
      ...(evaluation ? { evaluation: Object.fromEntries(Object.entries(evaluation.manifest.metrics).filter(([k]) => k.startsWith("normalizedScore.")).map(([k, x]) => [k.slice(16), typeof x === "number" ? round(x) : x])) } : {}),
    })),
    stagesComputed: Object.fromEntries(rt.executions),
    report: written.find((f) => f.endsWith("/report.md")) ?? null,
  };
  run.metrics.log({ event: "done", ...summary });
  run.metrics.close();
  console.log(JSON.stringify(summary));
}

if (import.meta.main) await main(Deno.args);
