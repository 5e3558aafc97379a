/**
 * Multi-layer perceptrons as plain tensors, shared by the teacher (TD3+BC, Cal-QL) and the
 * distillation stage (BC students trained through nested gradients).
 *
 * A network is a list of dense layers `y = x·W + b` with `W` stored `[in, out]` (the layout
 * `tf.matMul` wants; PyTorch's `nn.Linear` stores `[out, in]`, so importing transposes). The
 * forward pass is a pure function of `(params, x)`: no hidden state, so it can sit inside `tf.grad`
 * at any nesting depth. Weights travel as {@link MlpWeights} (plain `Float32Array`s) to caches,
 * checkpoints and files.
 *
 * Also here: PyTorch-like initialisation (nn.Linear's default and `orthogonal_`), Adam with
 * PyTorch's update formula and exportable state, and Polyak averaging of target networks.
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import type { Rng } from "./random.ts";

/**
 * `tf.tidy` for a function returning a plain object (numbers, records, tensors in records): tensors
 * made inside and not returned are freed. tfjs's own typing only accepts mutable tensor containers.
 */
export function tidyPlain<T>(f: () => T): T {
  return tf.tidy(() => f() as unknown as tf.TensorContainer) as unknown as T;
}

/** One dense layer: `y = x·w + b`, `w` of shape `[in, out]`, `b` of shape `[out]`. */
// deno-doc-ignore private-type-ref -- tf.Tensor types are tfjs's own
export interface Dense<T extends tf.Tensor = tf.Tensor> {
  /** Weight matrix, shape `[in, out]`. */
  readonly w: T;
  /** Bias vector, shape `[out]`. */
  readonly b: T;
}

/** The layers of a network, input first. */
// deno-doc-ignore private-type-ref -- tf.Tensor types are tfjs's own
export type MlpParams<T extends tf.Tensor = tf.Tensor> = readonly Dense<T>[];

/** Non-linearities between and after layers. */
export type Activation = "relu" | "tanh" | "linear";

/**
 * A network's weights as plain arrays: `sizes` = [in, hidden…, out]; `weights[i]` is
 * `[sizes[i], sizes[i+1]]` row-major (in × out), `biases[i]` has `sizes[i+1]` entries.
 */
export interface MlpWeights {
  /** Layer widths [in, hidden…, out]. */
  readonly sizes: readonly number[];
  /** Weight matrix of each layer, row-major [sizes[i] × sizes[i+1]]. */
  readonly weights: readonly Float32Array[];
  /** Bias of each layer, length sizes[i+1]. */
  readonly biases: readonly Float32Array[];
}

/** How to draw initial weights. */
export type MlpInit =
  /** PyTorch `nn.Linear` default: weight and bias U(±1/√fan_in). */
  | { readonly kind: "pytorch" }
  /** `nn.init.orthogonal_(W, gain)` and zero bias on every layer (CORL's `orthogonal_init`). */
  | { readonly kind: "orthogonal"; readonly gain: number };

/** Initial weights for layer sizes `sizes` (≥ 2 entries) drawn from `rng`. */
export function initMlpWeights(
  sizes: readonly number[],
  rng: Rng,
  init: MlpInit = { kind: "pytorch" },
): MlpWeights {
  if (sizes.length < 2 || sizes.some((s) => !Number.isInteger(s) || s < 1)) {
    throw new RangeError(`an MLP needs at least two positive integer sizes, got [${sizes.join(", ")}]`);
  }
  const weights: Float32Array[] = [];
  const biases: Float32Array[] = [];
  for (let i = 0; i + 1 < sizes.length; i++) {
    const fanIn = sizes[i], fanOut = sizes[i + 1];
    if (init.kind === "pytorch") {
      // kaiming_uniform_(a=√5) gives bound gain·√(3/fan_in) with gain √(2/(1+5)): exactly 1/√fan_in.
      const bound = 1 / Math.sqrt(fanIn);
      weights.push(rng.fillUniform(new Float32Array(fanIn * fanOut), -bound, bound));
      biases.push(rng.fillUniform(new Float32Array(fanOut), -bound, bound));
    } else {
      weights.push(orthogonal(fanIn, fanOut, init.gain, rng));
      biases.push(new Float32Array(fanOut));
    }
  }
  return { sizes: [...sizes], weights, biases };
}

/**
 * A `[fanIn, fanOut]` matrix whose PyTorch-layout transpose `[fanOut, fanIn]` is drawn like
 * `torch.nn.init.orthogonal_`: QR of a standard normal matrix (the taller orientation), columns
 * signed so that R has a positive diagonal (a Haar-distributed orthogonal matrix), times `gain`.
 */
function orthogonal(fanIn: number, fanOut: number, gain: number, rng: Rng): Float32Array {
  const rows = Math.max(fanIn, fanOut), cols = Math.min(fanIn, fanOut);
  const a = new Float64Array(rows * cols); // column j at a[j*rows .. (j+1)*rows)
  rng.fillNormal(a);
  // Modified Gram–Schmidt twice (reorthogonalisation): R's diagonal is positive by construction,
  // which is the sign convention orthogonal_ enforces with `q *= sign(diag(r))`.
  for (let j = 0; j < cols; j++) {
    const cj = a.subarray(j * rows, (j + 1) * rows);
    for (let pass = 0; pass < 2; pass++) {
      for (let k = 0; k < j; k++) {
        const ck = a.subarray(k * rows, (k + 1) * rows);
        let dot = 0;
        for (let r = 0; r < rows; r++) dot += ck[r] * cj[r];
        for (let r = 0; r < rows; r++) cj[r] -= dot * ck[r];
      }
    }
    let norm = 0;
    for (let r = 0; r < rows; r++) norm += cj[r] * cj[r];
    norm = Math.sqrt(norm);
    for (let r = 0; r < rows; r++) cj[r] /= norm;
  }
  // Q is rows × cols with orthonormal columns. W (in × out) is Q when fanIn ≥ fanOut, else Qᵀ.
  const w = new Float32Array(fanIn * fanOut);
  for (let i = 0; i < fanIn; i++) {
    for (let o = 0; o < fanOut; o++) {
      const value = fanIn >= fanOut ? a[o * rows + i] : a[i * rows + o];
      w[i * fanOut + o] = gain * value;
    }
  }
  return w;
}

/** Checks that `weights` is a consistent network of `sizes` (when given); throws a RangeError naming the layer. */
export function checkMlpWeights(weights: MlpWeights, sizes?: readonly number[]): void {
  if (sizes && (sizes.length !== weights.sizes.length || sizes.some((s, i) => s !== weights.sizes[i]))) {
    throw new RangeError(`expected layer sizes [${sizes.join(", ")}], got [${weights.sizes.join(", ")}]`);
  }
  const layers = weights.sizes.length - 1;
  if (weights.weights.length !== layers || weights.biases.length !== layers) {
    throw new RangeError(
      `${layers} layers expected, got ${weights.weights.length} weights and ${weights.biases.length} biases`,
    );
  }
  for (let i = 0; i < layers; i++) {
    const [fanIn, fanOut] = [weights.sizes[i], weights.sizes[i + 1]];
    if (weights.weights[i].length !== fanIn * fanOut) {
      throw new RangeError(
        `layer ${i}: weight has ${weights.weights[i].length} values, expected ${fanIn}×${fanOut}`,
      );
    }
    if (weights.biases[i].length !== fanOut) {
      throw new RangeError(`layer ${i}: bias has ${weights.biases[i].length} values, expected ${fanOut}`);
    }
  }
}

/**
 * Variables holding `weights` (`trainable` false for target networks, which only change by
 * assignment). Dispose with {@link disposeMlp}.
 */
export function mlpVariables(weights: MlpWeights, trainable = true): Dense<tf.Variable>[] {
  checkMlpWeights(weights);
  return weights.weights.map((w, i) => ({
    w: tf.variable(tf.tensor2d(w, [weights.sizes[i], weights.sizes[i + 1]]), trainable),
    b: tf.variable(tf.tensor1d(weights.biases[i]), trainable),
  }));
}

/** Constant tensors holding `weights` (for networks that are not trained). */
export function mlpTensors(weights: MlpWeights): Dense<tf.Tensor>[] {
  checkMlpWeights(weights);
  return weights.weights.map((w, i) => ({
    w: tf.tensor2d(w, [weights.sizes[i], weights.sizes[i + 1]]),
    b: tf.tensor1d(weights.biases[i]),
  }));
}

/** The layer sizes of `params`. */
export function mlpSizes(params: MlpParams): number[] {
  return [params[0].w.shape[0], ...params.map((l) => l.w.shape[1] as number)];
}

/** Reads `params` back into plain arrays (synchronous download). */
export function readMlp(params: MlpParams): MlpWeights {
  return {
    sizes: mlpSizes(params),
    weights: params.map((l) => l.w.dataSync() as Float32Array).map((a) => Float32Array.from(a)),
    biases: params.map((l) => l.b.dataSync() as Float32Array).map((a) => Float32Array.from(a)),
  };
}

/** Overwrites variables with `weights` (same sizes). */
export function assignMlp(params: MlpParams<tf.Variable>, weights: MlpWeights): void {
  checkMlpWeights(weights, mlpSizes(params));
  params.forEach((l, i) => {
    tf.tidy(() => {
      l.w.assign(tf.tensor2d(weights.weights[i], l.w.shape as [number, number]));
      l.b.assign(tf.tensor1d(weights.biases[i]));
    });
  });
}

/** The tensors of `params` in a fixed order (w0, b0, w1, b1, …), e.g. for `tf.variableGrads`. */
export function mlpTensorList<T extends tf.Tensor>(params: MlpParams<T>): T[] {
  return params.flatMap((l) => [l.w, l.b]);
}

/** Disposes every tensor of `params`. */
export function disposeMlp(params: MlpParams): void {
  for (const l of params) {
    l.w.dispose();
    l.b.dispose();
  }
}

function activate(x: tf.Tensor2D, activation: Activation): tf.Tensor2D {
  return activation === "relu" ? tf.relu(x) : activation === "tanh" ? tf.tanh(x) : x;
}

/**
 * The forward pass: `h_{i+1} = act(h_i·W_i + b_i)`, `hidden` between layers and `output` after
 * the last. Pure in `(params, x)` — usable inside `tf.grad`, nested.
 */
// deno-doc-ignore private-type-ref -- tf.Tensor types are tfjs's own
export function mlpForward(
  params: MlpParams,
  x: tf.Tensor2D,
  hidden: Activation = "relu",
  output: Activation = "linear",
): tf.Tensor2D {
  let h = x;
  params.forEach((l, i) => {
    h = tf.add(tf.matMul(h, l.w as tf.Tensor2D), l.b) as tf.Tensor2D;
    h = activate(h, i + 1 < params.length ? hidden : output);
  });
  return h;
}

/** The identity with a zero gradient (PyTorch's `.detach()`; tfjs has no stop-gradient op). */
export const stopGradient: <T extends tf.Tensor>(x: T) => T = tf.customGrad(
  ((x: tf.Tensor) => ({
    value: tf.clone(x),
    gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
  })) as never,
) as never;

/** Hyperparameters of {@link Adam}. */
export interface AdamOptions {
  readonly learningRate: number;
  readonly beta1?: number;
  readonly beta2?: number;
  /** PyTorch's default 1e-8 (tfjs's own Adam would use 1e-7 on float32 backends). */
  readonly epsilon?: number;
}

/** Adam's moments and step count as plain arrays, for checkpoints. */
export interface AdamState {
  readonly step: number;
  readonly m: readonly Float32Array[];
  readonly v: readonly Float32Array[];
}

/**
 * Adam (Kingma and Ba 2015) with PyTorch's update, step by step as `torch.optim.Adam`:
 *   m ← β₁m + (1−β₁)g,  v ← β₂v + (1−β₂)g²,
 *   θ ← θ − (lr / (1−β₁ᵗ)) · m / (√v / √(1−β₂ᵗ) + ε).
 */
export class Adam {
  /** The variables it updates, in the order `apply` expects gradients. */
  readonly variables: readonly tf.Variable[];
  readonly learningRate: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly epsilon: number;
  #step = 0;
  readonly #m: tf.Variable[];
  readonly #v: tf.Variable[];

  /** An optimizer for `variables` with zero moments. */
  constructor(variables: readonly tf.Variable[], options: AdamOptions) {
    this.variables = variables;
    this.learningRate = options.learningRate;
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.epsilon = options.epsilon ?? 1e-8;
    this.#m = variables.map((v) => tf.variable(tf.zerosLike(v), false));
    this.#v = variables.map((v) => tf.variable(tf.zerosLike(v), false));
  }

  /** Steps taken so far. */
  get step(): number {
    return this.#step;
  }

  /** One update with `grads[i]` the gradient of `variables[i]`. */
  apply(grads: readonly tf.Tensor[]): void {
    if (grads.length !== this.variables.length) {
      throw new RangeError(`Adam: ${grads.length} gradients for ${this.variables.length} variables`);
    }
    this.#step++;
    const bc1 = 1 - Math.pow(this.beta1, this.#step);
    const bc2 = 1 - Math.pow(this.beta2, this.#step);
    const stepSize = this.learningRate / bc1;
    const sqrtBc2 = Math.sqrt(bc2);
    tf.tidy(() => {
      this.variables.forEach((p, i) => {
        const g = grads[i];
        const m = tf.add(tf.mul(this.#m[i], this.beta1), tf.mul(g, 1 - this.beta1));
        const v = tf.add(tf.mul(this.#v[i], this.beta2), tf.mul(tf.square(g), 1 - this.beta2));
        this.#m[i].assign(m);
        this.#v[i].assign(v);
        const denom = tf.add(tf.div(tf.sqrt(v), sqrtBc2), this.epsilon);
        p.assign(tf.sub(p, tf.mul(tf.div(m, denom), stepSize)));
      });
    });
  }

  /** The moments and step count (synchronous download). */
  state(): AdamState {
    return {
      step: this.#step,
      m: this.#m.map((t) => Float32Array.from(t.dataSync() as Float32Array)),
      v: this.#v.map((t) => Float32Array.from(t.dataSync() as Float32Array)),
    };
  }

  /** Restores a state saved by {@link Adam.state}. */
  setState(state: AdamState): void {
    if (state.m.length !== this.#m.length || state.v.length !== this.#v.length) {
      throw new RangeError(`Adam state has ${state.m.length} moments for ${this.#m.length} variables`);
    }
    this.#step = state.step;
    this.#m.forEach((t, i) => t.assign(tf.tensor(state.m[i], t.shape)));
    this.#v.forEach((t, i) => t.assign(tf.tensor(state.v[i], t.shape)));
  }

  /** Frees the moments (not the variables). */
  dispose(): void {
    for (const t of [...this.#m, ...this.#v]) t.dispose();
  }
}

/** Polyak averaging of a target network: θ' ← τθ + (1−τ)θ'. */
export function softUpdate(target: MlpParams<tf.Variable>, source: MlpParams, tau: number): void {
  tf.tidy(() => {
    target.forEach((l, i) => {
      l.w.assign(tf.add(tf.mul(source[i].w, tau), tf.mul(l.w, 1 - tau)));
      l.b.assign(tf.add(tf.mul(source[i].b, tau), tf.mul(l.b, 1 - tau)));
    });
  });
}

/** PyTorch `nn.Linear` layout ([out, in] row-major) → ours ([in, out]). */
export function fromTorchLinear(weight: Float32Array, out: number, inp: number): Float32Array {
  if (weight.length !== out * inp) {
    throw new RangeError(`weight has ${weight.length} values, expected ${out}×${inp}`);
  }
  const w = new Float32Array(inp * out);
  for (let o = 0; o < out; o++) for (let i = 0; i < inp; i++) w[i * out + o] = weight[o * inp + i];
  return w;
}
