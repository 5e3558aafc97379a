/**
 * `deno task pipeline [dataset] [options]`: the main command. Runs a study of one dataset — load →
 * teacher → density → distill → evaluate for each method, the baselines once — then writes the
 * summary (tables, plots, report.md) into `data/runs/<run>/` and prints Table 1. The dataset is
 * `embedded` (default, offline), a D4RL alias such as `hopper-m-r`, or a path to a D4RL-layout HDF5
 * file. The last line on stdout is one JSON object describing the run.
 * @module
 */

import { d4rlAliases } from "../datasets/d4rl.ts";
import { requestedMetaGradientThreads } from "../stages/distill/metagradient_pool.ts";
import { meanScore } from "../stages/scores.ts";
import { datasetMeanScore, scoreScale } from "../stages/load.ts";
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
  validateStudy,
  withSeed,
} from "../study/obd.ts";
import { table1Path, writeStudyReport } from "../report/report.ts";
import { writeStudySynsets } from "../report/synsets.ts";
import { createRuntime } from "../core/runtime.ts";
import { checkedOutput, exitWithError, isError, openRun, runCommand } from "./common.ts";

const OPTIONS = {
  method: {
    type: "string",
    multiple: true,
    help: `method(s) to compare, repeatable or comma-separated: ${METHODS.join(", ")} (default ${
      DEFAULT_METHODS.join(",")
    })`,
  },
  preset: { type: "string", help: `settings preset: ${Object.keys(PRESETS).join(", ")} (default quick)` },
  seed: {
    type: "string",
    help:
      "one distillation seed (teacher, densities and baselines are shared by seeds; default the preset's seeds)",
  },
  seeds: {
    type: "string",
    help: "several distillation seeds, comma-separated, e.g. 0,1,2 (the same as --set seeds=0,1,2)",
  },
  set: { type: "string", multiple: true, help: "override one setting, e.g. --set distill.outerSteps=500" },
  teacher: {
    type: "string",
    help:
      "where the teacher comes from: train, auto (the quick preset's default: the embedded dataset's shipped teacher when present, else train), a CORL / authors' .pt checkpoint, or a saved teacher directory (the same as --set teacher.source=…)",
  },
  until: { type: "string", help: `stop after this stage: ${UNTIL_STAGES.join(", ")} (default summarize)` },
  force: {
    type: "string",
    multiple: true,
    help: `recompute a stage even if cached (${STAGE_NAMES.join(", ")})`,
  },
  "cache-dir": { type: "string", help: "where stage outputs are cached (default data/cache)" },
  "run-dir": {
    type: "string",
    help: "where this run's log and report go (default a new data/runs/<stamp>-<dataset>-…)",
  },
  backend: { type: "string", help: `tensor backend: wasm (default), cpu, tensorflow (or ${BACKEND_ENV})` },
  help: { type: "boolean", help: "show this help" },
} as const;
const USAGE = "deno task pipeline [embedded|<d4rl alias>|<file.hdf5>] [options]";

/** `--method a,b --method c` → the methods, or the first unknown name as an error. */
function parseMethods(values: readonly string[] | undefined) {
  const names = (values ?? []).flatMap((v) => v.split(",")).map((s) => s.trim()).filter(Boolean);
  const unknown = names.find((n) => !(METHODS as readonly string[]).includes(n));
  if (unknown) {
    return pipelineError("config", `--method ${unknown}: no such method`, `methods: ${METHODS.join(", ")}`);
  }
  return names.length ? [...new Set(names)] as Method[] : [...DEFAULT_METHODS];
}

async function main(args: string[]): Promise<void> {
  const parsed = parseCommandLine(args, OPTIONS, 1);
  if (isError(parsed)) exitWithError(parsed);
  if (parsed.values.help) {
    console.log(
      helpText(USAGE, OPTIONS) +
        `\ndatasets: embedded, ${
          d4rlAliases().join(", ")
        }, minari:<id> (e.g. minari:mujoco/hopper/medium-v0), a Minari dataset directory, or a D4RL-layout .hdf5 file\n`,
    );
    return;
  }
  const v = parsed.values;
  const presetName = (v.preset as string | undefined) ?? "quick";
  const teacherSource = v.teacher as string | undefined;
  let config = presetConfig(presetName, [
    ...((v.set as string[] | undefined) ?? []),
    ...(teacherSource !== undefined ? [`teacher.source=${teacherSource}`] : []),
  ]);
  if (isError(config)) exitWithError(config);
  if (v.seed !== undefined && v.seeds !== undefined) {
    exitWithError(pipelineError("config", "--seed and --seeds both given", "give one of them"));
  }
  if (v.seed !== undefined) {
    const seed = Number(v.seed);
    if (!Number.isInteger(seed) || seed < 0) {
      exitWithError(
        pipelineError("config", `--seed ${v.seed} is not a non-negative integer`, "e.g. --seed 1"),
      );
    }
    config = withSeed(config, seed);
  }
  if (v.seeds !== undefined) {
    const seeds = String(v.seeds).split(",").map((x) => Number(x.trim()));
    if (seeds.length === 0 || seeds.some((x) => !Number.isInteger(x) || x < 0)) {
      exitWithError(
        pipelineError(
          "config",
          `--seeds ${v.seeds} is not a comma-separated list of non-negative integers`,
          "e.g. --seeds 0,1,2",
        ),
      );
    }
    config = { ...config, seeds };
  }
  const methods = parseMethods(v.method as string[] | undefined);
  if (isError(methods)) exitWithError(methods);
  const until = (v.until as string | undefined) ?? "summarize";
  if (!(UNTIL_STAGES as readonly string[]).includes(until)) {
    exitWithError(
      pipelineError("config", `--until ${until}: no such stage`, `stages: ${UNTIL_STAGES.join(", ")}`),
    );
  }
  const force = (v.force as string[] | undefined) ?? [];
  const unknownStage = force.find((s) => !(STAGE_NAMES as readonly string[]).includes(s));
  if (unknownStage) {
    exitWithError(
      pipelineError("config", `--force ${unknownStage}: no such stage`, `stages: ${STAGE_NAMES.join(", ")}`),
    );
  }
  // Every stage's settings are checked before anything starts (the study checks them again, for API users).
  try {
    validateStudy(config, methods);
  } catch (e) {
    exitWithError(toPipelineError(e));
  }
  const backendName = requestedBackend(v.backend as string | undefined, Deno.env.get(BACKEND_ENV));
  if (isError(backendName)) exitWithError(backendName);
  const backend = await initBackend(backendName);
  if (isError(backend)) exitWithError(backend);

  const dataset = parsed.positionals[0] ?? "embedded";
  const cacheRoot = checkedOutput((v["cache-dir"] as string | undefined) ?? "data/cache", "--cache-dir");
  const run = openRun(`pipeline-${dataset.split("/").pop()}`, v["run-dir"] as string | undefined);
  console.error(
    `pipeline: dataset ${dataset}, methods ${methods.join(",")}, preset ${presetName}, seeds ${
      config.seeds.join(",")
    }, backend ${backend.label} (${backend.threads} threads, tfjs ${backend.tfjsVersion}), cache ${cacheRoot}; log ${run.dir}/metrics.jsonl`,
  );
  console.error(
    `config (${presetName}${(v.set as string[] | undefined)?.length ? " with --set" : ""}): ${
      JSON.stringify(config)
    }`,
  );
  run.metrics.log({
    event: "start",
    dataset,
    methods,
    preset: presetName,
    config,
    backend: backend.label,
    threads: backend.threads,
    cacheRoot,
  });
  const threads = requestedMetaGradientThreads();
  const rt = createRuntime({
    cacheRoot,
    backend: backend.label,
    force,
    threads,
    progress: run.progress,
    metrics: run.metrics,
    report: (l) => console.error(`  ${l}`),
  });
  const result = await runStudy(rt, dataset, { methods, until: until as UntilStage }, config)();
  if (result._tag === "Left") {
    run.metrics.log({ event: "failed", error: result.left });
    run.metrics.close();
    exitWithError(result.left);
  }
  const study = result.right;
  const timeouts = study.dataset.manifest.metrics.timeouts;
  if (timeouts !== undefined) console.error(`load: ${dataset}: timeouts ${timeouts}`);
  let synsets: string[] = [];
  try {
    synsets = await writeStudySynsets(run.dir, study, config);
  } catch (e) {
    run.metrics.close();
    exitWithError({ ...toPipelineError(e), stage: "synsets" });
  }
  if (synsets.length) console.error(`  synthetic sets: ${synsets.join(", ")}`);
  let written: string[] = [];
  if (until === "summarize") {
    try {
      written = await writeStudyReport(run.dir, [study], {
        runName: run.dir.split("/").pop()!,
        backend: backend.label,
        config,
      });
    } catch (e) {
      run.metrics.close();
      exitWithError({ ...toPipelineError(e), stage: "summarize" });
    }
    console.log(await Deno.readTextFile(table1Path(run.dir)));
  }
  const d = study.dataset.value;
  const round = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? null : +x.toFixed(2));
  const teacher = study.teacher?.value;
  const baselines = study.baselines?.value;
  const summary = {
    dataset,
    env: d.env,
    transitions: d.n,
    seeds: config.seeds,
    datasetMeanNormalizedReturn: round(datasetMeanScore(d)),
    scores: scoreScale(d),
    teacher: teacher
      ? {
        algorithm: teacher.algorithm,
        source: teacher.source,
        file: study.teacherFile ?? null,
        steps: teacher.training.steps,
        normalizedReturn: round(teacher.evaluation?.meanNormalizedScore),
      }
      : null,
    baselines: baselines
      ? {
        randomSelection: baselines.randomSelection
          ? round(
            baselines.randomSelection.reduce((a, s) => a + meanScore(s), 0) /
              baselines.randomSelection.length,
          )
          : null,
        bc: baselines.bc ? round(meanScore(baselines.bc)) : null,
      }
      : null,
    methods: study.runs.map(({ method, seed, distilled, evaluation }) => ({
      method,
      seed,
      ...(distilled
        ? {
          synsetSize: distilled.value.size,
          outerSteps: distilled.value.curve.length,
          finalOuterLoss: round(distilled.value.curve[distilled.value.curve.length - 1]?.outerLoss),
        }
        : {}),
      ...(evaluation
        ? {
          normalizedReturn: evaluation.value.final ? round(meanScore(evaluation.value.final)) : null,
          curve: (evaluation.value.curve ?? []).map((p) => [p.step, round(meanScore(p.scores))]),
        }
        : {}),
    })),
    synsets,
    stagesComputed: Object.fromEntries(rt.executions),
    report: written.find((f) => f.endsWith("/report.md")) ?? null,
  };
  run.metrics.log({ event: "done", ...summary });
  run.metrics.close();
  console.log(JSON.stringify(summary));
}

if (import.meta.main) await runCommand(main);
