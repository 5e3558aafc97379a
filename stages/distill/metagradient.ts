/**
 * The exact meta-gradient of behaviour distillation, with hand-derived passes.
 *
 * Student: an MLP  a_0 = x,  z_l = a_{l−1} W_l + b_l,  a_l = relu(z_l) (l < L),  π(x) = c·tanh(z_L).
 * Inner loop (BC on the synthetic set X ∈ R^{N×d}, Y ∈ R^{N×m}, full batch, T steps of SGD):
 *
 *     ℓ(θ; X, Y) = 1/(N m) Σ_{i,k} (π_θ(x_i)_k − y_ik)²,        θ_{t+1} = θ_t − η ∇_θ ℓ(θ_t; X, Y).
 *
 * Outer objective on real states S ∈ R^{B×d} with targets A and per-state weights w:
 *
 *     H(θ_T) = 1/(B m) Σ_{i,k} w_i (π_{θ_T}(s_i)_k − A_ik)².
 *
 * Reverse mode through the unrolled loop: with g_T = ∇_θ H(θ_T) and, for t = T−1 … 0,
 *
 *     g_t  = g_{t+1} − η ∇²_θθ ℓ(θ_t) g_{t+1}
 *     ∇_X H += −η ∇_X ⟨g_{t+1}, ∇_θ ℓ(θ_t)⟩,     ∇_Y H += −η ∇_Y ⟨g_{t+1}, ∇_θ ℓ(θ_t)⟩.
 *
 * All three products are the directional derivative, along v = g_{t+1}, of the gradient
 * (∇_θ ℓ, ∇_X ℓ, ∇_Y ℓ) (the Hessian is symmetric and mixed partials commute), so one tangent
 * ("forward-over-reverse", Pearlmutter's R-operator) sweep through the stored forward and backward
 * passes of step t gives them all. Everything that sweep needs from step t — weights, activations,
 * tanh outputs and backward signals δ — is stored during the inner loop, so no forward pass is ever
 * recomputed. Cost per inner step: 3 matmuls per layer forward, 6 per layer in reverse, against
 * PyTorch's double-backward through a rebuilt graph.
 *
 * Data parallelism: ℓ and H are means over rows, so every quantity shared by all rows — ∇_θ ℓ,
 * the Hessian-vector products, ∇_θ H, the loss values — is a sum of per-row-slice partial sums, while
 * ∇_X H and ∇_Y H of a row depend on that row alone. The passes below therefore run on a contiguous
 * slice of X, Y (and of the real states), scaled by the global row counts, and hand each shared
 * partial sum to an `allReduce` hook: the identity for one slice (`metaGradient`), a sum over the
 * slices of K worker threads in a fixed order for `MetaGradientPool` (`metagradient_pool.ts`), so
 * that every worker holds bitwise-identical weights θ_t and tangents g_t.
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { activeBlas } from "../../numerics/blas_kernels.ts";
import { mlpForward, type MlpParams, tidyPlain } from "../../numerics/mlp.ts";
import { metaGradientSliceHost } from "./metagradient_host.ts";

/** Student parameters: layer l has `w` `[in, out]` and `b` `[out]` (the `numerics/mlp.ts` layout). */
// deno-doc-ignore private-type-ref -- tf.Tensor types are tfjs's own
export type StudentParams = MlpParams<tf.Tensor>;

/** What one forward + backward pass of the BC loss leaves behind. */
export interface StepRecord {
  /** The parameters θ_t the pass was made at. */
  readonly params: StudentParams;
  /** Hidden activations a_1 … a_{L−1} (`a_0` is X). */
  // deno-doc-ignore private-type-ref -- tf.Tensor types are tfjs's own
  readonly hidden: tf.Tensor2D[];
  /** tanh(z_L), `[N, m]`. */
  readonly tanhOut: tf.Tensor2D;
  /** ∂ℓ/∂π, `[N, m]`. */
  readonly gOut: tf.Tensor2D;
  /** δ_l = ∂ℓ/∂z_l for l = 1 … L. */
  readonly deltas: tf.Tensor2D[];
}

/** Gradient of a loss with respect to the student's parameters. */
export interface ParamGradient {
  readonly w: tf.Tensor2D[];
  readonly b: tf.Tensor1D[];
}

/** The student's action for normalized states: c · tanh(z_L). */
// deno-doc-ignore private-type-ref -- tf.Tensor types are tfjs's own
export function studentForward(params: StudentParams, x: tf.Tensor2D, maxAction: number): tf.Tensor2D {
  return tf.tidy(() => tf.mul(mlpForward(params, x, "relu", "tanh"), maxAction) as tf.Tensor2D);
}

/** Forward pass keeping what the backward and tangent passes need. */
function forward(params: StudentParams, x: tf.Tensor2D): { hidden: tf.Tensor2D[]; tanhOut: tf.Tensor2D } {
  const L = params.length;
  const hidden: tf.Tensor2D[] = [];
  let a: tf.Tensor2D = x;
  for (let l = 0; l < L - 1; l++) {
    a = tf.relu(tf.add(tf.matMul(a, params[l].w as tf.Tensor2D), params[l].b));
    hidden.push(a);
  }
  const tanhOut = tf.tanh(
    tf.add(tf.matMul(a, params[L - 1].w as tf.Tensor2D), params[L - 1].b),
  ) as tf.Tensor2D;
  return { hidden, tanhOut };
}

/**
 * Σ_rows of a matrix, as the product 1ᵀM: on wasm, tfjs's `sum(M, 0)` transposes M and then reduces
 * (0.33 ms for 256 × 256, 3.9 ms for 2560 × 256), the matmul takes 0.05 ms and gives the same bits
 * there (checked on every shape from 1 × 1 to 2560 × 256 we use); elsewhere it may differ in the
 * last bit (summation order).
 */
function columnSums(m: tf.Tensor2D): tf.Tensor1D {
  const [rows, cols] = m.shape;
  return tf.reshape(tf.matMul(tf.ones([1, rows]), m), [cols]);
}

/**
 * Backward pass from ∂loss/∂π: δ_L = gOut ⊙ c(1 − tanh²), gW_l = a_{l−1}ᵀ δ_l, gb_l = Σ_rows δ_l,
 * δ_{l−1} = (δ_l W_lᵀ) ⊙ 1[a_{l−1} > 0].
 */
function backward(
  params: StudentParams,
  x: tf.Tensor2D,
  hidden: readonly tf.Tensor2D[],
  tanhOut: tf.Tensor2D,
  gOut: tf.Tensor2D,
  maxAction: number,
): { grad: ParamGradient; deltas: tf.Tensor2D[] } {
  const L = params.length;
  const deltas: tf.Tensor2D[] = new Array(L);
  const gw: tf.Tensor2D[] = new Array(L);
  const gb: tf.Tensor1D[] = new Array(L);
  let delta: tf.Tensor2D = tf.mul(gOut, tf.mul(maxAction, tf.sub(1, tf.square(tanhOut))));
  for (let l = L - 1; l >= 0; l--) {
    deltas[l] = delta;
    const input = l === 0 ? x : hidden[l - 1];
    gw[l] = tf.matMul(input, delta, true, false);
    gb[l] = columnSums(delta);
    if (l > 0) {
      delta = tf.mul(tf.matMul(delta, params[l].w as tf.Tensor2D, false, true), tf.step(hidden[l - 1]));
    }
  }
  return { grad: { w: gw, b: gb }, deltas };
}

/**
 * ∂ℓ/∂π of the (weighted) mean squared error 1/(B m) Σ w_i (c·tanh − target)², for the rows of a
 * slice of a batch of `totalRows` rows (B = `totalRows`).
 */
function squaredErrorGradient(
  tanhOut: tf.Tensor2D,
  target: tf.Tensor2D,
  maxAction: number,
  totalRows: number,
  weights?: tf.Tensor1D,
): tf.Tensor2D {
  const [rows, cols] = tanhOut.shape;
  const diff = tf.sub(tf.mul(tanhOut, maxAction), target);
  const scaled = tf.mul(diff, 2 / (totalRows * cols)) as tf.Tensor2D;
  return weights ? tf.mul(scaled, tf.reshape(weights, [rows, 1])) : scaled;
}

/** This slice's share of a mean over `totalRows` rows: the mean itself when the slice is everything. */
function meanShare(perRow: tf.Tensor, totalRows: number): tf.Scalar {
  const rows = perRow.shape[0];
  return (rows === totalRows
    ? tf.mean(perRow)
    : tf.div(tf.sum(perRow), perRow.size / rows * totalRows)) as tf.Scalar;
}

/**
 * Sums partial sums over all slices: takes this slice's tensors and returns, in the same order and
 * shapes, the sums over every slice. Must be called by every slice the same number of times with
 * the same shapes, and return bitwise-identical results on all of them.
 */
// deno-doc-ignore private-type-ref -- tf.Tensor types are tfjs's own
export type AllReduce = (parts: tf.Tensor[]) => tf.Tensor[];

/** Where a slice sits: the global row counts its means are taken over, and how it sums with the others. */
export interface Slicing {
  /** N, the rows of the whole synthetic set. */
  readonly synsetRows: number;
  /** B, the rows of the whole outer batch. */
  readonly outerRows: number;
  /** Sum of partial sums over slices (identity for a single slice). */
  readonly allReduce: AllReduce;
}

const identityReduce: AllReduce = (parts) => parts;

/** The slicing of a computation that is not split: one slice holding every row. */
function wholeSlicing(x: tf.Tensor2D, batch?: OuterBatch): Slicing {
  return { synsetRows: x.shape[0], outerRows: batch ? batch.states.shape[0] : 0, allReduce: identityReduce };
}

/** Applies `allReduce` to a parameter gradient and a scalar riding along. */
function reduceGradient(
  grad: ParamGradient,
  scalar: tf.Scalar | undefined,
  slicing: Slicing,
): { grad: ParamGradient; scalar?: tf.Scalar } {
  const L = grad.w.length;
  const parts: tf.Tensor[] = [...grad.w, ...grad.b, ...(scalar ? [scalar] : [])];
  const out = slicing.allReduce(parts);
  return {
    grad: { w: out.slice(0, L) as tf.Tensor2D[], b: out.slice(L, 2 * L) as tf.Tensor1D[] },
    scalar: scalar ? out[2 * L] as tf.Scalar : undefined,
  };
}

/** Options of the unrolled inner loop. */
export interface InnerLoopOptions {
  /** T, the number of full-batch SGD steps. */
  readonly steps: number;
  /** η, the inner SGD learning rate. */
  readonly learningRate: number;
  /** c, the bound of the student's c·tanh output. */
  readonly maxAction: number;
}

/** The trajectory θ_0 … θ_T of the inner loop, with everything the reverse sweep needs. */
export interface InnerTrajectory {
  /** The record of each step t = 0 … T−1. */
  readonly records: StepRecord[];
  /** θ_T, the student after the last step. */
  readonly final: StudentParams;
  /** BC loss ℓ(θ_t) at every step (scalar tensors, read lazily). */
  // deno-doc-ignore private-type-ref -- tf.Tensor types are tfjs's own
  readonly losses: tf.Scalar[];
}

/**
 * Trains a student from `initial` on (X, Y) for `steps` full-batch SGD steps, storing each step's
 * record. The caller owns the result (call `disposeTrajectory`); `initial` is not consumed. With
 * `slicing`, (X, Y) are this slice's rows of the synthetic set and each step's gradient and loss are
 * summed over the slices, so θ_t is the whole set's.
 */
// deno-doc-ignore private-type-ref -- tf.Tensor types are tfjs's own
export function unrollInnerLoop(
  initial: StudentParams,
  x: tf.Tensor2D,
  y: tf.Tensor2D,
  options: InnerLoopOptions,
  slicing: Slicing = wholeSlicing(x),
): InnerTrajectory {
  const records: StepRecord[] = [];
  const losses: tf.Scalar[] = [];
  let params = initial;
  for (let t = 0; t < options.steps; t++) {
    const result = tidyPlain(() => {
      const { hidden, tanhOut } = forward(params, x);
      const gOut = squaredErrorGradient(tanhOut, y, options.maxAction, slicing.synsetRows);
      const { grad: partial, deltas } = backward(params, x, hidden, tanhOut, gOut, options.maxAction);
      const partialLoss = meanShare(
        tf.square(tf.sub(tf.mul(tanhOut, options.maxAction), y)),
        slicing.synsetRows,
      );
      const { grad, scalar: loss } = reduceGradient(partial, partialLoss, slicing);
      const next: StudentParams = params.map((layer, l) => ({
        w: tf.sub(layer.w, tf.mul(grad.w[l], options.learningRate)),
        b: tf.sub(layer.b, tf.mul(grad.b[l], options.learningRate)),
      }));
      return { hidden, tanhOut, gOut, deltas, next, loss: loss! };
    });
    records.push({
      params,
      hidden: result.hidden,
      tanhOut: result.tanhOut,
      gOut: result.gOut,
      deltas: result.deltas,
    });
    losses.push(result.loss);
    params = result.next;
  }
  return { records, final: params, losses };
}

/** Frees the tensors of a trajectory (except the caller's initial parameters and `final` if kept). */
export function disposeTrajectory(
  trajectory: InnerTrajectory,
  options: { keepInitial?: boolean; keepFinal?: boolean } = {},
): void {
  trajectory.records.forEach((r, t) => {
    if (!(t === 0 && options.keepInitial !== false)) {
      tf.dispose(r.params.flatMap((layer) => [layer.w, layer.b]));
    }
    tf.dispose([...r.hidden, r.tanhOut, r.gOut, ...r.deltas]);
  });
  if (!options.keepFinal && trajectory.records.length > 0) {
    tf.dispose(trajectory.final.flatMap((layer) => [layer.w, layer.b]));
  }
  tf.dispose(trajectory.losses);
}

/** The outer objective: real states, targets and per-state weights (all weights 1 when absent). */
export interface OuterBatch {
  /** Real states in the student's input space, `[B, d]`. */
  // deno-doc-ignore private-type-ref -- tf.Tensor types are tfjs's own
  readonly states: tf.Tensor2D;
  /** Target actions, `[B, m]`. */
  readonly targets: tf.Tensor2D;
  /** Per-state weights, `[B]`. */
  // deno-doc-ignore private-type-ref -- tf.Tensor types are tfjs's own
  readonly weights?: tf.Tensor1D;
}

/**
 * H(θ) and ∇_θ H for a student `params` on the outer batch (with `slicing`: on this slice's rows of
 * it, both summed over the slices).
 */
export function outerLossAndGradient(
  params: StudentParams,
  batch: OuterBatch,
  maxAction: number,
  slicing?: Slicing,
): { loss: tf.Scalar; grad: ParamGradient } {
  const rows = slicing?.outerRows ?? batch.states.shape[0];
  return tidyPlain(() => {
    const { hidden, tanhOut } = forward(params, batch.states);
    const diff = tf.sub(tf.mul(tanhOut, maxAction), batch.targets);
    const perRow = tf.mean(tf.square(diff), 1);
    const partialLoss = meanShare(batch.weights ? tf.mul(perRow, batch.weights) : perRow, rows);
    const gOut = squaredErrorGradient(tanhOut, batch.targets, maxAction, rows, batch.weights);
    const { grad: partial } = backward(params, batch.states, hidden, tanhOut, gOut, maxAction);
    if (!slicing) return { loss: partialLoss, grad: partial };
    const { grad, scalar } = reduceGradient(partial, partialLoss, slicing);
    return { loss: scalar!, grad };
  });
}

/** The meta-gradient and the losses seen while computing it. */
export interface MetaGradient {
  /** ∂H/∂X, `[N, d]`. */
  // deno-doc-ignore private-type-ref -- tf.Tensor types are tfjs's own
  readonly states: tf.Tensor2D;
  /** ∂H/∂Y, `[N, m]`. */
  readonly actions: tf.Tensor2D;
  /** H(θ_T). */
  // deno-doc-ignore private-type-ref -- tf.Tensor types are tfjs's own
  readonly outerLoss: tf.Scalar;
  /** ℓ(θ_{T−1}) — the student's last BC loss on the synthetic set. */
  readonly innerLoss: tf.Scalar;
}

/**
 * The exact gradient of H(θ_T(X, Y)) with respect to the synthetic states X and actions Y, for a
 * student started at `initial` (θ_0 does not depend on X, Y).
 */
// deno-doc-ignore private-type-ref -- tf.Tensor types are tfjs's own
export function metaGradient(
  initial: StudentParams,
  x: tf.Tensor2D,
  y: tf.Tensor2D,
  batch: OuterBatch,
  options: InnerLoopOptions,
): MetaGradient {
  return metaGradientSlice(initial, x, y, batch, options, wholeSlicing(x, batch));
}

/**
 * `metaGradient` on one slice: (X, Y) and `batch` are this slice's rows of the synthetic set and of
 * the outer batch; the result holds ∂H/∂X and ∂H/∂Y of this slice's synthetic rows, and the whole
 * H(θ_T) and ℓ(θ_{T−1}) (summed over the slices by `slicing.allReduce`).
 */
// deno-doc-ignore private-type-ref -- tf.Tensor types are tfjs's own
export function metaGradientSlice(
  initial: StudentParams,
  x: tf.Tensor2D,
  y: tf.Tensor2D,
  batch: OuterBatch,
  options: InnerLoopOptions,
  slicing: Slicing,
): MetaGradient {
  // With a BLAS on wasm: the same passes on host arrays (metagradient_host.ts).
  const blas = activeBlas();
  if (blas && tf.getBackend() === "wasm") {
    return metaGradientSliceHost(blas, initial, x, y, batch, options, {
      synsetRows: slicing.synsetRows,
      outerRows: slicing.outerRows,
      allReduce: slicing.allReduce === identityReduce ? undefined : slicing.allReduce,
    });
  }
  const trajectory = unrollInnerLoop(initial, x, y, options, slicing);
  const eta = options.learningRate;
  const c = options.maxAction;
  const n = slicing.synsetRows;
  const m = y.shape[1];
  try {
    const { loss: outerLoss, grad: gFinal } = outerLossAndGradient(trajectory.final, batch, c, slicing);
    let v: ParamGradient = gFinal;
    let dx: tf.Tensor2D = tf.zerosLike(x);
    let dy: tf.Tensor2D = tf.zerosLike(y);
    for (let t = options.steps - 1; t >= 0; t--) {
      const r = trajectory.records[t];
      const next = tidyPlain(() => {
        const w = r.params.map((layer) => layer.w as tf.Tensor2D);
        const L = w.length;
        // Tangent forward: ż_l = ȧ_{l−1} W_l + a_{l−1} V_l + vb_l, ȧ_l = ż_l ⊙ 1[a_l > 0] (ȧ_0 = 0).
        const hiddenDot: tf.Tensor2D[] = [];
        let zDot: tf.Tensor2D = tf.add(tf.matMul(x, v.w[0]), v.b[0]);
        for (let l = 1; l < L; l++) {
          const aDot = tf.mul(zDot, tf.step(r.hidden[l - 1])) as tf.Tensor2D;
          hiddenDot.push(aDot);
          zDot = tf.add(tf.add(tf.matMul(aDot, w[l]), tf.matMul(r.hidden[l - 1], v.w[l])), v.b[l]);
        }
        // Output: τ = tanh(z_L), τ̇ = (1 − τ²) ż_L; ġ_out = 2c τ̇ / (N m).
        const oneMinusTau2 = tf.sub(1, tf.square(r.tanhOut));
        const tauDot = tf.mul(oneMinusTau2, zDot);
        const gOutDot = tf.mul(tauDot, (2 * c) / (n * m)) as tf.Tensor2D;
        // δ_L = g_out ⊙ c(1 − τ²)  ⇒  δ̇_L = c(1 − τ²) ⊙ ġ_out − 2c τ τ̇ ⊙ g_out.
        let deltaDot: tf.Tensor2D = tf.sub(
          tf.mul(tf.mul(oneMinusTau2, c), gOutDot),
          tf.mul(tf.mul(tf.mul(r.tanhOut, tauDot), 2 * c), r.gOut),
        );
        const hvW: tf.Tensor2D[] = new Array(L);
        const hvB: tf.Tensor1D[] = new Array(L);
        let xGradDot: tf.Tensor2D | undefined;
        for (let l = L - 1; l >= 0; l--) {
          const delta = r.deltas[l];
          const input = l === 0 ? x : r.hidden[l - 1];
          // ġW_l = ȧ_{l−1}ᵀ δ_l + a_{l−1}ᵀ δ̇_l,  ġb_l = Σ_rows δ̇_l  (skipped at t = 0: g_0 is unused).
          if (t > 0) {
            const fromInput = tf.matMul(input, deltaDot, true, false);
            hvW[l] = (l === 0
              ? fromInput
              : tf.add(fromInput, tf.matMul(hiddenDot[l - 1], delta, true, false))) as tf.Tensor2D;
            hvB[l] = columnSums(deltaDot);
          }
          // δ̇_{l−1} = (δ̇_l W_lᵀ + δ_l V_lᵀ) ⊙ 1[a_{l−1} > 0]; at the input, the tangent of ∇_X ℓ.
          const back = tf.add(
            tf.matMul(deltaDot, w[l], false, true),
            tf.matMul(delta, v.w[l], false, true),
          ) as tf.Tensor2D;
          if (l > 0) deltaDot = tf.mul(back, tf.step(r.hidden[l - 1]));
          else xGradDot = back;
        }
        const newDx = tf.sub(dx, tf.mul(xGradDot!, eta)) as tf.Tensor2D;
        // ∇_Y ℓ = −g_out, so its tangent is −ġ_out and the update −η(−ġ_out) = +η ġ_out.
        const newDy = tf.add(dy, tf.mul(gOutDot, eta)) as tf.Tensor2D;
        let newV: ParamGradient | undefined;
        if (t > 0) {
          const { grad: hv } = reduceGradient({ w: hvW, b: hvB }, undefined, slicing);
          newV = {
            w: v.w.map((vw, l) => tf.sub(vw, tf.mul(hv.w[l], eta))),
            b: v.b.map((vb, l) => tf.sub(vb, tf.mul(hv.b[l], eta))),
          };
        }
        return { newDx, newDy, newV };
      });
      tf.dispose([dx, dy, ...v.w, ...v.b]);
      dx = next.newDx;
      dy = next.newDy;
      if (next.newV) v = next.newV;
    }
    const innerLoss = trajectory.losses[options.steps - 1].clone();
    return { states: dx, actions: dy, outerLoss, innerLoss };
  } finally {
    disposeTrajectory(trajectory);
  }
}
