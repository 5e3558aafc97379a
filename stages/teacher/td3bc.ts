/**
 * TD3+BC (Fujimoto and Gu, "A Minimalist Approach to Offline Reinforcement Learning", 2021), as in
 * CORL's `td3_bc.py`: TD3's twin critics, target policy smoothing and delayed actor updates, plus a
 * behaviour-cloning term in the actor loss, on normalized states.
 *
 * One training step t (1-based), minibatch (s, a, r, s', d):
 *
 *   ε  = clip(N(0, σ²), −c, c)                                   target policy smoothing
 *   a' = clip(π'(s') + ε, −m, m)
 *   y  = r + γ (1 − d) min(Q'₁(s', a'), Q'₂(s', a'))
 *   L_Q = mean (Q₁(s, a) − y)² + mean (Q₂(s, a) − y)²           → Adam step on both critics
 *
 *   every `policyDelay` steps, with the critics just updated:
 *   λ  = α / mean |Q₁(s, π(s))|                                   (no gradient through λ)
 *   L_π = −λ mean Q₁(s, π(s)) + mean (π(s) − a)²                  → Adam step on the actor
 *   θ' ← τ θ + (1 − τ) θ'  for Q₁', Q₂', π'
 *
 * π(s) = m · tanh(MLP(s)); Q(s, a) = MLP(concat(s, a)); hidden layers ReLU; PyTorch's default
 * nn.Linear initialisation; targets start as copies.
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import {
  Adam,
  type AdamState,
  assignMlp,
  type Dense,
  disposeMlp,
  initMlpWeights,
  mlpForward,
  type MlpParams,
  mlpTensorList,
  mlpVariables,
  type MlpWeights,
  readMlp,
  softUpdate,
  stopGradient,
  tidyPlain,
} from "../../numerics/mlp.ts";
import type { Rng } from "../../numerics/random.ts";
import type { BlasLibrary } from "../../numerics/blas.ts";
import { activeBlas } from "../../numerics/blas_kernels.ts";
import { FlatAdam, hostBackward, hostForward, HostMlp, MlpPass, polyak } from "../../numerics/host_mlp.ts";
import type { Batch } from "./data.ts";
import { criticForward } from "./model.ts";

/** TD3+BC hyperparameters. */
export interface Td3bcConfig {
  /** α in λ = α / mean|Q|: the weight of the RL term against BC. */
  readonly alpha: number;
  /** Discount factor γ. */
  readonly discount: number;
  /** τ of the target networks' Polyak averaging. */
  readonly tau: number;
  /** σ of the target policy noise, in units of the max action. */
  readonly policyNoise: number;
  /** c, the clip of that noise, in units of the max action. */
  readonly noiseClip: number;
  /** The actor and the targets are updated every `policyDelay` critic updates. */
  readonly policyDelay: number;
  /** Transitions per minibatch. */
  readonly batchSize: number;
  /** Learning rate of the actor (Adam). */
  readonly actorLr: number;
  /** Learning rate of the critics (Adam). */
  readonly criticLr: number;
  /** Hidden layer widths of actor and critics. */
  readonly hidden: readonly number[];
}

/** The published defaults (Fujimoto and Gu 2021; CORL `td3_bc.py`). */
export const TD3BC_DEFAULTS: Td3bcConfig = {
  alpha: 2.5,
  discount: 0.99,
  tau: 0.005,
  policyNoise: 0.2,
  noiseClip: 0.5,
  policyDelay: 2,
  batchSize: 256,
  actorLr: 3e-4,
  criticLr: 3e-4,
  hidden: [256, 256],
};

/** The networks of TD3+BC as plain weights (checkpoints, artifacts, tests). */
export interface Td3bcWeights {
  readonly actor: MlpWeights;
  readonly critic1: MlpWeights;
  readonly critic2: MlpWeights;
  readonly actorTarget: MlpWeights;
  readonly critic1Target: MlpWeights;
  readonly critic2Target: MlpWeights;
}

/** Everything needed to continue training exactly: weights, Adam moments, steps done. */
export interface Td3bcState {
  readonly weights: Td3bcWeights;
  readonly actorOptimizer: AdamState;
  readonly criticOptimizer: AdamState;
  readonly step: number;
}

/** Fresh networks for `obsDim` → `actDim` (targets are copies). */
export function initTd3bcWeights(
  obsDim: number,
  actDim: number,
  config: Td3bcConfig,
  rng: Rng,
): Td3bcWeights {
  const actor = initMlpWeights([obsDim, ...config.hidden, actDim], rng.fork());
  const critic1 = initMlpWeights([obsDim + actDim, ...config.hidden, 1], rng.fork());
  const critic2 = initMlpWeights([obsDim + actDim, ...config.hidden, 1], rng.fork());
  return { actor, critic1, critic2, actorTarget: actor, critic1Target: critic1, critic2Target: critic2 };
}

/** π(s) = m · tanh(MLP(s)). */
export function td3bcActor(actor: MlpParams, states: tf.Tensor2D, maxAction: number): tf.Tensor2D {
  return tf.mul(mlpForward(actor, states, "relu", "tanh"), maxAction) as tf.Tensor2D;
}

/**
 * Target policy smoothing noise ε = clip(σ·m·N(0, 1), −c·m, c·m), [batch, actDim], drawn from
 * `rng` (host side, so runs are reproducible on every backend).
 */
export function targetNoise(
  rng: Rng,
  batchSize: number,
  actDim: number,
  config: Td3bcConfig,
  maxAction: number,
): Float32Array {
  const out = new Float32Array(batchSize * actDim);
  const clip = config.noiseClip * maxAction;
  for (let i = 0; i < out.length; i++) {
    out[i] = Math.min(clip, Math.max(-clip, config.policyNoise * maxAction * rng.normal()));
  }
  return out;
}

/** y = r + γ (1 − d) min(Q'₁(s', a'), Q'₂(s', a')), a' = clip(π'(s') + ε, −m, m). */
export function td3bcTarget(
  targets: { readonly actor: MlpParams; readonly critic1: MlpParams; readonly critic2: MlpParams },
  batch: Batch,
  noise: tf.Tensor2D,
  discount: number,
  maxAction: number,
): tf.Tensor1D {
  return tf.tidy(() => {
    const nextAction = tf.clipByValue(
      tf.add(td3bcActor(targets.actor, batch.nextStates, maxAction), noise),
      -maxAction,
      maxAction,
    ) as tf.Tensor2D;
    const q = tf.minimum(
      criticForward(targets.critic1, batch.nextStates, nextAction),
      criticForward(targets.critic2, batch.nextStates, nextAction),
    );
    return tf.add(batch.rewards, tf.mul(tf.mul(batch.notDone, discount), q)) as tf.Tensor1D;
  });
}

/** L_Q = mean (Q₁(s, a) − y)² + mean (Q₂(s, a) − y)². */
export function td3bcCriticLoss(
  critic1: MlpParams,
  critic2: MlpParams,
  batch: Batch,
  target: tf.Tensor1D,
): tf.Scalar {
  const q1 = criticForward(critic1, batch.states, batch.actions);
  const q2 = criticForward(critic2, batch.states, batch.actions);
  return tf.add(tf.mean(tf.squaredDifference(q1, target)), tf.mean(tf.squaredDifference(q2, target)));
}

/**
 * L_π = −λ mean Q₁(s, π(s)) + mean (π(s) − a)², λ = α / mean |Q₁(s, π(s))| held constant.
 * Returns the loss and its parts (λ, mean Q, the BC term) for logging.
 */
export function td3bcActorLoss(
  actor: MlpParams,
  critic1: MlpParams,
  batch: Batch,
  alpha: number,
  maxAction: number,
): { loss: tf.Scalar; lambda: tf.Scalar; meanQ: tf.Scalar; bc: tf.Scalar } {
  const pi = td3bcActor(actor, batch.states, maxAction);
  const q = criticForward(critic1, batch.states, pi);
  const lambda = tf.div(alpha, stopGradient(tf.mean(tf.abs(q)))) as tf.Scalar;
  const meanQ = tf.mean(q) as tf.Scalar;
  const bc = tf.mean(tf.squaredDifference(pi, batch.actions)) as tf.Scalar;
  return { loss: tf.add(tf.neg(tf.mul(lambda, meanQ)), bc) as tf.Scalar, lambda, meanQ, bc };
}

/** Scalars of one step, for the run log (only read when asked: reading syncs the backend). */
export interface Td3bcStepStats {
  readonly criticLoss: number;
  readonly actorLoss?: number;
  readonly lambda?: number;
  readonly meanQ?: number;
  readonly bcLoss?: number;
}

/** Which implementation a {@link Td3bc} runs: tensors on the backend, or host arrays and the BLAS. */
export type Td3bcEngine = "tensors" | "host";

/**
 * A TD3+BC learner. With a BLAS behind the wasm backend (numerics/blas.ts) it trains on host arrays
 * with hand-derived backward passes, every product a BLAS call (`host`: the step is ≈ 40 small
 * operations, each a tfjs op of tens of microseconds otherwise); else on tensors with autodiff
 * (`tensors`). Both compute the same update (tests/teacher_test.ts holds them to each other and to
 * PyTorch); weights and optimizer state have one format.
 */
export class Td3bc {
  /** The hyperparameters. */
  readonly config: Td3bcConfig;
  /** m of π(s) = m · tanh(MLP(s)). */
  readonly maxAction: number;
  /** The implementation in use. */
  readonly engine: Td3bcEngine;
  readonly #impl: TensorTd3bc | HostTd3bc;

  /**
   * Starts from `weights`; `engine` defaults to `host` where a BLAS is active on wasm, else
   * `tensors`.
   */
  constructor(weights: Td3bcWeights, config: Td3bcConfig, maxAction: number, engine?: Td3bcEngine) {
    this.config = config;
    this.maxAction = maxAction;
    const blas = activeBlas();
    this.engine = engine ?? (blas && tf.getBackend() === "wasm" ? "host" : "tensors");
    if (this.engine === "host") {
      if (!blas) throw new Error("the host TD3+BC engine needs a BLAS (numerics/blas.ts)");
      this.#impl = new HostTd3bc(blas, weights, config, maxAction);
    } else {
      this.#impl = new TensorTd3bc(weights, config, maxAction);
    }
  }

  /** Training steps done. */
  get step(): number {
    return this.#impl.step;
  }

  /**
   * One training step on `batch` with target noise `noise` ([batch, actDim], already scaled and
   * clipped: {@link targetNoise}). With `stats`, returns the step's losses (a backend sync).
   */
  update(batch: Batch, noise: Float32Array, stats = false): Td3bcStepStats | undefined {
    return this.#impl.update(batch, noise, stats);
  }

  /** The current weights (synchronous download). */
  weights(): Td3bcWeights {
    return this.#impl.weights();
  }

  /** Everything to resume from (weights, Adam moments, step). */
  state(): Td3bcState {
    return this.#impl.state();
  }

  /** Restores a state saved by {@link Td3bc.state} (same architecture, either engine). */
  setState(state: Td3bcState): void {
    this.#impl.setState(state);
  }

  /** Frees every tensor. */
  dispose(): void {
    this.#impl.dispose();
  }
}

/** The learner on host arrays: the update of {@link TensorTd3bc}, derived by hand, products on the BLAS. */
class HostTd3bc {
  readonly #blas: BlasLibrary;
  readonly #config: Td3bcConfig;
  readonly #maxAction: number;
  readonly #actor: HostMlp;
  readonly #critic1: HostMlp;
  readonly #critic2: HostMlp;
  readonly #actorTarget: HostMlp;
  readonly #critic1Target: HostMlp;
  readonly #critic2Target: HostMlp;
  readonly #actorGrad: HostMlp;
  readonly #critic1Grad: HostMlp;
  readonly #critic2Grad: HostMlp;
  readonly #actorOpt: FlatAdam;
  readonly #criticOpt: FlatAdam;
  #buffers?: ReturnType<HostTd3bc["allocate"]>;
  step = 0;

  constructor(blas: BlasLibrary, weights: Td3bcWeights, config: Td3bcConfig, maxAction: number) {
    this.#blas = blas;
    this.#config = config;
    this.#maxAction = maxAction;
    this.#actor = new HostMlp(weights.actor);
    this.#critic1 = new HostMlp(weights.critic1);
    this.#critic2 = new HostMlp(weights.critic2);
    this.#actorTarget = new HostMlp(weights.actorTarget);
    this.#critic1Target = new HostMlp(weights.critic1Target);
    this.#critic2Target = new HostMlp(weights.critic2Target);
    this.#actorGrad = new HostMlp(weights.actor);
    this.#critic1Grad = new HostMlp(weights.critic1);
    this.#critic2Grad = new HostMlp(weights.critic2);
    this.#actorOpt = new FlatAdam([this.#actor.params.length], { learningRate: config.actorLr });
    this.#criticOpt = new FlatAdam([this.#critic1.params.length, this.#critic2.params.length], {
      learningRate: config.criticLr,
    });
  }

  /** Buffers for minibatches of `rows`. */
  private allocate(rows: number) {
    const obsDim = this.#actor.sizes[0], actDim = this.#actor.sizes[this.#actor.sizes.length - 1];
    const pass = (net: HostMlp) => new MlpPass(net.sizes, rows);
    return {
      rows,
      obsDim,
      actDim,
      targetActor: pass(this.#actor),
      target1: pass(this.#critic1),
      target2: pass(this.#critic2),
      q1: pass(this.#critic1),
      q2: pass(this.#critic2),
      actor: pass(this.#actor),
      actorQ: pass(this.#critic1),
      nextInput: new Float32Array(rows * (obsDim + actDim)),
      input: new Float32Array(rows * (obsDim + actDim)),
      policyInput: new Float32Array(rows * (obsDim + actDim)),
      y: new Float32Array(rows),
      d1: new Float32Array(rows),
      d2: new Float32Array(rows),
      dq: new Float32Array(rows),
      pi: new Float32Array(rows * actDim),
      dAction: new Float32Array(rows * actDim),
      dPre: new Float32Array(rows * actDim),
    };
  }

  update(batch: Batch, noise: Float32Array, stats: boolean): Td3bcStepStats | undefined {
    this.step++;
    const blas = this.#blas, m = this.#maxAction;
    const { alpha, discount, policyDelay, tau } = this.#config;
    const rows = batch.rewards.shape[0];
    if (!this.#buffers || this.#buffers.rows !== rows) this.#buffers = this.allocate(rows);
    const b = this.#buffers, { obsDim, actDim } = b, width = obsDim + actDim;
    const states = batch.states.dataSync() as Float32Array,
      actions = batch.actions.dataSync() as Float32Array;
    const rewards = batch.rewards.dataSync() as Float32Array;
    const nextStates = batch.nextStates.dataSync() as Float32Array;
    const notDone = batch.notDone.dataSync() as Float32Array;
    const join = (out: Float32Array, s: Float32Array, a: Float32Array) => {
      for (let r = 0; r < rows; r++) {
        out.set(s.subarray(r * obsDim, (r + 1) * obsDim), r * width);
        out.set(a.subarray(r * actDim, (r + 1) * actDim), r * width + obsDim);
      }
    };

    // y = r + γ (1 − d) min(Q'₁, Q'₂)(s', clip(π'(s') + ε, −m, m))
    const za = hostForward(blas, this.#actorTarget, nextStates, b.targetActor);
    const nextAction = b.pi;
    for (let i = 0; i < za.length; i++) {
      nextAction[i] = Math.min(m, Math.max(-m, m * Math.tanh(za[i]) + noise[i]));
    }
    join(b.nextInput, nextStates, nextAction);
    const t1 = hostForward(blas, this.#critic1Target, b.nextInput, b.target1);
    const t2 = hostForward(blas, this.#critic2Target, b.nextInput, b.target2);
    for (let i = 0; i < rows; i++) b.y[i] = rewards[i] + notDone[i] * discount * Math.min(t1[i], t2[i]);

    // L_Q and its gradient: ∂/∂Qₖ = 2 (Qₖ − y) / B.
    join(b.input, states, actions);
    const q1 = hostForward(blas, this.#critic1, b.input, b.q1);
    const q2 = hostForward(blas, this.#critic2, b.input, b.q2);
    let criticLoss = 0;
    for (let i = 0; i < rows; i++) {
      const e1 = q1[i] - b.y[i], e2 = q2[i] - b.y[i];
      criticLoss += e1 * e1 + e2 * e2;
      b.d1[i] = 2 * e1 / rows;
      b.d2[i] = 2 * e2 / rows;
    }
    hostBackward(blas, this.#critic1, b.q1, b.d1, this.#critic1Grad);
    hostBackward(blas, this.#critic2, b.q2, b.d2, this.#critic2Grad);
    this.#criticOpt.apply(
      [this.#critic1.params, this.#critic2.params],
      [this.#critic1Grad.params, this.#critic2Grad.params],
    );
    const out: { -readonly [K in keyof Td3bcStepStats]: Td3bcStepStats[K] } | undefined = stats
      ? { criticLoss: criticLoss / rows }
      : undefined;
    if (this.step % policyDelay !== 0) return out;

    // L_π = −λ mean Q₁(s, π(s)) + mean (π(s) − a)², λ = α / mean |Q₁| held constant.
    const zp = hostForward(blas, this.#actor, states, b.actor);
    const pi = b.pi;
    for (let i = 0; i < zp.length; i++) pi[i] = m * Math.tanh(zp[i]);
    join(b.policyInput, states, pi);
    const q = hostForward(blas, this.#critic1, b.policyInput, b.actorQ);
    let absQ = 0, sumQ = 0, bc = 0;
    for (let i = 0; i < rows; i++) absQ += Math.abs(q[i]), sumQ += q[i];
    const lambda = Math.fround(alpha / Math.fround(absQ / rows));
    b.dq.fill(-lambda / rows);
    hostBackward(blas, this.#critic1, b.actorQ, b.dq, undefined, { out: b.dAction, from: obsDim, to: width });
    const n = rows * actDim;
    for (let i = 0; i < n; i++) {
      const diff = pi[i] - actions[i];
      bc += diff * diff;
      const t = pi[i] / m;
      b.dPre[i] = (b.dAction[i] + 2 * diff / n) * m * (1 - t * t);
    }
    hostBackward(blas, this.#actor, b.actor, b.dPre, this.#actorGrad);
    this.#actorOpt.apply([this.#actor.params], [this.#actorGrad.params]);
    polyak(this.#critic1Target.params, this.#critic1.params, tau);
    polyak(this.#critic2Target.params, this.#critic2.params, tau);
    polyak(this.#actorTarget.params, this.#actor.params, tau);
    if (out) {
      const meanQ = sumQ / rows;
      out.lambda = lambda;
      out.meanQ = meanQ;
      out.bcLoss = bc / n;
      out.actorLoss = -lambda * meanQ + bc / n;
    }
    return out;
  }

  weights(): Td3bcWeights {
    return {
      actor: this.#actor.weights(),
      critic1: this.#critic1.weights(),
      critic2: this.#critic2.weights(),
      actorTarget: this.#actorTarget.weights(),
      critic1Target: this.#critic1Target.weights(),
      critic2Target: this.#critic2Target.weights(),
    };
  }

  state(): Td3bcState {
    return {
      weights: this.weights(),
      actorOptimizer: this.#actorOpt.state([this.#actor.sizes]),
      criticOptimizer: this.#criticOpt.state([this.#critic1.sizes, this.#critic2.sizes]),
      step: this.step,
    };
  }

  setState(state: Td3bcState): void {
    const w = state.weights;
    this.#actor.set(w.actor);
    this.#critic1.set(w.critic1);
    this.#critic2.set(w.critic2);
    this.#actorTarget.set(w.actorTarget);
    this.#critic1Target.set(w.critic1Target);
    this.#critic2Target.set(w.critic2Target);
    this.#actorOpt.setState(state.actorOptimizer, [this.#actor.sizes]);
    this.#criticOpt.setState(state.criticOptimizer, [this.#critic1.sizes, this.#critic2.sizes]);
    this.step = state.step;
  }

  dispose(): void {}
}

/** The learner on tensors: networks as variables on the backend, two Adam optimizers, autodiff. */
class TensorTd3bc {
  readonly config: Td3bcConfig;
  readonly maxAction: number;
  readonly actor: Dense<tf.Variable>[];
  readonly critic1: Dense<tf.Variable>[];
  readonly critic2: Dense<tf.Variable>[];
  readonly actorTarget: Dense<tf.Variable>[];
  readonly critic1Target: Dense<tf.Variable>[];
  readonly critic2Target: Dense<tf.Variable>[];
  readonly #actorOpt: Adam;
  readonly #criticOpt: Adam;
  #step = 0;

  /** Puts `weights` on the backend. */
  constructor(weights: Td3bcWeights, config: Td3bcConfig, maxAction: number) {
    this.config = config;
    this.maxAction = maxAction;
    this.actor = mlpVariables(weights.actor);
    this.critic1 = mlpVariables(weights.critic1);
    this.critic2 = mlpVariables(weights.critic2);
    this.actorTarget = mlpVariables(weights.actorTarget, false);
    this.critic1Target = mlpVariables(weights.critic1Target, false);
    this.critic2Target = mlpVariables(weights.critic2Target, false);
    this.#actorOpt = new Adam(mlpTensorList(this.actor), { learningRate: config.actorLr });
    this.#criticOpt = new Adam([...mlpTensorList(this.critic1), ...mlpTensorList(this.critic2)], {
      learningRate: config.criticLr,
    });
  }

  /** Training steps done. */
  get step(): number {
    return this.#step;
  }

  /**
   * One training step on `batch` with target noise `noise` ([batch, actDim], already scaled and
   * clipped: {@link targetNoise}). With `stats`, returns the step's losses (a backend sync).
   */
  update(batch: Batch, noise: Float32Array, stats = false): Td3bcStepStats | undefined {
    this.#step++;
    const { alpha, discount, policyDelay, tau } = this.config;
    return tidyPlain(() => {
      const eps = tf.tensor2d(noise, [batch.rewards.shape[0], batch.actions.shape[1]]);
      const y = td3bcTarget(
        { actor: this.actorTarget, critic1: this.critic1Target, critic2: this.critic2Target },
        batch,
        eps,
        discount,
        this.maxAction,
      );
      const criticVars = this.#criticOpt.variables;
      const critic = tf.variableGrads(
        () => td3bcCriticLoss(this.critic1, this.critic2, batch, y),
        criticVars as tf.Variable[],
      );
      this.#criticOpt.apply(criticVars.map((v) => critic.grads[v.name]));
      const out: { -readonly [K in keyof Td3bcStepStats]: Td3bcStepStats[K] } | undefined = stats
        ? { criticLoss: critic.value.dataSync()[0] }
        : undefined;
      if (this.#step % policyDelay === 0) {
        let parts: { lambda: tf.Scalar; meanQ: tf.Scalar; bc: tf.Scalar } | undefined;
        const actorVars = this.#actorOpt.variables;
        const actor = tf.variableGrads(() => {
          const l = td3bcActorLoss(this.actor, this.critic1, batch, alpha, this.maxAction);
          if (stats) parts = { lambda: tf.keep(l.lambda), meanQ: tf.keep(l.meanQ), bc: tf.keep(l.bc) };
          return l.loss;
        }, actorVars as tf.Variable[]);
        this.#actorOpt.apply(actorVars.map((v) => actor.grads[v.name]));
        softUpdate(this.critic1Target, this.critic1, tau);
        softUpdate(this.critic2Target, this.critic2, tau);
        softUpdate(this.actorTarget, this.actor, tau);
        if (out && parts) {
          out.actorLoss = actor.value.dataSync()[0];
          out.lambda = parts.lambda.dataSync()[0];
          out.meanQ = parts.meanQ.dataSync()[0];
          out.bcLoss = parts.bc.dataSync()[0];
          tf.dispose([parts.lambda, parts.meanQ, parts.bc]);
        }
      }
      return out;
    });
  }

  /** The current weights (synchronous download). */
  weights(): Td3bcWeights {
    return {
      actor: readMlp(this.actor),
      critic1: readMlp(this.critic1),
      critic2: readMlp(this.critic2),
      actorTarget: readMlp(this.actorTarget),
      critic1Target: readMlp(this.critic1Target),
      critic2Target: readMlp(this.critic2Target),
    };
  }

  /** Everything to resume from (weights, Adam moments, step). */
  state(): Td3bcState {
    return {
      weights: this.weights(),
      actorOptimizer: this.#actorOpt.state(),
      criticOptimizer: this.#criticOpt.state(),
      step: this.#step,
    };
  }

  /** Restores a state saved by `state` (same architecture). */
  setState(state: Td3bcState): void {
    const w = state.weights;
    assignMlp(this.actor, w.actor);
    assignMlp(this.critic1, w.critic1);
    assignMlp(this.critic2, w.critic2);
    assignMlp(this.actorTarget, w.actorTarget);
    assignMlp(this.critic1Target, w.critic1Target);
    assignMlp(this.critic2Target, w.critic2Target);
    this.#actorOpt.setState(state.actorOptimizer);
    this.#criticOpt.setState(state.criticOptimizer);
    this.#step = state.step;
  }

  /** Frees every tensor. */
  dispose(): void {
    for (
      const net of [
        this.actor,
        this.critic1,
        this.critic2,
        this.actorTarget,
        this.critic1Target,
        this.critic2Target,
      ]
    ) disposeMlp(net);
    this.#actorOpt.dispose();
    this.#criticOpt.dispose();
  }
}
