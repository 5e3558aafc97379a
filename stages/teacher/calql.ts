/**
 * Cal-QL (Nakamoto et al., "Cal-QL: Calibrated Offline RL Pre-Training for Efficient Online
 * Fine-Tuning", 2023), offline phase, as in CORL's `cal_ql.py` with its defaults (the papers' teacher):
 * SAC with a tanh-Gaussian actor and twin critics, the CQL regularizer with sampled actions and
 * importance sampling, and Cal-QL's calibration of the pushed-down Q-values against Monte-Carlo
 * returns-to-go of the data.
 *
 * One training step, minibatch (s, a, r, s', d, G) with G the data's return-to-go:
 *
 *   a_π, log π(a_π|s) ~ π(·|s)                        reparameterised (tanhGaussianSample)
 *   α = exp(log α)·k;  L_α = −log α · mean(log π(a_π|s) + H̄),  H̄ = −|A|   (automatic entropy tuning)
 *   L_π = mean(α log π(a_π|s) − min(Q₁(s, a_π), Q₂(s, a_π)))
 *
 *   y = r + γ (1 − d) min(Q'₁(s', a'), Q'₂(s', a')),  a' ~ π(·|s')
 *   for i = 1, 2 and N sampled actions per state (no gradient through the samples):
 *     a_rand ~ U(−1, 1)^|A|,  a_cur ~ π(·|s),  a_next ~ π(·|s')
 *     Cal-QL: Q_i(s, a_cur) ← max(Q_i(s, a_cur), G),  Q_i(s, a_next) ← max(Q_i(s, a_next), G)
 *     ood_i = τ_c · logsumexp over the 3N values of
 *             [Q_i(s, a_rand) − log 0.5^|A|,  Q_i(s, a_next) − log π(a_next|s'),  Q_i(s, a_cur) − log π(a_cur|s)] / τ_c
 *     L_CQL,i = α_cql · mean(ood_i − Q_i(s, a))
 *   L_Q = Σ_i [ mean (Q_i(s, a) − y)² + L_CQL,i ]
 *
 *   Adam steps on log α, the actor (policy lr) and the critics (qf lr), all from the losses at the
 *   step's starting parameters; then Q'_i ← τ Q_i + (1 − τ) Q'_i.
 *
 * Networks: actor 3×256 ReLU → 2|A| (μ, ℓ) with trained scalars k_σ, c_σ: log σ = clip(k_σ ℓ + c_σ,
 * −20, 2); critics 2×256 ReLU on concat(s, a); orthogonal initialisation (gain √2, zero bias).
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
  tidyPlain,
} from "../../numerics/mlp.ts";
import type { Rng } from "../../numerics/random.ts";
import type { Batch } from "./data.ts";
import { CORL_GAUSSIAN_HEAD, criticForward, gaussianParams, tanhGaussianSample } from "./model.ts";

/** Cal-QL hyperparameters (CORL's `TrainConfig` names in camel case). */
export interface CalqlConfig {
  /** Transitions per minibatch. */
  readonly batchSize: number;
  /** Discount factor γ. */
  readonly discount: number;
  /** Learning rate of the actor (Adam). */
  readonly policyLr: number;
  /** Learning rate of the critics (Adam). */
  readonly qfLr: number;
  /** τ of the target critics' Polyak averaging (`soft_target_update_rate`). */
  readonly tau: number;
  /** Gradient steps between target-critic updates. */
  readonly targetUpdatePeriod: number;
  /** k in α = exp(log α)·k. */
  readonly alphaMultiplier: number;
  /** Learn α towards the target entropy −|A| (else α = alphaMultiplier). */
  readonly automaticEntropyTuning: boolean;
  /** Subtract α log π(a'|s') from the target. */
  readonly backupEntropy: boolean;
  /** α_cql, the weight of the CQL regularizer. */
  readonly cqlAlpha: number;
  /** N, sampled actions per state and kind. */
  readonly cqlNActions: number;
  /** Subtract the sampling log-densities inside the logsumexp (CQL(H) importance sampling). */
  readonly cqlImportanceSample: boolean;
  /** τ_c, the logsumexp temperature. */
  readonly cqlTemp: number;
  /** Cal-QL's calibration against the return-to-go (false: plain CQL). */
  readonly calibration: boolean;
  /** Orthogonal weights (gain √2) and zero biases at initialization, else PyTorch's default. */
  readonly orthogonalInit: boolean;
  /** Hidden layer widths of the actor. */
  readonly actorHidden: readonly number[];
  /** Hidden layer widths of the critics. */
  readonly criticHidden: readonly number[];
}

/** CORL `cal_ql.py` defaults (used for MuJoCo, which has no config file of its own there). */
export const CALQL_DEFAULTS: CalqlConfig = {
  batchSize: 256,
  discount: 0.99,
  policyLr: 3e-5,
  qfLr: 3e-4,
  tau: 5e-3,
  targetUpdatePeriod: 1,
  alphaMultiplier: 1,
  automaticEntropyTuning: true,
  backupEntropy: false,
  cqlAlpha: 10,
  cqlNActions: 10,
  cqlImportanceSample: true,
  cqlTemp: 1,
  calibration: true,
  orthogonalInit: true,
  actorHidden: [256, 256, 256],
  criticHidden: [256, 256],
};

/** The networks and scalars of Cal-QL as plain values. */
export interface CalqlWeights {
  /** Outputs 2|A|: μ then ℓ. */
  readonly actor: MlpWeights;
  readonly logStdMultiplier: number;
  readonly logStdOffset: number;
  readonly critic1: MlpWeights;
  readonly critic2: MlpWeights;
  readonly critic1Target: MlpWeights;
  readonly critic2Target: MlpWeights;
  readonly logAlpha: number;
}

/** Everything needed to continue training exactly. */
export interface CalqlState {
  readonly weights: CalqlWeights;
  readonly actorOptimizer: AdamState;
  readonly criticOptimizer: AdamState;
  readonly alphaOptimizer: AdamState;
  readonly step: number;
}

/** Fresh networks (CORL: orthogonal gain √2 and zero biases when `orthogonalInit`). */
export function initCalqlWeights(
  obsDim: number,
  actDim: number,
  config: CalqlConfig,
  rng: Rng,
): CalqlWeights {
  const init = config.orthogonalInit
    ? { kind: "orthogonal" as const, gain: Math.SQRT2 }
    : { kind: "pytorch" as const };
  const actor = initMlpWeights([obsDim, ...config.actorHidden, 2 * actDim], rng.fork(), init);
  const critic1 = initMlpWeights([obsDim + actDim, ...config.criticHidden, 1], rng.fork(), init);
  const critic2 = initMlpWeights([obsDim + actDim, ...config.criticHidden, 1], rng.fork(), init);
  return {
    actor,
    logStdMultiplier: CORL_GAUSSIAN_HEAD.logStdMultiplier,
    logStdOffset: CORL_GAUSSIAN_HEAD.logStdOffset,
    critic1,
    critic2,
    critic1Target: critic1,
    critic2Target: critic2,
    logAlpha: 0,
  };
}

/** The random draws of one step, host side ([rows, |A|] row-major; N-fold ones are [B, N, |A|]). */
export interface CalqlNoise {
  /** ε for a_π ~ π(·|s), [B, A]. */
  readonly policy: Float32Array;
  /** ε for a' ~ π(·|s'), [B, A]. */
  readonly next: Float32Array;
  /** a_rand ~ U(−1, 1), [B, N, A]. */
  readonly random: Float32Array;
  /** ε for a_cur ~ π(·|s), [B, N, A]. */
  readonly cqlCurrent: Float32Array;
  /** ε for a_next ~ π(·|s'), [B, N, A]. */
  readonly cqlNext: Float32Array;
}

/** Draws a step's noise from `rng`. */
export function calqlNoise(rng: Rng, batchSize: number, actDim: number, nActions: number): CalqlNoise {
  const b = batchSize * actDim, bn = b * nActions;
  return {
    policy: rng.fillNormal(new Float32Array(b)),
    next: rng.fillNormal(new Float32Array(b)),
    random: rng.fillUniform(new Float32Array(bn), -1, 1),
    cqlCurrent: rng.fillNormal(new Float32Array(bn)),
    cqlNext: rng.fillNormal(new Float32Array(bn)),
  };
}

/** The actor's parameters as the losses see them. */
export interface CalqlActorParams {
  readonly net: MlpParams;
  readonly logStdMultiplier: tf.Tensor | number;
  readonly logStdOffset: tf.Tensor | number;
}

/** a ~ π(·|s) with noise `eps`, and log π(a|s). */
export function calqlPolicy(
  actor: CalqlActorParams,
  states: tf.Tensor2D,
  eps: tf.Tensor2D,
  maxAction: number,
) {
  const actDim = eps.shape[1];
  const { mean, logStd } = gaussianParams(mlpForward(actor.net, states, "relu", "linear"), actDim, {
    ...CORL_GAUSSIAN_HEAD,
    logStdMultiplier: actor.logStdMultiplier,
    logStdOffset: actor.logStdOffset,
  });
  return tanhGaussianSample(mean, logStd, eps, maxAction);
}

/** Each row of `x` [B, d] repeated n times in place: [B·n, d] (CORL `extend_and_repeat`). */
function repeatRows(x: tf.Tensor2D, n: number): tf.Tensor2D {
  return tf.reshape(tf.tile(tf.expandDims(x, 1), [1, n, 1]), [-1, x.shape[1]]);
}

/** Terms of the critic loss, for logging and tests. */
export interface CalqlQLossTerms {
  readonly loss: tf.Scalar;
  readonly qf1Loss: tf.Scalar;
  readonly qf2Loss: tf.Scalar;
  readonly cqlDiff1: tf.Scalar;
  readonly cqlDiff2: tf.Scalar;
  readonly meanQ1: tf.Scalar;
  /** Share of Q₁(s, a_cur) below G before calibration. */
  readonly boundRate: tf.Scalar;
}

/** Samples from the actor that the critic loss uses (computed once, outside the gradient). */
export interface CqlSamples {
  /** y, [B]. */
  readonly target: tf.Tensor1D;
  /** [B·N, A] each, and their log π [B, N]. */
  readonly currentActions: tf.Tensor2D;
  readonly currentLogPi: tf.Tensor2D;
  readonly nextActions: tf.Tensor2D;
  readonly nextLogPi: tf.Tensor2D;
  readonly randomActions: tf.Tensor2D;
}

/** The target y and the CQL action samples, all without gradient. */
export function cqlSamples(
  actor: CalqlActorParams,
  targets: { readonly critic1: MlpParams; readonly critic2: MlpParams },
  batch: Batch,
  noise: CalqlNoise,
  alpha: number | tf.Scalar,
  config: CalqlConfig,
  maxAction: number,
): CqlSamples {
  const B = batch.rewards.shape[0], A = batch.actions.shape[1], N = config.cqlNActions;
  // One actor pass for the three kinds of sample: s' (target), s repeated, s' repeated.
  const states = tf.concat(
    [batch.nextStates, repeatRows(batch.states, N), repeatRows(batch.nextStates, N)],
    0,
  );
  const eps = tf.concat([
    tf.tensor2d(noise.next, [B, A]),
    tf.tensor2d(noise.cqlCurrent, [B * N, A]),
    tf.tensor2d(noise.cqlNext, [B * N, A]),
  ], 0);
  const { action, logProb } = calqlPolicy(actor, states, eps, maxAction);
  const nextAction = tf.slice(action, [0, 0], [B, A]);
  const nextLogPi = tf.slice(logProb, [0], [B]);
  let targetQ: tf.Tensor1D = tf.minimum(
    criticForward(targets.critic1, batch.nextStates, nextAction),
    criticForward(targets.critic2, batch.nextStates, nextAction),
  );
  if (config.backupEntropy) targetQ = tf.sub(targetQ, tf.mul(alpha, nextLogPi));
  const target = tf.add(
    batch.rewards,
    tf.mul(tf.mul(batch.notDone, config.discount), targetQ),
  ) as tf.Tensor1D;
  return {
    target,
    currentActions: tf.slice(action, [B, 0], [B * N, A]),
    currentLogPi: tf.reshape(tf.slice(logProb, [B], [B * N]), [B, N]),
    nextActions: tf.slice(action, [B + B * N, 0], [B * N, A]),
    nextLogPi: tf.reshape(tf.slice(logProb, [B + B * N], [B * N]), [B, N]),
    randomActions: tf.tensor2d(noise.random, [B * N, A]),
  };
}

/** L_Q with the CQL regularizer and Cal-QL's calibration (see the module comment). */
export function calqlCriticLoss(
  critic1: MlpParams,
  critic2: MlpParams,
  batch: Batch,
  samples: CqlSamples,
  config: CalqlConfig,
): CalqlQLossTerms {
  const B = batch.rewards.shape[0], A = batch.actions.shape[1], N = config.cqlNActions;
  if (config.calibration && !batch.mcReturns) {
    throw new Error("Cal-QL's calibration needs the batch's returns-to-go");
  }
  const sRep = repeatRows(batch.states, N);
  // One critic pass per critic over (s, a), then (s, a_rand), (s, a_cur), (s, a_next).
  const states = tf.concat([batch.states, sRep, sRep, sRep], 0);
  const actions = tf.concat([
    batch.actions,
    samples.randomActions,
    samples.currentActions,
    samples.nextActions,
  ], 0);
  const lower = batch.mcReturns ? tf.reshape(batch.mcReturns, [B, 1]) : undefined;
  const randomDensity = A * Math.log(0.5); // log of U(−1, 1)^A's density
  const terms = (critic: MlpParams) => {
    const q = criticForward(critic, states, actions);
    const predicted = tf.slice(q, [0], [B]);
    const part = (k: number) => tf.reshape(tf.slice(q, [B + k * B * N], [B * N]), [B, N]);
    const qRand = part(0);
    let qCur = part(1), qNext = part(2);
    const boundRate = lower ? tf.mean(tf.cast(tf.less(qCur, lower), "float32")) : tf.scalar(0);
    if (config.calibration && lower) {
      qCur = tf.maximum(qCur, lower);
      qNext = tf.maximum(qNext, lower);
    }
    const cat = config.cqlImportanceSample
      ? tf.concat([
        tf.sub(qRand, randomDensity),
        tf.sub(qNext, samples.nextLogPi),
        tf.sub(qCur, samples.currentLogPi),
      ], 1)
      : tf.concat([qRand, tf.reshape(predicted, [B, 1]), qNext, qCur], 1);
    const ood = tf.mul(tf.logSumExp(tf.div(cat, config.cqlTemp), 1), config.cqlTemp);
    const diff = tf.mean(tf.sub(ood, predicted)) as tf.Scalar;
    const td = tf.mean(tf.squaredDifference(predicted, samples.target)) as tf.Scalar;
    return { td, diff, meanQ: tf.mean(predicted) as tf.Scalar, boundRate: boundRate as tf.Scalar };
  };
  const t1 = terms(critic1), t2 = terms(critic2);
  const loss = tf.addN([
    t1.td,
    t2.td,
    tf.mul(t1.diff, config.cqlAlpha),
    tf.mul(t2.diff, config.cqlAlpha),
  ]) as tf.Scalar;
  return {
    loss,
    qf1Loss: t1.td,
    qf2Loss: t2.td,
    cqlDiff1: t1.diff,
    cqlDiff2: t2.diff,
    meanQ1: t1.meanQ,
    boundRate: t1.boundRate,
  };
}

/** L_π = mean(α log π(a_π|s) − min(Q₁(s, a_π), Q₂(s, a_π))); also returns log π for α's loss. */
export function calqlActorLoss(
  actor: CalqlActorParams,
  critic1: MlpParams,
  critic2: MlpParams,
  batch: Batch,
  eps: tf.Tensor2D,
  alpha: number | tf.Scalar,
  maxAction: number,
): { loss: tf.Scalar; logPi: tf.Tensor1D } {
  const { action, logProb } = calqlPolicy(actor, batch.states, eps, maxAction);
  const q = tf.minimum(
    criticForward(critic1, batch.states, action),
    criticForward(critic2, batch.states, action),
  );
  return { loss: tf.mean(tf.sub(tf.mul(alpha, logProb), q)) as tf.Scalar, logPi: logProb };
}

/** Scalars of one step for the run log. */
export interface CalqlStepStats {
  readonly policyLoss: number;
  readonly qf1Loss: number;
  readonly qf2Loss: number;
  readonly cqlDiff1: number;
  readonly cqlDiff2: number;
  readonly alpha: number;
  readonly logPi: number;
  readonly meanQ1: number;
  readonly boundRate: number;
}

/** A Cal-QL learner on the backend. */
export class Calql {
  readonly config: CalqlConfig;
  readonly maxAction: number;
  readonly actDim: number;
  readonly actor: Dense<tf.Variable>[];
  readonly logStdMultiplier: tf.Variable;
  readonly logStdOffset: tf.Variable;
  readonly critic1: Dense<tf.Variable>[];
  readonly critic2: Dense<tf.Variable>[];
  readonly critic1Target: Dense<tf.Variable>[];
  readonly critic2Target: Dense<tf.Variable>[];
  readonly logAlpha: tf.Variable;
  readonly #actorOpt: Adam;
  readonly #criticOpt: Adam;
  readonly #alphaOpt: Adam;
  #step = 0;

  /** Puts `weights` on the backend. */
  constructor(weights: CalqlWeights, config: CalqlConfig, maxAction: number) {
    this.config = config;
    this.maxAction = maxAction;
    this.actDim = weights.actor.sizes[weights.actor.sizes.length - 1] / 2;
    this.actor = mlpVariables(weights.actor);
    this.logStdMultiplier = tf.variable(tf.scalar(weights.logStdMultiplier));
    this.logStdOffset = tf.variable(tf.scalar(weights.logStdOffset));
    this.critic1 = mlpVariables(weights.critic1);
    this.critic2 = mlpVariables(weights.critic2);
    this.critic1Target = mlpVariables(weights.critic1Target, false);
    this.critic2Target = mlpVariables(weights.critic2Target, false);
    this.logAlpha = tf.variable(tf.scalar(weights.logAlpha));
    this.#actorOpt = new Adam([...mlpTensorList(this.actor), this.logStdMultiplier, this.logStdOffset], {
      learningRate: config.policyLr,
    });
    this.#criticOpt = new Adam([...mlpTensorList(this.critic1), ...mlpTensorList(this.critic2)], {
      learningRate: config.qfLr,
    });
    this.#alphaOpt = new Adam([this.logAlpha], { learningRate: config.policyLr });
  }

  /** Training steps done. */
  get step(): number {
    return this.#step;
  }

  #actorParams(): CalqlActorParams {
    return { net: this.actor, logStdMultiplier: this.logStdMultiplier, logStdOffset: this.logStdOffset };
  }

  /** One training step; with `stats`, returns the step's losses (a backend sync). */
  update(batch: Batch, noise: CalqlNoise, stats = false): CalqlStepStats | undefined {
    this.#step++;
    const c = this.config;
    const B = batch.rewards.shape[0];
    return tidyPlain(() => {
      const alpha = c.automaticEntropyTuning
        ? tf.mul(tf.exp(this.logAlpha), c.alphaMultiplier) as tf.Scalar
        : tf.scalar(c.alphaMultiplier);
      // Policy loss, and α's loss from the same log π (held constant there).
      let logPi: tf.Tensor1D | undefined;
      const actorVars = this.#actorOpt.variables as tf.Variable[];
      const policy = tf.variableGrads(() => {
        const l = calqlActorLoss(
          this.#actorParams(),
          this.critic1,
          this.critic2,
          batch,
          tf.tensor2d(noise.policy, [B, this.actDim]),
          alpha,
          this.maxAction,
        );
        logPi = tf.keep(l.logPi);
        return l.loss;
      }, actorVars);
      const meanLogPi = tf.mean(logPi!);
      // L_α = −log α · mean(log π + H̄), H̄ = −|A|: its gradient is −mean(log π) + |A|.
      const alphaGrad = tf.neg(tf.sub(meanLogPi, this.actDim));
      // Critic loss at the step's starting parameters.
      const samples = cqlSamples(
        this.#actorParams(),
        { critic1: this.critic1Target, critic2: this.critic2Target },
        batch,
        noise,
        alpha,
        c,
        this.maxAction,
      );
      let terms: CalqlQLossTerms | undefined;
      const criticVars = this.#criticOpt.variables as tf.Variable[];
      const critic = tf.variableGrads(() => {
        const t = calqlCriticLoss(this.critic1, this.critic2, batch, samples, c);
        if (stats) {
          for (const v of Object.values(t)) tf.keep(v);
          terms = t;
        }
        return t.loss;
      }, criticVars);
      // Steps in CORL's order (α, actor, critics), then the targets.
      if (c.automaticEntropyTuning) this.#alphaOpt.apply([alphaGrad]);
      this.#actorOpt.apply(actorVars.map((v) => policy.grads[v.name]));
      this.#criticOpt.apply(criticVars.map((v) => critic.grads[v.name]));
      if (this.#step % c.targetUpdatePeriod === 0) {
        softUpdate(this.critic1Target, this.critic1, c.tau);
        softUpdate(this.critic2Target, this.critic2, c.tau);
      }
      let out: CalqlStepStats | undefined;
      if (stats && terms) {
        const v = (t: tf.Tensor) => t.dataSync()[0];
        out = {
          policyLoss: v(policy.value),
          qf1Loss: v(terms.qf1Loss),
          qf2Loss: v(terms.qf2Loss),
          cqlDiff1: v(terms.cqlDiff1),
          cqlDiff2: v(terms.cqlDiff2),
          alpha: v(alpha),
          logPi: v(meanLogPi),
          meanQ1: v(terms.meanQ1),
          boundRate: v(terms.boundRate),
        };
        tf.dispose(Object.values(terms));
      }
      logPi!.dispose();
      return out;
    });
  }

  /** The current weights (synchronous download). */
  weights(): CalqlWeights {
    return {
      actor: readMlp(this.actor),
      logStdMultiplier: this.logStdMultiplier.dataSync()[0],
      logStdOffset: this.logStdOffset.dataSync()[0],
      critic1: readMlp(this.critic1),
      critic2: readMlp(this.critic2),
      critic1Target: readMlp(this.critic1Target),
      critic2Target: readMlp(this.critic2Target),
      logAlpha: this.logAlpha.dataSync()[0],
    };
  }

  /** Everything to resume from. */
  state(): CalqlState {
    return {
      weights: this.weights(),
      actorOptimizer: this.#actorOpt.state(),
      criticOptimizer: this.#criticOpt.state(),
      alphaOptimizer: this.#alphaOpt.state(),
      step: this.#step,
    };
  }

  /** Restores a state saved by {@link Calql.state}. */
  setState(state: CalqlState): void {
    const w = state.weights;
    assignMlp(this.actor, w.actor);
    this.logStdMultiplier.assign(tf.scalar(w.logStdMultiplier));
    this.logStdOffset.assign(tf.scalar(w.logStdOffset));
    assignMlp(this.critic1, w.critic1);
    assignMlp(this.critic2, w.critic2);
    assignMlp(this.critic1Target, w.critic1Target);
    assignMlp(this.critic2Target, w.critic2Target);
    this.logAlpha.assign(tf.scalar(w.logAlpha));
    this.#actorOpt.setState(state.actorOptimizer);
    this.#criticOpt.setState(state.criticOptimizer);
    this.#alphaOpt.setState(state.alphaOptimizer);
    this.#step = state.step;
  }

  /** Frees every tensor. */
  dispose(): void {
    for (const net of [this.actor, this.critic1, this.critic2, this.critic1Target, this.critic2Target]) {
      disposeMlp(net);
    }
    tf.dispose([this.logStdMultiplier, this.logStdOffset, this.logAlpha]);
    this.#actorOpt.dispose();
    this.#criticOpt.dispose();
    this.#alphaOpt.dispose();
  }
}
