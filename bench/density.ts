/**
 * Density benchmark: Gaussian KDE log-densities of every state of a Hopper dataset against every
 * state (Scott's bandwidth, normalized states), as JSON lines on stdout.
 *
 *   {"bench":"density","method":"tree","states":400000,"reference":400000,"seconds":s,"statesPerSecond":x,…}
 *   {"bench":"density","method":"tree-kernel-wasm"|"tree-kernel-js",…}  the tree's inner loop, one thread
 *   {"bench":"density","method":"brute",…}            tensor backend, every pair, on a subset of queries
 *   {"bench":"density","method":"sklearn",…}          scikit-learn KernelDensity, same data and bandwidth
 *   {"bench":"density","summary":true,"ratioToSklearn":r,…}
 *
 * Data: the `observations` of the HDF5 files given with `--data` (default the two files below,
 * concatenated up to `--states`), normalized with mean and std + 1e-3 as the load stage does. Make them
 * once with
 *   deno task collect hopper medium-replay --out data/bench/hopper_mr.hdf5
 *   deno task collect hopper medium-replay --seed 1 --out data/bench/hopper_mr_s1.hdf5
 *
 * scikit-learn (Debian's, /usr/bin/python3) runs single-threaded `KernelDensity(kernel="gaussian",
 * bandwidth=h, rtol=tolerance)` — the same relative-error guarantee as ours — fitted on all reference
 * states and scored on `--sklearn-queries` states drawn evenly (default 1000; all of them would take
 * hours), so its states per second is measured on that subset and said so. Both sides are timed on
 * the same machine in the same run; the agreement of the two on the subset is reported too.
 *
 * Usage: deno task bench density [--states N] [--threads T] [--tolerance e] [--brute-queries N]
 *                                [--kernel-queries N] [--sklearn-queries N] [--data a.hdf5,b.hdf5]
 * @module
 */

import { readD4rlFile } from "../datasets/hdf5.ts";
import { observationStats } from "../datasets/d4rl.ts";
import { initBackend } from "../numerics/backend.ts";
import { bruteForceKdeLogDensity, scottBandwidth, treeKdeLogDensity } from "../numerics/kde.ts";
import { intArg, stringArg } from "./args.ts";

const STATES = intArg("--states", 400_000);
const THREADS = intArg("--threads", navigator.hardwareConcurrency || 1);
const TOLERANCE = Number(stringArg("--tolerance", "1e-4"));
const BRUTE_QUERIES = intArg("--brute-queries", 1000);
const KERNEL_QUERIES = intArg("--kernel-queries", 500);
const SKLEARN_QUERIES = intArg("--sklearn-queries", 1000);
const FILES = stringArg("--data", "data/bench/hopper_mr.hdf5,data/bench/hopper_mr_s1.hdf5").split(",");

// ---------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------

const parts: Float32Array[] = [];
let dim = 0, total = 0;
for (const file of FILES) {
  if (total >= STATES) break;
  const exists = await Deno.stat(file).then(() => true, () => false);
  if (!exists) {
    console.error(
      `error[input]: ${file} is missing — make it with \`deno task collect hopper medium-replay --out ${file}\` (add --seed 1 for a second file)`,
    );
    Deno.exit(1);
  }
  const obs = (await readD4rlFile(file)).datasets.observations;
  if (!obs) throw new Error(`${file} has no observations`);
  dim = obs.shape[1];
  parts.push(obs.data);
  total += obs.shape[0];
}
const n = Math.min(STATES, total);
const raw = new Float32Array(n * dim);
let filled = 0;
for (const p of parts) {
  const take = Math.min(p.length, raw.length - filled);
  raw.set(p.subarray(0, take), filled);
  filled += take;
}
const stats = observationStats(raw, dim);
const states = new Float64Array(n * dim);
for (let i = 0; i < n; i++) {
  for (let k = 0; k < dim; k++) states[i * dim + k] = (raw[i * dim + k] - stats.mean[k]) / stats.std[k];
}
const h = scottBandwidth(states, dim);
const common = {
  states: n,
  reference: n,
  dim,
  bandwidth: +h.toPrecision(6),
  bandwidthRule: "scott",
  tolerance: TOLERANCE,
};
const emit = (record: Record<string, unknown>) =>
  console.log(JSON.stringify({ bench: "density", ...record }));
if (n < STATES) console.error(`note: only ${n} states available (asked for ${STATES})`);

/** Evenly spread rows. */
function subset(count: number): Int32Array {
  const k = Math.min(count, n);
  return Int32Array.from({ length: k }, (_, i) => Math.floor((i * n) / k));
}
function rows(idx: Int32Array): Float64Array {
  const out = new Float64Array(idx.length * dim);
  idx.forEach((r, i) => out.set(states.subarray(r * dim, (r + 1) * dim), i * dim));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Ours: the pruned tree, all states against all states
// ---------------------------------------------------------------------------------------------

let lastReport = 0;
const t0 = performance.now();
const tree = await treeKdeLogDensity(states, states, dim, h, {
  tolerance: TOLERANCE,
  threads: THREADS,
  onProgress: (done, all) => {
    if (performance.now() - lastReport > 15_000) {
      lastReport = performance.now();
      console.error(
        `[progress] tree ${done}/${all} states, ${((performance.now() - t0) / 1000).toFixed(0)} s`,
      );
    }
  },
});
const treeSeconds = (performance.now() - t0) / 1000;
emit({
  method: "tree",
  ...common,
  threads: THREADS,
  seconds: +treeSeconds.toFixed(2),
  statesPerSecond: Math.round(n / treeSeconds),
  pairsPerState: Math.round(tree.stats.pairs / n),
  kernelsPerState: Math.round(tree.stats.kernels / n),
  errorBound: tree.errorBound,
});

// ---------------------------------------------------------------------------------------------
// The tree's inner loop: WebAssembly SIMD kernel against its JavaScript twin, one thread, same queries
// ---------------------------------------------------------------------------------------------

const kernelIdx = subset(KERNEL_QUERIES);
if (kernelIdx.length > 0) {
  const queries = rows(kernelIdx);
  for (const kernel of ["wasm", "js"] as const) {
    const tk = performance.now();
    const r = await treeKdeLogDensity(queries, states, dim, h, { tolerance: TOLERANCE, threads: 1, kernel });
    const seconds = (performance.now() - tk) / 1000;
    emit({
      method: `tree-kernel-${kernel}`,
      ...common,
      threads: 1,
      queries: kernelIdx.length,
      note: "evenly spread queries (sparser blocks than all states), one thread",
      seconds: +seconds.toFixed(2),
      statesPerSecond: +(kernelIdx.length / seconds).toFixed(1),
      maxAbsDiffToTree: Math.max(
        ...Array.from(kernelIdx, (row, i) => Math.abs(r.logDensity[i] - tree.logDensity[row])),
      ),
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Brute force on the tensor backend (a subset of queries against every state)
// ---------------------------------------------------------------------------------------------

const backend = await initBackend("wasm");
if ("kind" in backend) throw new Error(backend.message);
const bruteIdx = subset(BRUTE_QUERIES);
if (bruteIdx.length > 0) {
  const tb = performance.now();
  const brute = await bruteForceKdeLogDensity(rows(bruteIdx), states, dim, h, {
    blockSize: 256,
    referenceBlockSize: 8192,
  });
  const bruteSeconds = (performance.now() - tb) / 1000;
  let maxDiff = 0;
  bruteIdx.forEach((r, i) => (maxDiff = Math.max(maxDiff, Math.abs(brute[i] - tree.logDensity[r]))));
  const rate = bruteIdx.length / bruteSeconds;
  emit({
    method: "brute",
    backend: backend.label,
    ...common,
    queries: bruteIdx.length,
    seconds: +bruteSeconds.toFixed(2),
    statesPerSecond: +rate.toFixed(1),
    estimatedSecondsAllStates: Math.round(n / rate),
    maxAbsDiffToTree: maxDiff,
  });
}

// ---------------------------------------------------------------------------------------------
// scikit-learn on the same data (a subset of queries)
// ---------------------------------------------------------------------------------------------

const skIdx = subset(SKLEARN_QUERIES);
if (skIdx.length > 0) {
  await Deno.mkdir("data/bench", { recursive: true });
  const statesFile = "data/bench/density_states.f64";
  const queriesFile = "data/bench/density_queries.i32";
  await Deno.writeFile(statesFile, new Uint8Array(states.buffer));
  await Deno.writeFile(queriesFile, new Uint8Array(skIdx.buffer));
  const code = `
import json, sys, time
import numpy as np
from sklearn.neighbors import KernelDensity
n, d, h, rtol = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
X = np.fromfile(sys.argv[1], dtype=np.float64).reshape(n, d)
idx = np.fromfile(sys.argv[2], dtype=np.int32)
t = time.perf_counter()
kde = KernelDensity(kernel="gaussian", bandwidth=h, rtol=rtol).fit(X)
fit = time.perf_counter() - t
t = time.perf_counter()
out = kde.score_samples(X[idx])
score = time.perf_counter() - t
print(json.dumps({"fitSeconds": fit, "scoreSeconds": score, "logDensity": out.tolist()}))
`;
  const ts = performance.now();
  const out = await new Deno.Command("/usr/bin/python3", {
    args: ["-c", code, statesFile, queriesFile, String(n), String(dim), String(h), String(TOLERANCE)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const wall = (performance.now() - ts) / 1000;
  await Deno.remove(statesFile).catch(() => {});
  await Deno.remove(queriesFile).catch(() => {});
  if (!out.success) {
    console.error(
      `error: scikit-learn failed (install Debian's python3-sklearn):\n${
        new TextDecoder().decode(out.stderr)
      }`,
    );
    Deno.exit(1);
  }
  const sk = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    fitSeconds: number;
    scoreSeconds: number;
    logDensity: number[];
  };
  let maxDiff = 0;
  skIdx.forEach((r, i) => (maxDiff = Math.max(maxDiff, Math.abs(sk.logDensity[i] - tree.logDensity[r]))));
  const skRate = skIdx.length / sk.scoreSeconds;
  emit({
    method: "sklearn",
    ...common,
    threads: 1,
    queries: skIdx.length,
    note: `score_samples timed on ${skIdx.length} of ${n} states (fit on all ${n}); rtol = tolerance`,
    fitSeconds: +sk.fitSeconds.toFixed(2),
    seconds: +sk.scoreSeconds.toFixed(2),
    wallSeconds: +wall.toFixed(1),
    statesPerSecond: +skRate.toFixed(1),
    estimatedSecondsAllStates: Math.round(sk.fitSeconds + n / skRate),
    maxAbsDiffToTree: maxDiff,
  });
  emit({
    summary: true,
    ...common,
    treeSeconds: +treeSeconds.toFixed(1),
    treeStatesPerSecond: Math.round(n / treeSeconds),
    sklearnStatesPerSecond: +skRate.toFixed(1),
    ratioToSklearn: +((n / treeSeconds) / skRate).toFixed(1),
    threads: THREADS,
    underFiveMinutes: treeSeconds < 300,
  });
}
