/**
 * MLPs on host Float32Arrays with every product through the system BLAS (`blas.ts`): a forward pass
 * that keeps what its backward pass needs, the hand-derived backward pass, Adam over a network's
 * flat parameters and Polyak averaging. For training loops whose step is many small operations
 * (TD3+BC, Cal-QL): each tfjs op costs tens of microseconds of dispatch, each call here a few.
 *
 * A network's parameters are one flat array, layer by layer `[w₀, b₀, w₁, b₁, …]` with `w` row-major
 * `[in × out]`: the order of `mlpTensorList`, so Adam moments and weights convert one to one.
 * @module
 */

import type { BlasLibrary } from "./blas.ts";
import type { AdamOptions, AdamState, MlpWeights } from "./mlp.ts";

/** One network's flat parameters and views of each layer. */
export class HostMlp {
  /** Layer widths [in, hidden…, out]. */
  readonly sizes: readonly number[];
  /** All parameters, `[w₀, b₀, w₁, b₁, …]`. */
  readonly params: Float32Array;
  /** Views of `params` per layer. */
  readonly layers: readonly { readonly w: Float32Array; readonly b: Float32Array }[];

  /** A copy of `weights`. */
  constructor(weights: MlpWeights) {
    this.sizes = [...weights.sizes];
    this.params = new Float32Array(parameterCount(this.sizes));
    this.layers = layerViews(this.params, this.sizes);
    this.set(weights);
  }

  /** Overwrites the parameters with `weights` (same sizes). */
  set(weights: MlpWeights): void {
    if (weights.sizes.join() !== this.sizes.join()) {
      throw new RangeError(`network sizes [${weights.sizes}] differ from [${this.sizes}]`);
    }
    this.layers.forEach((l, i) => {
      l.w.set(weights.weights[i]);
      l.b.set(weights.biases[i]);
    });
  }

  /** The parameters as plain weights (copies). */
  weights(): MlpWeights {
    return {
      sizes: [...this.sizes],
      weights: this.layers.map((l) => l.w.slice()),
      biases: this.layers.map((l) => l.b.slice()),
    };
  }
}

/** Number of parameters of an MLP of `sizes`. */
export function parameterCount(sizes: readonly number[]): number {
  let n = 0;
  for (let i = 0; i + 1 < sizes.length; i++) n += sizes[i] * sizes[i + 1] + sizes[i + 1];
  return n;
}

/** Per-layer views `{w, b}` of a flat array laid out as a network of `sizes`. */
export function layerViews(
  flat: Float32Array,
  sizes: readonly number[],
): { w: Float32Array; b: Float32Array }[] {
  const out: { w: Float32Array; b: Float32Array }[] = [];
  let at = 0;
  for (let i = 0; i + 1 < sizes.length; i++) {
    const w = flat.subarray(at, at + sizes[i] * sizes[i + 1]);
    at += w.length;
    const b = flat.subarray(at, at + sizes[i + 1]);
    at += b.length;
    out.push({ w, b });
  }
  return out;
}

/**
 * Buffers of one forward pass of a network on `rows` inputs: each layer's output (after its
 * activation), kept for the backward pass, and the backward pass's scratch.
 */
export class MlpPass {
  /** Inputs per pass. */
  readonly rows: number;
  /** Layer outputs, `[rows × sizes[i+1]]`; hidden ones after ReLU, the last before any output map. */
  readonly outputs: Float32Array[];
  /** Gradient scratch per layer output, `[rows × sizes[i+1]]`. */
  readonly grads: Float32Array[];
  /** The input of the last forward pass (not copied). */
  input: Float32Array = new Float32Array();

  /** Buffers for a network of `sizes` on `rows` inputs. */
  constructor(sizes: readonly number[], rows: number) {
    this.rows = rows;
    this.outputs = sizes.slice(1).map((s) => new Float32Array(rows * s));
    this.grads = sizes.slice(1).map((s) => new Float32Array(rows * s));
  }

  /** The last layer's output. */
  get output(): Float32Array {
    return this.outputs[this.outputs.length - 1];
  }
}

/**
 * Forward pass of `net` (ReLU hidden layers, linear output) on `x` (`[pass.rows × in]`, row-major);
 * returns the output `[rows × out]` (a buffer of `pass`).
 */
export function hostForward(blas: BlasLibrary, net: HostMlp, x: Float32Array, pass: MlpPass): Float32Array {
  const rows = pass.rows, last = net.layers.length - 1;
  pass.input = x;
  let h = x;
  net.layers.forEach((l, i) => {
    const inDim = net.sizes[i], out = net.sizes[i + 1];
    const z = pass.outputs[i];
    for (let r = 0; r < rows; r++) z.set(l.b, r * out);
    blas.sgemm(false, false, rows, out, inDim, 1, h, inDim, l.w, out, 1, z, out);
    // ReLU as a multiply by the mask: a branch per element mispredicts on signs (≈ 4× slower).
    if (i < last) {
      for (let j = 0; j < z.length; j++) {
        const v = z[j];
        z[j] = v * +(v > 0);
      }
    }
    h = z;
  });
  return h;
}

/**
 * Backward pass through the last {@link hostForward} of `pass`, from `dOut` = ∂L/∂(linear output)
 * `[rows × out]`. With `grad` (flat, `net`'s layout) writes ∂L/∂θ there (overwriting, or adding
 * with `accumulate`); with `dInput`, writes ∂L/∂x for the input columns `[from, to)` into it
 * (`[rows × (to − from)]`).
 */
export function hostBackward(
  blas: BlasLibrary,
  net: HostMlp,
  pass: MlpPass,
  dOut: Float32Array,
  grad: { readonly layers: readonly { readonly w: Float32Array; readonly b: Float32Array }[] } | undefined,
  dInput?: { readonly out: Float32Array; readonly from: number; readonly to: number },
  accumulate = false,
): void {
  const rows = pass.rows;
  let dz = dOut;
  for (let i = net.layers.length - 1; i >= 0; i--) {
    const inDim = net.sizes[i], out = net.sizes[i + 1];
    const h = i === 0 ? pass.input : pass.outputs[i - 1];
    if (grad) {
      const g = grad.layers[i];
      blas.sgemm(true, false, inDim, out, rows, 1, h, inDim, dz, out, accumulate ? 1 : 0, g.w, out);
      // ∂L/∂b = column sums of dz = dzᵀ · 1.
      blas.sgemv(true, rows, out, 1, dz, out, ones(rows), accumulate ? 1 : 0, g.b);
    }
    if (i > 0) {
      const dh = pass.grads[i - 1];
      blas.sgemm(false, true, rows, inDim, out, 1, dz, out, net.layers[i].w, out, 0, dh, inDim);
      for (let j = 0; j < dh.length; j++) dh[j] *= +(h[j] > 0);
      dz = dh;
    } else if (dInput) {
      const { from, to } = dInput;
      // ∂L/∂x[:, from:to] = dz · (rows from…to of w)ᵀ: those rows are contiguous in row-major w.
      const w = net.layers[0].w.subarray(from * out, to * out);
      blas.sgemm(false, true, rows, to - from, out, 1, dz, out, w, out, 0, dInput.out, to - from);
    }
  }
}

let onesCache = new Float32Array();

/** A vector of `n` ones (shared; never written). */
function ones(n: number): Float32Array {
  if (onesCache.length < n) onesCache = new Float32Array(n).fill(1);
  return onesCache.subarray(0, n);
}

/** Adam (PyTorch's update, as `mlp.ts`'s `Adam`) over flat parameter arrays. */
export class FlatAdam {
  readonly learningRate: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly epsilon: number;
  /** First and second moments, one flat array per parameter array. */
  readonly m: Float32Array[];
  readonly v: Float32Array[];
  #step = 0;

  /** Zero moments for parameter arrays of `lengths`. */
  constructor(lengths: readonly number[], options: AdamOptions) {
    this.learningRate = options.learningRate;
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.epsilon = options.epsilon ?? 1e-8;
    this.m = lengths.map((n) => new Float32Array(n));
    this.v = lengths.map((n) => new Float32Array(n));
  }

  /** Steps taken so far. */
  get step(): number {
    return this.#step;
  }

  /** One update of `params[i]` with gradient `grads[i]`. */
  apply(params: readonly Float32Array[], grads: readonly Float32Array[]): void {
    this.#step++;
    const b1 = this.beta1, b2 = this.beta2, eps = this.epsilon;
    const stepSize = this.learningRate / (1 - Math.pow(b1, this.#step));
    const sqrtBc2 = Math.sqrt(1 - Math.pow(b2, this.#step));
    for (let k = 0; k < params.length; k++) {
      const p = params[k], g = grads[k], m = this.m[k], v = this.v[k];
      for (let i = 0; i < p.length; i++) {
        const gi = g[i];
        const mi = m[i] = b1 * m[i] + (1 - b1) * gi;
        const vi = v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        p[i] -= stepSize * (mi / (Math.sqrt(vi) / sqrtBc2 + eps));
      }
    }
  }

  /**
   * The moments per tensor, in `mlpTensorList` order over the networks of `sizes` (one entry per
   * parameter array), with the step count: `mlp.ts`'s `AdamState`.
   */
  state(sizes: readonly (readonly number[])[]): AdamState {
    const split = (flat: Float32Array[]) =>
      flat.flatMap((f, k) => layerViews(f, sizes[k]).flatMap((l) => [l.w.slice(), l.b.slice()]));
    return { step: this.#step, m: split(this.m), v: split(this.v) };
  }

  /** Restores a state in the layout of {@link FlatAdam.state}. */
  setState(state: AdamState, sizes: readonly (readonly number[])[]): void {
    const tensors = sizes.reduce((n, s) => n + 2 * (s.length - 1), 0);
    if (state.m.length !== tensors || state.v.length !== tensors) {
      throw new RangeError(`Adam state has ${state.m.length} moments for ${tensors} tensors`);
    }
    let t = 0;
    sizes.forEach((s, k) => {
      for (const [i, l] of layerViews(this.m[k], s).entries()) {
        const lv = layerViews(this.v[k], s)[i];
        l.w.set(state.m[t]), lv.w.set(state.v[t]);
        l.b.set(state.m[t + 1]), lv.b.set(state.v[t + 1]);
        t += 2;
      }
    });
    this.#step = state.step;
  }
}

/** Polyak averaging θ' ← τθ + (1 − τ)θ' of flat parameters. */
export function polyak(target: Float32Array, source: Float32Array, tau: number): void {
  for (let i = 0; i < target.length; i++) target[i] = tau * source[i] + (1 - tau) * target[i];
}
