/** ARS building blocks and local collection: statistics, the update rule, rollouts, datasets. */
import assert from "node:assert/strict";
import { arsUpdate, emptyTransitions, pushTransition, rollouts, RunningStats } from "../datasets/ars.ts";
import { collect, defaultCollectConfig, subsampleEpisodes } from "../datasets/collect.ts";
import { VecLocomotionEnv } from "../envs/locomotion.ts";
import { silentProgress } from "../core/progress.ts";
import { Rng } from "../numerics/random.ts";

Deno.test("RunningStats merged batch by batch equals the statistics of all the data", () => {
  const rng = new Rng(3);
  const data = Array.from(
    { length: 3 },
    (_, b) => Array.from({ length: 5 + 7 * b }, () => [rng.normal() * 2 + 1, rng.uniform()]),
  );
  const stats = new RunningStats(2);
  for (const batch of data) {
    const n = batch.length;
    const mean = [0, 1].map((j) => batch.reduce((s, x) => s + x[j], 0) / n);
    const m2 = [0, 1].map((j) => batch.reduce((s, x) => s + (x[j] - mean[j]) ** 2, 0));
    stats.merge(n, mean, m2);
  }
  const all = data.flat();
  const mean = [0, 1].map((j) => all.reduce((s, x) => s + x[j], 0) / all.length);
  const std = [0, 1].map((j) => Math.sqrt(all.reduce((s, x) => s + (x[j] - mean[j]) ** 2, 0) / all.length));
  assert.equal(stats.count, all.length);
  for (let j = 0; j < 2; j++) {
    assert.ok(Math.abs(stats.mean[j] - mean[j]) < 1e-12);
    assert.ok(Math.abs(stats.std()[j] - std[j]) < 1e-12);
  }
  assert.deepEqual(Array.from(new RunningStats(2).std()), [1, 1], "no data: identity normalization");
});

Deno.test("arsUpdate moves along the kept directions by α/(b σ_R) (r+ − r−)", () => {
  const weights = new Float64Array([0, 0]);
  const directions = [new Float64Array([1, 0]), new Float64Array([0, 1]), new Float64Array([1, 1])];
  const plus = [3, 0, 1];
  const minus = [1, 0, 0];
  // max(r+, r−): 3, 0, 1 → top 2 are directions 0 and 2; kept returns 3,1,1,0 → σ_R = sqrt(1.1875)
  const sigma = arsUpdate(weights, directions, plus, minus, {
    directions: 3,
    topDirections: 2,
    stepSize: 0.5,
    noise: 0.1,
    rewardShift: 0,
  });
  assert.ok(Math.abs(sigma - Math.sqrt(1.1875)) < 1e-12);
  const scale = 0.5 / (2 * sigma);
  assert.ok(Math.abs(weights[0] - scale * (2 + 1)) < 1e-12);
  assert.ok(Math.abs(weights[1] - scale * 1) < 1e-12);
});

Deno.test("rollouts record D4RL-layout transitions consistent with the returns", async () => {
  const env = await VecLocomotionEnv.create("hopper", 3, { seed: 5 });
  try {
    const { obsDim, actDim } = env.spec;
    const rng = new Rng(1);
    const policies = Array.from({ length: 3 }, () => ({
      weights: rng.fillNormal(new Float64Array(actDim * obsDim), 0.3),
      mean: new Float64Array(obsDim),
      std: new Float64Array(obsDim).fill(1),
    }));
    const batch = rollouts(env, policies, { rewardShift: 1, record: true });
    const t = batch.transitions!;
    const total = Array.from(batch.lengths).reduce((a, b) => a + b, 0);
    assert.equal(t.size, total);
    assert.equal(batch.stateCount, total);
    let rewardSum = 0;
    for (let i = 0; i < t.size; i++) rewardSum += t.rewards[i];
    const returnSum = Array.from(batch.returns).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(rewardSum - returnSum) < 1e-3 * Math.max(1, Math.abs(returnSum)));
    assert.ok(
      Math.abs(Array.from(batch.shiftedReturns).reduce((a, b) => a + b, 0) - (returnSum - total)) < 1e-6,
    );
    // Every episode ends in exactly one terminal or timeout, and actions respect the bounds.
    const ends = Array.from(t.terminals).reduce((a, b) => a + b, 0) +
      Array.from(t.timeouts).reduce((a, b) => a + b, 0);
    assert.equal(ends, 3);
    // Episodes are stored contiguously: within one, each next observation is the following row.
    for (let i = 0; i + 1 < t.size; i++) {
      if (t.terminals[i] || t.timeouts[i]) continue;
      assert.deepEqual(
        t.nextObservations.subarray(i * obsDim, (i + 1) * obsDim),
        t.observations.subarray((i + 1) * obsDim, (i + 2) * obsDim),
        `row ${i}`,
      );
    }
    assert.ok(t.actions.subarray(0, t.size * actDim).every((a) => a >= -1 && a <= 1));
  } finally {
    env.dispose();
  }
});

Deno.test("subsampleEpisodes keeps whole episodes in order and at most the requested count", () => {
  const t = emptyTransitions(1, 1);
  const lengths = [3, 5, 2, 4, 6];
  let k = 0;
  for (const length of lengths) {
    for (let i = 0; i < length; i++, k++) {
      pushTransition(t, 1, 1, [k], 0, [0], 0, k, [k + 1], 0, i === length - 1, false);
    }
  }
  const sub = subsampleEpisodes(t, 9, 0, 1, 1);
  assert.ok(sub.size <= 9 && sub.size >= 5);
  const rows = Array.from(sub.observations.subarray(0, sub.size));
  assert.deepEqual(rows, [...rows].sort((a, b) => a - b), "original order");
  const starts = [0, 3, 8, 10, 14];
  const ends = [3, 8, 10, 14, 20];
  for (let e = 0; e < 5; e++) {
    const inside = rows.filter((r) => r >= starts[e] && r < ends[e]).length;
    assert.ok(inside === 0 || inside === lengths[e], `episode ${e} cut`);
  }
  assert.equal(subsampleEpisodes(t, 100, 0, 1, 1), t);
});

Deno.test("collecting is deterministic for a seed and reaches the medium score", async () => {
  // A low medium bar keeps the test short; the full-size run is in the closing note / README.
  const config = {
    ...defaultCollectConfig("hopper", "medium-replay"),
    mediumScore: 8,
    maxIterations: 30,
    transitions: 4000,
  };
  const services = { progress: silentProgress, log: () => {}, workers: 2 };
  const a = await collect(config, services);
  const b = await collect(config, services);
  assert.ok(a.medium && a.medium.evalScore >= 8, `medium score ${a.medium?.evalScore}`);
  assert.ok(a.transitions.size > 0 && a.transitions.size <= 4000);
  assert.equal(a.transitions.size, b.transitions.size);
  assert.deepEqual(a.transitions.observations, b.transitions.observations);
  assert.deepEqual(a.transitions.actions, b.transitions.actions);
});

Deno.test("medium-replay records the learner's exploration: replayEpisodes noisy episodes per iteration", async () => {
  const base = {
    ...defaultCollectConfig("hopper", "medium-replay"),
    mediumScore: 8,
    maxIterations: 30,
    transitions: 1_000_000,
  };
  const services = { progress: silentProgress, log: () => {}, workers: 2 };
  const actionStd = (t: { size: number; actions: Float32Array }) => {
    const std: number[] = [];
    for (let j = 0; j < 3; j++) {
      let s = 0, s2 = 0;
      for (let i = 0; i < t.size; i++) (s += t.actions[i * 3 + j]), (s2 += t.actions[i * 3 + j] ** 2);
      std.push(Math.sqrt(s2 / t.size - (s / t.size) ** 2));
    }
    return std;
  };
  const noisy = await collect(base, services);
  const quiet = await collect({ ...base, explorationNoise: 0 }, services);
  let episodes = 0;
  for (let i = 0; i < noisy.transitions.size; i++) {
    episodes += noisy.transitions.terminals[i] | noisy.transitions.timeouts[i];
  }
  assert.equal(
    episodes,
    base.replayEpisodes * noisy.trainingIterations,
    "8 whole episodes per iteration until medium",
  );
  const noisyStd = actionStd(noisy.transitions);
  const quietStd = actionStd(quiet.transitions);
  for (let j = 0; j < 3; j++) {
    assert.ok(noisyStd[j] > 0.25, `joint ${j}: action std ${noisyStd[j]} with σ = 0.3`);
    assert.ok(noisyStd[j] > 2 * quietStd[j], `joint ${j}: ${noisyStd[j]} vs ${quietStd[j]} without noise`);
  }
});
