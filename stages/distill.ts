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
 * Step k draws from `deriveSeed(seed, k)` alone, so a resumed run equals an uninterrupted one.
 *
 * The student (`student.ts`) is a deterministic MLP with a c·tanh output: the authors' CORL
 * tanh-Gaussian actor without the log-std head, which BC with a squared error never trains; both
 * act with c·tanh(mean). Losses are means over all N·m action elements (PyTorch's `mse_loss`).
 *
 * The stage only optimizes: it keeps the set every `evalEvery` steps (`snapshots`), and the
 * evaluate stage scores them, so changing how sets are evaluated never re-runs a distillation.
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { fail } from "../core/errors.ts";
import { runResumable } from "../core/loop.ts";
import { defineStage, type Stage, type StageContext } from "../core/stage.ts";
import { initMlpWeights } from "../numerics/mlp.ts";
import { deriveSeed, Rng } from "../numerics/random.ts";
import { MetaGradientPool } from "./distill/metagradient_pool.ts";
import { normalizeStates, type OfflineDataset } from "./load.ts";
import { type StudentConfig, studentProtocol, validateStudentConfig } from "./student.ts";
import { randomRealSet, type SyntheticSet } from "./synset.ts";
import { type Teacher, type TeacherArtifact, teacherFromArtifact } from "./teacher/model.ts";

/** The distillation objectives. */
export const OBJECTIVES = ["dbc", "pbc", "avpbc", "sdw", "sdw-pbc"] as const;
/** One of `OBJECTIVES`. */
export type Objective = (typeof OBJECTIVES)[number];

/** How D_syn starts. */
export const INITS = ["random-real", "kmeans++", "top-q", "random"] as const;
/** One of `INITS`. */
export type SynsetInit = (typeof INITS)[number];

/** The distillation's own settings: the `distill` section of a pipeline config. */
export interface DistillSettings {
  /** β of Av-PBC (the official code's 0.02). */
  readonly beta: number;
  /** Teacher actions sampled from π* (the paper's Algorithm 1) or its deterministic mode. */
  readonly teacherActions: "sampled" | "deterministic";
  /** N, the number of synthetic pairs. */
  readonly synsetSize: number;
  /** How D_syn is initialized. */
  readonly init: SynsetInit;
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
  /** Keep the set every this many outer steps for the learning curve (0: only the final set). */
  readonly evalEvery: number;
  /** Checkpoint every this many outer steps (a cadence: not part of the cache key). */
  readonly checkpointEvery: number;
}

/** Everything that determines one distillation: the settings, the method's objective, the seed and the student. */
export interface DistillConfig extends DistillSettings {
  /** The distillation objective (a study sets it from the method). */
  readonly objective: Objective;
  /** Seed of initialization and minibatches (a study sets it from `--seed`). */
  readonly seed: number;
  /** The student trained in the inner loop (the pipeline's `student` section). */
  readonly student: StudentConfig;
}

/** The paper's settings (Appendix B of the OBD paper; Av-PBC on Hopper: 20k outer steps). */
export const PAPER_DISTILL: DistillSettings = {
  beta: 0.02,
  teacherActions: "sampled",
  synsetSize: 256,
  init: "random-real",
  outerSteps: 20_000,
  outerLr: 0.1,
  outerMomentum: 0.9,
  clipNorm: 2,
  outerBatches: 10,
  outerBatchSize: 256,
  evalEvery: 1000,
  checkpointEvery: 100,
};

/** Sizes and steps that finish in a few minutes on two cores. */
export const QUICK_DISTILL: DistillSettings = {
  ...PAPER_DISTILL,
  synsetSize: 64,
  outerSteps: 100,
  outerBatches: 2,
  evalEvery: 25,
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

/** One outer step of the optimization. */
export interface CurvePoint {
  /** Outer step the point was recorded after. */
  readonly step: number;
  /** Outer loss H(θ_T) at this step. */
  readonly outerLoss: number;
  /** Student's last inner-loop BC loss on D_syn. */
  readonly innerLoss: number;
  /** Norm of the meta-gradient before clipping. */
  readonly gradNorm: number;
}

/** The set as it was after `step` outer steps (step 0: the initial set). */
export interface SetSnapshot {
  /** Outer steps done. */
  readonly step: number;
  /** `[N, obsDim]`, normalized. */
  readonly states: Float32Array;
  /** `[N, actDim]` */
  readonly actions: Float32Array;
}

/** The stage's output: the final set (both spaces), how it was learned, and the sets along the way. */
export interface DistilledSet extends SyntheticSet {
  /** The objective the set was distilled with. */
  readonly objective: Objective;
  /** The distillation seed. */
  readonly seed: number;
  /** The learning curve, one point per outer step. */
  readonly curve: CurvePoint[];
  /** The set at steps 0, evalEvery, 2·evalEvery, … before the last (the final set is the set itself). */
  readonly snapshots: SetSnapshot[];
}

/** What the inputs must provide for an objective. */
export function requirements(objective: Objective): { teacher: boolean; density: boolean } {
  return { teacher: objective !== "dbc", density: objective === "sdw" || objective === "sdw-pbc" };
}

/** Refuses settings that cannot work, naming the setting; needs no data (runs before any stage). */
export function validateDistillConfig(config: DistillConfig): void {
  const positiveInts = [
    "synsetSize",
    "outerSteps",
    "outerBatches",
    "outerBatchSize",
    "checkpointEvery",
  ] as const;
  for (const key of positiveInts) {
    const v = config[key];
    if (!Number.isInteger(v) || v < 1) fail("config", `distill.${key} = ${v} must be a positive integer`);
  }
  for (const key of ["outerLr", "clipNorm", "beta"] as const) {
    if (!(config[key] > 0) || !Number.isFinite(config[key])) {
      fail("config", `distill.${key} = ${config[key]} must be a positive number`);
    }
  }
  if (!(config.outerMomentum >= 0 && config.outerMomentum < 1)) {
    fail("config", `distill.outerMomentum = ${config.outerMomentum} must be in [0, 1)`);
  }
  if (!Number.isInteger(config.evalEvery) || config.evalEvery < 0) {
    fail("config", `distill.evalEvery = ${config.evalEvery} must be 0 or a positive integer`);
  }
  if (!OBJECTIVES.includes(config.objective)) {
    fail(
      "config",
      `distill objective ${config.objective} is unknown`,
      `choose one of ${OBJECTIVES.join(", ")} with --method`,
    );
  }
  if (!INITS.includes(config.init)) {
    fail("config", `distill.init = ${config.init} is unknown`, `choose one of ${INITS.join(", ")}`);
  }
  if (config.teacherActions !== "sampled" && config.teacherActions !== "deterministic") {
    fail(
      "config",
      `distill.teacherActions = ${config.teacherActions} is unknown`,
      "choose sampled or deterministic",
    );
  }
  if (!Number.isInteger(config.seed) || config.seed < 0) {
    fail("config", `distill seed ${config.seed} must be a non-negative integer`);
  }
  validateStudentConfig(config.student);
}

/** Refuses inputs that do not fit the config, naming the field and the reason, before any work. */
export function validateDistill(config: DistillConfig, inputs: DistillInputs): void {
  validateDistillConfig(config);
  const { dataset } = inputs;
  if (config.synsetSize > dataset.n) {
    fail(
      "config",
      `distill.synsetSize = ${config.synsetSize} is larger than the dataset (${dataset.n} transitions)`,
      "choose a smaller synthetic set",
    );
  }
  const needs = requirements(config.objective);
  if ((needs.teacher || config.init === "top-q") && !inputs.teacher) {
    fail(
      "config",
      `distill.objective = ${config.objective} (init ${config.init}) needs a teacher`,
      "run the teacher stage first or choose objective dbc",
    );
  }
  if (
    inputs.teacher && (inputs.teacher.obsDim !== dataset.obsDim || inputs.teacher.actDim !== dataset.actDim)
  ) {
    fail(
      "input",
      `the teacher takes ${inputs.teacher.obsDim}-d states and ${inputs.teacher.actDim}-d actions, the dataset has ${dataset.obsDim} and ${dataset.actDim}`,
      "use a teacher trained on this environment",
    );
  }
  if (needs.density) {
    if (!inputs.density) {
      fail(
        "config",
        `distill.objective = ${config.objective} needs density weights`,
        "run the density stage first",
      );
    }
    const d = inputs.density;
    if (
      d.weight.length !== dataset.n || (d.datasetSha256 !== undefined && d.datasetSha256 !== dataset.sha256)
    ) {
      fail(
        "input",
        `the density weights (${d.weight.length} states) were computed for another dataset than ${dataset.file} (${dataset.n} transitions)`,
        "recompute the density stage on this dataset",
      );
    }
  }
}

/** Rows `idx` of a row-major matrix. */
function gatherRows(matrix: Float32Array, width: number, idx: ArrayLike<number>): Float32Array {
  const out = new Float32Array(idx.length * width);
  for (let r = 0; r < idx.length; r++) {
    out.set(matrix.subarray(idx[r] * width, (idx[r] + 1) * width), r * width);
  }
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
function initialSet(
  config: DistillConfig,
  data: OfflineDataset,
  normalized: Float32Array,
  teacher: Teacher | undefined,
) {
  const rng = new Rng(deriveSeed(config.seed, "init"));
  const { obsDim: d, actDim: m } = data;
  const n = config.synsetSize;
  switch (config.init) {
    case "random": {
      return {
        states: rng.fillNormal(new Float32Array(n * d)),
        actions: rng.fillUniform(new Float32Array(n * m), -1, 1),
      };
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
          return teacher!.q(
            teacher!.normalize(raw),
            tf.tensor2d(data.actions.subarray(start * m, end * m), [end - start, m]),
          ).dataSync();
        });
        q.set(values, start);
      }
      const idx = Int32Array.from(Array.from(q.keys()).sort((a, b) => q[b] - q[a]).slice(0, n));
      return { states: gatherRows(normalized, d, idx), actions: gatherRows(data.actions, m, idx) };
    }
    default: {
      // Random selection's set of repeat `seed` (synset.ts): the distillation starts from it.
      const { states, actions } = randomRealSet(data, n, config.seed, normalized);
      return { states, actions };
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
  snapshots: SetSnapshot[];
}

/** Real states, targets and weights of outer step k. */
function outerBatch(
  config: DistillConfig,
  data: OfflineDataset,
  normalized: Float32Array,
  teacher: Teacher | undefined,
  density: Float32Array | undefined,
  rng: Rng,
) {
  const { obsDim: d, actDim: m } = data;
  const b = config.outerBatches * config.outerBatchSize;
  const idx = Int32Array.from({ length: b }, () => rng.int(data.n));
  const states = gatherRows(normalized, d, idx);
  if (config.objective === "dbc") {
    return { states, targets: gatherRows(data.actions, m, idx), weights: undefined };
  }
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

/** Runs the distillation; `ctx` gives progress, the metrics log, threads and checkpoints. */
export async function distill(
  inputs: DistillInputs,
  config: DistillConfig,
  ctx: StageContext,
): Promise<DistilledSet> {
  validateDistill(config, inputs);
  const data = inputs.dataset;
  const { obsDim: d, actDim: m } = data;
  const protocol = studentProtocol(config.student, data.env);
  const normalized = normalizeStates(data.observations, data);
  const teacher = inputs.teacher ? teacherFromArtifact(inputs.teacher) : undefined;
  const sizes = [d, ...protocol.hidden, m];
  const init = initialSet(config, data, normalized, teacher);
  const state: DistillState = {
    step: 0,
    ...init,
    momentumStates: new Float32Array(init.states.length),
    momentumActions: new Float32Array(init.actions.length),
    curve: [],
    snapshots: config.evalEvery > 0
      ? [{ step: 0, states: init.states.slice(), actions: init.actions.slice() }]
      : [],
  };
  // Data-parallel meta-gradients on ctx.threads worker threads (1: this thread); equal to the
  // single-thread result up to float32 summation order, so not part of the config.
  const metaGradients = await MetaGradientPool.create(ctx.threads);
  const bar = ctx.progress(`distill ${config.objective}`, config.outerSteps);
  try {
    const resumedAt = await runResumable({
      checkpoint: ctx.checkpoint,
      fingerprint: {
        config: { ...config, checkpointEvery: 0 },
        dataset: data.sha256,
        teacher: inputs.teacher?.source ?? null,
      },
      total: config.outerSteps,
      checkpointEvery: config.checkpointEvery,
      snapshot: () => state,
      restore: (saved) => {
        Object.assign(state, saved as DistillState);
        ctx.log({ event: "resume", step: state.step });
        bar.update(state.step);
        return state.step;
      },
      step: async (k) => {
        const rng = new Rng(deriveSeed(config.seed, k));
        const batch = outerBatch(config, data, normalized, teacher, inputs.density?.weight, rng);
        const { states: gStates, actions: gActions, outerLoss, innerLoss } = await metaGradients.compute({
          initial: initMlpWeights(sizes, rng),
          states: state.states,
          actions: state.actions,
          outer: batch,
          options: protocol,
        });
        let norm2 = 0;
        for (const v of gStates) norm2 += v * v;
        for (const v of gActions) norm2 += v * v;
        const gradNorm = Math.sqrt(norm2);
        if (!Number.isFinite(outerLoss) || !Number.isFinite(gradNorm)) {
          fail(
            "numeric",
            `distillation diverged at outer step ${k}: outer loss ${outerLoss}, meta-gradient norm ${gradNorm}`,
            `the last good checkpoint (step ${
              Math.floor(k / config.checkpointEvery) * config.checkpointEvery
            }) is kept; lower distill.outerLr or student.learningRate and run again`,
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
        state.curve.push({ step: state.step, outerLoss, innerLoss, gradNorm });
        if (config.evalEvery > 0 && state.step % config.evalEvery === 0 && state.step < config.outerSteps) {
          state.snapshots.push({
            step: state.step,
            states: state.states.slice(),
            actions: state.actions.slice(),
          });
        }
        ctx.log({ event: "distill-step", step: state.step, outerLoss, innerLoss, gradNorm });
        bar.update(state.step, { H: outerLoss, l: innerLoss });
      },
    });
    bar.finish();
    if (resumedAt > 0) ctx.metric("resumedAt", resumedAt);
    ctx.metric("finalOuterLoss", state.curve[state.curve.length - 1].outerLoss);
    return {
      env: data.env,
      size: config.synsetSize,
      obsDim: d,
      actDim: m,
      states: state.states,
      rawStates: state.states.map((v, i) => v * data.stateStd[i % d] + data.stateMean[i % d]),
      actions: state.actions,
      stateMean: data.stateMean,
      stateStd: data.stateStd,
      objective: config.objective,
      seed: config.seed,
      curve: state.curve,
      snapshots: state.snapshots,
    };
  } finally {
    metaGradients.dispose();
    teacher?.dispose();
  }
}

/** The distill stage. */
export const distillStage: Stage<DistillInputs, DistillConfig, DistilledSet> = defineStage<
  DistillInputs,
  DistillConfig,
  DistilledSet
>({
  name: "distill",
  version: "4",
  cadence: ["checkpointEvery"],
  validate: validateDistillConfig,
  compute: (inputs, config, ctx) => distill(inputs, config, ctx),
});
