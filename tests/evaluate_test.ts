/**
 * Students and the evaluate and baselines stages: refusals of bad sets and configs before any work,
 * the ensemble and random-selection semantics, the autodiff trainer against the hand-derived inner
 * loop, every Table 2 student learning, common random numbers across methods, and both stages
 * through the runtime on the embedded dataset (small networks, few episodes).
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { createRuntime, runStage } from "../core/runtime.ts";
import { standaloneContext } from "../core/stage.ts";
import { evaluatePolicy } from "../envs/rollout.ts";
import { initBackend } from "../numerics/backend.ts";
import { disposeMlp, initMlpWeights, mlpTensors } from "../numerics/mlp.ts";
import { Rng } from "../numerics/random.ts";
import {
  type BaselinesConfig,
  baselinesStage,
  evaluateBaselines,
  table4BcSteps,
  validateBaselinesConfig,
} from "../stages/baselines.ts";
import type { DistilledSet } from "../stages/distill.ts";
import {
  evaluate,
  evaluateStage,
  type EvaluationReport,
  PAPER_EVALUATE,
  type SetEvaluationConfig,
  setEvaluationConfig,
  validateSetEvaluationConfig,
} from "../stages/evaluate.ts";
import { episodeSeed, meanScore, RolloutTally, scoreSet, studentSeed } from "../stages/scores.ts";
import {
  disposeStudent,
  ensemblePolicy,
  mlpStudent,
  type Student,
  studentActions,
  type StudentConfig,
  studentProtocol,
  trainStudent,
} from "../stages/student.ts";
import {
  ARCHITECTURE_NAMES,
  fitStudent,
  namedArchitecture,
  namedOptimizer,
  OPTIMIZER_NAMES,
  setPairs,
} from "../stages/student_fit.ts";
import { randomRealSet, type SyntheticSet, validateSyntheticSet } from "../stages/synset.ts";
import { assertFails, loadEmbedded } from "./helpers.ts";

await initBackend("wasm");
const rt = createRuntime({ cacheRoot: await Deno.makeTempDir(), backend: "wasm" });
const datasetArtifact = await loadEmbedded(rt);
const dataset = datasetArtifact.value;

/** A set of real pairs: a valid synthetic set for every test here. */
function smallSet(seed = 5, size = 16): SyntheticSet {
  const { indices: _indices, ...set } = randomRealSet(dataset, size, seed);
  return set;
}

const student: StudentConfig = { hiddenLayers: 1, width: 16, steps: 10, learningRate: 0.1 };
const protocol = studentProtocol(student, "hopper");

/** Tiny networks and few episodes: every evaluation once, in seconds. */
const tiny: SetEvaluationConfig = {
  ...setEvaluationConfig({
    ...PAPER_EVALUATE,
    students: 2,
    episodes: 2,
    ensembleSize: 3,
    variantStudents: 1,
    variantSteps: 10,
  }, student),
};

/** A distilled set of seed `seed` whose step-0 snapshot is Random selection's set of repeat `seed`, and a later one. */
function distilledFrom(seed = 0, size = 16): DistilledSet {
  const start = smallSet(seed, size);
  const later = smallSet(seed + 100, size);
  const curve = [1, 2, 3, 4].map((step) => ({ step, outerLoss: 1 / step, innerLoss: 0.1, gradNorm: 1 }));
  return {
    ...later,
    objective: "avpbc",
    seed,
    curve,
    snapshots: [{ step: 0, states: start.states, actions: start.actions }, {
      step: 2,
      states: later.states,
      actions: later.actions,
    }],
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
  await assertFails(() => validateSetEvaluationConfig({ ...tiny, episodes: 0 }), "config", [
    "evaluate.episodes = 0",
  ]);
  await assertFails(() => validateSetEvaluationConfig({ ...tiny, sgdmMomentum: 1 }), "config", [
    "evaluate.sgdmMomentum = 1",
  ]);
  await assertFails(
    () => validateSetEvaluationConfig({ ...tiny, run: { ...tiny.run, curve: "yes" as never } }),
    "config",
    ["evaluate.run.curve = yes"],
  );
  await assertFails(
    () => validateSetEvaluationConfig({ ...tiny, student: { ...student, hiddenLayers: 0 } }),
    "config",
    ["student.hiddenLayers = 0"],
  );
  const baselines: BaselinesConfig = { ...baselinesFor(2), bcSteps: -1 };
  await assertFails(() => validateBaselinesConfig(baselines), "config", ["evaluate.bcSteps = -1"]);
  // Scoring refuses a NaN set too (it would train NaN students and report a plain bad score).
  await assertFails(
    scoreSet({ ...set, states: nan }, protocol, { students: 1, episodes: 1 }, 0, new RolloutTally()),
    "input",
    ["non-finite"],
  );
});

Deno.test("the stage refuses bad inputs before any work and caches nothing", async () => {
  const cacheRoot = await Deno.makeTempDir();
  const local = createRuntime({ cacheRoot, backend: "wasm" });
  const good = distilledFrom();
  const nan = good.states.slice();
  nan[0] = NaN;
  const nanSnapshot = good.snapshots[1].states.slice();
  nanSnapshot[4] = NaN;
  const cases: [DistilledSet, string][] = [
    [{ ...good, states: nan }, "non-finite value (NaN) in states, row 0, column 0"],
    [
      { ...good, snapshots: [good.snapshots[0], { ...good.snapshots[1], states: nanSnapshot }] },
      "the set at distillation step 2 has a non-finite value",
    ],
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
  const entries = await Array.fromAsync(Deno.readDir(`${cacheRoot}/evaluate`)).catch(() => []);
  assert.deepEqual(entries.filter((e) => !e.name.startsWith(".work-")), [], "no evaluation was cached");
});

Deno.test("an ensemble of identical students acts and scores exactly as the single student; two average", async () => {
  const set = smallSet();
  const protocol = { hidden: [32], steps: 5, learningRate: 0.1, maxAction: 1 };
  const a = trainStudent(set, protocol, new Rng(1)).params;
  const b = trainStudent(set, protocol, new Rng(2)).params;
  const student = (params: typeof a): Student => mlpStudent(params, 1);
  const studentPolicy = (params: typeof a) => ensemblePolicy([student(params)], set);
  try {
    const single = await evaluatePolicy("hopper", studentPolicy(a), 3, 7);
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
    const [pa, pb] = [await studentPolicy(a)(obs, 4), await studentPolicy(b)(obs, 4)];
    const mixed = await ensemblePolicy([student(a), student(b)], set)(obs, 4);
    assert.equal(mixed.length, 12);
    for (let i = 0; i < 12; i++) assert.ok(Math.abs(mixed[i] - (pa[i] + pb[i]) / 2) < 1e-7, `action ${i}`);
    assert.ok(pa.some((v, i) => Math.abs(v - pb[i]) > 1e-3), "the two students differ");
  } finally {
    disposeMlp(a);
    disposeMlp(b);
  }
});

Deno.test("random real pairs: distinct pairs of the dataset in its normalized space, one draw per seed", () => {
  const set = randomRealSet(dataset, 64, 3);
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
  assert.deepEqual(
    Array.from(randomRealSet(dataset, 64, 3).indices),
    Array.from(set.indices),
    "the same seed draws the same pairs",
  );
  assert.notDeepEqual(
    Array.from(randomRealSet(dataset, 64, 4).indices),
    Array.from(set.indices),
    "another repeat draws other pairs",
  );
});

Deno.test("common random numbers: student u of seed k starts alike and meets the same start states whatever the set", async () => {
  assert.notEqual(studentSeed(0, 0), studentSeed(0, 1));
  assert.notEqual(studentSeed(0, 0), studentSeed(1, 0));
  assert.notEqual(studentSeed(0, 0), episodeSeed(0, 0));
  const [a, b] = [smallSet(1), smallSet(2)];
  const size = { students: 2, episodes: 2 };
  const sa = await scoreSet(a, protocol, size, 7, new RolloutTally());
  const again = await scoreSet(a, protocol, size, 7, new RolloutTally());
  assert.deepEqual([again.normalized, again.trainLoss], [sa.normalized, sa.trainLoss], "deterministic");
  const sb = await scoreSet(b, protocol, size, 7, new RolloutTally());
  assert.notDeepEqual(sa.normalized, sb.normalized, "another set scores otherwise");
  // The same start states: a constant policy scores identically under both evaluations' episode seeds.
  const zero = (_s: Float32Array, n: number) => new Float32Array(n * 3);
  for (let u = 0; u < 2; u++) {
    const e1 = await evaluatePolicy("hopper", zero, 2, episodeSeed(7, u));
    const e2 = await evaluatePolicy("hopper", zero, 2, episodeSeed(7, u));
    assert.deepEqual(e1.returns, e2.returns);
  }
});

Deno.test("autodiff SGD on the default MLP equals the hand-derived inner loop", () => {
  const set = smallSet();
  const trained = trainStudent(
    set,
    { hidden: [32, 32], steps: 10, learningRate: 0.1, maxAction: 1 },
    new Rng(11),
  );
  const hand = trained.params;
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
    assert.ok(
      Math.abs(trained.finalLoss - auto.finalLoss) < 1e-5,
      `the inner loop's final loss ${trained.finalLoss} is autodiff's ${auto.finalLoss}`,
    );
  } finally {
    disposeMlp(hand);
    disposeStudent(auto);
  }
});

Deno.test("every Table 2 student trains: the loss falls for each architecture and optimizer", () => {
  const set = smallSet(6, 32);
  const config = tiny;
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

Deno.test("BC steps follow Table 4 of the paper by dataset size", () => {
  assert.equal(table4BcSteps("hopper", 402_000), 80_000);
  assert.equal(table4BcSteps("hopper", 999_906), 50_000);
  assert.equal(table4BcSteps("hopper", dataset.n), 80_000);
  assert.equal(table4BcSteps("walker2d", 2_000_000), 125_000);
  assert.equal(table4BcSteps("halfcheetah", 202_000), 40_000);
});

/** Baselines settings for `repeats` Random selection repeats with the tiny student. */
function baselinesFor(repeats: number): BaselinesConfig {
  return {
    randomSelection: true,
    bc: true,
    students: 2,
    episodes: 2,
    synsetSize: 16,
    randomRepeats: repeats,
    bcSteps: 20,
    bcBatchSize: 64,
    bcLr: 1e-3,
    bcPolicies: 2,
    student,
  };
}

Deno.test("the whole evaluate stage through the runtime: final, curve, ensemble, Table 2, metrics, no leaks, cached", async () => {
  const distilled = distilledFrom();
  const distilledArtifact = {
    ...datasetArtifact,
    stage: "distill",
    key: "set-16",
    value: distilled,
  } as never;
  const before = tf.memory().numTensors;
  const result = await runStage(rt, evaluateStage, tiny, {
    dataset: datasetArtifact,
    distilled: distilledArtifact,
  })();
  assert.equal(result._tag, "Right", JSON.stringify(result).slice(0, 400));
  const { value: report, manifest } =
    (result as { right: { value: EvaluationReport; manifest: { metrics: Record<string, number> } } }).right;
  assert.equal(tf.memory().numTensors, before, "no tensor leaks");
  assert.equal(report.env, "hopper");
  assert.equal(report.synsetSize, 16);
  assert.equal(report.seed, 0);
  assert.equal(report.final!.normalized.length, 2, "students");
  assert.ok(report.final!.normalized.every((u) => u.length === 2), "episodes");
  assert.equal(report.final!.trainLoss!.length, 2);
  assert.deepEqual(report.curve!.map((p) => p.step), [0, 2, 4]);
  assert.equal(report.curve![2].scores, report.final, "the final set is the curve's last point");
  assert.equal(report.ensemble!.members, 3);
  assert.equal(report.ensemble!.normalized.length, 1);
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
  for (const score of [report.final!, report.ensemble!]) {
    // Normalized scores are D4RL's of the raw returns.
    assert.ok(
      Math.abs(score.normalized[0][0] - (100 * (score.returns[0][0] + 20.272305)) / (3234.3 + 20.272305)) <
        1e-9,
    );
  }
  assert.ok(report.throughput.envSteps > 0 && report.throughput.stepsPerSecond > 0);
  assert.equal(manifest.metrics["normalizedScore.final"], meanScore(report.final!));
  // The final set's scores are scoreSet's with the set's seed.
  const direct = await scoreSet(distilled, report.protocol, tiny, 0, new RolloutTally());
  assert.deepEqual(direct.normalized, report.final!.normalized);
  const again = await runStage(rt, evaluateStage, tiny, {
    dataset: datasetArtifact,
    distilled: distilledArtifact,
  })();
  assert.equal(again._tag === "Right" && again.right.fromCache, true);
});

Deno.test("the baselines stage: repeat r is seed r's initial set scored with seed r's students; BC policies; parts independent", async () => {
  const result = await runStage(rt, baselinesStage, baselinesFor(2), { dataset: datasetArtifact })();
  assert.equal(result._tag, "Right", JSON.stringify(result).slice(0, 400));
  const report =
    (result as { right: { value: import("../stages/baselines.ts").BaselinesReport } }).right.value;
  assert.deepEqual(report.randomSelection!.map((s) => s.seed), [0, 1]);
  assert.equal(report.bc!.normalized.length, 2, "one unit per BC policy");
  assert.equal(report.bc!.steps, 20);
  assert.ok(Number.isFinite(report.bc!.finalLoss));
  // Common random numbers with the methods: the step-0 snapshot of a seed-1 distillation is the
  // Random selection set of repeat 1, and the evaluate stage scores it exactly as the baselines did.
  const evaluated = await evaluate({ dataset, distilled: distilledFrom(1) }, {
    ...tiny,
    run: { ...tiny.run, ensemble: false, architectures: false, optimizers: false },
  }, standaloneContext());
  assert.deepEqual(evaluated.curve![0].scores.normalized, report.randomSelection![1].normalized);
  // Turning BC off changes nothing of Random selection.
  const alone = await evaluateBaselines({ dataset }, { ...baselinesFor(2), bc: false }, standaloneContext());
  assert.deepEqual(
    alone.randomSelection!.map((s) => s.normalized),
    report.randomSelection!.map((s) => s.normalized),
  );
  assert.equal(alone.bc, undefined);
  await assertFails(
    evaluateBaselines({ dataset }, { ...baselinesFor(1), synsetSize: dataset.n + 1 }, standaloneContext()),
    "config",
    ["random selection of", "at least that many"],
  );
});
