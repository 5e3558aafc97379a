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
 * slices of K worker threads in a fixed order for `MetaGradientPool` (`metagradient_worker.ts`), so
 * that every worker holds bitwise-identical weights θ_t and tangents g_t.
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { mlpForward, type MlpParams, mlpTensors, type MlpWeights, tidyPlain } from "../../numerics/mlp.ts";

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

// ---------------------------------------------------------------------------------------------
// Data parallelism over worker threads
// ---------------------------------------------------------------------------------------------

/** One meta-gradient problem as plain arrays (what crosses to worker threads). */
export interface MetaGradientProblem {
  /** θ_0, the student's initial weights (`sizes` = [d, hidden…, m]). */
  readonly initial: MlpWeights;
  /** X, the synthetic states, `N × d` row-major. */
  readonly states: Float32Array;
  /** Y, the synthetic actions, `N × m` row-major. */
  readonly actions: Float32Array;
  /** The outer batch: real states `B × d`, targets `B × m`, optional weights `B`. */
  readonly outer: {
    readonly states: Float32Array;
    readonly targets: Float32Array;
    readonly weights?: Float32Array;
  };
  /** The inner loop. */
  readonly options: InnerLoopOptions;
}

/** `MetaGradient` as plain arrays and numbers. */
export interface MetaGradientValues {
  /** ∂H/∂X, `N × d`. */
  readonly states: Float32Array;
  /** ∂H/∂Y, `N × m`. */
  readonly actions: Float32Array;
  /** H(θ_T). */
  readonly outerLoss: number;
  /** ℓ(θ_{T−1}). */
  readonly innerLoss: number;
}

/** Environment variable giving the worker threads of the meta-gradient (default 1: the calling thread). */
export const THREADS_ENV = "OBD_THREADS";

/**
 * Threads requested through `OBD_THREADS`: a positive integer, or `auto` for one per core; 1 when
 * unset, unreadable (no `--allow-env` for it) or invalid.
 */
export function requestedMetaGradientThreads(): number {
  let raw: string | undefined;
  try {
    if (Deno.permissions.querySync({ name: "env", variable: THREADS_ENV }).state !== "granted") return 1;
    raw = Deno.env.get(THREADS_ENV);
  } catch {
    return 1;
  }
  if (raw === undefined || raw === "") return 1;
  if (raw === "auto") return Math.max(1, navigator.hardwareConcurrency || 1);
  const k = Number(raw);
  return Number.isInteger(k) && k >= 1 ? k : 1;
}

/** Rows `[start, end)` of slice `k` of `rows` rows cut into `parts` contiguous slices. */
export function sliceBounds(rows: number, parts: number, k: number): [number, number] {
  return [Math.floor((k * rows) / parts), Math.floor(((k + 1) * rows) / parts)];
}

/** What the pool sends a worker for one meta-gradient (its slices, copied). */
export interface WorkerJob {
  readonly kind: "job";
  /** This worker's slice index and the number of slices. */
  readonly index: number;
  readonly parts: number;
  readonly initial: MlpWeights;
  readonly states: Float32Array;
  readonly actions: Float32Array;
  readonly outerStates: Float32Array;
  readonly outerTargets: Float32Array;
  readonly outerWeights?: Float32Array;
  readonly synsetRows: number;
  readonly outerRows: number;
  readonly options: InnerLoopOptions;
  /** 2 × parts slots of `slot` floats: double-buffered partial sums. */
  readonly exchange: Float32Array;
  readonly slot: number;
  /** Barrier and abort flag (`CONTROL_*`). */
  readonly control: Int32Array;
}

/** A worker's answer to a job. */
export type WorkerReply =
  | {
    readonly ok: true;
    readonly states: Float32Array;
    readonly actions: Float32Array;
    readonly outerLoss: number;
    readonly innerLoss: number;
    readonly timing?: ReduceTiming;
  }
  | { readonly ok: false; readonly error: string };

/** Indices into a job's `control`: barrier arrivals, barrier generation, abort flag. */
export const CONTROL_COUNT = 0, CONTROL_GENERATION = 1, CONTROL_ABORT = 2;

/** Marks a job as failed and wakes every worker waiting at its barrier. */
export function abortJob(control: Int32Array): void {
  Atomics.store(control, CONTROL_ABORT, 1);
  Atomics.add(control, CONTROL_GENERATION, 1);
  Atomics.notify(control, CONTROL_GENERATION);
}

/** Waits until all `parts` workers have arrived; throws if the job was aborted. */
function barrier(control: Int32Array, parts: number): void {
  const generation = Atomics.load(control, CONTROL_GENERATION);
  if (Atomics.add(control, CONTROL_COUNT, 1) === parts - 1) {
    Atomics.store(control, CONTROL_COUNT, 0);
    Atomics.add(control, CONTROL_GENERATION, 1);
    Atomics.notify(control, CONTROL_GENERATION);
  } else {
    while (Atomics.load(control, CONTROL_GENERATION) === generation) {
      Atomics.wait(control, CONTROL_GENERATION, generation);
    }
  }
  if (Atomics.load(control, CONTROL_ABORT) !== 0) throw new Error("another meta-gradient worker failed");
}

/**
 * The all-reduce of slice `index` of `parts` over shared memory: write this slice's partial sums
 * into its slot, wait for every slice, then add the slots in the fixed order 0, 1, …, parts − 1 in
 * float32, so every slice obtains the same bits. Two banks of slots alternate, so one barrier per
 * call suffices (a slice can only overwrite a bank after everyone has passed the next barrier,
 * i.e. finished reading it).
 */
export function sharedAllReduce(
  exchange: Float32Array,
  slot: number,
  control: Int32Array,
  index: number,
  parts: number,
  timing?: ReduceTiming,
): AllReduce {
  let round = 0;
  return (tensors) => {
    const total = tensors.reduce((s, t) => s + t.size, 0);
    if (total > slot) throw new Error(`all-reduce of ${total} values exceeds the slot of ${slot}`);
    const bank = (round++ % 2) * parts;
    let offset = (bank + index) * slot;
    const t0 = timing ? performance.now() : 0;
    for (const t of tensors) {
      exchange.set(t.dataSync() as Float32Array, offset);
      offset += t.size;
    }
    const t1 = timing ? performance.now() : 0;
    barrier(control, parts);
    const t2 = timing ? performance.now() : 0;
    if (timing) {
      timing.calls++;
      timing.readMs += t1 - t0;
      timing.waitMs += t2 - t1;
    }
    const sum = exchange.slice(bank * slot, bank * slot + total);
    for (let k = 1; k < parts; k++) {
      const from = (bank + k) * slot;
      for (let i = 0; i < total; i++) sum[i] += exchange[from + i];
    }
    let at = 0;
    const out = tensors.map((t) => {
      const reduced = tf.tensor(sum.subarray(at, at + t.size), t.shape, "float32");
      at += t.size;
      return reduced;
    });
    if (timing) timing.sumMs += performance.now() - t2;
    return out;
  };
}

/**
 * Where a worker's time went in one job (milliseconds): `readMs` waiting for its partial sums
 * (`dataSync`, which includes finishing the queued kernels), `waitMs` at the barriers, `sumMs`
 * adding the slots and uploading the sums, `totalMs` the whole job.
 */
export interface ReduceTiming {
  /** All-reduce calls the worker made in the job. */
  calls: number;
  /** Time spent reading back its partial sums (`dataSync`), ms. */
  readMs: number;
  /** Time spent waiting at the barriers for the other workers, ms. */
  waitMs: number;
  /** Time spent adding the slots and uploading the sums, ms. */
  sumMs: number;
  /** Wall-clock time of the whole job, ms. */
  totalMs: number;
}

/** Runs one job's slice on this thread (the body of `metagradient_worker.ts`). */
export function runWorkerJob(job: WorkerJob): WorkerReply {
  const start = performance.now();
  const timing: ReduceTiming = { calls: 0, readMs: 0, waitMs: 0, sumMs: 0, totalMs: 0 };
  const d = job.initial.sizes[0], m = job.initial.sizes[job.initial.sizes.length - 1];
  const rows = job.states.length / d, outerRows = job.outerStates.length / d;
  const slicing: Slicing = {
    synsetRows: job.synsetRows,
    outerRows: job.outerRows,
    allReduce: sharedAllReduce(job.exchange, job.slot, job.control, job.index, job.parts, timing),
  };
  const initial = mlpTensors(job.initial);
  try {
    const g = tidyPlain(() =>
      metaGradientSlice(
        initial,
        tf.tensor2d(job.states, [rows, d]),
        tf.tensor2d(job.actions, [rows, m]),
        {
          states: tf.tensor2d(job.outerStates, [outerRows, d]),
          targets: tf.tensor2d(job.outerTargets, [outerRows, m]),
          weights: job.outerWeights ? tf.tensor1d(job.outerWeights) : undefined,
        },
        job.options,
        slicing,
      )
    );
    const reply: WorkerReply = {
      ok: true,
      states: g.states.dataSync() as Float32Array,
      actions: g.actions.dataSync() as Float32Array,
      outerLoss: g.outerLoss.dataSync()[0],
      innerLoss: g.innerLoss.dataSync()[0],
      timing: { ...timing, totalMs: performance.now() - start },
    };
    tf.dispose([g.states, g.actions, g.outerLoss, g.innerLoss]);
    return reply;
  } finally {
    tf.dispose(initial.flatMap((layer) => [layer.w, layer.b]));
  }
}

/** The meta-gradient of a problem given as arrays, on the calling thread. */
export function metaGradientValues(problem: MetaGradientProblem): MetaGradientValues {
  const { initial, options } = problem;
  const d = initial.sizes[0], m = initial.sizes[initial.sizes.length - 1];
  const n = problem.states.length / d, b = problem.outer.states.length / d;
  const params = mlpTensors(initial);
  try {
    const g = tidyPlain(() =>
      metaGradient(
        params,
        tf.tensor2d(problem.states, [n, d]),
        tf.tensor2d(problem.actions, [n, m]),
        {
          states: tf.tensor2d(problem.outer.states, [b, d]),
          targets: tf.tensor2d(problem.outer.targets, [b, m]),
          weights: problem.outer.weights ? tf.tensor1d(problem.outer.weights) : undefined,
        },
        options,
      )
    );
    const values: MetaGradientValues = {
      states: g.states.dataSync() as Float32Array,
      actions: g.actions.dataSync() as Float32Array,
      outerLoss: g.outerLoss.dataSync()[0],
      innerLoss: g.innerLoss.dataSync()[0],
    };
    tf.dispose([g.states, g.actions, g.outerLoss, g.innerLoss]);
    return values;
  } finally {
    tf.dispose(params.flatMap((layer) => [layer.w, layer.b]));
  }
}

interface PoolWorker {
  readonly worker: Worker;
  /** Settles the request in flight, if any. */
  pending?: { resolve: (reply: WorkerReply) => void; reject: (e: Error) => void; control?: Int32Array };
}

/**
 * Meta-gradients on `threads` worker threads, data-parallel over the synthetic set: worker k owns
 * a contiguous slice of X, Y and of the outer batch, runs `metaGradientSlice` on its own tensor
 * backend, and sums the shared partial sums with the others through shared memory after every
 * inner step and every reverse step. The result equals `metaGradient`'s up to float32 summation
 * order. Create once (workers start their backends, ~1 s), use for many outer steps, `dispose`.
 * With `threads` = 1 it runs `metaGradient` on the calling thread and starts no worker.
 */
export class MetaGradientPool {
  readonly #workers: PoolWorker[];
  #busy = false;
  #timing: ReduceTiming[] = [];

  private constructor(readonly threads: number, workers: PoolWorker[]) {
    this.#workers = workers;
  }

  /**
   * Starts `threads` workers on the backend `backend` (default: the calling thread's,
   * `tf.getBackend()`); resolves once every worker's backend is ready. The native `tensorflow`
   * backend already computes on every core and is not started in workers: there the pool has one
   * thread, the caller's.
   */
  static async create(threads: number, backend: string = tf.getBackend()): Promise<MetaGradientPool> {
    if (!Number.isInteger(threads) || threads < 1) {
      throw new RangeError(`threads = ${threads} must be a positive integer`);
    }
    if (threads === 1 || backend === "tensorflow") return new MetaGradientPool(1, []);
    const workers: PoolWorker[] = Array.from({ length: threads }, () => {
      const entry: PoolWorker = {
        worker: new Worker(new URL("./metagradient_worker.ts", import.meta.url).href, { type: "module" }),
      };
      entry.worker.onmessage = (e: MessageEvent<WorkerReply>) => {
        const p = entry.pending;
        entry.pending = undefined;
        p?.resolve(e.data);
      };
      entry.worker.onerror = (e) => {
        e.preventDefault();
        const p = entry.pending;
        entry.pending = undefined;
        if (p?.control) abortJob(p.control);
        p?.reject(new Error(`meta-gradient worker failed: ${e.message}`));
      };
      return entry;
    });
    const pool = new MetaGradientPool(threads, workers);
    try {
      const replies = await Promise.all(workers.map((w) => pool.#request(w, { kind: "init", backend })));
      const failed = replies.find((r) => !r.ok);
      if (failed && !failed.ok) throw new Error(`meta-gradient worker failed to start: ${failed.error}`);
    } catch (e) {
      pool.dispose();
      throw e;
    }
    return pool;
  }

  #request(w: PoolWorker, message: unknown, control?: Int32Array): Promise<WorkerReply> {
    return new Promise((resolve, reject) => {
      w.pending = { resolve, reject, control };
      w.worker.postMessage(message);
    });
  }

  /** The meta-gradient of `problem` (one call at a time). */
  async compute(problem: MetaGradientProblem): Promise<MetaGradientValues> {
    const { initial } = problem;
    const d = initial.sizes[0], m = initial.sizes[initial.sizes.length - 1];
    const n = problem.states.length / d, b = problem.outer.states.length / d;
    const parts = Math.min(this.threads, n, b);
    if (parts <= 1) return metaGradientValues(problem);
    if (this.#workers.length === 0) throw new Error("the meta-gradient pool was disposed");
    if (this.#busy) throw new Error("MetaGradientPool.compute is already running");
    this.#busy = true;
    try {
      // Largest all-reduce: every parameter plus one loss value.
      const slot = initial.weights.reduce((s, w) => s + w.length, 0) + initial.biases.reduce((s, v) =>
        s + v.length, 0) +
        1;
      const exchange = new Float32Array(new SharedArrayBuffer(2 * parts * slot * 4));
      const control = new Int32Array(new SharedArrayBuffer(3 * 4));
      const replies = await Promise.all(Array.from({ length: parts }, (_, k) => {
        const [r0, r1] = sliceBounds(n, parts, k), [o0, o1] = sliceBounds(b, parts, k);
        const job: WorkerJob = {
          kind: "job",
          index: k,
          parts,
          initial,
          // slice(), not subarray(): a posted view would copy its whole buffer.
          states: problem.states.slice(r0 * d, r1 * d),
          actions: problem.actions.slice(r0 * m, r1 * m),
          outerStates: problem.outer.states.slice(o0 * d, o1 * d),
          outerTargets: problem.outer.targets.slice(o0 * m, o1 * m),
          outerWeights: problem.outer.weights?.slice(o0, o1),
          synsetRows: n,
          outerRows: b,
          options: problem.options,
          exchange,
          slot,
          control,
        };
        return this.#request(this.#workers[k], job, control);
      }));
      const failed = replies.find((r) => !r.ok);
      if (failed && !failed.ok) throw new Error(`meta-gradient worker failed: ${failed.error}`);
      this.#timing = replies.flatMap((r) => r.ok && r.timing ? [r.timing] : []);
      const states = new Float32Array(n * d), actions = new Float32Array(n * m);
      let outerLoss = 0, innerLoss = 0;
      replies.forEach((r, k) => {
        if (!r.ok) return;
        const [r0] = sliceBounds(n, parts, k);
        states.set(r.states, r0 * d);
        actions.set(r.actions, r0 * m);
        if (k === 0) [outerLoss, innerLoss] = [r.outerLoss, r.innerLoss];
      });
      return { states, actions, outerLoss, innerLoss };
    } finally {
      this.#busy = false;
    }
  }

  /** Each worker's timing in the last `compute` that used workers (empty otherwise). */
  get lastTiming(): readonly ReduceTiming[] {
    return this.#timing;
  }

  /** Stops the workers. */
  dispose(): void {
    for (const w of this.#workers) {
      w.pending?.reject(new Error("the meta-gradient pool was disposed"));
      w.worker.terminate();
    }
    this.#workers.length = 0;
  }
}
