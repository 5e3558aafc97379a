/**
 * Tests of the density stage: log-densities against scikit-learn's KernelDensity (Debian's, through
 * /usr/bin/python3), bandwidth rules against numpy/scipy/scikit-learn, the tree's error bound against
 * an exact float64 sum, the wasm kernel against its JavaScript twin, weights, the seeded subsample,
 * bad input, the stage in the runtime and `deno task density` under its own permissions.
 *
 * Run: deno test --allow-read --allow-write=data,/tmp --allow-run --allow-env tests/density_test.ts
 */

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { loadD4rlDataset, observationStats } from "../datasets/d4rl.ts";
import { writeFloatDatasets } from "../datasets/hdf5.ts";
import { initBackend } from "../numerics/backend.ts";
import { createRuntime, runStage } from "../core/runtime.ts";
import {
  bandwidthScale,
  bruteForceKdeLogDensity,
  densityWeights,
  gaussianKdeLogDensity,
  logNormalizer,
  scottBandwidth,
  silvermanBandwidth,
  treeKdeLogDensity,
} from "../numerics/kde.ts";
import { emitLeafKernel, KERNEL_REL_ERROR } from "../numerics/kde_wasm.ts";
import { Rng } from "../numerics/random.ts";
import {
  computeStateDensity,
  DEFAULT_DENSITY_CONFIG,
  type DensityConfig,
  densityStage,
} from "../stages/density.ts";
import { EMBEDDED_DATASET, loadStage } from "../stages/load.ts";
import { assertFails, python, REPO_ROOT, runUnderTask } from "./helpers.ts";

const backend = await initBackend("wasm");
assert.ok(!("kind" in backend), "the wasm backend starts");

/** The embedded Hopper dataset's states, normalized as the load stage does. */
const embedded = await (async () => {
  const data = await loadD4rlDataset(`${REPO_ROOT}${EMBEDDED_DATASET.file}`);
  const stats = observationStats(data.observations, data.obsDim);
  const dim = data.obsDim, n = data.n;
  const z = new Float64Array(n * dim);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < dim; k++) {
      z[i * dim + k] = (data.observations[i * dim + k] - stats.mean[k]) / stats.std[k];
    }
  }
  return { raw: data.observations, z, n, dim, mean: stats.mean, std: stats.std };
})();

function pick(points: Float64Array, dim: number, rows: ArrayLike<number>): Float64Array {
  const out = new Float64Array(rows.length * dim);
  for (let i = 0; i < rows.length; i++) out.set(points.subarray(rows[i] * dim, (rows[i] + 1) * dim), i * dim);
  return out;
}
function evenly(n: number, k: number): Int32Array {
  return Int32Array.from({ length: k }, (_, i) => Math.floor((i * n) / k));
}

/** Exact log-densities in float64 JavaScript (the slow, obvious way). */
function exactLogDensity(
  queries: Float64Array,
  reference: Float64Array,
  dim: number,
  h: number,
): Float64Array {
  const n = queries.length / dim, m = reference.length / dim, c2 = 1 / (2 * h * h);
  const out = new Float64Array(n), u = new Float64Array(m);
  for (let i = 0; i < n; i++) {
    let top = -Infinity;
    for (let j = 0; j < m; j++) {
      let d2 = 0;
      for (let k = 0; k < dim; k++) d2 += (queries[i * dim + k] - reference[j * dim + k]) ** 2;
      u[j] = -c2 * d2;
      if (u[j] > top) top = u[j];
    }
    let s = 0;
    for (let j = 0; j < m; j++) s += Math.exp(u[j] - top);
    out[i] = top + Math.log(s) + logNormalizer(dim, h, m);
  }
  return out;
}

/** scikit-learn's KernelDensity(kernel="gaussian", bandwidth=h).score_samples, exact (rtol = 0). */
async function sklearnLogDensity(
  queries: Float64Array,
  reference: Float64Array,
  dim: number,
  h: number,
): Promise<Float64Array> {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(
      `${dir}/q.f64`,
      new Uint8Array(queries.buffer, queries.byteOffset, queries.byteLength),
    );
    await Deno.writeFile(
      `${dir}/x.f64`,
      new Uint8Array(reference.buffer, reference.byteOffset, reference.byteLength),
    );
    const out = await python(
      `
import json, sys
import numpy as np
from sklearn.neighbors import KernelDensity
d, h = int(sys.argv[3]), float(sys.argv[4])
Q = np.fromfile(sys.argv[1]).reshape(-1, d)
X = np.fromfile(sys.argv[2]).reshape(-1, d)
print(json.dumps(KernelDensity(kernel="gaussian", bandwidth=h).fit(X).score_samples(Q).tolist()))
`,
      `${dir}/q.f64`,
      `${dir}/x.f64`,
      String(dim),
      String(h),
    );
    return Float64Array.from(out as number[]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

// ---------------------------------------------------------------------------------------------
// Log-densities against scikit-learn
// ---------------------------------------------------------------------------------------------

Deno.test("log-densities match scikit-learn's KernelDensity to 1e-3: Hopper states, brute force and tree", async () => {
  const { z, n, dim } = embedded;
  const reference = pick(z, dim, evenly(n, 8000));
  const queries = pick(z, dim, evenly(n, 2500)); // many blocks on two workers
  const h = scottBandwidth(reference, dim);
  const sk = await sklearnLogDensity(queries, reference, dim, h);
  const before = tf.memory().numTensors;
  const brute = await bruteForceKdeLogDensity(queries, reference, dim, h);
  const brute2 = await bruteForceKdeLogDensity(queries, reference, dim, h, {
    blockSize: 100,
    referenceBlockSize: 1000,
  });
  assert.equal(tf.memory().numTensors, before, "brute force leaves no tensors behind");
  const tree = await treeKdeLogDensity(queries, reference, dim, h, { threads: 2 });
  const treeJs = await treeKdeLogDensity(queries, reference, dim, h, { threads: 1, kernel: "js" });
  assert.ok(maxAbsDiff(brute, sk) < 1e-3, `brute vs sklearn ${maxAbsDiff(brute, sk)}`);
  assert.ok(maxAbsDiff(brute2, sk) < 1e-3, `brute (small blocks) vs sklearn ${maxAbsDiff(brute2, sk)}`);
  assert.ok(maxAbsDiff(tree.logDensity, sk) < 1e-3, `tree vs sklearn ${maxAbsDiff(tree.logDensity, sk)}`);
  assert.ok(
    maxAbsDiff(treeJs.logDensity, sk) < 1e-3,
    `tree (js kernel) vs sklearn ${maxAbsDiff(treeJs.logDensity, sk)}`,
  );
  // The tree really pruned, and still met its bound.
  assert.ok(tree.stats.pairs < 0.8 * 2500 * 8000, `pairs ${tree.stats.pairs}`);
  assert.ok(tree.errorBound <= 1e-4 && tree.errorBound > 0, `bound ${tree.errorBound}`);
  // Densities vary a lot across states: the comparison is not trivial.
  const spread = Math.max(...sk) - Math.min(...sk);
  assert.ok(spread > 5, `spread of log-densities ${spread}`);
});

Deno.test("log-densities match scikit-learn in 3-D with a small fixed bandwidth and a subsampled reference", async () => {
  const rng = new Rng(7);
  const dim = 3, m = 3000, n = 1500;
  const reference = new Float64Array(m * dim).map((_, i) => rng.normal() * (i % dim === 0 ? 2 : 0.5));
  // Queries near the data (scikit-learn's own tree loses accuracy far out in the tails, at log-densities
  // of −1000 and below, where it is not a reference any more): reference points moved by ~0.1.
  const queries = new Float64Array(n * dim).map((_, i) =>
    reference[((Math.floor(i / dim) * 7) % m) * dim + (i % dim)] + 0.1 * rng.normal()
  );
  for (const h of [0.05, 0.7]) {
    const sk = await sklearnLogDensity(queries, reference, dim, h);
    const brute = await gaussianKdeLogDensity(queries, reference, dim, h, { method: "brute" });
    const tree = await gaussianKdeLogDensity(queries, reference, dim, h, { method: "tree", threads: 2 });
    assert.ok(maxAbsDiff(brute.logDensity, sk) < 1e-3, `h ${h}: brute ${maxAbsDiff(brute.logDensity, sk)}`);
    assert.ok(maxAbsDiff(tree.logDensity, sk) < 1e-3, `h ${h}: tree ${maxAbsDiff(tree.logDensity, sk)}`);
  }
});

// ---------------------------------------------------------------------------------------------
// The tree's error bound and kernels
// ---------------------------------------------------------------------------------------------

Deno.test("tree: exact − computed lies in [−1e-6, bound] with bound ≤ tolerance, for several dimensions and bandwidths", async () => {
  for (
    const [dim, h, tolerance] of [[1, 0.2, 1e-4], [5, 0.05, 1e-4], [11, 0.5, 1e-3], [17, 1.5, 1e-5]] as const
  ) {
    const rng = new Rng(dim);
    const m = 1200, n = 700;
    const reference = new Float64Array(m * dim).map((_, i) =>
      rng.normal() * (1 + (i % dim)) * 0.4 + (i % 3 === 0 ? rng.normal() * 2 : 0)
    );
    const queries = new Float64Array(n * dim).map((
      _,
      i,
    ) => (i < (n * dim) / 2 ? reference[i] : rng.normal() * 2));
    const exact = exactLogDensity(queries, reference, dim, h);
    const tree = await treeKdeLogDensity(queries, reference, dim, h, {
      tolerance,
      threads: 2,
      blockSize: 32,
      leafSize: 16,
    });
    assert.ok(tree.errorBound <= tolerance, `d ${dim}: bound ${tree.errorBound} > ${tolerance}`);
    for (let i = 0; i < n; i++) {
      const gap = exact[i] - tree.logDensity[i];
      // Float32 exponentials make each kernel value exact to KERNEL_REL_ERROR (1e-6) either way.
      assert.ok(
        gap >= -KERNEL_REL_ERROR && gap <= tree.bound[i],
        `d ${dim}, state ${i}: exact − tree = ${gap}, bound ${tree.bound[i]}`,
      );
    }
  }
});

Deno.test("tree: results do not depend on threads, and the wasm kernel equals its JavaScript twin", async () => {
  const { z, n, dim } = embedded;
  const queries = pick(z, dim, evenly(n, 3000));
  const reference = pick(z, dim, evenly(n, 6000));
  const h = silvermanBandwidth(reference, dim);
  const one = await treeKdeLogDensity(queries, reference, dim, h, { threads: 1 });
  const two = await treeKdeLogDensity(queries, reference, dim, h, { threads: 2 });
  const js = await treeKdeLogDensity(queries, reference, dim, h, { threads: 2, kernel: "js" });
  assert.deepEqual(two.logDensity, one.logDensity);
  assert.deepEqual(two.stats, one.stats);
  assert.ok(
    maxAbsDiff(js.logDensity, one.logDensity) < 1e-12,
    `js vs wasm ${maxAbsDiff(js.logDensity, one.logDensity)}`,
  );
  assert.equal(js.stats.pairs, one.stats.pairs);
});

Deno.test("the emitted kernel is valid WebAssembly for every dimension we meet", () => {
  for (const dim of [1, 2, 11, 17, 40]) {
    for (const shared of [false, true]) {
      assert.ok(WebAssembly.validate(emitLeafKernel(dim, shared) as Uint8Array<ArrayBuffer>), `dim ${dim}`);
    }
  }
});

// ---------------------------------------------------------------------------------------------
// Bandwidth rules
// ---------------------------------------------------------------------------------------------

Deno.test("Scott's and Silverman's bandwidths match numpy's formula, scipy's factors and scikit-learn's", async () => {
  const { z, n, dim } = embedded;
  const points = pick(z, dim, evenly(n, 5000));
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/x.f64`, new Uint8Array(points.buffer));
    const ref = await python(
      `
import json, sys
import numpy as np
from scipy.stats import gaussian_kde
from sklearn.neighbors import KernelDensity
X = np.fromfile(sys.argv[1]).reshape(-1, int(sys.argv[2]))
n, d = X.shape
sigma = np.sqrt(np.mean(np.var(X, axis=0)))
kde = gaussian_kde(X.T)
print(json.dumps({
  "sigma": float(sigma),
  "scott": float(sigma * n ** (-1.0 / (d + 4))),
  "silverman": float(sigma * (n * (d + 2) / 4.0) ** (-1.0 / (d + 4))),
  "scipyScott": float(kde.scotts_factor()), "scipySilverman": float(kde.silverman_factor()),
  "sklearnScott": float(KernelDensity(bandwidth="scott").fit(X).bandwidth_),
  "sklearnSilverman": float(KernelDensity(bandwidth="silverman").fit(X).bandwidth_),
}))
`,
      `${dir}/x.f64`,
      String(dim),
    );
    const close = (a: number, b: number) => Math.abs(a - b) <= 1e-12 * Math.abs(b);
    const sigma = bandwidthScale(points, dim);
    assert.ok(close(sigma, ref.sigma), `σ̂ ${sigma} vs ${ref.sigma}`);
    assert.ok(
      close(scottBandwidth(points, dim), ref.scott),
      `scott ${scottBandwidth(points, dim)} vs ${ref.scott}`,
    );
    assert.ok(
      close(silvermanBandwidth(points, dim), ref.silverman),
      `silverman ${silvermanBandwidth(points, dim)} vs ${ref.silverman}`,
    );
    // The factors are scipy's and scikit-learn's (which apply them to unit-scaled data).
    for (
      const [ours, theirs] of [
        [scottBandwidth(points, dim) / sigma, ref.scipyScott],
        [silvermanBandwidth(points, dim) / sigma, ref.scipySilverman],
        [scottBandwidth(points, dim) / sigma, ref.sklearnScott],
        [silvermanBandwidth(points, dim) / sigma, ref.sklearnSilverman],
      ]
    ) {
      assert.ok(close(ours, theirs), `factor ${ours} vs ${theirs}`);
    }
    assert.ok(sigma > 0.9 && sigma < 1.0001, `normalized states have σ̂ ≈ 1, got ${sigma}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---------------------------------------------------------------------------------------------
// Weights
// ---------------------------------------------------------------------------------------------

Deno.test("weights: p̂^(−α), mean 1, clipped at the quantile (numpy's interpolation) and renormalized", async () => {
  const rng = new Rng(3);
  const logDensity = Float64Array.from({ length: 1001 }, () => -8 + 3 * rng.normal());
  const alpha = 0.7, clipQuantile = 0.9;
  const w = densityWeights(logDensity, { alpha, clipQuantile });
  const ref = await python(
    `
import json, sys
import numpy as np
lp = np.array(json.loads(sys.argv[1])); a, q = float(sys.argv[2]), float(sys.argv[3])
w = np.exp(-a * lp); w = w / w.mean()
c = np.quantile(w, q); clipped = int((w > c).sum())
w = np.minimum(w, c); w = w / w.mean()
print(json.dumps({"w": w.tolist(), "clip": float(c), "clipped": clipped, "ess": float(w.sum() ** 2 / (w ** 2).sum()),
                  "p05": float(np.quantile(w, 0.05)), "p50": float(np.quantile(w, 0.5)), "p99": float(np.quantile(w, 0.99))}))
`,
    JSON.stringify(Array.from(logDensity)),
    String(alpha),
    String(clipQuantile),
  );
  assert.ok(maxAbsDiff(w.weight, ref.w) < 1e-12, `weights ${maxAbsDiff(w.weight, ref.w)}`);
  assert.ok(Math.abs(w.clipValue - ref.clip) < 1e-12 * ref.clip);
  assert.equal(w.clipped, ref.clipped);
  assert.equal(w.clipped, 100); // 10 % of 1001 states lie above the 0.9 quantile
  assert.ok(Math.abs(w.stats.mean - 1) < 1e-12, `mean ${w.stats.mean}`);
  assert.ok(Math.abs(w.stats.effectiveSampleSize - ref.ess) < 1e-9 * ref.ess);
  assert.ok(Math.abs(w.stats.effectiveSampleFraction - ref.ess / 1001) < 1e-12);
  for (const k of ["p05", "p50", "p99"] as const) {
    assert.ok(Math.abs(w.stats.quantiles[k] - ref[k]) < 1e-12, k);
  }
  // Rarer states weigh more; the clipped ones share the top weight.
  const order = Array.from(logDensity.keys()).sort((a, b) => logDensity[a] - logDensity[b]);
  for (let i = 1; i < order.length; i++) assert.ok(w.weight[order[i]] <= w.weight[order[i - 1]] + 1e-12);
  assert.equal(w.stats.max, w.weight[order[0]]);

  // α = 0: uniform; clipQuantile = 1: nothing clipped; huge log-density ranges do not overflow.
  const flat = densityWeights(logDensity, { alpha: 0, clipQuantile: 0.5 });
  assert.ok(flat.weight.every((v) => v === 1));
  const wide = densityWeights(Float64Array.of(-2000, 0, 2000, 5), { alpha: 1, clipQuantile: 1 });
  assert.equal(wide.clipped, 0);
  assert.ok(wide.weight.every(Number.isFinite) && Math.abs(wide.stats.mean - 1) < 1e-12);
  assert.ok(
    Math.abs(wide.weight[0] - 4) < 1e-9,
    "the rarest state takes all the mass when the others are 1e-868 times as rare",
  );
});

// ---------------------------------------------------------------------------------------------
// The stage's computation: subsample, constant dimensions, bad input
// ---------------------------------------------------------------------------------------------

const small: DensityConfig = { ...DEFAULT_DENSITY_CONFIG, referenceSize: 3000 };

Deno.test("the reference subsample is seeded: same seed, same result; another seed, another subsample", async () => {
  const { raw, dim, mean, std, n } = embedded;
  const a = await computeStateDensity(raw, dim, mean, std, { ...small, seed: 5 });
  const b = await computeStateDensity(raw, dim, mean, std, { ...small, seed: 5 });
  const c = await computeStateDensity(raw, dim, mean, std, { ...small, seed: 6 });
  assert.deepEqual(a.logDensity, b.logDensity);
  assert.deepEqual(a.weight, b.weight);
  assert.equal(a.referenceSize, 3000);
  assert.equal(a.n, n);
  assert.notDeepEqual(a.logDensity, c.logDensity);
  assert.notEqual(a.bandwidth, c.bandwidth); // Scott's rule on a different subsample
  // The subsample is exactly Rng(seed)'s draw: recompute one state's density from it by brute force.
  const rows = new Rng(5).sampleWithoutReplacement(n, 3000).sort();
  const reference = pick(embedded.z, dim, rows);
  assert.ok(Math.abs(scottBandwidth(reference, dim) - a.bandwidth) < 1e-15);
  const probe = evenly(n, 50);
  const exact = exactLogDensity(pick(embedded.z, dim, probe), reference, dim, a.bandwidth);
  probe.forEach((r, i) => assert.ok(Math.abs(exact[i] - a.logDensity[r]) < 2e-4, `state ${r}`));
  // Every state has a finite density and a weight; weights have mean 1.
  assert.ok(a.logDensity.every(Number.isFinite) && a.weight.every((w) => Number.isFinite(w) && w > 0));
  const meanWeight = a.weight.reduce((s, w) => s + w, 0) / n;
  assert.ok(Math.abs(meanWeight - 1) < 1e-5, `mean weight ${meanWeight}`);
});

Deno.test("a constant dimension is dropped and recorded; the densities are those of the other dimensions", async () => {
  const rng = new Rng(11);
  const n = 800, dim = 4;
  const states = new Float32Array(n * dim).map((_, i) => (i % dim === 2 ? 0.25 : rng.normal()));
  const stats = observationStats(states, dim);
  const config: DensityConfig = { ...DEFAULT_DENSITY_CONFIG, bandwidth: 0.4, clipQuantile: 1 };
  const r = await computeStateDensity(states, dim, stats.mean, stats.std, config);
  assert.deepEqual(r.constantDimensions, [2]);
  assert.equal(r.dimensions, 3);
  const without = new Float32Array(n * 3);
  for (let i = 0; i < n; i++) {
    for (let j = 0, k = 0; k < dim; k++) if (k !== 2) without[i * 3 + j++] = states[i * dim + k];
  }
  const s3 = observationStats(without, 3);
  const r3 = await computeStateDensity(without, 3, s3.mean, s3.std, config);
  assert.deepEqual(r.logDensity, r3.logDensity);
  assert.ok(r.weight.every(Number.isFinite));
  // All dimensions constant: an error, not NaN.
  const flat = new Float32Array(30).fill(1.5);
  const fs = observationStats(flat, 3);
  await assertFails(computeStateDensity(flat, 3, fs.mean, fs.std, DEFAULT_DENSITY_CONFIG), "input", [
    "every one of the 3 state dimensions is constant",
  ]);
});

Deno.test("bad input: NaN states, bandwidth ≤ 0, bad α, quantile, reference size and tolerance are clear errors", async () => {
  const rng = new Rng(2);
  const states = new Float32Array(200 * 3).map(() => rng.normal());
  const stats = observationStats(states, 3);
  const run = (s: Float32Array, c: Partial<DensityConfig>) =>
    computeStateDensity(s, 3, stats.mean, stats.std, { ...DEFAULT_DENSITY_CONFIG, ...c });
  const withNaN = states.slice();
  withNaN[3 * 57 + 1] = NaN;
  await assertFails(run(withNaN, {}), "input", ["row 57", "dimension 1", "NaN"]);
  const withInf = states.slice();
  withInf[3 * 9] = Infinity;
  await assertFails(run(withInf, {}), "input", ["row 9", "dimension 0", "Infinity"]);
  for (const bandwidth of [0, -0.5, NaN, Infinity]) {
    await assertFails(run(states, { bandwidth }), "config", ["bandwidth"]);
  }
  await assertFails(run(states, { bandwidth: "wide" as never }), "config", ["bandwidth", "wide"]);
  await assertFails(run(states, { alpha: -1 }), "config", ["alpha -1"]);
  await assertFails(run(states, { clipQuantile: 0 }), "config", ["clipQuantile 0"]);
  await assertFails(run(states, { clipQuantile: 1.5 }), "config", ["clipQuantile 1.5"]);
  await assertFails(run(states, { referenceSize: 2.5 }), "config", ["referenceSize 2.5"]);
  await assertFails(run(states, { tolerance: 0 }), "config", ["tolerance 0"]);
  await assertFails(run(states, { method: "magic" as never }), "config", ["method"]);
  // The numerics refuse the same things directly.
  await assertFails(treeKdeLogDensity(Float64Array.of(NaN, 1), Float64Array.of(0, 1), 2, 0.5), "input", [
    "query states",
    "row 0",
    "NaN",
  ]);
  await assertFails(bruteForceKdeLogDensity(Float64Array.of(0, 1), Float64Array.of(0, 1), 2, -1), "config", [
    "bandwidth -1",
  ]);
  assert.throws(
    () => densityWeights(Float64Array.of(-1, NaN), { alpha: 1, clipQuantile: 1 }),
    /log-density of state 1 is NaN/,
  );
  // A subsample of identical states has no spread for a bandwidth rule.
  const twins = new Float32Array(20 * 3).map((_, i) => (i < 3 ? 1 : 0) + (i % 3));
  const ts = observationStats(twins, 3);
  await assertFails(
    computeStateDensity(twins, 3, ts.mean, ts.std, { ...DEFAULT_DENSITY_CONFIG, referenceSize: 2, seed: 1 }),
    "numeric",
    ["all identical"],
  );
});

// ---------------------------------------------------------------------------------------------
// The stage in the runtime, and the command
// ---------------------------------------------------------------------------------------------

Deno.test("density stage: cached artifact with weights and the summary statistics in its manifest", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const rt = createRuntime({ cacheRoot: dir, backend: backend.label });
    const sha256 = "embedded-test";
    const loaded = await runStage(rt, loadStage, {
      file: `${REPO_ROOT}${EMBEDDED_DATASET.file}`,
      sha256,
      env: "hopper",
      minTransitions: 1000,
    }, {})();
    assert.equal(loaded._tag, "Right");
    if (loaded._tag !== "Right") return;
    const config: DensityConfig = { ...DEFAULT_DENSITY_CONFIG, referenceSize: 4000, alpha: 0.5 };
    const first = await runStage(rt, densityStage, config, { dataset: loaded.right })();
    assert.equal(first._tag, "Right");
    if (first._tag !== "Right") return;
    const d = first.right.value;
    assert.equal(d.n, loaded.right.value.n);
    assert.equal(d.logDensity.length, d.n);
    assert.equal(d.weight.length, d.n);
    const m = first.right.manifest.metrics;
    for (
      const key of [
        "bandwidth",
        "bandwidthRule",
        "referenceSize",
        "weightMin",
        "weightMax",
        "weightP50",
        "weightP99",
        "effectiveSampleSize",
        "logDensityErrorBound",
        "clipValue",
      ]
    ) {
      assert.ok(key in m, `manifest metric ${key}`);
    }
    assert.equal(m.bandwidthRule, "scott");
    assert.equal(m.referenceSize, 4000);
    assert.ok(Math.abs((m.bandwidth as number) - d.bandwidth) < 1e-15);
    let sum = 0, sumSq = 0;
    for (const w of d.weight) [sum, sumSq] = [sum + w, sumSq + w * w];
    assert.ok(
      Math.abs((m.effectiveSampleSize as number) - (sum * sum) / sumSq) < 1e-3 * d.n,
      `ESS ${m.effectiveSampleSize}`,
    );
    assert.ok((m.effectiveSampleSize as number) > 0.05 * d.n && (m.effectiveSampleSize as number) < d.n);
    assert.ok((m.logDensityErrorBound as number) <= 1e-4);
    // Clipped at the 99th percentile: the top 1 % share the largest weight.
    const top = Math.max(...d.weight);
    const atTop = d.weight.filter((w) => w === top).length;
    assert.equal(m.clippedStates, d.clipped);
    assert.ok(
      d.clipped >= Math.floor(0.01 * d.n) - 1 && atTop >= d.clipped,
      `clipped ${d.clipped}, at the top ${atTop}`,
    );
    assert.ok(Math.abs((m.weightMax as number) - top) < 1e-6 * top);
    const again = await runStage(rt, densityStage, config, { dataset: loaded.right })();
    assert.ok(again._tag === "Right" && again.right.fromCache);
    if (again._tag === "Right") assert.deepEqual(again.right.value.weight, d.weight);
    const bad = await runStage(rt, densityStage, { ...config, bandwidth: -1 }, { dataset: loaded.right })();
    assert.ok(bad._tag === "Left" && bad.left.kind === "config" && bad.left.stage === "density");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task density: writes log_density and weight (read back by h5py), refuses to overwrite, reports bad flags", async () => {
  const out = `data/test-density-${crypto.randomUUID().slice(0, 8)}.hdf5`;
  try {
    const args = [
      "embedded",
      "--bandwidth",
      "silverman",
      "--reference",
      "5000",
      "--alpha",
      "1",
      "--out",
      out,
    ];
    const r = await runUnderTask("density", "commands/density.ts", args);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout.trim().split("\n").pop()!);
    assert.equal(summary.states, embedded.n);
    assert.equal(summary.bandwidthRule, "silverman");
    assert.equal(summary.referenceSize, 5000);
    const back = await python(
      `
import json, sys
import h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    ld, w = f["log_density"][:], f["weight"][:]
    print(json.dumps({"n": len(ld), "nw": len(w), "dtype": str(ld.dtype), "mean": float(w.astype(np.float64).mean()),
                      "finite": bool(np.isfinite(ld).all() and np.isfinite(w).all()),
                      "bandwidth": float(f.attrs["bandwidth"]), "rule": str(f.attrs["bandwidth_rule"]),
                      "reference": int(f.attrs["reference_size"]), "ess": float(f.attrs["effective_sample_size"])}))
`,
      `${REPO_ROOT}${out}`,
    );
    assert.equal(back.n, embedded.n);
    assert.equal(back.nw, embedded.n);
    assert.equal(back.dtype, "float32");
    assert.ok(back.finite);
    assert.ok(Math.abs(back.mean - 1) < 1e-4, `mean weight ${back.mean}`);
    assert.equal(back.rule, "silverman");
    assert.equal(back.reference, 5000);
    assert.ok(Math.abs(back.bandwidth - summary.bandwidth) < 1e-5);

    const again = await runUnderTask("density", "commands/density.ts", args);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /already exists/);
    const bad = await runUnderTask("density", "commands/density.ts", [
      "embedded",
      "--bandwidth=-1",
      "--out",
      `${out}.x.hdf5`,
    ]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--bandwidth -1 is not scott, silverman or a finite number > 0/);
    const missing = await runUnderTask("density", "commands/density.ts", [
      "embedded",
      "--out",
      `${out}.y.hdf5`,
    ]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--bandwidth is required/);
  } finally {
    await Deno.remove(`${REPO_ROOT}${out}`).catch(() => {});
  }
});

Deno.test("writeFloatDatasets: float32 and float64 datasets and attributes as h5py reads them; bad datasets refused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/values.hdf5`;
    const a = Float32Array.of(-1.5, 0, 3.25, 1e-30);
    const b = Float64Array.of(Math.PI, -Math.E, 1e300);
    await writeFloatDatasets(path, { log_density: a, weight: b }, { bandwidth: 0.42, rule: "scott" });
    const back = await python(
      `
import json, sys
import h5py
with h5py.File(sys.argv[1], "r") as f:
    print(json.dumps({k: {"dtype": str(f[k].dtype), "values": f[k][:].tolist()} for k in f.keys()} | {"attrs": {k: (v.decode() if isinstance(v, bytes) else (v if isinstance(v, str) else float(v))) for k, v in f.attrs.items()}}))
`,
      path,
    );
    assert.equal(back.log_density.dtype, "float32");
    assert.deepEqual(back.log_density.values, Array.from(a));
    assert.equal(back.weight.dtype, "float64");
    assert.deepEqual(back.weight.values, Array.from(b));
    assert.deepEqual(back.attrs, { bandwidth: 0.42, rule: "scott" });
    await assertFails(writeFloatDatasets(`${dir}/empty.hdf5`, { w: new Float32Array(0) }), "input", [
      "'w' must be a non-empty",
    ]);
    await assertFails(writeFloatDatasets(`${dir}/bad.hdf5`, { "a/b": a }), "input", [
      "invalid dataset name 'a/b'",
    ]);
    assert.deepEqual((await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name), ["values.hdf5"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
