/**
 * The evaluate stage: refusals of bad sets and configs before any work, the ensemble and random
 * selection semantics, the autodiff trainer against the hand-derived inner loop, every Table 2
 * student learning, the paper's "last 5 evaluations" summary, and the whole stage through the
 * runtime on the embedded dataset (small networks, few episodes).
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { evaluatePolicy } from "../envs/rollout.ts";
import { initBackend } from "../numerics/backend.ts";
import { silentProgress } from "../core/progress.ts";
import { createRuntime, runStage } from "../core/runtime.ts";
import type { StageContext } from "../core/stage.ts";
import { disposeMlp, initMlpWeights, mlpTensors } from "../numerics/mlp.ts";
import { Rng } from "../numerics/random.ts";
import type { CurvePoint, DistilledSet } from "../stages/distill.ts";
import {
  ARCHITECTURE_NAMES,
  disposeStudent,
  ensemblePolicy,
  evaluate,
  type EvaluateConfig,
  evaluateStage,
  evaluateSyntheticSet,
  evaluationLog,
  fitStudent,
  lastEvaluations,
  namedArchitecture,
  namedOptimizer,
  OPTIMIZER_NAMES,
  QUICK_EVALUATE,
  randomSelectionSet,
  seedSummary,
  setPairs,
  streamSeed,
  type Student,
  studentActions,
  studentPolicy,
  type SyntheticSet,
  table4BcSteps,
  trainStudent,
  validateEvaluateConfig,
  validateSyntheticSet,
} from "../stages/evaluate.ts";
import type { TeacherArtifact } from "../stages/teacher/model.ts";
import { assertFails, loadEmbedded } from "./helpers.ts";

await initBackend("wasm");
const rt = createRuntime({ cacheRoot: await Deno.makeTempDir(), backend: "wasm" });
const datasetArtifact = await loadEmbedded(rt);
const dataset = datasetArtifact.value;

/** A 16-pair set of real pairs: a valid synthetic set for every test here. */
function smallSet(seed = 5, size = 16): SyntheticSet {
  const { indices: _indices, ...set } = randomSelectionSet(dataset, size, new Rng(seed));
  return set;
}

function context(
  events: Record<string, unknown>[] = [],
  metrics: Record<string, unknown> = {},
): StageContext {
  return {
    progress: silentProgress,
    log: (r) => void events.push(r),
    metric: (name, value) => void (metrics[name] = value),
    backend: "wasm",
    workDir: "/tmp",
  };
}

const evaluation = (score: number) => ({
  students: 1,
  episodesPerStudent: 1,
  meanNormalizedScore: score,
  stdNormalizedScore: 0,
  meanReturn: 0,
  perStudent: [score],
});

/** A distilled set with a hand-made log: evaluations at steps 2 and 4, the final one at 6. */
function distilledFrom(set: SyntheticSet): DistilledSet {
  const curve: CurvePoint[] = [1, 2, 3, 4, 5, 6].map((step) => ({
    step,
    outerLoss: 1 / step,
    innerLoss: 0.1,
    gradNorm: 1,
    ...(step === 2 ? { evaluation: evaluation(10) } : step === 4 ? { evaluation: evaluation(20) } : {}),
  }));
  return { ...set, objective: "avpbc", curve, finalEvaluation: evaluation(36) };
}

/** Tiny networks and few episodes: every evaluation once, in seconds. */
const tiny: EvaluateConfig = {
  ...QUICK_EVALUATE,
  students: 2,
  episodes: 2,
  hiddenLayers: 1,
  width: 16,
  studentSteps: 10,
  ensembleSize: 3,
  variantStudents: 1,
  variantSteps: 10,
  randomRepeats: 2,
  bcSteps: 20,
  bcBatchSize: 64,
  bcPolicies: 1,
};

function fakeTeacher(obsDim = dataset.obsDim, actDim = dataset.actDim): TeacherArtifact {
  const rng = new Rng(9);
  return {
    format: "obd-teacher",
    formatVersion: 1,
    algorithm: "td3bc",
    source: "test",
    env: "hopper",
    obsDim,
    actDim,
    maxAction: 1,
    stateMean: dataset.stateMean,
    stateStd: dataset.stateStd,
    actor: { kind: "deterministic", net: initMlpWeights([obsDim, 16, actDim], rng) },
    critic: initMlpWeights([obsDim + actDim, 16, 1], rng),
    training: { steps: 0, seconds: 0 },
    evaluation: null,
  };
}

Deno.test("bad sets are input errors naming the problem; bad configs name the setting", async () => {
  const set = smallSet();
  validateSyntheticSet(set); // a good set passes
  await assertFails(
    () =>
      validateSyntheticSet({ ...set, size: 0, states: new Float32Array(0), actions: new Float32Array(0) }),
    "input",
    ["is empty (0 pairs)"],
  );
  const nan = set.states.slice();
  nan[3 * 11 + 2] = NaN;
  await assertFails(() => validateSyntheticSet({ ...set, states: nan }), "input", [
    "non-finite value (NaN) in states, row 3, column 2",
  ]);
  const inf = set.actions.slice();
  inf[5] = Infinity;
  await assertFails(() => validateSyntheticSet({ ...set, actions: inf }), "input", [
    "non-finite value (Infinity) in actions, row 1, column 2",
  ]);
  await assertFails(() => validateSyntheticSet({ ...set, env: "ant" as never }), "input", [
    'unknown environment "ant"',
  ]);
  await assertFails(() => validateSyntheticSet({ ...set, env: "walker2d" }), "input", [
    "11-dimensional states and 3-dimensional actions, but walker2d has 17 and 6",
  ]);
  await assertFails(() => validateSyntheticSet(set, { env: "halfcheetah" }), "input", [
    "is for hopper, but the dataset is halfcheetah",
  ]);
  await assertFails(() => validateSyntheticSet({ ...set, states: set.states.slice(1) }), "input", [
    "states holds 175 values, expected 176",
  ]);
  await assertFails(() => validateEvaluateConfig({ ...tiny, episodes: 0 }), "config", [
    "evaluate.episodes = 0",
  ]);
  await assertFails(() => validateEvaluateConfig({ ...tiny, sgdmMomentum: 1 }), "config", [
    "evaluate.sgdmMomentum = 1",
  ]);
  await assertFails(() => validateEvaluateConfig({ ...tiny, bcSteps: -1 }), "config", [
    "evaluate.bcSteps = -1",
  ]);
  await assertFails(
    () => validateEvaluateConfig({ ...tiny, run: { ...tiny.run, bc: "yes" as never } }),
    "config",
    ["evaluate.run.bc = yes"],
  );
  // The original evaluator refuses a NaN set too (it used to train NaN students and report a low score).
  await assertFails(
    evaluateSyntheticSet(
      { ...set, states: nan },
      { hidden: [8], steps: 1, learningRate: 0.1, maxAction: 1 },
      { students: 1, episodes: 1, seed: 0 },
    ),
    "input",
    ["non-finite"],
  );
});

Deno.test("the stage refuses bad inputs before any work and caches nothing", async () => {
  const cacheRoot = await Deno.makeTempDir();
  const local = createRuntime({ cacheRoot, backend: "wasm" });
  const good = distilledFrom(smallSet());
  const nan = good.states.slice();
  nan[0] = NaN;
  const cases: [DistilledSet, string][] = [
    [{ ...good, states: nan }, "non-finite value (NaN) in states, row 0, column 0"],
    [{
      ...good,
      size: 0,
      states: new Float32Array(0),
      rawStates: new Float32Array(0),
      actions: new Float32Array(0),
    }, "is empty"],
    [{ ...good, env: "walker2d", obsDim: 17, actDim: 6 }, "is for walker2d, but the dataset is hopper"],
    [{ ...good, env: "humanoid" as never }, 'unknown environment "humanoid"'],
  ];
  for (const [distilled, message] of cases) {
    const artifact = {
      ...datasetArtifact,
      stage: "distill",
      key: `bad-${message.length}`,
      value: distilled,
    } as never;
    const result = await runStage(local, evaluateStage, tiny, {
      dataset: datasetArtifact,
      distilled: artifact,
    })();
    assert.equal(result._tag, "Left");
    const error = (result as { left: { kind: string; message: string; stage: string } }).left;
    assert.equal(error.kind, "input", error.message);
    assert.equal(error.stage, "evaluate");
    assert.ok(error.message.includes(message), error.message);
  }
  const teacherArtifact = {
    ...datasetArtifact,
    stage: "teacher",
    key: "t17",
    value: fakeTeacher(17, 6),
  } as never;
  const distilledArtifact = { ...datasetArtifact, stage: "distill", key: "good", value: good } as never;
  const wrongTeacher = await runStage(local, evaluateStage, tiny, {
    dataset: datasetArtifact,
    distilled: distilledArtifact,
    teacher: teacherArtifact,
  })();
  assert.equal(wrongTeacher._tag === "Left" && wrongTeacher.left.kind, "input");
  const entries = await Array.fromAsync(Deno.readDir(`${cacheRoot}/evaluate`)).catch(() => []);
  assert.deepEqual(entries.filter((e) => !e.name.startsWith(".work-")), [], "no evaluation was cached");
});

Deno.test("an ensemble of identical students acts and scores exactly as the single student; two average", async () => {
  const set = smallSet();
  const protocol = { hidden: [32], steps: 5, learningRate: 0.1, maxAction: 1 };
  const a = trainStudent(set, protocol, new Rng(1));
  const b = trainStudent(set, protocol, new Rng(2));
  const student = (params: typeof a): Student => ({
    architecture: { kind: "mlp", hidden: [32] },
    params,
    maxAction: 1,
  });
  try {
    const single = await evaluatePolicy("hopper", studentPolicy(a, set, 1), 3, 7);
    const triple = await evaluatePolicy(
      "hopper",
      ensemblePolicy([student(a), student(a), student(a)], set),
      3,
      7,
    );
    assert.deepEqual(triple.returns, single.returns);
    assert.deepEqual(triple.lengths, single.lengths);
    // Two different students: the ensemble's action is the mean of theirs, state by state.
    const obs = dataset.observations.subarray(0, 4 * 11);
    const [pa, pb] = [await studentPolicy(a, set, 1)(obs, 4), await studentPolicy(b, set, 1)(obs, 4)];
    const mixed = await ensemblePolicy([student(a), student(b)], set)(obs, 4);
    assert.equal(mixed.length, 12);
    for (let i = 0; i < 12; i++) assert.ok(Math.abs(mixed[i] - (pa[i] + pb[i]) / 2) < 1e-7, `action ${i}`);
    assert.ok(pa.some((v, i) => Math.abs(v - pb[i]) > 1e-3), "the two students differ");
  } finally {
    disposeMlp(a);
    disposeMlp(b);
  }
});

Deno.test("the random-selection baseline uses real pairs of the dataset, distinct, in its normalized space", () => {
  const set = randomSelectionSet(dataset, 64, new Rng(3));
  assert.equal(new Set(set.indices).size, 64);
  set.indices.forEach((row, r) => {
    assert.deepEqual(
      set.rawStates.subarray(r * 11, r * 11 + 11),
      dataset.observations.subarray(row * 11, row * 11 + 11),
    );
    assert.deepEqual(set.actions.subarray(r * 3, r * 3 + 3), dataset.actions.subarray(row * 3, row * 3 + 3));
    for (let j = 0; j < 11; j++) {
      const expected = (dataset.observations[row * 11 + j] - dataset.stateMean[j]) / dataset.stateStd[j];
      assert.ok(Math.abs(set.states[r * 11 + j] - expected) < 1e-5);
    }
  });
  const other = randomSelectionSet(dataset, 64, new Rng(4));
  assert.notDeepEqual(Array.from(other.indices), Array.from(set.indices), "another repeat draws other pairs");
});

Deno.test("autodiff SGD on the default MLP equals the hand-derived inner loop", () => {
  const set = smallSet();
  const hand = trainStudent(
    set,
    { hidden: [32, 32], steps: 10, learningRate: 0.1, maxAction: 1 },
    new Rng(11),
  );
  const auto = fitStudent(setPairs(set), {
    architecture: { kind: "mlp", hidden: [32, 32] },
    optimizer: { kind: "sgd", learningRate: 0.1 },
    steps: 10,
    maxAction: 1,
  }, new Rng(11));
  try {
    let maxDiff = 0, maxMove = 0;
    const init = mlpTensors(initMlpWeights([11, 32, 32, 3], new Rng(11)));
    hand.forEach((layer, l) => {
      const [h, a, i] = [layer.w.dataSync(), auto.params[l].w.dataSync(), init[l].w.dataSync()];
      for (let k = 0; k < h.length; k++) {
        maxDiff = Math.max(maxDiff, Math.abs(h[k] - a[k]));
        maxMove = Math.max(maxMove, Math.abs(h[k] - i[k]));
      }
    });
    disposeMlp(init);
    assert.ok(maxMove > 1e-3, `training moved the weights (${maxMove})`);
    assert.ok(maxDiff < 1e-5, `hand-derived and autodiff weights differ by ${maxDiff}`);
    assert.ok(auto.finalLoss < auto.initialLoss);
  } finally {
    disposeMlp(hand);
    disposeStudent(auto);
  }
});

Deno.test("every Table 2 student trains: the loss falls for each architecture and optimizer", () => {
  const set = smallSet(6, 32);
  const config = { ...tiny, studentLr: 0.1 };
  const before = tf.memory().numTensors;
  const losses: Record<string, [number, number]> = {};
  for (const name of ARCHITECTURE_NAMES) {
    const s = fitStudent(setPairs(set), {
      architecture: namedArchitecture(name, 32),
      optimizer: namedOptimizer("sgd", config),
      // Deep narrow ReLU nets start slowly under plain SGD: 6 layers of 32 need more than 300 steps.
      steps: 1000,
      maxAction: 1,
    }, new Rng(1));
    losses[name] = [s.initialLoss, s.finalLoss];
    disposeStudent(s);
  }
  for (const name of OPTIMIZER_NAMES) {
    const s = fitStudent(setPairs(set), {
      architecture: namedArchitecture("4-layer", 32),
      optimizer: namedOptimizer(name, config),
      steps: 300,
      maxAction: 1,
    }, new Rng(1));
    losses[name] = [s.initialLoss, s.finalLoss];
    disposeStudent(s);
  }
  for (const [name, [initial, final]] of Object.entries(losses)) {
    assert.ok(Number.isFinite(final) && final < 0.8 * initial, `${name}: loss ${initial} → ${final}`);
  }
  // Same initialization (same rng), so the optimizers start from one loss and end apart.
  assert.equal(losses.adam[0], losses.sgd[0]);
  assert.notEqual(losses.adam[1], losses.adamw[1], "AdamW's weight decay changes the result");
  assert.equal(tf.memory().numTensors, before, "no tensor leaks");
});

Deno.test("the residual student computes h ← h + relu(hW + b) between its first and last layers", () => {
  const student = fitStudent(setPairs(smallSet()), {
    architecture: { kind: "residual", width: 8, blocks: 2 },
    optimizer: { kind: "sgd", learningRate: 0.1 },
    steps: 0,
    maxAction: 2,
  }, new Rng(2));
  try {
    const x = dataset.observations.subarray(0, 11);
    const W = student.params.map((l) => ({
      w: l.w.dataSync(),
      b: l.b.dataSync(),
      shape: l.w.shape as number[],
    }));
    assert.deepEqual(W.map((l) => l.shape), [[11, 8], [8, 8], [8, 8], [8, 3]]);
    const dense = (h: ArrayLike<number>, l: number) =>
      Array.from(
        { length: W[l].shape[1] },
        (_, o) => W[l].b[o] + Array.from(h).reduce((s, v, i) => s + v * W[l].w[i * W[l].shape[1] + o], 0),
      );
    let h = dense(x, 0).map((v) => Math.max(0, v));
    for (const l of [1, 2]) h = h.map((v, i) => v + Math.max(0, dense(h, l)[i]));
    const expected = dense(h, 3).map((v) => 2 * Math.tanh(v));
    const got = tf.tidy(() => studentActions(student, tf.tensor2d(x, [1, 11])).dataSync());
    expected.forEach((v, i) => assert.ok(Math.abs(got[i] - v) < 1e-5, `${got[i]} vs ${v}`));
  } finally {
    disposeStudent(student);
  }
});

Deno.test("the paper's summary: mean of the last 5 logged evaluations, then over seeds", async () => {
  const curve = (scores: number[]) =>
    scores.map((s, i) => ({ step: (i + 1) * 10, evaluation: evaluation(s) }));
  // Seven evaluations, the last one being the final evaluation at step 80 (the curve runs to 80).
  const run1 = {
    curve: [...curve([1, 2, 3, 4, 5, 6]), { step: 70 }, { step: 80 }],
    finalEvaluation: { meanNormalizedScore: 8 },
  };
  const log1 = evaluationLog(run1);
  assert.deepEqual(log1.map((p) => p.step), [10, 20, 30, 40, 50, 60, 80]);
  const s1 = lastEvaluations(log1, 5);
  assert.equal(s1.used, 5);
  assert.equal(s1.mean, (3 + 4 + 5 + 6 + 8) / 5);
  const run2 = { curve: curve([10, 20]), finalEvaluation: { meanNormalizedScore: 20 } }; // final at step 20: logged once
  const log2 = evaluationLog(run2);
  assert.deepEqual(log2, [{ step: 10, score: 10 }, { step: 20, score: 20 }]);
  const summary = seedSummary([log1, log2], 5);
  assert.equal(summary.seeds, 2);
  assert.deepEqual(summary.perSeed, [5.2, 15]);
  assert.equal(summary.mean, (5.2 + 15) / 2);
  assert.ok(Math.abs(summary.std - 4.9) < 1e-12);
  await assertFails(() => seedSummary([log1, []]), "input", ["run 1 logged no evaluation"]);
});

Deno.test("BC steps follow Table 4 of the paper by dataset size", () => {
  assert.equal(table4BcSteps("hopper", 402_000), 80_000);
  assert.equal(table4BcSteps("hopper", 999_906), 50_000);
  assert.equal(table4BcSteps("hopper", dataset.n), 80_000);
  assert.equal(table4BcSteps("walker2d", 2_000_000), 125_000);
  assert.equal(table4BcSteps("halfcheetah", 202_000), 40_000);
});

Deno.test("the whole stage through the runtime: every evaluation, paired references, metrics, no leaks, cached", async () => {
  const distilled = distilledFrom(smallSet());
  const distilledArtifact = {
    ...datasetArtifact,
    stage: "distill",
    key: "set-16",
    value: distilled,
  } as never;
  const teacherArtifact = { ...datasetArtifact, stage: "teacher", key: "t", value: fakeTeacher() } as never;
  const before = tf.memory().numTensors;
  const result = await runStage(rt, evaluateStage, tiny, {
    dataset: datasetArtifact,
    distilled: distilledArtifact,
    teacher: teacherArtifact,
  })();
  assert.equal(result._tag, "Right", JSON.stringify(result).slice(0, 400));
  const { value: report, manifest } = (result as {
    right: {
      value: import("../stages/evaluate.ts").EvaluationReport;
      manifest: { metrics: Record<string, number> };
    };
  }).right;
  assert.equal(tf.memory().numTensors, before, "no tensor leaks");
  assert.equal(report.env, "hopper");
  assert.equal(report.synsetSize, 16);
  assert.deepEqual(report.curve.log.map((p) => p.step), [2, 4, 6]);
  assert.equal(report.curve.mean, (10 + 20 + 36) / 3);
  assert.equal(report.plain!.units, 2);
  assert.equal(report.plain!.normalizedScores.length, 4);
  assert.equal(report.ensemble!.members, 3);
  assert.equal(report.ensemble!.normalizedScores.length, 2);
  assert.deepEqual(report.architectures!.map((v) => v.name), [
    "2-layer",
    "3-layer",
    "4-layer",
    "5-layer",
    "6-layer",
    "residual",
  ]);
  assert.deepEqual(report.optimizers!.map((v) => v.name), ["sgd", "adam", "adamw", "sgdm"]);
  assert.deepEqual(
    report.optimizers![0].score,
    report.architectures![2].score,
    "the reference student is shared",
  );
  assert.equal(report.architectures![5].architecture.kind, "residual");
  assert.equal(report.baselines.randomSelection!.units, 2);
  assert.equal(report.baselines.bc!.steps, 20);
  assert.equal(report.baselines.teacher!.units, 1);
  for (
    const score of [
      report.plain!,
      report.ensemble!,
      report.baselines.randomSelection!,
      report.baselines.bc!,
      report.baselines.teacher!,
    ]
  ) {
    assert.ok(Number.isFinite(score.meanNormalizedScore) && score.meanReturn > -100, score.method);
    // Normalized scores are D4RL's of the raw returns.
    assert.ok(
      Math.abs(score.normalizedScores[0] - (100 * (score.returns[0] + 20.272305)) / (3234.3 + 20.272305)) <
        1e-9,
    );
  }
  assert.ok(report.throughput.envSteps > 0 && report.throughput.stepsPerSecond > 0);
  assert.equal(manifest.metrics["normalizedScore.plain"], report.plain!.meanNormalizedScore);
  assert.equal(manifest.metrics["curveLast5"], report.curve.mean);
  // Plain is the original evaluator under the plain stream: the distill stage's numbers and ours agree.
  const direct = await evaluateSyntheticSet(distilled, report.protocol, {
    students: 2,
    episodes: 2,
    seed: streamSeed(tiny.seed, "plain"),
  });
  assert.equal(direct.meanNormalizedScore, report.plain!.meanNormalizedScore);
  const again = await runStage(rt, evaluateStage, tiny, {
    dataset: datasetArtifact,
    distilled: distilledArtifact,
    teacher: teacherArtifact,
  })();
  assert.equal(again._tag === "Right" && again.right.fromCache, true);
});

Deno.test("parts are independent streams; a run without a teacher logs the skip", async () => {
  const distilled = distilledFrom(smallSet());
  const only = (run: Partial<EvaluateConfig["run"]>): EvaluateConfig => ({
    ...tiny,
    run: {
      plain: false,
      ensemble: false,
      architectures: false,
      optimizers: false,
      randomSelection: false,
      bc: false,
      teacher: false,
      ...run,
    },
  });
  const events: Record<string, unknown>[] = [];
  const alone = await evaluate({ dataset, distilled }, only({ plain: true, teacher: true }), context(events));
  const withOthers = await evaluate(
    { dataset, distilled },
    only({ plain: true, randomSelection: true }),
    context(),
  );
  assert.deepEqual(
    alone.plain!.returns,
    withOthers.plain!.returns,
    "turning random selection on does not change plain",
  );
  assert.ok(events.some((e) => e.event === "skipped" && e.method === "teacher"));
  assert.equal(alone.baselines.teacher, undefined);
  assert.equal(alone.architectures, undefined);
  // Optimizers alone still compute their SGD reference.
  const optimizers = await evaluate({ dataset, distilled }, only({ optimizers: true }), context());
  assert.deepEqual(optimizers.optimizers!.map((v) => v.name), ["sgd", "adam", "adamw", "sgdm"]);
});
