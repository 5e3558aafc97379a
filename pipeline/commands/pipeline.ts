/**
 * `deno task pipeline [dataset] [options]`: the main command. The dataset is `embedded` (default,
 * offline), a D4RL alias such as `hopper-m-r`, or a path to an HDF5 file in D4RL layout.
 * @module
 */

import { d4rlAliases } from "../../datasets/d4rl.ts";
import { normalizedScore } from "../../envs/locomotion.ts";
import { BACKEND_ENV, initBackend, requestedBackend } from "../backend.ts";
import { helpText, parseCommandLine } from "../cli.ts";
import { applyOverrides } from "../config.ts";
import { pipelineError } from "../errors.ts";
import { type PipelineConfig, PRESETS, runPipeline, STAGE_NAMES } from "../obd.ts";
import { createRuntime } from "../runtime.ts";
import { stageTimings, summarize, writeSummaryFiles } from "../../stages/summarize.ts";
import { toPipelineError } from "../errors.ts";
import { exitWithError, isError, openRun } from "./common.ts";

const OPTIONS = {
  backend: { type: "string", help: `tensor backend: wasm (default), cpu, tensorflow (or ${BACKEND_ENV})` },
  preset: { type: "string", help: `settings preset: ${Object.keys(PRESETS).join(", ")} (default quick)` },
  set: { type: "string", multiple: true, help: "override one setting, e.g. --set load.minTransitions=10000" },
  force: { type: "string", multiple: true, help: `recompute a stage even if cached (${STAGE_NAMES.join(", ")})` },
  help: { type: "boolean", help: "show this help" },
} as const;
const USAGE = "deno task pipeline [embedded|<d4rl alias>|<file.hdf5>] [options]";

async function main(args: string[]): Promise<void> {
  const parsed = parseCommandLine(args, OPTIONS, 1);
  if (isError(parsed)) exitWithError(parsed);
  if (parsed.values.help) {
    console.log(helpText(USAGE, OPTIONS) + `\ndatasets: embedded, ${d4rlAliases().join(", ")}, or a path\n`);
    return;
  }
  const v = parsed.values;
  const presetName = (v.preset as string | undefined) ?? "quick";
  const preset = PRESETS[presetName];
  if (!preset) exitWithError(pipelineError("config", `unknown preset "${presetName}"`, `choose one of ${Object.keys(PRESETS).join(", ")}`));
  const config = applyOverrides<PipelineConfig>(preset, (v.set as string[] | undefined) ?? []);
  if (isError(config)) exitWithError(config);
  const force = (v.force as string[] | undefined) ?? [];
  const unknownStage = force.find((s) => !(STAGE_NAMES as readonly string[]).includes(s));
  if (unknownStage) exitWithError(pipelineError("config", `--force ${unknownStage}: no such stage`, `stages: ${STAGE_NAMES.join(", ")}`));
  const backendName = requestedBackend(v.backend as string | undefined, Deno.env.get(BACKEND_ENV));
  if (isError(backendName)) exitWithError(backendName);
  const backend = await initBackend(backendName);
  if (isError(backend)) exitWithError(backend);

  const dataset = parsed.positionals[0] ?? "embedded";
  const run = openRun(`pipeline-${dataset.split("/").pop()}`);
  console.error(`pipeline: dataset ${dataset}, preset ${presetName}, backend ${backend.label} (${backend.threads} threads, tfjs ${backend.tfjsVersion}); log ${run.dir}/metrics.jsonl`);
  console.error(`config (${presetName}${(v.set as string[] | undefined)?.length ? " with --set" : ""}): ${JSON.stringify(config)}`);
  run.metrics.log({ event: "start", dataset, preset: presetName, config, backend: backend.label, threads: backend.threads });
  const rt = createRuntime({ cacheRoot: "data/cache", backend: backend.label, force, progress: run.progress, metrics: run.metrics, report: (l) => console.error(`  ${l}`) });
  const result = await runPipeline(rt, dataset, config)();
  if (result._tag === "Left") {
    run.metrics.log({ event: "failed", error: result.left });
    run.metrics.close();
    exitWithError(result.left);
  }
  const r = result.right;
  const d = r.dataset.value;
  let written: string[] = [];
  try {
    const summary = summarize({
      runName: run.dir.split("/").pop()!,
      runs: [{ dataset, seed: config.distill.seed, distilled: r.distilled.value, report: r.evaluation.value }],
      backend: backend.label,
      config,
      timings: stageTimings([r.dataset, ...(r.teacher ? [r.teacher] : []), ...(r.density ? [r.density] : []), r.distilled, r.evaluation]),
      density: r.density?.value.weight,
      states: { dataset: d, synthetic: r.distilled.value },
    });
    written = await writeSummaryFiles(run.dir, summary);
  } catch (e) {
    run.metrics.close();
    exitWithError({ ...toPipelineError(e), stage: "summarize" });
  }
  const returns = Array.from(d.episodeReturns);
  const meanReturn = returns.reduce((a, b) => a + b, 0) / Math.max(1, returns.length);
  const distilled = result.right.distilled.value;
  const teacher = result.right.teacher?.value;
  const round = (v: number | undefined) => (v === undefined ? null : +v.toFixed(2));
  const summary = {
    dataset,
    env: d.env,
    transitions: d.n,
    datasetMeanNormalizedReturn: round(normalizedScore(d.env, meanReturn)),
    teacher: teacher ? { algorithm: teacher.algorithm, steps: teacher.training.steps, normalizedReturn: round(teacher.evaluation?.meanNormalizedScore) } : null,
    distill: {
      objective: distilled.objective,
      synsetSize: distilled.size,
      outerSteps: distilled.curve.length,
      finalOuterLoss: round(distilled.curve[distilled.curve.length - 1]?.outerLoss),
      normalizedReturn: round(distilled.finalEvaluation.meanNormalizedScore),
      normalizedReturnStd: round(distilled.finalEvaluation.stdNormalizedScore),
      curve: distilled.curve.filter((p) => p.evaluation).map((p) => [p.step, round(p.evaluation!.meanNormalizedScore)]),
    },
    evaluation: Object.fromEntries(
      Object.entries(r.evaluation.manifest.metrics).filter(([k]) => k.startsWith("normalizedScore.")).map(([k, v]) => [k.slice(16), typeof v === "number" ? round(v) : v]),
    ),
    stagesComputed: Object.fromEntries(rt.executions),
    report: written.find((f) => f.endsWith("/report.md")) ?? null,
  };
  run.metrics.log({ event: "done", ...summary });
  run.metrics.close();
  console.log(JSON.stringify(summary));
}

if (import.meta.main) await main(Deno.args);
