/**
 * Gaussian kernel density estimation over states, and the density weights of state
 * density-weighted distillation.
 *
 * With M reference points x_j in d dimensions and bandwidth h,
 *
 *     p̂(s) = (1/M) Σ_j N(s; x_j, h²I)
 *          = (1/M) (2π h²)^(−d/2) Σ_j exp(−‖s − x_j‖² / (2h²)),
 *
 *     log p̂(s) = logsumexp_j(−‖s − x_j‖² / (2h²)) − log M − (d/2) log(2π h²).
 *
 * Two ways to compute it, which agree with scikit-learn's `KernelDensity` (tested):
 * - {@link bruteForceKdeLogDensity}: every pair, as matrix products and log-sum-exp on the tensor
 *   backend (‖s − x‖² = ‖s‖² + ‖x‖² − 2 s·x), streamed in blocks. O(nM) work: for small problems
 *   and as a reference (float32: see its notes on precision).
 * - {@link treeKdeLogDensity}: a KD-tree with best-first pruning and a guaranteed bound ε on the
 *   log-density error (proved at `BlockEvaluator` in `kde_tree.ts`), run on all cores in workers.
 *   Why not matrix products here too: the pairs that survive pruning are different for every
 *   query, scattered over thousands of leaves, so a block of queries shares few of them; the
 *   per-leaf loop is a WebAssembly SIMD kernel (`kde_wasm.ts`). `deno task bench density` compares
 *   the two (the README's results give the figures).
 *
 * Weights, w(s) ∝ p̂(s)^(−α), normalized to mean 1, clipped at a quantile and renormalized: see
 * {@link densityWeights}.
 * @module
 */

import { symmetricEigen } from "./eigen.ts";
import * as tf from "@tensorflow/tfjs";
import { fail } from "../core/errors.ts";
import {
  BlockEvaluator,
  type BlockStats,
  buildKdTree,
  type KdeLayout,
  type KdeProblem,
  layoutBytes,
  permuteRows,
  planLayout,
  STATE_FLOATS,
  writeLeafRecords,
} from "./kde_tree.ts";
import { leafKernelJs, leafKernelModule, leafKernelWasm } from "./kde_wasm.ts";

/** Rows of points, row-major `[rows, dim]`. */
export type Points = Float32Array | Float64Array;

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

/**
 * Fails with "input" unless `points` is a non-empty `[rows, dim]` matrix of finite values; the message
 * names the first bad row and dimension. Returns the number of rows.
 */
export function checkPoints(points: Points, dim: number, what: string): number {
  if (!Number.isInteger(dim) || dim < 1) fail("input", `${what}: dimension ${dim} is not a positive integer`);
  const rows = points.length / dim;
  if (!Number.isInteger(rows) || rows < 1) {
    fail("input", `${what}: ${points.length} values do not form a non-empty matrix with rows of ${dim}`);
  }
  for (let i = 0; i < points.length; i++) {
    if (!Number.isFinite(points[i])) {
      fail(
        "input",
        `${what}: row ${Math.floor(i / dim)}, dimension ${i % dim} is ${points[i]}`,
        "remove or repair non-finite states before estimating densities",
      );
    }
  }
  return rows;
}

/** Fails with "config" unless `h` is a finite positive bandwidth. */
export function checkBandwidth(h: number): void {
  if (!(typeof h === "number" && Number.isFinite(h) && h > 0)) {
    fail(
      "config",
      `bandwidth ${h} is not a finite positive number`,
      "give a bandwidth > 0, or use scott or silverman",
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Bandwidth
// ---------------------------------------------------------------------------------------------

/**
 * The isotropic scale σ̂ of the points: the root mean per-dimension variance (population, ddof 0),
 * σ̂² = tr(Σ)/d. On states normalized to unit variance it is ≈ 1. Fails with "numeric" when it is 0
 * (all points identical).
 */
export function bandwidthScale(points: Points, dim: number): number {
  const n = checkPoints(points, dim, "bandwidth");
  let total = 0;
  for (let k = 0; k < dim; k++) {
    let mean = 0;
    for (let i = 0; i < n; i++) mean += points[i * dim + k];
    mean /= n;
    let v = 0;
    for (let i = 0; i < n; i++) v += (points[i * dim + k] - mean) ** 2;
    total += v / n;
  }
  const sigma = Math.sqrt(total / dim);
  if (!(sigma > 0)) {
    fail(
      "numeric",
      `the ${n} reference states are all identical: no bandwidth rule applies`,
      "give a fixed bandwidth or more varied states",
    );
  }
  return sigma;
}

/** Scott's rule for a d-dimensional Gaussian kernel on M points: h = σ̂ · M^(−1/(d+4)). */
export function scottBandwidth(points: Points, dim: number): number {
  const m = points.length / dim;
  return bandwidthScale(points, dim) * m ** (-1 / (dim + 4));
}

/** Silverman's rule: h = σ̂ · (M (d+2) / 4)^(−1/(d+4)). */
export function silvermanBandwidth(points: Points, dim: number): number {
  const m = points.length / dim;
  return bandwidthScale(points, dim) * ((m * (dim + 2)) / 4) ** (-1 / (dim + 4));
}

/** −log M − (d/2) log(2π h²): added to the log kernel sum to give log p̂. */
export function logNormalizer(dim: number, h: number, referenceSize: number): number {
  return -Math.log(referenceSize) - (dim / 2) * Math.log(2 * Math.PI * h * h);
}

// ---------------------------------------------------------------------------------------------
// Log-density
// ---------------------------------------------------------------------------------------------

/** Progress callback: `done` of `total` query states finished. */
export type OnProgress = (done: number, total: number) => void;

/** Options of {@link gaussianKdeLogDensity}. */
export interface KdeOptions {
  /** `tree` (default): pruned, error ≤ `tolerance`; `brute`: every pair on the tensor backend. */
  readonly method?: "tree" | "brute";
  /** Error bound ε on each log-density (tree; in [1e-5, 1), default 1e-4). */
  readonly tolerance?: number;
  /** Query states per block (default 64). */
  readonly blockSize?: number;
  /** Reference points per KD-tree leaf (tree; default 128: measured fastest on Hopper states). */
  readonly leafSize?: number;
  /** Worker threads (tree; default: one per core; 1 runs on the calling thread). */
  readonly threads?: number;
  /** Called as blocks of query states finish. */
  readonly onProgress?: OnProgress;
}

/** Log-densities and how they were obtained. */
export interface KdeResult {
  /** log p̂ of every query state. */
  readonly logDensity: Float64Array;
  /** Largest error bound on any log p̂ (0 for brute force, up to float32 rounding). */
  readonly errorBound: number;
  /** The method that was used. */
  readonly method: "tree" | "brute";
  /** Kernel pairs evaluated (tree) or n·M (brute force). */
  readonly pairs: number;
}

/**
 * log p̂(s) at each row of `queries` for a Gaussian KDE with bandwidth `h` on the rows of
 * `reference` (both `[rows, dim]`, already normalized). Fails with "input" on non-finite values,
 * "config" on a bad bandwidth or tolerance.
 */
export async function gaussianKdeLogDensity(
  queries: Points,
  reference: Points,
  dim: number,
  h: number,
  options: KdeOptions = {},
): Promise<KdeResult> {
  const method = options.method ?? "tree";
  if (method === "brute") {
    const logDensity = await bruteForceKdeLogDensity(queries, reference, dim, h, options);
    return { logDensity, errorBound: 0, method, pairs: (queries.length / dim) * (reference.length / dim) };
  }
  if (method !== "tree") fail("config", `unknown KDE method "${method}"`, "use tree or brute");
  const r = await treeKdeLogDensity(queries, reference, dim, h, options);
  return { logDensity: r.logDensity, errorBound: r.errorBound, method, pairs: r.stats.pairs };
}

/**
 * Every pair, on the tensor backend: for a block of B queries close together (leaves of a KD-tree over
 * the queries), centred on their mean c — which keeps the float32 cancellation in ‖s‖² + ‖x‖² − 2 s·x
 * small for the pairs that matter: about 1e-7·(‖s−c‖² + ‖x−c‖²)/(2h²) on log p̂ — and a block of R
 * reference points, u = −max(‖s−c‖² + ‖x−c‖² − 2(s−c)·(x−c), 0) / (2h²) is one [B, R] matrix product
 * and a few element-wise ops, reduced by `tf.logSumExp`; blocks are combined in float64. Memory is
 * O(B·R) whatever n and M.
 */
export async function bruteForceKdeLogDensity(
  queries: Points,
  reference: Points,
  dim: number,
  h: number,
  options: {
    readonly blockSize?: number;
    readonly referenceBlockSize?: number;
    readonly onProgress?: OnProgress;
  } = {},
): Promise<Float64Array> {
  const n = checkPoints(queries, dim, "query states");
  const m = checkPoints(reference, dim, "reference states");
  checkBandwidth(h);
  const B = Math.max(1, Math.floor(options.blockSize ?? 64));
  const R = Math.max(1, Math.floor(options.referenceBlockSize ?? 4096));
  const c2 = 1 / (2 * h * h);
  const out = new Float64Array(n);
  // Blocks of nearby queries: consecutive rows in the order of a KD-tree with leaves of ≤ B.
  const order = buildKdTree(Float64Array.from(queries), dim, B).order;
  const refT = tf.tidy(() => tf.tensor2d(Float32Array.from(reference), [m, dim]).transpose()); // [dim, M]
  try {
    for (let q0 = 0; q0 < n; q0 += B) {
      const nb = Math.min(B, n - q0);
      const row = (i: number) => order[q0 + i] * dim;
      const center = new Float64Array(dim);
      for (let i = 0; i < nb; i++) for (let k = 0; k < dim; k++) center[k] += queries[row(i) + k] / nb;
      const qc = new Float32Array(nb * dim);
      const qn = new Float32Array(nb);
      for (let i = 0; i < nb; i++) {
        let s = 0;
        for (let k = 0; k < dim; k++) {
          const v = queries[row(i) + k] - center[k];
          qc[i * dim + k] = v;
          s += v * v;
        }
        qn[i] = s;
      }
      const acc = new Float64Array(nb).fill(-Infinity);
      const qT = tf.tensor2d(qc, [nb, dim]);
      const qnT = tf.tensor2d(qn, [nb, 1]);
      const cT = tf.tensor2d(Float32Array.from(center), [dim, 1]);
      try {
        for (let r0 = 0; r0 < m; r0 += R) {
          const nr = Math.min(R, m - r0);
          const part = tf.tidy(() => {
            const xc = tf.sub(tf.slice(refT, [0, r0], [dim, nr]), cT); // [dim, R]
            const xn = tf.sum(tf.square(xc), 0, true); // [1, R]
            const d2 = tf.relu(tf.sub(tf.add(qnT, xn), tf.mul(2, tf.matMul(qT, xc)))); // [B, R]
            return tf.logSumExp(tf.mul(d2, -c2), 1); // [B]
          });
          const values = await part.data();
          part.dispose();
          for (let i = 0; i < nb; i++) {
            const a = acc[i], b = values[i];
            const hiV = a > b ? a : b;
            acc[i] = hiV === -Infinity ? -Infinity : hiV + Math.log(Math.exp(a - hiV) + Math.exp(b - hiV));
          }
        }
      } finally {
        qT.dispose();
        qnT.dispose();
        cT.dispose();
      }
      const norm = logNormalizer(dim, h, m);
      for (let i = 0; i < nb; i++) out[order[q0 + i]] = acc[i] + norm;
      options.onProgress?.(q0 + nb, n);
    }
  } finally {
    refT.dispose();
  }
  return out;
}

/** What {@link treeKdeLogDensity} returns. */
export interface TreeKdeResult {
  readonly logDensity: Float64Array;
  /** Per query: the bound reached on log p̂_exact − log p̂ (≤ tolerance; the difference is ≥ −2e-6). */
  readonly bound: Float64Array;
  /** max of `bound`. */
  readonly errorBound: number;
  readonly stats: BlockStats;
}

/** Tuning of {@link treeKdeLogDensity} beyond {@link KdeOptions} (defaults are measured choices). */
export interface TreeKdeTuning {
  /** Share of the tolerance given to pairs skipped beyond the threshold (default 0.5). */
  readonly skipShare?: number;
  /** `wasm` (default): the SIMD kernel; `js`: its JavaScript twin (same arithmetic, slower). */
  readonly kernel?: "wasm" | "js";
}

/**
 * The pruned estimate: for every query, log p̂_exact − log p̂ ∈ [−2e-6, ε] with ε = `tolerance` (the
 * bound and its proof are at `BlockEvaluator` in `kde_tree.ts`; −2e-6 is the float32 exponential's
 * rounding). The points are first expressed in the
 * principal axes of the reference (an orthogonal change of basis, so distances are unchanged),
 * which tightens the KD-tree boxes. Query blocks (≤ `blockSize` states close together: the leaves of
 * a KD-tree over the queries) are spread over `threads` workers; each block is computed by one
 * evaluator with the same arithmetic, so results do not depend on the thread count.
 */
export async function treeKdeLogDensity(
  queries: Points,
  reference: Points,
  dim: number,
  h: number,
  options: KdeOptions & TreeKdeTuning = {},
): Promise<TreeKdeResult> {
  const n = checkPoints(queries, dim, "query states");
  const m = checkPoints(reference, dim, "reference states");
  checkBandwidth(h);
  const tolerance = options.tolerance ?? 1e-4;
  if (!(tolerance >= 1e-5 && tolerance < 1)) {
    fail(
      "config",
      `KDE tolerance ${tolerance} is not in [1e-5, 1)`,
      "e.g. 1e-4 (log-density error at most 1e-4); the kernel values themselves are exact to 2e-6",
    );
  }
  const leafSize = Math.max(1, Math.floor(options.leafSize ?? 128));
  const blockSize = Math.max(1, Math.floor(options.blockSize ?? 64));
  const threads = Math.max(1, Math.floor(options.threads ?? (navigator.hardwareConcurrency || 1)));

  // Principal axes of the reference, coordinates in decreasing variance.
  const { basis, center } = principalAxes(reference, dim);
  const W = dim;
  const refRot = rotate(reference, dim, center, basis, new Float64Array(m * W));
  const qRot = rotate(queries, dim, center, basis, new Float64Array(n * W));
  const refTree = buildKdTree(refRot, W, leafSize);
  const refPoints = permuteRows(refRot, W, refTree.order);
  const qTree = buildKdTree(qRot, W, blockSize);
  const share = (bytes: number) => new SharedArrayBuffer(bytes);
  const queryPoints = permuteRows(qRot, W, qTree.order, new Float64Array(share(n * W * 8)));
  // Blocks: the query tree's leaves, cut into pieces of at most blockSize (a leaf of coinciding
  // points can be larger).
  const ranges: [number, number, number][] = [];
  for (const leaf of qTree.leaves) {
    for (let s = qTree.start[leaf]; s < qTree.end[leaf]; s += blockSize) {
      ranges.push([leaf, s, Math.min(s + blockSize, qTree.end[leaf])]);
    }
  }
  const blocks = ranges.length;
  const blockStart = new Int32Array(share(blocks * 4)), blockEnd = new Int32Array(share(blocks * 4));
  const blockLo = new Float64Array(share(blocks * W * 8)), blockHi = new Float64Array(share(blocks * W * 8));
  ranges.forEach(([leaf, s, e], b) => {
    blockStart[b] = s;
    blockEnd[b] = e;
    blockLo.set(qTree.lo.subarray(leaf * W, (leaf + 1) * W), b * W);
    blockHi.set(qTree.hi.subarray(leaf * W, (leaf + 1) * W), b * W);
  });
  const sharedCopy = <T extends Int32Array | Float64Array>(a: T): T => {
    const b = new (a.constructor as new (buffer: SharedArrayBuffer) => T)(share(a.byteLength));
    b.set(a as never);
    return b;
  };
  const problem: KdeProblem = {
    width: W,
    c2: 1 / (2 * h * h),
    tolerance,
    skipShare: options.skipShare ?? 0.5,
    referenceSize: m,
    refTree: {
      dim: W,
      nodes: refTree.nodes,
      start: sharedCopy(refTree.start),
      end: sharedCopy(refTree.end),
      left: sharedCopy(refTree.left),
      right: sharedCopy(refTree.right),
      lo: sharedCopy(refTree.lo),
      hi: sharedCopy(refTree.hi),
    },
    queryPoints,
    blockStart,
    blockEnd,
    blockLo,
    blockHi,
    logSum: new Float64Array(share(n * 8)),
    bound: new Float64Array(share(n * 8)),
  };
  const workers = Math.min(threads, blocks);
  const layout = planLayout(refTree, blockSize, STATE_FLOATS * 8);
  const pages = Math.ceil(layoutBytes(layout, workers) / 65536);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  writeLeafRecords(memory.buffer, layout, refTree, refPoints);
  const kernel = options.kernel ?? "wasm";
  const setup: KdeSetup = { problem, layout, memory, kernel };
  const stats = workers > 1
    ? await evaluateInWorkers(setup, workers, n, options.onProgress)
    : evaluateHere(setup, n, options.onProgress);

  const norm = logNormalizer(dim, h, m);
  const logDensity = new Float64Array(n);
  const bound = new Float64Array(n);
  let errorBound = 0;
  for (let k = 0; k < n; k++) {
    const i = qTree.order[k];
    logDensity[i] = problem.logSum[k] + norm;
    bound[i] = problem.bound[k];
    if (bound[i] > errorBound) errorBound = bound[i];
  }
  return { logDensity, bound, errorBound, stats };
}

/** Everything an evaluator needs; sent as is to the workers (the memory and arrays are shared). */
export interface KdeSetup {
  readonly problem: KdeProblem;
  readonly layout: KdeLayout;
  readonly memory: WebAssembly.Memory;
  readonly kernel: "wasm" | "js";
}

/** An evaluator on scratch region `index` of the setup's memory, with the chosen kernel. */
export function makeEvaluator(setup: KdeSetup, index: number): BlockEvaluator {
  const { problem, layout, memory } = setup;
  const kernel = setup.kernel === "js"
    ? leafKernelJs(memory.buffer, problem.width)
    : leafKernelWasm(leafKernelModule(problem.width, true), memory);
  return new BlockEvaluator(problem, layout, memory.buffer, kernel, index);
}

function evaluateHere(setup: KdeSetup, n: number, onProgress?: OnProgress): BlockStats {
  const evaluator = makeEvaluator(setup, 0);
  const { problem } = setup;
  const stats: BlockStats = { pairs: 0, kernels: 0, skipped: 0, leaves: 0 };
  let done = 0, last = performance.now();
  for (let b = 0; b < problem.blockStart.length; b++) {
    evaluator.evaluate(b, stats);
    done += problem.blockEnd[b] - problem.blockStart[b];
    if (onProgress && performance.now() - last > 200) {
      onProgress(done, n);
      last = performance.now();
    }
  }
  onProgress?.(n, n);
  return stats;
}

/** Runs the blocks on `threads` workers that take block indices from a shared counter. */
async function evaluateInWorkers(
  setup: KdeSetup,
  threads: number,
  n: number,
  onProgress?: OnProgress,
): Promise<BlockStats> {
  // control[0]: next block to take; control[1]: queries finished.
  const control = new Int32Array(new SharedArrayBuffer(8));
  const workers: Worker[] = [];
  const stats: BlockStats = { pairs: 0, kernels: 0, skipped: 0, leaves: 0 };
  const timer = onProgress ? setInterval(() => onProgress(Atomics.load(control, 1), n), 250) : undefined;
  try {
    await Promise.all(Array.from({ length: threads }, (_, index) =>
      new Promise<void>((resolve, reject) => {
        const worker = new Worker(new URL("./kde_worker.ts", import.meta.url).href, { type: "module" });
        workers.push(worker);
        worker.onmessage = (e: MessageEvent) => {
          const msg = e.data as { ok: boolean; stats?: BlockStats; error?: string };
          if (!msg.ok) return reject(new Error(`KDE worker failed: ${msg.error}`));
          stats.pairs += msg.stats!.pairs;
          stats.kernels += msg.stats!.kernels;
          stats.skipped += msg.stats!.skipped;
          stats.leaves += msg.stats!.leaves;
          resolve();
        };
        worker.onerror = (e) => {
          e.preventDefault();
          reject(new Error(`KDE worker failed: ${e.message}`));
        };
        worker.postMessage({ setup, index, control });
      })));
  } finally {
    if (timer !== undefined) clearInterval(timer);
    for (const w of workers) w.terminate();
  }
  onProgress?.(n, n);
  return stats;
}

// ---------------------------------------------------------------------------------------------
// Principal axes
// ---------------------------------------------------------------------------------------------

/**
 * Mean and eigenvectors (columns of `basis`, `[dim, dim]`, in decreasing eigenvalue order) of the
 * covariance of `points`, by cyclic Jacobi rotations in float64.
 */
export function principalAxes(
  points: Points,
  dim: number,
): { center: Float64Array; basis: Float64Array; variances: Float64Array } {
  const n = points.length / dim;
  const center = new Float64Array(dim);
  for (let i = 0; i < n; i++) for (let k = 0; k < dim; k++) center[k] += points[i * dim + k];
  for (let k = 0; k < dim; k++) center[k] /= n;
  const a = new Float64Array(dim * dim);
  const row = new Float64Array(dim);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < dim; k++) row[k] = points[i * dim + k] - center[k];
    for (let j = 0; j < dim; j++) for (let k = j; k < dim; k++) a[j * dim + k] += row[j] * row[k];
  }
  for (let j = 0; j < dim; j++) for (let k = j; k < dim; k++) a[k * dim + j] = a[j * dim + k] /= n;
  const { values, vectors } = symmetricEigen(a, dim);
  const basis = new Float64Array(dim * dim);
  const variances = Float64Array.from(values);
  vectors.forEach((vec, j) => {
    for (let k = 0; k < dim; k++) basis[k * dim + j] = vec[k];
  });
  return { center, basis, variances };
}

/** out[i, j] = Σ_k (p[i, k] − center[k]) · basis[k, j]. */
function rotate(
  points: Points,
  dim: number,
  center: Float64Array,
  basis: Float64Array,
  out: Float64Array,
): Float64Array {
  const n = points.length / dim;
  const row = new Float64Array(dim);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < dim; k++) row[k] = points[i * dim + k] - center[k];
    for (let j = 0; j < dim; j++) {
      let s = 0;
      for (let k = 0; k < dim; k++) s += row[k] * basis[k * dim + j];
      out[i * dim + j] = s;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Weights
// ---------------------------------------------------------------------------------------------

/** Summary statistics of a weight vector. */
export interface WeightStats {
  /** Smallest weight. */
  readonly min: number;
  /** Largest weight. */
  readonly max: number;
  /** Mean weight. */
  readonly mean: number;
  /** Quantiles at 1, 5, 25, 50, 75, 95 and 99 % (linear interpolation, as numpy's default). */
  readonly quantiles: Readonly<Record<"p01" | "p05" | "p25" | "p50" | "p75" | "p95" | "p99", number>>;
  /** Kish's effective sample size (Σw)² / Σw². */
  readonly effectiveSampleSize: number;
  /** effectiveSampleSize / n. */
  readonly effectiveSampleFraction: number;
}

/** Weights and how they were clipped. */
export interface DensityWeights {
  readonly weight: Float64Array;
  /** The clip threshold: the `clipQuantile` quantile of the mean-1 weights before clipping. */
  readonly clipValue: number;
  /** Number of states whose weight was lowered to `clipValue`. */
  readonly clipped: number;
  readonly stats: WeightStats;
}

/**
 * Density weights that favour rare states:
 *
 *     w̃(s) = p̂(s)^(−α) = exp(−α log p̂(s)),   w = w̃ / mean(w̃),
 *     w ← min(w, q),  q = the `clipQuantile` quantile of w,   w ← w / mean(w).
 *
 * Computed with the largest −α log p̂ subtracted before exponentiating, so nothing overflows; a weight
 * more than ~1e308 times smaller than the largest becomes 0. `clipQuantile` = 1 means no clipping.
 * Fails with "input" on a non-finite log-density and "config" on α < 0 or a quantile outside (0, 1].
 */
export function densityWeights(
  logDensity: ArrayLike<number>,
  options: { readonly alpha: number; readonly clipQuantile: number },
): DensityWeights {
  const { alpha, clipQuantile } = options;
  if (!(Number.isFinite(alpha) && alpha >= 0)) {
    fail(
      "config",
      `density temperature alpha ${alpha} is not a finite number ≥ 0`,
      "e.g. alpha 1 (w = 1/p̂); 0 gives uniform weights",
    );
  }
  if (!(clipQuantile > 0 && clipQuantile <= 1)) {
    fail("config", `clip quantile ${clipQuantile} is not in (0, 1]`, "e.g. 0.99; 1 disables clipping");
  }
  const n = logDensity.length;
  if (n === 0) fail("input", "no log-densities to weight");
  let top = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = logDensity[i];
    if (!Number.isFinite(v)) {
      fail("input", `log-density of state ${i} is ${v}`, "every state needs a finite density");
    }
    if (-alpha * v > top) top = -alpha * v;
  }
  const w = new Float64Array(n);
  for (let i = 0; i < n; i++) w[i] = Math.exp(-alpha * logDensity[i] - top);
  scaleToMeanOne(w);
  const clipValue = quantile(Float64Array.from(w).sort(), clipQuantile);
  let clipped = 0;
  for (let i = 0; i < n; i++) {
    if (w[i] > clipValue) {
      w[i] = clipValue;
      clipped++;
    }
  }
  scaleToMeanOne(w);
  return { weight: w, clipValue, clipped, stats: weightStats(w) };
}

function scaleToMeanOne(w: Float64Array): void {
  let sum = 0;
  for (let i = 0; i < w.length; i++) sum += w[i];
  const scale = w.length / sum;
  for (let i = 0; i < w.length; i++) w[i] *= scale;
}

/** The q-quantile of ascending `sorted` values, interpolating linearly (numpy's default). */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos), hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
}

/** Min, max, mean, quantiles and effective sample size of `w`. */
export function weightStats(w: ArrayLike<number>): WeightStats {
  const sorted = Float64Array.from(w).sort();
  let sum = 0, sumSq = 0;
  for (let i = 0; i < sorted.length; i++) {
    sum += sorted[i];
    sumSq += sorted[i] * sorted[i];
  }
  const ess = (sum * sum) / sumSq;
  const at = (q: number) => quantile(sorted, q);
  return {
    min: sorted[0],
    max: sorted[sorted.length - 1],
    mean: sum / sorted.length,
    quantiles: {
      p01: at(0.01),
      p05: at(0.05),
      p25: at(0.25),
      p50: at(0.5),
      p75: at(0.75),
      p95: at(0.95),
      p99: at(0.99),
    },
    effectiveSampleSize: ess,
    effectiveSampleFraction: ess / sorted.length,
  };
}
