/**
 * `metaGradientSlice` (metagradient.ts) on host arrays with every product a BLAS call: the same
 * passes — forward, backward, SGD, the outer gradient, the tangent sweep in reverse — with each
 * pass's elementwise work in one loop over memory instead of several tfjs ops (each a pass over
 * the tensor plus tens of microseconds of dispatch). Used where a BLAS is active on the wasm
 * backend; the equations are those of metagradient.ts's module comment.
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import type { BlasLibrary } from "../../numerics/blas.ts";
import { layerViews, parameterCount } from "../../numerics/host_mlp.ts";
import type { MlpParams } from "../../numerics/mlp.ts";

// The shapes of metagradient.ts's types, restated: that module dispatches here, so importing its
// types back would make an import circle.
type AllReduce = (parts: tf.Tensor[]) => tf.Tensor[];
type InnerLoopOptions = { readonly steps: number; readonly learningRate: number; readonly maxAction: number };
type OuterBatch = {
  readonly states: tf.Tensor2D;
  readonly targets: tf.Tensor2D;
  readonly weights?: tf.Tensor1D;
};
type MetaGradient = { states: tf.Tensor2D; actions: tf.Tensor2D; outerLoss: tf.Scalar; innerLoss: tf.Scalar };

type Layers = { w: Float32Array; b: Float32Array }[];

/** What one forward + backward pass of step t leaves behind. */
interface Record {
  readonly theta: Float32Array;
  readonly layers: Layers;
  readonly hidden: Float32Array[];
  readonly tanhOut: Float32Array;
  readonly gOut: Float32Array;
  readonly deltas: Float32Array[];
}

let ones = new Float32Array();

/**
 * One buffer for everything a call stores (records of T steps, scratch), kept between calls:
 * allocating hundreds of megabytes of ArrayBuffers per outer step costs more in zeroing and
 * garbage collection than the passes themselves. The tfjs path keeps the same in the wasm heap,
 * which never shrinks either.
 */
let arena = new Float32Array();

/** A bump allocator over `arena`, grown to `total` floats when smaller. */
function bump(total: number): (n: number) => Float32Array {
  if (arena.length < total) arena = new Float32Array(total);
  let at = 0;
  return (n) => {
    const out = arena.subarray(at, at + n);
    at += n;
    if (at > total) throw new Error("internal: meta-gradient arena overrun");
    return out;
  };
}

/** out = Σ_rows m (`m` is rows × cols). */
function columnSums(blas: BlasLibrary, m: Float32Array, rows: number, cols: number, out: Float32Array): void {
  if (ones.length < rows) ones = new Float32Array(rows).fill(1);
  blas.sgemv(true, rows, cols, 1, m, cols, ones.subarray(0, rows), 0, out);
}

/** z = a W + b row by row; a is rows × in, W in × out. */
function affine(
  blas: BlasLibrary,
  a: Float32Array,
  rows: number,
  w: Float32Array,
  b: Float32Array,
  inDim: number,
  out: number,
  z: Float32Array,
): void {
  for (let r = 0; r < rows; r++) z.set(b, r * out);
  blas.sgemm(false, false, rows, out, inDim, 1, a, inDim, w, out, 1, z, out);
}

/** Forward pass: hidden activations (after ReLU) and tanh(z_L). */
function forward(
  blas: BlasLibrary,
  sizes: readonly number[],
  layers: Layers,
  x: Float32Array,
  rows: number,
  alloc: (n: number) => Float32Array,
) {
  const L = layers.length;
  const hidden: Float32Array[] = [];
  let a = x;
  for (let l = 0; l < L; l++) {
    const z = alloc(rows * sizes[l + 1]);
    affine(blas, a, rows, layers[l].w, layers[l].b, sizes[l], sizes[l + 1], z);
    if (l < L - 1) {
      for (let i = 0; i < z.length; i++) {
        const v = z[i];
        z[i] = v * +(v > 0);
      }
      hidden.push(z);
    } else {
      for (let i = 0; i < z.length; i++) z[i] = Math.tanh(z[i]);
    }
    a = z;
  }
  return { hidden, tanhOut: a };
}

/**
 * ∂ℓ/∂π of 1/(B m) Σ w_i (c·τ − target)² for this slice's rows (B = `totalRows`), and this slice's
 * share of the loss itself.
 */
function squaredError(
  tanhOut: Float32Array,
  target: Float32Array,
  c: number,
  rows: number,
  m: number,
  totalRows: number,
  gOut: Float32Array,
  weights?: Float32Array,
): { gOut: Float32Array; loss: number } {
  const scale = 2 / (totalRows * m);
  let loss = 0;
  for (let r = 0; r < rows; r++) {
    const w = weights ? weights[r] : 1;
    let row = 0;
    for (let k = 0; k < m; k++) {
      const i = r * m + k;
      const diff = Math.fround(tanhOut[i] * c) - target[i];
      row += diff * diff;
      gOut[i] = diff * scale * w;
    }
    loss += w * row;
  }
  return { gOut, loss: loss / (m * totalRows) };
}

/** Backward pass: parameter gradient (flat, the layout of `theta`) and every δ_l. */
function backward(
  blas: BlasLibrary,
  sizes: readonly number[],
  layers: Layers,
  x: Float32Array,
  rows: number,
  hidden: readonly Float32Array[],
  tanhOut: Float32Array,
  gOut: Float32Array,
  c: number,
  grad: Float32Array,
  alloc: (n: number) => Float32Array,
): Float32Array[] {
  const L = layers.length;
  const g = layerViews(grad, sizes);
  const deltas: Float32Array[] = new Array(L);
  let delta = alloc(gOut.length);
  for (let i = 0; i < delta.length; i++) delta[i] = gOut[i] * (c * (1 - tanhOut[i] * tanhOut[i]));
  for (let l = L - 1; l >= 0; l--) {
    deltas[l] = delta;
    const input = l === 0 ? x : hidden[l - 1];
    const inDim = sizes[l], out = sizes[l + 1];
    blas.sgemm(true, false, inDim, out, rows, 1, input, inDim, delta, out, 0, g[l].w, out);
    columnSums(blas, delta, rows, out, g[l].b);
    if (l > 0) {
      const next = alloc(rows * inDim);
      blas.sgemm(false, true, rows, inDim, out, 1, delta, out, layers[l].w, out, 0, next, inDim);
      const h = hidden[l - 1];
      for (let i = 0; i < next.length; i++) next[i] *= +(h[i] > 0);
      delta = next;
    }
  }
  return deltas;
}

/**
 * Sums `flat` (parameter-shaped) and `scalar` over the slices through the tensor `allReduce`; with
 * none (one slice), leaves them.
 */
function reduce(
  flat: Float32Array,
  sizes: readonly number[],
  scalar: number | undefined,
  allReduce: AllReduce | undefined,
): number | undefined {
  if (!allReduce) return scalar;
  const views = layerViews(flat, sizes);
  const parts = tf.tidy(() => [
    ...views.map((v, l) => tf.tensor2d(v.w, [sizes[l], sizes[l + 1]])),
    ...views.map((v) => tf.tensor1d(v.b)),
    ...(scalar === undefined ? [] : [tf.scalar(scalar)]),
  ]);
  const summed = allReduce(parts);
  const L = views.length;
  views.forEach((v, l) => {
    v.w.set(summed[l].dataSync() as Float32Array);
    v.b.set(summed[L + l].dataSync() as Float32Array);
  });
  const out = scalar === undefined ? undefined : summed[2 * L].dataSync()[0];
  tf.dispose([...parts, ...summed]);
  return out;
}

/**
 * The meta-gradient of one slice (everything of `metaGradientSlice`: `x`, `y`, `batch` are this
 * slice's rows; `allReduce` sums over the slices, absent for one slice) on host arrays.
 */
export function metaGradientSliceHost(
  blas: BlasLibrary,
  initial: MlpParams<tf.Tensor>,
  x: tf.Tensor2D,
  y: tf.Tensor2D,
  batch: OuterBatch,
  options: InnerLoopOptions,
  slicing: { readonly synsetRows: number; readonly outerRows: number; readonly allReduce?: AllReduce },
): MetaGradient {
  const sizes: number[] = [initial[0].w.shape[0], ...initial.map((l) => l.w.shape[1] as number)];
  const L = initial.length, P = parameterCount(sizes);
  const [rows, d] = x.shape, m = y.shape[1];
  const { steps: T, learningRate: eta, maxAction: c } = options;
  const n = slicing.synsetRows;
  const X = x.dataSync() as Float32Array, Y = y.dataSync() as Float32Array;
  const outerRows = batch.states.shape[0];
  const hiddenWidth = sizes.slice(1, L).reduce((a, b) => a + b, 0);
  const deltaWidth = sizes.slice(1).reduce((a, b) => a + b, 0);
  const perRecord = P + rows * (hiddenWidth + deltaWidth + 2 * m);
  const alloc = bump(
    T * perRecord + 4 * P + outerRows * (hiddenWidth + deltaWidth + 2 * m) +
      rows * (hiddenWidth + deltaWidth) +
      rows * sizes.slice(0, L).reduce((a, b) => a + b, 0) + 2 * rows * m + rows * (d + m),
  );

  // Inner loop, storing each step's record.
  let theta = alloc(P);
  const first = layerViews(theta, sizes);
  initial.forEach((layer, l) => {
    first[l].w.set(layer.w.dataSync() as Float32Array);
    first[l].b.set(layer.b.dataSync() as Float32Array);
  });
  const records: Record[] = [];
  const scratchGrad = alloc(P);
  let innerLoss = 0;
  for (let t = 0; t < T; t++) {
    const layers = layerViews(theta, sizes);
    const { hidden, tanhOut } = forward(blas, sizes, layers, X, rows, alloc);
    const { gOut, loss } = squaredError(tanhOut, Y, c, rows, m, n, alloc(rows * m));
    const grad = scratchGrad;
    const deltas = backward(blas, sizes, layers, X, rows, hidden, tanhOut, gOut, c, grad, alloc);
    innerLoss = reduce(grad, sizes, loss, slicing.allReduce)!;
    records.push({ theta, layers, hidden, tanhOut, gOut, deltas });
    const next = alloc(P);
    for (let i = 0; i < P; i++) next[i] = theta[i] - Math.fround(grad[i] * eta);
    theta = next;
  }

  // H(θ_T) and g_T = ∇_θ H.
  const S = batch.states.dataSync() as Float32Array, A = batch.targets.dataSync() as Float32Array;
  const weights = batch.weights?.dataSync() as Float32Array | undefined;
  if (weights && weights.length !== outerRows) {
    throw new Error(`outer weights have ${weights.length} entries for ${outerRows} states`);
  }
  const finalLayers = layerViews(theta, sizes);
  const outer = forward(blas, sizes, finalLayers, S, outerRows, alloc);
  const { gOut: outerG, loss: outerPartial } = squaredError(
    outer.tanhOut,
    A,
    c,
    outerRows,
    m,
    slicing.outerRows,
    alloc(outerRows * m),
    weights,
  );
  const v = alloc(P);
  backward(blas, sizes, finalLayers, S, outerRows, outer.hidden, outer.tanhOut, outerG, c, v, alloc);
  const outerLoss = reduce(v, sizes, outerPartial, slicing.allReduce)!;
  const vl = layerViews(v, sizes);

  // Reverse sweep: the tangent of step t's passes along v = g_{t+1}.
  const dx = new Float32Array(rows * d), dy = new Float32Array(rows * m);
  const hv = alloc(P), hvl = layerViews(hv, sizes);
  const hiddenDot = sizes.slice(1, L).map((w) => alloc(rows * w));
  const zDot = sizes.slice(1).map((w) => alloc(rows * w));
  const back = sizes.slice(0, L).map((w) => alloc(rows * w));
  const gOutDot = alloc(rows * m), deltaDotL = alloc(rows * m);
  for (let t = T - 1; t >= 0; t--) {
    const r = records[t], w = r.layers;
    // ż_l = ȧ_{l−1} W_l + a_{l−1} V_l + vb_l, ȧ_l = ż_l ⊙ 1[a_l > 0] (ȧ_0 = 0).
    affine(blas, X, rows, vl[0].w, vl[0].b, d, sizes[1], zDot[0]);
    for (let l = 1; l < L; l++) {
      const aDot = hiddenDot[l - 1], zPrev = zDot[l - 1], h = r.hidden[l - 1];
      for (let i = 0; i < aDot.length; i++) aDot[i] = zPrev[i] * +(h[i] > 0);
      const inDim = sizes[l], out = sizes[l + 1], z = zDot[l];
      for (let q = 0; q < rows; q++) z.set(vl[l].b, q * out);
      blas.sgemm(false, false, rows, out, inDim, 1, aDot, inDim, w[l].w, out, 1, z, out);
      blas.sgemm(false, false, rows, out, inDim, 1, h, inDim, vl[l].w, out, 1, z, out);
    }
    // τ̇ = (1 − τ²) ż_L; ġ_out = 2c τ̇ / (N m); δ̇_L = c(1 − τ²) ġ_out − 2c τ τ̇ g_out.
    const zL = zDot[L - 1];
    for (let i = 0; i < gOutDot.length; i++) {
      const tau = r.tanhOut[i], oneMinus = 1 - tau * tau;
      const tauDot = oneMinus * zL[i];
      const god = Math.fround(tauDot * ((2 * c) / (n * m)));
      gOutDot[i] = god;
      deltaDotL[i] = oneMinus * c * god - tau * tauDot * 2 * c * r.gOut[i];
    }
    let deltaDot = deltaDotL;
    for (let l = L - 1; l >= 0; l--) {
      const delta = r.deltas[l], input = l === 0 ? X : r.hidden[l - 1];
      const inDim = sizes[l], out = sizes[l + 1];
      // ġW_l = ȧ_{l−1}ᵀ δ_l + a_{l−1}ᵀ δ̇_l, ġb_l = Σ_rows δ̇_l (not at t = 0: g_0 is unused).
      if (t > 0) {
        blas.sgemm(true, false, inDim, out, rows, 1, input, inDim, deltaDot, out, 0, hvl[l].w, out);
        if (l > 0) {
          blas.sgemm(true, false, inDim, out, rows, 1, hiddenDot[l - 1], inDim, delta, out, 1, hvl[l].w, out);
        }
        columnSums(blas, deltaDot, rows, out, hvl[l].b);
      }
      // δ̇_{l−1} = (δ̇_l W_lᵀ + δ_l V_lᵀ) ⊙ 1[a_{l−1} > 0]; at the input, the tangent of ∇_X ℓ.
      const bk = back[l];
      blas.sgemm(false, true, rows, inDim, out, 1, deltaDot, out, w[l].w, out, 0, bk, inDim);
      blas.sgemm(false, true, rows, inDim, out, 1, delta, out, vl[l].w, out, 1, bk, inDim);
      if (l > 0) {
        const h = r.hidden[l - 1];
        for (let i = 0; i < bk.length; i++) bk[i] *= +(h[i] > 0);
        deltaDot = bk;
      }
    }
    const xGradDot = back[0];
    for (let i = 0; i < dx.length; i++) dx[i] -= Math.fround(xGradDot[i] * eta);
    // ∇_Y ℓ = −g_out: the update −η(−ġ_out) = +η ġ_out.
    for (let i = 0; i < dy.length; i++) dy[i] += Math.fround(gOutDot[i] * eta);
    if (t > 0) {
      reduce(hv, sizes, undefined, slicing.allReduce);
      for (let i = 0; i < P; i++) v[i] -= Math.fround(hv[i] * eta);
    }
  }
  return {
    states: tf.tensor2d(dx, [rows, d]),
    actions: tf.tensor2d(dy, [rows, m]),
    outerLoss: tf.scalar(outerLoss),
    innerLoss: tf.scalar(innerLoss),
  };
}
