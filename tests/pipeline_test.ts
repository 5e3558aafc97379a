/**
 * The pipeline on the embedded dataset through the real load stage: cache reuse counted by stage
 * executions, bad input as typed errors that cache nothing, statistics against numpy.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Objective } from "../stages/distill.ts";
import {
  type Method,
  type PipelineConfig,
  PRESETS,
  runStudy,
  type StudyResult,
  withSeed,
} from "../study/obd.ts";
import { studyBaselineRecords, writeStudyReport } from "../report/report.ts";
import type { PipelineError } from "../core/errors.ts";
import { createRuntime } from "../core/runtime.ts";
import {
  EMBEDDED_DATASET,
  loadStage,
  locateDataset,
  normalizeStates,
  type OfflineDataset,
} from "../stages/load.ts";
import { initBackend } from "../numerics/backend.ts";
import { runStage } from "../core/runtime.ts";
import { silentProgress } from "../core/progress.ts";
import { python, REPO_ROOT, runUnderTask } from "./helpers.ts";

await initBackend("wasm");

/** Small enough for a test: a short teacher run and a tiny distillation. */
const small: PipelineConfig = {
  seeds: [0],
  load: { minTransitions: 5_000 },
  // Trained, whatever the quick preset's default source (the shipped teacher when present).
  teacher: { ...PRESETS.quick.teacher, steps: 40, evalEpisodes: 1, checkpointEvery: 20, source: "train" },
  density: PRESETS.quick.density,
  student: { hiddenLayers: 1, width: 16, steps: 3, learningRate: 0.1 },
  distill: {
    ...PRESETS.quick.distill,
    synsetSize: 8,
    outerSteps: 2,
    outerBatches: 1,
    outerBatchSize: 32,
    evalEvery: 0,
  },
  evaluate: {
    ...PRESETS.quick.evaluate,
    run: {
      final: true,
      curve: false,
      ensemble: false,
      architectures: false,
      optimizers: false,
      randomSelection: false,
      bc: false,
    },
    students: 1,
    episodes: 1,
  },
};

async function run(
  cacheRoot: string,
  dataset: string,
  config: PipelineConfig = small,
  force: string[] = [],
  objective: Objective = "avpbc",
) {
  const rt = createRuntime({ cacheRoot, backend: "wasm", force });
  const result = await runStudy(rt, dataset, { methods: [objective] }, config)();
  return { result, counts: Object.fromEntries(rt.executions) };
}

function leftOf(result: { _tag: string }): PipelineError {
  assert.equal(result._tag, "Left", JSON.stringify(result).slice(0, 300));
  return (result as unknown as { left: PipelineError }).left;
}

async function entries(dir: string): Promise<string[]> {
  return await Array.fromAsync(Deno.readDir(dir)).then(
    (es) => es.map((e) => e.name).filter((n) => !n.startsWith(".work-")),
    () => [],
  );
}

Deno.test("stage executions: everything once, then nothing; a change recomputes its stage and what follows", async () => {
  const cache = await Deno.makeTempDir();
  const first = await run(cache, "embedded");
  assert.equal(first.result._tag, "Right", JSON.stringify(first.result).slice(0, 300));
  assert.deepEqual(first.counts, { load: 1, teacher: 1, distill: 1, evaluate: 1 });
  assert.deepEqual((await run(cache, "embedded")).counts, {});
  // A distill change: distill and evaluate.
  const distillChanged = { ...small, distill: { ...small.distill, outerLr: 0.05 } };
  assert.deepEqual((await run(cache, "embedded", distillChanged)).counts, { distill: 1, evaluate: 1 });
  // Last stage: evaluate only.
  const evaluateChanged = { ...small, evaluate: { ...small.evaluate, episodes: 2 } };
  assert.deepEqual((await run(cache, "embedded", evaluateChanged)).counts, { evaluate: 1 });
  // The student is one setting for both: changing it re-distils and re-evaluates.
  const studentChanged = { ...small, student: { ...small.student, steps: 4 } };
  assert.deepEqual((await run(cache, "embedded", studentChanged)).counts, { distill: 1, evaluate: 1 });
  // Middle change: teacher and what follows, not load.
  const teacherChanged = { ...small, teacher: { ...small.teacher, seed: 1 } };
  assert.deepEqual((await run(cache, "embedded", teacherChanged)).counts, {
    teacher: 1,
    distill: 1,
    evaluate: 1,
  });
  // Upstream change: everything.
  const loadChanged = { ...small, load: { minTransitions: 1000 } };
  assert.deepEqual((await run(cache, "embedded", loadChanged)).counts, {
    load: 1,
    teacher: 1,
    distill: 1,
    evaluate: 1,
  });
  // --force one stage: that stage only (its key, and so everything downstream, is unchanged).
  assert.deepEqual((await run(cache, "embedded", small, ["teacher"])).counts, { teacher: 1 });
  // DBC needs no teacher: none runs, and the teacher's config does not enter the distill key.
  assert.deepEqual((await run(cache, "embedded", small, [], "dbc")).counts, { distill: 1, evaluate: 1 });
  assert.deepEqual(
    (await run(cache, "embedded", { ...small, teacher: { ...small.teacher, seed: 5 } }, [], "dbc")).counts,
    {},
  );
  // SDW adds the density stage; its config reaches distill only through the density key.
  const sdw = { ...small, density: { ...small.density, referenceSize: 1000 } };
  assert.deepEqual((await run(cache, "embedded", sdw, [], "sdw")).counts, {
    density: 1,
    distill: 1,
    evaluate: 1,
  });
  const sdwAlpha = { ...sdw, density: { ...sdw.density, alpha: 0.5 } };
  assert.deepEqual((await run(cache, "embedded", sdwAlpha, [], "sdw")).counts, {
    density: 1,
    distill: 1,
    evaluate: 1,
  });
  assert.deepEqual((await run(cache, "embedded", sdw, [], "sdw")).counts, {});
  assert.equal((await entries(join(cache, "load"))).length, 2);
});

Deno.test("states are normalized with mean and std + 1e-3 equal to numpy's over the same file, and normalizeStates is numpy's float32 arithmetic", async () => {
  const located = await locateDataset("embedded", silentProgress);
  const rt = createRuntime({ cacheRoot: await Deno.makeTempDir(), backend: "wasm" });
  const loaded = await runStage(rt, loadStage, {
    file: located.file,
    sha256: located.sha256,
    env: located.env,
    minTransitions: 1,
  }, {})();
  assert.equal(loaded._tag, "Right");
  const d: OfflineDataset = (loaded as { right: { value: OfflineDataset } }).right.value;
  const script = `
import h5py, json, numpy as np
f = h5py.File(${JSON.stringify(EMBEDDED_DATASET.file)}, "r")
o = f["observations"][:].astype(np.float64)
r = f["rewards"][:].astype(np.float64); t = f["terminals"][:]; to = f["timeouts"][:]
ends = np.where(t | to)[0]
starts = np.r_[0, ends[:-1] + 1]
print(json.dumps({"mean": o.mean(0).tolist(), "std": (o.std(0) + 1e-3).tolist(), "n": len(o),
  "returns": [float(r[s:e + 1].sum()) for s, e in zip(starts, ends)]}))`;
  const ref = await python(script);
  assert.equal(d.n, ref.n);
  for (let j = 0; j < d.obsDim; j++) {
    assert.ok(Math.abs(d.stateMean[j] - ref.mean[j]) < 1e-5 * (1 + Math.abs(ref.mean[j])), `mean ${j}`);
    assert.ok(Math.abs(d.stateStd[j] - ref.std[j]) < 1e-5 * (1 + ref.std[j]), `std ${j}`);
  }
  assert.equal(d.episodeReturns.length, ref.returns.length);
  for (let e = 0; e < ref.returns.length; e++) {
    assert.ok(Math.abs(d.episodeReturns[e] - ref.returns[e]) < 1e-3);
  }

  // normalizeStates is NumPy's float32 (s − mean) / std, bit for bit, with the same statistics.
  const rows = 500;
  const mine = normalizeStates(d.observations.subarray(0, rows * d.obsDim), d);
  const numpy = await python(`
import h5py, json, numpy as np
o = h5py.File(${JSON.stringify(EMBEDDED_DATASET.file)}, "r")["observations"][:${rows}].astype(np.float32)
mean = np.array(${JSON.stringify(Array.from(d.stateMean))}, dtype=np.float32)
std = np.array(${JSON.stringify(Array.from(d.stateStd))}, dtype=np.float32)
print(json.dumps(((o - mean) / std).astype(np.float64).ravel().tolist()))`);
  assert.deepEqual(Array.from(mine), numpy);
});

Deno.test("a truncated file is an input error naming it, and nothing is cached", async () => {
  const cache = await Deno.makeTempDir();
  const dir = await Deno.makeTempDir();
  const bytes = await Deno.readFile(EMBEDDED_DATASET.file);
  const truncated = join(dir, "hopper_truncated.hdf5");
  await Deno.writeFile(truncated, bytes.subarray(0, Math.floor(bytes.length / 2)));
  const error = leftOf((await run(cache, truncated)).result);
  assert.equal(error.kind, "input");
  assert.equal(error.stage, "load");
  assert.match(error.message, /hopper_truncated\.hdf5/);
  assert.deepEqual(await entries(join(cache, "load")), []);
});

Deno.test("a dataset smaller than load.minTransitions is refused with the numbers", async () => {
  const cache = await Deno.makeTempDir();
  const error = leftOf(
    (await run(cache, "embedded", { ...small, load: { minTransitions: 1_000_000 } })).result,
  );
  assert.equal(error.kind, "input");
  assert.match(error.message, /39997|1000000|1,000,000/);
  assert.deepEqual(await entries(join(cache, "load")), []);
});

Deno.test("a missing file and an unknown alias are errors that say what to do", async () => {
  const cache = await Deno.makeTempDir();
  const missing = leftOf((await run(cache, "data/nothing-here.hdf5")).result);
  assert.equal(missing.kind, "input");
  assert.match(missing.message, /data\/nothing-here\.hdf5 does not exist/);
  const alias = leftOf((await run(cache, "hopper-medium-replayy")).result);
  assert.equal(alias.kind, "config");
  assert.match(alias.message, /hopper-m-r/);
});

Deno.test("the pipeline command: unknown options, malformed values and unknown stages are one-line errors", async () => {
  const cases: [string[], RegExp][] = [
    [["--bogus"], /^error\[config\]: unknown option '--bogus' — valid options: --method, .*--cache-dir/],
    [
      ["--method", "dbc,avpcb"],
      /^error\[config\]: --method avpcb: no such method — methods: random, dbc, pbc, avpbc, sdw, sdw-pbc/,
    ],
    [
      ["--until", "distil"],
      /^error\[config\]: --until distil: no such stage — stages: load, teacher, density, distill, evaluate, summarize/,
    ],
    [["--seed", "1.5"], /^error\[config\]: --seed 1.5 is not a non-negative integer/],
    [
      ["--set", "load.minTransitions=many"],
      /^error\[config\]: load\.minTransitions=many is not a finite number/,
    ],
    [["--set", "load.minTransitionz=5"], /^error\[config\]: unknown setting "load\.minTransitionz"/],
    [["--force", "distil"], /^error\[config\]: --force distil: no such stage/],
    [["--backend", "cuda"], /^error\[config\]: unknown backend "cuda" from --backend/],
    [["--preset", "huge"], /^error\[config\]: unknown preset "huge"/],
    [
      ["--set", "distill.objective=bogus"],
      /^error\[config\]: --set distill\.objective: a study sets this itself — the objective is the method: choose it with --method/,
    ],
    [
      ["--set", "distill.seed=3"],
      /^error\[config\]: --set distill\.seed: a study sets this itself — .*--seed/,
    ],
    [
      ["--set", "distill.outerSteps=0"],
      /^error\[config\]: distill\.outerSteps = 0 must be a positive integer/,
    ],
    [
      ["--set", "student.width=100000000"],
      /^error\[config\]: student\.width = 100000000 must be an integer from 1 to 4096/,
    ],
    [
      ["--set", "teacher.td3bc.actorLr=-1"],
      /^error\[config\]: teacher\.td3bc\.actorLr = -1 must be a positive number/,
    ],
  ];
  for (const [args, expected] of cases) {
    const { code, stdout, stderr } = await runUnderTask("pipeline", "commands/pipeline.ts", args);
    assert.equal(code, 2, args.join(" "));
    assert.equal(stdout, "");
    assert.equal(stderr.split("\n").length, 1, stderr);
    assert.match(stderr, expected);
  }
  // What needs the data is refused right after loading it: before the teacher, which avpbc needs, trains.
  const cache = await Deno.makeTempDir({ dir: join(REPO_ROOT, "data") });
  try {
    const big = await runUnderTask("pipeline", "commands/pipeline.ts", [
      "--method",
      "avpbc",
      "--set",
      "distill.synsetSize=100000",
      "--cache-dir",
      cache,
      "--run-dir",
      join(cache, "run"),
    ]);
    assert.equal(big.code, 2, big.stderr);
    assert.match(
      big.stderr.split("\n").at(-1)!,
      /^error\[config\]: distill\.synsetSize = 100000 is larger than the dataset \(\d+ transitions/,
    );
    assert.deepEqual(await entries(join(cache, "teacher")), [], "no teacher was trained");
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

/** A study of several methods: baselines once, upstream stages shared, each method its own distill. */
const study: PipelineConfig = {
  ...small,
  evaluate: {
    ...small.evaluate,
    run: { ...small.evaluate.run, randomSelection: true, bc: true },
    randomRepeats: 1,
    bcSteps: 5,
    bcPolicies: 1,
  },
  density: { ...small.density, referenceSize: 1000 },
};

async function runMethods(cacheRoot: string, methods: Method[], config: PipelineConfig = study) {
  const rt = createRuntime({ cacheRoot, backend: "wasm" });
  const result = await runStudy(rt, "embedded", { methods }, config)();
  assert.equal(result._tag, "Right", JSON.stringify(result).slice(0, 300));
  return { study: (result as { right: StudyResult }).right, counts: Object.fromEntries(rt.executions) };
}

Deno.test("a study: shared stages once, cached re-run computes nothing, an evaluation option re-runs only evaluate, a new method only its own stages", async () => {
  const cache = await Deno.makeTempDir();
  const first = await runMethods(cache, ["random", "dbc", "sdw"]);
  assert.deepEqual(first.counts, { load: 1, teacher: 1, density: 1, baselines: 1, distill: 2, evaluate: 2 });
  assert.deepEqual(first.study.runs.map((r) => [r.method, !!r.distilled, !!r.evaluation]), [
    ["random", false, false],
    ["dbc", true, true],
    ["sdw", true, true],
  ]);
  const b = first.study.baselines!.value;
  assert.ok(b.randomSelection && b.bc, "Random selection and BC are scored");
  // The teacher's score is its own stage's evaluation, in the summary's baselines record.
  const records = studyBaselineRecords([first.study, first.study]);
  assert.equal(records.length, 1, "a dataset's baselines appear once");
  assert.deepEqual(
    records[0].teacher!.normalizedScores,
    first.study.teacher!.value.evaluation!.normalizedScores,
  );
  assert.deepEqual((await runMethods(cache, ["random", "dbc", "sdw"])).counts, {});
  // An option of how sets alone are evaluated: the sets' evaluations only, not the baselines.
  const withEnsemble = {
    ...study,
    evaluate: { ...study.evaluate, run: { ...study.evaluate.run, ensemble: true } },
  };
  assert.deepEqual((await runMethods(cache, ["random", "dbc", "sdw"], withEnsemble)).counts, { evaluate: 2 });
  // Students per evaluation are one protocol for every row, Random selection's too.
  const moreStudents = { ...study, evaluate: { ...study.evaluate, students: 2 } };
  assert.deepEqual((await runMethods(cache, ["random", "dbc", "sdw"], moreStudents)).counts, {
    baselines: 1,
    evaluate: 2,
  });
  // Another method: its distill and evaluate only; load, teacher, density and baselines are reused.
  assert.deepEqual((await runMethods(cache, ["random", "dbc", "sdw", "avpbc"])).counts, {
    distill: 1,
    evaluate: 1,
  });
  // The baselines do not depend on which methods are compared: one method alone reuses them.
  assert.deepEqual((await runMethods(cache, ["pbc"])).counts, { distill: 1, evaluate: 1 });
  // Another seed: every distillation again, nothing upstream.
  assert.deepEqual((await runMethods(cache, ["random", "dbc", "sdw"], withSeed(study, 7))).counts, {
    distill: 2,
    evaluate: 2,
  });
  // Several seeds in one study: each method once per seed, the cached seeds reused.
  const seeds = await runMethods(cache, ["random", "dbc"], { ...study, seeds: [0, 7, 8] });
  assert.deepEqual(seeds.counts, { distill: 1, evaluate: 1 });
  assert.deepEqual(seeds.study.runs.map((r) => [r.method, r.seed]), [
    ["random", 0],
    ["random", 7],
    ["random", 8],
    ["dbc", 0],
    ["dbc", 7],
    ["dbc", 8],
  ]);
  // The report has Random selection, both methods and the baselines in Table 1.
  const dir = await Deno.makeTempDir();
  await writeStudyReport(dir, [first.study], { runName: "t", backend: "wasm", config: study });
  const table = await Deno.readTextFile(join(dir, "table1_methods.md"));
  for (const row of ["Random selection", "DBC", "SDW", "BC (whole data)", "Teacher (offline RL)"]) {
    assert.match(table, new RegExp(`\\|${row.replace(/[()]/g, "\\$&")}\\|-?[0-9.]+ \\[`));
  }
});

Deno.test("--until stops after the named stage", async () => {
  const cache = await Deno.makeTempDir();
  const rt = createRuntime({ cacheRoot: cache, backend: "wasm" });
  const result = await runStudy(rt, "embedded", { methods: ["dbc", "avpbc"], until: "teacher" }, study)();
  assert.equal(result._tag, "Right");
  assert.deepEqual(Object.fromEntries(rt.executions), { load: 1, teacher: 1 });
  assert.deepEqual((result as { right: StudyResult }).right.runs.map((r) => r.distilled), [
    undefined,
    undefined,
  ]);
});
