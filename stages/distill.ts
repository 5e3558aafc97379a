/**
 * The `distill` stage: offline behaviour distillation (Lei et al., NeurIPS 2024) and its
 * state-density-weighted variant. Learns N synthetic (state, action) pairs D_syn such that a student
 * trained on them by BC acts well, by descending the meta-gradient of
 *
 *     H(π_{θ_T}) = mean_{s ~ D_off} w(s) · ‖π_{θ_T}(s) − a(s)‖²,   θ_T = T steps of SGD on ℓ_BC(θ; D_syn),
 *
 * with, per objective:
 *
 *   | objective | target a(s)               | weight w(s)                  |
 *   | dbc       | the data's own action     | 1                            |
 *   | pbc       | a* ~ π*(·|s) (or its mode) | 1                            |
 *   | avpbc     | a*                        | β · q*(s, a*)                |
 *   | sdw       | a*                        | β · q*(s, a*) · ρ(s)         |
 *   | sdw-pbc   | a*                        | ρ(s)                         |
 *
 * where ρ(s) ∝ p̂(s)^(−α) are the density stage's weights (mean 1 over the data).
 *
 * Outer loop (the paper's Appendix B): every step draws a fresh student θ_0 and `outerBatches` ×
 * `outerBatchSize` real states, computes the exact meta-gradient (`distill/metagradient.ts`), clips
 * its joint norm over (states, actions) at `clipNorm`, and takes an SGD step with momentum on D_syn.
 * Every random draw of step k comes from a stream seeded by (seed, k), so a run resumed from a
 * checkpoint is identical to an uninterrupted one.
 *
 * The student is a deterministic MLP with a c·tanh output. The authors' student is CORL's
 * tanh-Gaussian actor trained by BC on its mean action; at evaluation both act with tanh(mean)·c, so
 * this is that actor without the log-std head, which BC on (s, a) pairs with a squared error never
 * trains. Losses are means over all N·m action elements (PyTorch's `mse_loss`).
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { join } from "node:path";
import { ENV_SPECS } from "../envs/locomotion.ts";
import { fail } from "../core/errors.ts";
import { loadCheckpoint, saveCheckpoint } from "../core/checkpoint.ts";
import { defineStage, type Stage, type StageContext } from "../core/stage.ts";
import { initMlpWeights } from "../numerics/mlp.ts";
import { Rng } from "../numerics/random.ts";
import { MetaGradientPool, requestedMetaGradientThreads } from "./distill/metagradient_pool.ts";
import { evaluateSyntheticSet, type SetEvaluation, type SyntheticSet } from "./evaluate.ts";
import { normalizeStates, type OfflineDataset } from "./load.ts";
import { type Teacher, teacherFromArtifact, type TeacherArtifact } from "./teacher/model.ts";

/** The distillation objectives. */
export const OBJECTIVES = ["dbc", "pbc", "avpbc", "sdw", "sdw-pbc"] as const;
/** One of `OBJECTIVES`. */
export type Objective = (typeof OBJECTIVES)[number];

/** How D_syn starts. */
export const INITS = ["random-real", "kmeans++", "top-q", "random"] as const;
/** One of `INITS`. */
export type SynsetInit = (typeof INITS)[number];

/** Everything that determines a distillation run. */
export interface DistillConfig {
  /** The distillation objective. */
  readonly objective: Objective;
  /** β of Av-PBC (the official code's 0.02). */
  readonly beta: number;
  /** Teacher actions sampled from π* (the paper's Algorithm 1) or its deterministic mode. */
  readonly teacherActions: "sampled" | "deterministic";
  /** N, the number of synthetic pairs. */
  readonly synsetSize: number;
  /** How D_syn is initialized. */
  readonly init: SynsetInit;
  /** Student MLP: hidden layers × width, ReLU, c·tanh output. */
  readonly hiddenLayers: number;
  /** Units per hidden layer of the student. */
  readonly width: number;
  /** Inner loop: T full-batch SGD steps at this learning rate. */
  readonly innerSteps: number;
  /** Learning rate of the inner-loop SGD steps. */
  readonly innerLr: number;
  /** Outer loop: SGD with momentum on D_syn, gradient-norm clip. */
  readonly outerSteps: number;
  /** Learning rate of the outer SGD on D_syn. */
  readonly outerLr: number;
  /** Momentum of the outer SGD. */
  readonly outerMomentum: number;
  /** Largest joint norm of the meta-gradient over (states, actions). */
  readonly clipNorm: number;
  /** Real states per outer step: outerBatches × outerBatchSize. */
  readonly outerBatches: number;
  /** Real states per outer batch. */
  readonly outerBatchSize: number;
  /** Evaluate D_syn every this many outer steps (0: only at the end). */
  readonly evalEvery: number;
  /** Fresh students trained per evaluation of D_syn. */
  readonly evalStudents: number;
  /** Episodes each evaluated student runs. */
  readonly evalEpisodes: number;
  /** Checkpoint every this many outer steps. */
  readonly checkpointEvery: number;
  /** Seed of initialization, minibatches and evaluations. */
  readonly seed: number;
}

/** The paper's settings (Appendix B of the OBD paper; Av-PBC on Hopper: 20k outer steps). */
export const PAPER_DISTILL: DistillConfig = {
  objective: "avpbc",
  beta: 0.02,
  teacherActions: "sampled",
  synsetSize: 256,
  init: "random-real",
  hiddenLayers: 3,
  width: 256,
  innerSteps: 100,
  innerLr: 0.1,
  outerSteps: 20_000,
  outerLr: 0.1,
  outerMomentum: 0.9,
  clipNorm: 2,
  outerBatches: 10,
  outerBatchSize: 256,
  evalEvery: 1000,
  evalStudents: 1,
  evalEpisodes: 10,
  checkpointEvery: 100,
  seed: 0,
};

/** Sizes and steps that finish in a few minutes on two cores. */
export const QUICK_DISTILL: DistillConfig = {
  ...PAPER_DISTILL,
  synsetSize: 64,
  innerSteps: 20,
  outerSteps: 150,
  outerBatches: 2,
  // The paper's summary is the mean of the last 5 evaluations of 10 episodes: evaluating every 25
  // steps gives 5 (and the final one) in 150 steps; fewer, shorter evaluations were too noisy to rank methods.
  evalEvery: 25,
  evalStudents: 1,
  evalEpisodes: 10,
  checkpointEvery: 25,
};

/** Inputs: the dataset always; the teacher for every objective but dbc; density weights for sdw*. */
export interface DistillInputs {
  /** The offline dataset whose real states are distilled. */
  readonly dataset: OfflineDataset;
  /** The teacher π*, q* (every objective but dbc). */
  readonly teacher?: TeacherArtifact;
  /** Per-state density weights (sdw*), with the sha256 of the dataset they were computed on. */
  readonly density?: { readonly weight: Float32Array; readonly datasetSha256?: string };
}

/** One point of the learning curve. */
export interface CurvePoint {
  /** Outer step the point was recorded after. */
  readonly step: number;
  /** Outer loss H(θ_T) at this step. */
  readonly outerLoss: number;
  /** Student's last inner-loop BC loss on D_syn. */
  readonly innerLoss: number;
  /** Norm of the meta-gradient before clipping. */
  readonly gradNorm: number;
  /** Evaluation of D_syn, on evaluation steps. */
  readonly evaluation?: SetEvaluation;
}

/** The stage's output: the set (both spaces) and how it was learned. */
export interface DistilledSet extends SyntheticSet {
  /** The objective the set was distilled with. */
  readonly objective: Objective;
  /** The learning curve, one point per outer step. */
  readonly curve: CurvePoint[];
  /** Evaluation of the final set. */
  readonly finalEvaluation: SetEvaluation;
}

/** What the inputs must provide for an objective. */
export function requirements(objective: Objective): { teacher: boolean; density: boolean } {
  return { teacher: objective !== "dbc", density: objective === "sdw" || objective === "sdw-pbc" };
}

/** Refuses a config or inputs that cannot work, naming the field and the reason, before any work. */
export function validateDistill(config: DistillConfig, inputs: DistillInputs): void {
  const positiveInts: (keyof DistillConfig)[] = [
    "synsetSize", "hiddenLayers", "width", "innerSteps", "outerSteps", "outerBatches", "outerBatchSize",
    "evalStudents", "evalEpisodes", "checkpointEvery",
  ];
  for (const key of positiveInts) {
    const v = config[key] as number;
    if (!Number.isInteger(v) || v < 1) fail("config", `distill.${key} = ${v} must be a positive integer`);
  }
  for (const key of ["innerLr", "outerLr", "clipNorm", "beta"] as const) {
    if (!(config[key] > 0)) fail("config", `distill.${key} = ${config[key]} must be positive`);
  }
  if (!(config.outerMomentum >= 0 && config.outerMomentum < 1)) fail("config", `distill.outerMomentum = ${config.outerMomentum} must be in [0, 1)`);
  if (!Number.isInteger(config.evalEvery) || config.evalEvery < 0) fail("config", `distill.evalEvery = ${config.evalEvery} must be 0 or a positive integer`);
  if (!OBJECTIVES.includes(config.objective)) fail("config", `distill.objective = ${config.objective} is unknown`, `choose one of ${OBJECTIVES.join(", ")}`);
  if (!INITS.includes(config.init)) fail("config", `distill.init = ${config.init} is unknown`, `choose one of ${INITS.join(", ")}`);
  if (config.teacherActions !== "sampled" && config.teacherActions !== "deterministic") {
    fail("config", `distill.teacherActions = ${config.teacherActions} is unknown`, "choose sampled or deterministic");
  }
  const { dataset } = inputs;
  if (config.synsetSize > dataset.n) {
    fail("config", `distill.synsetSize = ${config.synsetSize} is larger than the dataset (${dataset.n} transitions)`, "choose a smaller synthetic set");
  }
  const needs = requirements(config.objective);
  if ((needs.teacher || config.init === "top-q") && !inputs.teacher) {
    fail("config", `distill.objective = ${config.objective} (init ${config.init}) needs a teacher`, "run the teacher stage first or choose objective dbc");
  }
  if (inputs.teacher && (inputs.teacher.obsDim !== dataset.obsDim || inputs.teacher.actDim !== dataset.actDim)) {
    fail("input", `the teacher takes ${inputs.teacher.obsDim}-d states and ${inputs.teacher.actDim}-d actions, the dataset has ${dataset.obsDim} and ${dataset.actDim}`, "use a teacher trained on this environment");
  }
  if (needs.density) {
    if (!inputs.density) fail("config", `distill.objective = ${config.objective} needs density weights`, "run the density stage first");
    const d = inputs.density;
    if (d.weight.length !== dataset.n || (d.datasetSha256 !== undefined && d.datasetSha256 !== dataset.sha256)) {
      fail("input", `the density weights (${d.weight.length} states) were computed for another dataset than ${dataset.file} (${dataset.n} transitions)`, "recompute the density stage on this dataset");
    }
  }
}

/** Hashes (seed, step) into a stream seed, so every outer step's randomness is reproducible alone. */
function stepSeed(seed: number, step: number): number {
  return (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(step + 1, 0xc2b2ae35)) >>> 0;
}

/** Rows `idx` of a row-major matrix. */
function gatherRows(matrix: Float32Array, width: number, idx: ArrayLike<number>): Float32Array {
  const out = new Float32Array(idx.length * width);
  for (let r = 0; r < idx.length; r++) out.set(matrix.subarray(idx[r] * width, (idx[r] + 1) * width), r * width);
  return out;
}

/** k-means++ seeding (Arthur and Vassilvitskii 2007) over up to 20,000 states: N well-spread indices. */
function kmeansPlusPlus(states: Float32Array, n: number, d: number, k: number, rng: Rng): Int32Array {
  const pool = rng.sampleWithoutReplacement(n, Math.min(n, 20_000));
  const dist = new Float64Array(pool.length).fill(Infinity);
  const chosen = new Int32Array(k);
  let current = pool[rng.int(pool.length)];
  for (let c = 0; c < k; c++) {
    chosen[c] = current;
    let total = 0;
    for (let i = 0; i < pool.length; i++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += (states[pool[i] * d + j] - states[current * d + j]) ** 2;
      dist[i] = Math.min(dist[i], s);
      total += dist[i];
    }
    let u = rng.uniform() * total;
    let next = pool[pool.length - 1];
    for (let i = 0; i < pool.length; i++) {
      u -= dist[i];
      if (u <= 0) {
        next = pool[i];
        break;
      }
    }
    current = next;
  }
  return chosen;
}

/** The initial synthetic set (normalized states, actions) for the configured method. */
function initialSet(config: DistillConfig, data: OfflineDataset, normalized: Float32Array, teacher: Teacher | undefined, rng: Rng) {
  const { obsDim: d, actDim: m } = data;
  const n = config.synsetSize;
  switch (config.init) {
    case "random": {
      return { states: rng.fillNormal(new Float32Array(n * d)), actions: rng.fillUniform(new Float32Array(n * m), -1, 1) };
    }
    case "kmeans++": {
      const idx = kmeansPlusPlus(normalized, data.n, d, n, rng);
      return { states: gatherRows(normalized, d, idx), actions: gatherRows(data.actions, m, idx) };
    }
    case "top-q": {
      // q*(s, a) of the data's own pairs, in chunks; keep the N highest.
      const q = new Float32Array(data.n);
      for (let start = 0; start < data.n; start += 8192) {
        const end = Math.min(data.n, start + 8192);
        const values = tf.tidy(() => {
          const raw = tf.tensor2d(data.observations.subarray(start * d, end * d), [end - start, d]);
          return teacher!.q(teacher!.normalize(raw), tf.tensor2d(data.actions.subarray(start * m, end * m), [end - start, m])).dataSync();
        });
        q.set(values, start);
      }
      const idx = Int32Array.from(Array.from(q.keys()).sort((a, b) => q[b] - q[a]).slice(0, n));
      return { states: gatherRows(normalized, d, idx), actions: gatherRows(data.actions, m, idx) };
    }
    default: {
      const idx = rng.sampleWithoutReplacement(data.n, n);
      return { states: gatherRows(normalized, d, idx), actions: gatherRows(data.actions, m, idx) };
    }
  }
}

/** Optimizer and learning state, as saved in checkpoints. */
interface DistillState {
  step: number;
  states: Float32Array;
  actions: Float32Array;
  momentumStates: Float32Array;
  momentumActions: Float32Array;
  curve: CurvePoint[];
  fingerprint: string;
}

/** Real states, targets and weights of outer step k. */
function outerBatch(config: DistillConfig, data: OfflineDataset, normalized: Float32Array, teacher: Teacher | undefined, density: Float32Array | undefined, rng: Rng) {
  const { obsDim: d, actDim: m } = data;
  const b = config.outerBatches * config.outerBatchSize;
  const idx = Int32Array.from({ length: b }, () => rng.int(data.n));
  const states = gatherRows(normalized, d, idx);
  if (config.objective === "dbc") return { states, targets: gatherRows(data.actions, m, idx), weights: undefined };
  return tf.tidy(() => {
    const teacherStates = teacher!.normalize(tf.tensor2d(gatherRows(data.observations, d, idx), [b, d]));
    const targets = teacher!.act(teacherStates, config.teacherActions, rng);
    let weights: Float32Array | undefined;
    if (config.objective === "avpbc" || config.objective === "sdw") {
      weights = (tf.mul(teacher!.q(teacherStates, targets), config.beta).dataSync() as Float32Array).slice();
    }
    if (config.objective === "sdw" || config.objective === "sdw-pbc") {
      const rho = Float32Array.from(idx, (i) => density![i]);
      weights = weights ? weights.map((w, i) => w * rho[i]) : rho;
    }
    return { states, targets: (targets.dataSync() as Float32Array).slice(), weights };
  });
}

/** Runs the distillation; `ctx` gives progress, the metrics log and the checkpoint directory. */
export async function distill(inputs: DistillInputs, config: DistillConfig, ctx: StageContext): Promise<DistilledSet> {
  validateDistill(config, inputs);
  const data = inputs.dataset;
  const { obsDim: d, actDim: m } = data;
  const maxAction = ENV_SPECS[data.env].actionHigh;
  const normalized = normalizeStates(data.observations, data);
  const teacher = inputs.teacher ? teacherFromArtifact(inputs.teacher) : undefined;
  const checkpointDir = join(ctx.workDir, "checkpoint");
  const fingerprint = JSON.stringify({ config, dataset: data.sha256, teacher: inputs.teacher?.source ?? null });
  const sizes = [d, ...Array(config.hiddenLayers).fill(config.width), m];
  const protocol = { hidden: sizes.slice(1, -1), steps: config.innerSteps, learningRate: config.innerLr, maxAction };
  const asSet = (s: DistillState): SyntheticSet => ({
    env: data.env,
    size: config.synsetSize,
    obsDim: d,
    actDim: m,
    states: s.states.slice(),
    rawStates: s.states.map((v, i) => v * data.stateStd[i % d] + data.stateMean[i % d]),
    actions: s.actions.slice(),
    stateMean: data.stateMean,
    stateStd: data.stateStd,
  });
  // Data-parallel meta-gradients on OBD_THREADS worker threads (default 1: this thread); equal to
  // the single-thread result up to float32 summation order, so not part of the config.
  const metaGradients = await MetaGradientPool.create(requestedMetaGradientThreads());
  try {
    const resumed = await loadCheckpoint(checkpointDir) as DistillState | undefined;
    let state: DistillState;
    if (resumed && resumed.fingerprint === fingerprint) {
      state = resumed;
      ctx.log({ event: "resume", step: state.step });
    } else {
      const init = initialSet(config, data, normalized, teacher, new Rng(stepSeed(config.seed, -1)));
      state = {
        step: 0,
        ...init,
        momentumStates: new Float32Array(init.states.length),
        momentumActions: new Float32Array(init.actions.length),
        curve: [],
        fingerprint,
      };
    }
    const bar = ctx.progress(`distill ${config.objective}`, config.outerSteps);
    bar.update(state.step);
    while (state.step < config.outerSteps) {
      const k = state.step;
      const rng = new Rng(stepSeed(config.seed, k));
      const batch = outerBatch(config, data, normalized, teacher, inputs.density?.weight, rng);
      const { states: gStates, actions: gActions, outerLoss, innerLoss } = await metaGradients.compute({
        initial: initMlpWeights(sizes, rng),
        states: state.states,
        actions: state.actions,
        outer: batch,
        options: { steps: config.innerSteps, learningRate: config.innerLr, maxAction },
      });
      let norm2 = 0;
      for (const v of gStates) norm2 += v * v;
      for (const v of gActions) norm2 += v * v;
      const gradNorm = Math.sqrt(norm2);
      if (!Number.isFinite(outerLoss) || !Number.isFinite(gradNorm)) {
        fail(
          "numeric",
          `distillation diverged at outer step ${k}: outer loss ${outerLoss}, meta-gradient norm ${gradNorm}`,
          `the last good checkpoint (step ${Math.floor(k / config.checkpointEvery) * config.checkpointEvery}) is kept; lower distill.outerLr or distill.innerLr and run again`,
        );
      }
      // torch.nn.utils.clip_grad_norm_ over both parameters, then SGD with momentum (PyTorch's form:
      // buf ← μ·buf + g, p ← p − lr·buf).
      const scale = gradNorm > config.clipNorm ? config.clipNorm / (gradNorm + 1e-6) : 1;
      const update = (p: Float32Array, buf: Float32Array, grad: Float32Array) => {
        for (let i = 0; i < p.length; i++) {
          buf[i] = config.outerMomentum * buf[i] + scale * grad[i];
          p[i] -= config.outerLr * buf[i];
        }
      };
      update(state.states, state.momentumStates, gStates);
      update(state.actions, state.momentumActions, gActions);
      state.step = k + 1;
      let evaluation: SetEvaluation | undefined;
      if (config.evalEvery > 0 && state.step % config.evalEvery === 0 && state.step < config.outerSteps) {
        evaluation = await evaluateSyntheticSet(asSet(state), protocol, { students: config.evalStudents, episodes: config.evalEpisodes, seed: stepSeed(config.seed, state.step) });
      }
      const point: CurvePoint = { step: state.step, outerLoss, innerLoss, gradNorm, ...(evaluation ? { evaluation } : {}) };
      state.curve.push(point);
      ctx.log({ event: "distill-step", step: state.step, outerLoss, innerLoss, gradNorm, ...(evaluation ? { normalizedScore: evaluation.meanNormalizedScore } : {}) });
      bar.update(state.step, { H: outerLoss, l: innerLoss, ...(evaluation ? { score: evaluation.meanNormalizedScore } : {}) });
      if (state.step % config.checkpointEvery === 0) await saveCheckpoint(checkpointDir, state);
    }
    bar.finish();
    const set = asSet(state);
    const finalEvaluation = await evaluateSyntheticSet(set, protocol, { students: config.evalStudents, episodes: config.evalEpisodes, seed: stepSeed(config.seed, config.outerSteps) });
    ctx.metric("finalNormalizedScore", finalEvaluation.meanNormalizedScore);
    ctx.metric("finalOuterLoss", state.curve[state.curve.length - 1].outerLoss);
    ctx.log({ event: "distill-final", normalizedScore: finalEvaluation.meanNormalizedScore });
    return { ...set, objective: config.objective, curve: state.curve, finalEvaluation };
  } finally {
    metaGradients.dispose();
    teacher?.dispose();
  }
}

/** The distill stage. */
export const distillStage: Stage<DistillInputs, DistillConfig, DistilledSet> = defineStage<DistillInputs, DistillConfig, DistilledSet>({
  name: "distill",
  version: "2",
  compute: (inputs, config, ctx) => distill(inputs, config, ctx),
});
