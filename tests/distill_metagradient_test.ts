/**
 * The hand-derived meta-gradient against two independent references: central finite differences of
 * a float64 re-implementation of the unrolled inner loop, and PyTorch's double-backward in the
 * authors' structure (bench/peers/distill_peer.py) from identical weights and data.
 */
import { standaloneContext } from "../core/stage.ts";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../numerics/backend.ts";
import { createRuntime } from "../core/runtime.ts";
import { distill, type DistillConfig, QUICK_DISTILL } from "../stages/distill.ts";
import { metaGradient, type StudentParams } from "../stages/distill/metagradient.ts";
import {
  MetaGradientPool,
  type MetaGradientProblem,
  metaGradientValues,
  requestedMetaGradientThreads,
  THREADS_ENV,
} from "../stages/distill/metagradient_pool.ts";
import { initMlpWeights, mlpTensors, type MlpWeights } from "../numerics/mlp.ts";
import { Rng } from "../numerics/random.ts";
import { loadEmbedded } from "./helpers.ts";

interface Problem {
  sizes: number[];
  init: MlpWeights;
  n: number;
  b: number;
  x: Float32Array;
  y: Float32Array;
  states: Float32Array;
  targets: Float32Array;
  weights: Float32Array;
  steps: number;
  lr: number;
  maxAction: number;
}

function problem(seed: number, sizes: number[], n: number, b: number, steps: number, lr: number): Problem {
  const rng = new Rng(seed);
  const d = sizes[0], m = sizes[sizes.length - 1];
  return {
    sizes,
    init: initMlpWeights(sizes, rng),
    n,
    b,
    x: rng.fillNormal(new Float32Array(n * d)),
    y: rng.fillUniform(new Float32Array(n * m), -0.9, 0.9),
    states: rng.fillNormal(new Float32Array(b * d)),
    targets: rng.fillUniform(new Float32Array(b * m), -0.9, 0.9),
    weights: rng.fillUniform(new Float32Array(b), 0.2, 2),
    steps,
    lr,
    maxAction: 1,
  };
}

/** Our meta-gradient as plain arrays. */
function ours(p: Problem): { dx: Float32Array; dy: Float32Array; outer: number } {
  const d = p.sizes[0], m = p.sizes[p.sizes.length - 1];
  return tf.tidy(() => {
    const params: StudentParams = mlpTensors(p.init);
    const g = metaGradient(params, tf.tensor2d(p.x, [p.n, d]), tf.tensor2d(p.y, [p.n, m]), {
      states: tf.tensor2d(p.states, [p.b, d]),
      targets: tf.tensor2d(p.targets, [p.b, m]),
      weights: tf.tensor1d(p.weights),
    }, { steps: p.steps, learningRate: p.lr, maxAction: p.maxAction });
    return {
      dx: g.states.dataSync() as Float32Array,
      dy: g.actions.dataSync() as Float32Array,
      outer: g.outerLoss.dataSync()[0],
    };
  });
}

/** H(θ_T(X, Y)) in float64, written independently of the tensor code. */
function outerLoss64(p: Problem, x: Float64Array, y: Float64Array): number {
  const L = p.sizes.length - 1;
  const W = p.init.weights.map((w) => Float64Array.from(w));
  const B = p.init.biases.map((b) => Float64Array.from(b));
  const forward = (input: Float64Array, rows: number) => {
    const acts: Float64Array[] = [input];
    for (let l = 0; l < L; l++) {
      const [fi, fo] = [p.sizes[l], p.sizes[l + 1]];
      const out = new Float64Array(rows * fo);
      for (let r = 0; r < rows; r++) {
        for (let j = 0; j < fo; j++) {
          let s = B[l][j];
          for (let i = 0; i < fi; i++) s += acts[l][r * fi + i] * W[l][i * fo + j];
          out[r * fo + j] = l < L - 1 ? Math.max(0, s) : p.maxAction * Math.tanh(s);
        }
      }
      acts.push(out);
    }
    return acts;
  };
  const m = p.sizes[L];
  for (let t = 0; t < p.steps; t++) {
    const acts = forward(x, p.n);
    const out = acts[L];
    // δ_L for mean squared error over N·m elements.
    let delta = new Float64Array(p.n * m);
    for (let k = 0; k < delta.length; k++) {
      const tau = out[k] / p.maxAction;
      delta[k] = (2 * (out[k] - y[k])) / (p.n * m) * p.maxAction * (1 - tau * tau);
    }
    const gW: Float64Array[] = [], gB: Float64Array[] = [];
    for (let l = L - 1; l >= 0; l--) {
      const [fi, fo] = [p.sizes[l], p.sizes[l + 1]];
      const gw = new Float64Array(fi * fo), gb = new Float64Array(fo);
      for (let r = 0; r < p.n; r++) {
        for (let j = 0; j < fo; j++) {
          gb[j] += delta[r * fo + j];
          for (let i = 0; i < fi; i++) gw[i * fo + j] += acts[l][r * fi + i] * delta[r * fo + j];
        }
      }
      gW[l] = gw;
      gB[l] = gb;
      if (l > 0) {
        const prev = new Float64Array(p.n * fi);
        for (let r = 0; r < p.n; r++) {
          for (let i = 0; i < fi; i++) {
            let s = 0;
            for (let j = 0; j < fo; j++) s += delta[r * fo + j] * W[l][i * fo + j];
            prev[r * fi + i] = acts[l][r * fi + i] > 0 ? s : 0;
          }
        }
        delta = prev;
      }
    }
    for (let l = 0; l < L; l++) {
      for (let k = 0; k < W[l].length; k++) W[l][k] -= p.lr * gW[l][k];
      for (let k = 0; k < B[l].length; k++) B[l][k] -= p.lr * gB[l][k];
    }
  }
  const out = forward(Float64Array.from(p.states), p.b)[L];
  let h = 0;
  for (let r = 0; r < p.b; r++) {
    let row = 0;
    for (let k = 0; k < m; k++) row += (out[r * m + k] - p.targets[r * m + k]) ** 2;
    h += p.weights[r] * row / m;
  }
  return h / p.b;
}

function relativeDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

await initBackend("wasm");

/**
 * Runs `check` with the matmuls on the system BLAS (tests/setup-debian.sh installs OpenBLAS) and on
 * pure wasm (`OBD_BLAS=off`), then leaves the BLAS on for the tests after it.
 */
async function onBothMatMulPaths(check: (path: string) => void | Promise<void>): Promise<void> {
  try {
    for (const blas of ["off", "auto"]) {
      const info = await initBackend("wasm", { blas });
      assert.ok(!("kind" in info), JSON.stringify(info));
      assert.ok(blas === "off" ? info.label === "wasm" : info.label.startsWith("wasm+"), info.label);
      await check(info.label);
    }
  } finally {
    await initBackend("wasm", { blas: "auto" });
  }
}

Deno.test("meta-gradient equals central finite differences of a float64 re-implementation", () =>
  onBothMatMulPaths((path) => {
    const p = problem(1, [3, 6, 5, 2], 4, 7, 5, 0.5);
    const got = ours(p);
    const x = Float64Array.from(p.x), y = Float64Array.from(p.y);
    const eps = 1e-5;
    const fd = (v: Float64Array, i: number) => {
      const keep = v[i];
      v[i] = keep + eps;
      const up = outerLoss64(p, x, y);
      v[i] = keep - eps;
      const down = outerLoss64(p, x, y);
      v[i] = keep;
      return (up - down) / (2 * eps);
    };
    const fdX = Array.from(x, (_, i) => fd(x, i));
    const fdY = Array.from(y, (_, i) => fd(y, i));
    assert.ok(Math.abs(got.outer - outerLoss64(p, x, y)) < 1e-5 * Math.abs(got.outer));
    assert.ok(Math.max(...fdX.map(Math.abs)) > 1e-4, "a meaningful gradient");
    const relX = relativeDifference(got.dx, fdX), relY = relativeDifference(got.dy, fdY);
    assert.ok(relX < 1e-3, `${path}: states: relative difference ${relX}`);
    assert.ok(relY < 1e-3, `${path}: actions: relative difference ${relY}`);
  }));

Deno.test("meta-gradient equals PyTorch's double backward (authors' structure) for T = 5", async () => {
  const p = problem(2, [11, 64, 64, 64, 3], 32, 128, 5, 0.1);
  const ref = await pythonPeer(p);
  await onBothMatMulPaths((path) => {
    const got = ours(p);
    const relX = relativeDifference(got.dx, ref.dx), relY = relativeDifference(got.dy, ref.dy);
    assert.ok(Math.abs(got.outer - ref.outer) < 1e-5 * ref.outer, path);
    assert.ok(relX < 1e-3, `${path}: states: relative difference ${relX}`);
    assert.ok(relY < 1e-3, `${path}: actions: relative difference ${relY}`);
  });
});

async function pythonPeer(p: Problem): Promise<{ dx: number[]; dy: number[]; outer: number }> {
  const child = new Deno.Command("/usr/bin/python3", {
    args: ["bench/peers/distill_peer.py", "check"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const input = JSON.stringify({
    sizes: p.sizes,
    weights: p.init.weights.map((w) => Array.from(w)),
    biases: p.init.biases.map((b) => Array.from(b)),
    n: p.n,
    b: p.b,
    x: Array.from(p.x),
    y: Array.from(p.y),
    states: Array.from(p.states),
    targets: Array.from(p.targets),
    weightsOuter: Array.from(p.weights),
    steps: p.steps,
    lr: p.lr,
    maxAction: p.maxAction,
  });
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(input));
  await writer.close();
  const out = await child.output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

function arrays(p: Problem): MetaGradientProblem {
  return {
    initial: p.init,
    states: p.x,
    actions: p.y,
    outer: { states: p.states, targets: p.targets, weights: p.weights },
    options: { steps: p.steps, learningRate: p.lr, maxAction: p.maxAction },
  };
}

function relativeScalar(a: number, b: number): number {
  return Math.abs(a - b) / Math.abs(b);
}

Deno.test("meta-gradient on 2 worker threads equals the single-thread one, also when N is odd", async () => {
  const pool = await MetaGradientPool.create(2);
  try {
    assert.equal(pool.threads, 2);
    for (const [seed, n, b, weighted] of [[3, 16, 40, true], [4, 15, 37, false]] as const) {
      const p = problem(seed, [11, 32, 32, 3], n, b, 5, 0.1);
      const one = metaGradientValues(arrays(p));
      const problemArrays = weighted
        ? arrays(p)
        : { ...arrays(p), outer: { states: p.states, targets: p.targets } };
      const ref = weighted ? one : metaGradientValues(problemArrays);
      const two = await pool.compute(problemArrays);
      assert.equal(two.states.length, n * 11);
      assert.equal(two.actions.length, n * 3);
      const relX = relativeDifference(two.states, ref.states),
        relY = relativeDifference(two.actions, ref.actions);
      assert.ok(relX < 1e-4, `N = ${n}: states relative difference ${relX}`);
      assert.ok(relY < 1e-4, `N = ${n}: actions relative difference ${relY}`);
      assert.ok(
        relativeScalar(two.outerLoss, ref.outerLoss) < 1e-5,
        `outer loss ${two.outerLoss} vs ${ref.outerLoss}`,
      );
      assert.ok(
        relativeScalar(two.innerLoss, ref.innerLoss) < 1e-5,
        `inner loss ${two.innerLoss} vs ${ref.innerLoss}`,
      );
    }
    // Deterministic for a given K: the fixed summation order gives the same bits every time.
    const p0 = arrays(problem(3, [11, 32, 32, 3], 16, 40, 5, 0.1));
    const [first, second] = [await pool.compute(p0), await pool.compute(p0)];
    assert.deepEqual(
      [Array.from(first.states), Array.from(first.actions), first.outerLoss, first.innerLoss],
      [
        Array.from(second.states),
        Array.from(second.actions),
        second.outerLoss,
        second.innerLoss,
      ],
    );
    // The pool is reusable, and the single-thread values match the tensor API's.
    const p = problem(5, [3, 6, 5, 2], 4, 7, 5, 0.5);
    const again = await pool.compute(arrays(p));
    const direct = ours(p);
    assert.ok(relativeDifference(again.states, direct.dx) < 1e-4);
    assert.ok(relativeDifference(again.actions, direct.dy) < 1e-4);
    // A failure in one worker only (its slice of the outer weights is too short, found after the
    // inner loop, while the other waits at an all-reduce) rejects instead of hanging, and the pool
    // stays usable.
    const bad = arrays(problem(7, [11, 32, 32, 3], 16, 40, 3, 0.1));
    await assert.rejects(
      pool.compute({ ...bad, outer: { ...bad.outer, weights: bad.outer.weights!.slice(0, 30) } }),
      /worker failed/,
    );
    const after = await pool.compute(bad);
    assert.ok(relativeDifference(after.states, metaGradientValues(bad).states) < 1e-4);
  } finally {
    pool.dispose();
  }
});

Deno.test("a one-thread pool starts no worker and gives metaGradient's exact values", async () => {
  const pool = await MetaGradientPool.create(1);
  const p = problem(6, [3, 6, 5, 2], 4, 7, 3, 0.5);
  const got = await pool.compute(arrays(p));
  const direct = ours(p);
  assert.deepEqual(Array.from(got.states), Array.from(direct.dx));
  assert.deepEqual(Array.from(got.actions), Array.from(direct.dy));
  assert.equal(got.outerLoss, direct.outer);
  pool.dispose();
});

Deno.test("the distill stage on two worker threads follows the single-thread run; OBD_THREADS is parsed", async () => {
  const cache = await Deno.makeTempDir();
  const saved = Deno.env.get(THREADS_ENV);
  try {
    const rt = createRuntime({ cacheRoot: cache, backend: "wasm" });
    const dataset = (await loadEmbedded(rt)).value;
    const config: DistillConfig = {
      ...QUICK_DISTILL,
      objective: "dbc",
      seed: 0,
      student: { hiddenLayers: 2, width: 32, steps: 5, learningRate: 0.1 },
      synsetSize: 15,
      outerSteps: 4,
      outerBatches: 1,
      outerBatchSize: 64,
      evalEvery: 0,
      checkpointEvery: 100,
    };
    const run = (threads: number) =>
      distill({ dataset }, config, standaloneContext({ backend: "wasm", threads }));
    const one = await run(1);
    const two = await run(2);
    Deno.env.delete(THREADS_ENV);
    assert.equal(requestedMetaGradientThreads(), 1);
    Deno.env.set(THREADS_ENV, "2");
    assert.equal(requestedMetaGradientThreads(), 2);
    assert.ok(relativeDifference(two.states, one.states) < 1e-4, "states");
    assert.ok(relativeDifference(two.actions, one.actions) < 1e-4, "actions");
    assert.ok(
      relativeDifference(two.curve.map((p) => p.outerLoss), one.curve.map((p) => p.outerLoss)) < 1e-4,
      "outer losses",
    );
    Deno.env.set(THREADS_ENV, "zero");
    assert.equal(requestedMetaGradientThreads(), 1, "an invalid value means one thread");
  } finally {
    if (saved === undefined) Deno.env.delete(THREADS_ENV);
    else Deno.env.set(THREADS_ENV, saved);
    await Deno.remove(cache, { recursive: true });
  }
});
