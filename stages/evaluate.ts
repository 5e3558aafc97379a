/**
 * Evaluation of a synthetic set the way the papers do it: train fresh students on the set by
 * full-batch SGD (the inner loop's protocol: 100 steps at lr 0.1 by default), then roll each out in
 * the environment with deterministic actions, states normalized with the dataset's statistics, and
 * report D4RL normalized returns.
 *
 * Beyond that single protocol, the `evaluate` stage runs what the OBD paper reports about one set:
 *
 * - plain: `students` fresh students (one seed each), `episodes` episodes each (Table 1's protocol);
 * - the paper's summary from the distillation's own log: mean of the last 5 evaluations (per seed;
 *   {@link seedSummary} averages seeds);
 * - ensemble: `ensembleSize` students whose actions are averaged (Table 3);
 * - cross-architecture (2/3/5/6-layer MLPs, a residual 4-layer MLP) and cross-optimizer (Adam,
 *   AdamW, SGD with momentum) students (Table 2), trained by autodiff on the plain BC loss;
 * - baselines on the same dataset: Random selection (N random real pairs, trained like the set),
 *   BC on the whole dataset (minibatch Adam), and the teacher itself.
 *
 * Randomness: every part draws from its own stream, seeded by (config.seed, part name), so turning
 * one evaluation on or off never changes the numbers of another.
 *
 * Two training paths exist on purpose. The paper protocol (ReLU MLP, plain full-batch SGD) uses the
 * hand-derived inner loop of `distill/metagradient.ts` ({@link trainStudent}): the very function the
 * set was optimized through, so "plain" measures exactly what distillation optimized. Every other
 * student ({@link fitStudent}) is trained with `tf.variableGrads` on the plain MSE — no hand-derived
 * gradients for residual nets or adaptive optimizers; on the default MLP with SGD the two paths
 * agree (tests/evaluate_test.ts pins it).
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { ENV_NAMES, ENV_SPECS, type EnvName } from "../envs/locomotion.ts";
import { type BatchPolicy, evaluatePolicy, type Evaluation } from "../envs/rollout.ts";
import { fail } from "../core/errors.ts";
import { defineStage, type Stage, type StageContext } from "../core/stage.ts";
import {
  Adam,
  disposeMlp,
  initMlpWeights,
  type MlpParams,
  mlpSizes,
  mlpTensorList,
  mlpTensors,
  mlpVariables,
} from "../numerics/mlp.ts";
import { Rng } from "../numerics/random.ts";
import {
  disposeTrajectory,
  studentForward,
  type StudentParams,
  unrollInnerLoop,
} from "./distill/metagradient.ts";
import type { CurvePoint, DistilledSet } from "./distill.ts";
import { normalizeStates, type OfflineDataset } from "./load.ts";
import { checkTeacherFitsDataset, type TeacherArtifact, teacherFromArtifact } from "./teacher/model.ts";

// ---------------------------------------------------------------------------------------------
// The synthetic set and the paper's student protocol
// ---------------------------------------------------------------------------------------------

/** A learned synthetic set: states in the dataset's normalized space, and actions. */
export interface SyntheticSet {
  /** Environment the set is for. */
  readonly env: EnvName;
  /** N, the number of (state, action) pairs. */
  readonly size: number;
  /** State dimension. */
  readonly obsDim: number;
  /** Action dimension. */
  readonly actDim: number;
  /** `[size, obsDim]`, normalized: (raw − stateMean) / stateStd. */
  readonly states: Float32Array;
  /** `[size, obsDim]`, the same states in the environment's raw observation space. */
  readonly rawStates: Float32Array;
  /** `[size, actDim]` */
  readonly actions: Float32Array;
  /** Per-dimension mean of the normalization, length obsDim. */
  readonly stateMean: Float32Array;
  /** Per-dimension std of the normalization, length obsDim. */
  readonly stateStd: Float32Array;
}

/** How students are trained on a set and evaluated. */
export interface StudentProtocol {
  /** Hidden layer widths of the student MLP (ReLU), e.g. [256, 256, 256]. */
  readonly hidden: readonly number[];
  /** Full-batch SGD steps of training. */
  readonly steps: number;
  /** SGD learning rate. */
  readonly learningRate: number;
  /** c, the bound of the student's c·tanh output. */
  readonly maxAction: number;
}

/** The paper's protocol: 3×256 ReLU student, 100 full-batch SGD steps at lr 0.1. */
export const PAPER_STUDENT: StudentProtocol = {
  hidden: [256, 256, 256],
  steps: 100,
  learningRate: 0.1,
  maxAction: 1,
};

/**
 * Refuses a set that cannot be evaluated, with an `input` error naming what is wrong: an unknown
 * environment, no pairs, dimensions that do not fit the environment (or `expected`), arrays of the
 * wrong length, a non-finite value, a non-positive state std. Cheap (one pass), so it runs before
 * every evaluation: a NaN set would otherwise train NaN students whose rollouts look like a plain
 * bad score.
 */
export function validateSyntheticSet(
  set: SyntheticSet,
  expected?: {
    readonly env?: EnvName;
    readonly obsDim?: number;
    readonly actDim?: number;
    readonly what?: string;
  },
): void {
  const what = expected?.what ?? "the synthetic set";
  if (!(ENV_NAMES as readonly string[]).includes(set.env)) {
    fail(
      "input",
      `${what} is for an unknown environment "${set.env}"`,
      `evaluate sets of ${ENV_NAMES.join(", ")}`,
    );
  }
  if (expected?.env !== undefined && expected.env !== set.env) {
    fail(
      "input",
      `${what} is for ${set.env}, but the dataset is ${expected.env}`,
      "evaluate a set distilled from this dataset's environment",
    );
  }
  if (!Number.isInteger(set.size) || set.size < 1) {
    fail(
      "input",
      `${what} is empty (${set.size} pairs)`,
      "distill a set with at least one pair (distill.synsetSize ≥ 1)",
    );
  }
  const spec = ENV_SPECS[set.env];
  const obsDim = expected?.obsDim ?? spec.obsDim, actDim = expected?.actDim ?? spec.actDim;
  if (set.obsDim !== obsDim || set.actDim !== actDim) {
    fail(
      "input",
      `${what} has ${set.obsDim}-dimensional states and ${set.actDim}-dimensional actions, but ${set.env} has ${obsDim} and ${actDim}`,
      "evaluate the set in the environment it was distilled for",
    );
  }
  const lengths: [string, ArrayLike<number>, number][] = [
    ["states", set.states, set.size * obsDim],
    ["actions", set.actions, set.size * actDim],
    ["stateMean", set.stateMean, obsDim],
    ["stateStd", set.stateStd, obsDim],
  ];
  for (const [name, array, length] of lengths) {
    if (array.length !== length) {
      fail(
        "input",
        `${what}: ${name} holds ${array.length} values, expected ${length}`,
        "the set is corrupt; distill it again",
      );
    }
  }
  const checkFinite = (name: string, array: ArrayLike<number>, width: number) => {
    for (let i = 0; i < array.length; i++) {
      if (!Number.isFinite(array[i])) {
        fail(
          "input",
          `${what} has a non-finite value (${array[i]}) in ${name}, row ${Math.floor(i / width)}, column ${
            i % width
          }`,
          "the distillation diverged or the set is corrupt; distill it again (lower distill.outerLr)",
        );
      }
    }
  };
  checkFinite("states", set.states, obsDim);
  checkFinite("actions", set.actions, actDim);
  checkFinite("stateMean", set.stateMean, obsDim);
  for (let j = 0; j < obsDim; j++) {
    if (!(set.stateStd[j] > 0) || !Number.isFinite(set.stateStd[j])) {
      fail(
        "input",
        `${what}: state std of dimension ${j} is ${set.stateStd[j]}, not a positive number`,
        "the set's normalization statistics are corrupt",
      );
    }
  }
}

/** Trains a fresh student (initialized from `rng`) on the set; the caller disposes the result. */
export function trainStudent(set: SyntheticSet, protocol: StudentProtocol, rng: Rng): StudentParams {
  const sizes = [set.obsDim, ...protocol.hidden, set.actDim];
  const initial = mlpTensors(initMlpWeights(sizes, rng));
  const x = tf.tensor2d(set.states, [set.size, set.obsDim]);
  const y = tf.tensor2d(set.actions, [set.size, set.actDim]);
  // The unrolled loop keeps every step's record; a plain training run needs only the end point.
  const trajectory = unrollInnerLoop(initial, x, y, protocol);
  const final = trajectory.final;
  disposeTrajectory(trajectory, { keepInitial: false, keepFinal: true });
  tf.dispose([x, y]);
  return final;
}

/** A student as a policy on raw observations. */
export function studentPolicy(params: StudentParams, set: SyntheticSet, maxAction: number): BatchPolicy {
  return ensemblePolicy([{
    architecture: { kind: "mlp", hidden: mlpSizes(params).slice(1, -1) },
    params,
    maxAction,
  }], set);
}

/** What an evaluation of a set measured. */
export interface SetEvaluation {
  /** Students trained. */
  readonly students: number;
  /** Episodes each student ran. */
  readonly episodesPerStudent: number;
  /** Mean and std of normalized scores over all students' episodes. */
  readonly meanNormalizedScore: number;
  /** Population std of normalized scores over all episodes. */
  readonly stdNormalizedScore: number;
  /** Mean undiscounted return over all episodes. */
  readonly meanReturn: number;
  /** Mean normalized score of each student. */
  readonly perStudent: number[];
}

/**
 * Trains `students` fresh students on the set and runs `episodes` episodes each; seeded, so the same
 * set and seed give the same numbers.
 */
export async function evaluateSyntheticSet(
  set: SyntheticSet,
  protocol: StudentProtocol,
  options: { readonly students: number; readonly episodes: number; readonly seed: number },
): Promise<SetEvaluation> {
  const score = await scoreSet("distilled", set, protocol, options, new Throughput());
  return {
    students: options.students,
    episodesPerStudent: options.episodes,
    meanNormalizedScore: score.meanNormalizedScore,
    stdNormalizedScore: score.stdNormalizedScore,
    meanReturn: score.meanReturn,
    perStudent: score.perUnit,
  };
}

// ---------------------------------------------------------------------------------------------
// Students of any architecture, trained with any optimizer (autodiff on the plain BC loss)
// ---------------------------------------------------------------------------------------------

/**
 * A student network: a ReLU MLP, or the residual MLP of the paper's Table 2 — a first dense layer,
 * `blocks` residual blocks h ← h + relu(h·W + b) of width `width` (the "middle layers"), and the
 * output layer; `blocks` = 2 is the residual 4-layer MLP. Both end in maxAction · tanh.
 */
export type StudentArchitecture =
  | { readonly kind: "mlp"; readonly hidden: readonly number[] }
  | { readonly kind: "residual"; readonly width: number; readonly blocks: number };

/** The optimizers of Table 2, with PyTorch's update rules. */
export type StudentOptimizer =
  | { readonly kind: "sgd"; readonly learningRate: number }
  /** `torch.optim.SGD(momentum=μ)`: buf ← μ·buf + g, θ ← θ − lr·buf. */
  | { readonly kind: "sgdm"; readonly learningRate: number; readonly momentum: number }
  | { readonly kind: "adam"; readonly learningRate: number }
  /** `torch.optim.AdamW`: θ ← θ·(1 − lr·wd), then the Adam step. */
  | { readonly kind: "adamw"; readonly learningRate: number; readonly weightDecay: number };

/** How {@link fitStudent} trains. */
export interface StudentTraining {
  readonly architecture: StudentArchitecture;
  readonly optimizer: StudentOptimizer;
  readonly steps: number;
  readonly maxAction: number;
  /** Rows per step, drawn uniformly with replacement; absent, 0 or ≥ the data: full batch. */
  readonly batchSize?: number;
}

/** A trained student (owns its tensors: {@link disposeStudent}). */
export interface Student {
  readonly architecture: StudentArchitecture;
  readonly params: MlpParams;
  readonly maxAction: number;
}

/** A student from {@link fitStudent}, with its training loss before and after. */
export interface FittedStudent extends Student {
  /** Mean squared error on the training pairs (a fixed probe of ≤ 4096 rows when minibatched). */
  readonly initialLoss: number;
  readonly finalLoss: number;
}

/** (state, action) pairs to train on, states already normalized. */
export interface TrainingPairs {
  readonly n: number;
  readonly obsDim: number;
  readonly actDim: number;
  /** `[n, obsDim]` */
  readonly states: Float32Array;
  /** `[n, actDim]` */
  readonly actions: Float32Array;
}

/** A synthetic set as training pairs. */
export function setPairs(set: SyntheticSet): TrainingPairs {
  return { n: set.size, obsDim: set.obsDim, actDim: set.actDim, states: set.states, actions: set.actions };
}

/** Layer sizes [in, …, out] of an architecture. */
export function architectureSizes(
  architecture: StudentArchitecture,
  obsDim: number,
  actDim: number,
): number[] {
  return architecture.kind === "mlp"
    ? [obsDim, ...architecture.hidden, actDim]
    : [obsDim, ...Array(architecture.blocks + 1).fill(architecture.width), actDim];
}

/** A student's actions for normalized states `[n, obsDim]`. Pure in its arguments (usable under `tf.grad`). */
export function studentActions(student: Student, x: tf.Tensor2D): tf.Tensor2D {
  const { architecture, params, maxAction } = student;
  if (architecture.kind === "mlp") return studentForward(params as StudentParams, x, maxAction);
  return tf.tidy(() => {
    const L = params.length;
    let h = tf.relu(tf.add(tf.matMul(x, params[0].w as tf.Tensor2D), params[0].b)) as tf.Tensor2D;
    for (let l = 1; l < L - 1; l++) {
      h = tf.add(h, tf.relu(tf.add(tf.matMul(h, params[l].w as tf.Tensor2D), params[l].b))) as tf.Tensor2D;
    }
    const out = tf.tanh(tf.add(tf.matMul(h, params[L - 1].w as tf.Tensor2D), params[L - 1].b));
    return tf.mul(out, maxAction) as tf.Tensor2D;
  });
}

/** Frees a student's tensors. */
export function disposeStudent(student: Student): void {
  disposeMlp(student.params);
}

interface StepOptimizer {
  step(grads: readonly tf.Tensor[]): void;
  dispose(): void;
}

function makeOptimizer(spec: StudentOptimizer, variables: readonly tf.Variable[]): StepOptimizer {
  switch (spec.kind) {
    case "sgd":
      return {
        step: (grads) =>
          tf.tidy(() =>
            variables.forEach((p, i) => p.assign(tf.sub(p, tf.mul(grads[i], spec.learningRate))))
          ),
        dispose() {},
      };
    case "sgdm": {
      // PyTorch's first step sets buf = g; with zero-initialized buffers μ·0 + g is the same.
      const buffers = tf.tidy(() => variables.map((v) => tf.variable(tf.zerosLike(v), false)));
      return {
        step: (grads) =>
          tf.tidy(() =>
            variables.forEach((p, i) => {
              buffers[i].assign(tf.add(tf.mul(buffers[i], spec.momentum), grads[i]));
              p.assign(tf.sub(p, tf.mul(buffers[i], spec.learningRate)));
            })
          ),
        dispose: () => buffers.forEach((b) => b.dispose()),
      };
    }
    case "adam":
    case "adamw": {
      // Adam's constructor makes its moments from zerosLike tensors that would outlive it otherwise.
      let adam!: Adam;
      tf.tidy(() => void (adam = new Adam(variables, { learningRate: spec.learningRate })));
      const decay = spec.kind === "adamw" ? 1 - spec.learningRate * spec.weightDecay : 1;
      return {
        step(grads) {
          // Decoupled decay first (torch.optim.AdamW); the Adam step does not read θ, so the order is immaterial.
          if (decay !== 1) tf.tidy(() => variables.forEach((p) => p.assign(tf.mul(p, decay))));
          adam.apply(grads);
        },
        dispose: () => adam.dispose(),
      };
    }
    default:
      return fail(
        "config",
        `unknown optimizer ${(spec as { kind: string }).kind}`,
        "choose sgd, sgdm, adam or adamw",
      );
  }
}

/**
 * Trains a fresh student (initialized from `rng`, PyTorch's default init) on `data` by minimizing
 * mean ‖π(s) − a‖² with `training.optimizer`, full batch or minibatches. Gradients come from
 * `tf.variableGrads`. The caller disposes the result.
 */
export function fitStudent(data: TrainingPairs, training: StudentTraining, rng: Rng): FittedStudent {
  if (!Number.isInteger(training.steps) || training.steps < 0) {
    fail("config", `student training steps = ${training.steps} must be a non-negative integer`);
  }
  if (!(training.optimizer.learningRate > 0)) {
    fail("config", `student learning rate = ${training.optimizer.learningRate} must be positive`);
  }
  const sizes = architectureSizes(training.architecture, data.obsDim, data.actDim);
  const weights = initMlpWeights(sizes, rng);
  // tf.variable(t) shares t's data and leaves t alive; under tidy the initial tensors are freed
  // while the variables (never collected by tidy) remain.
  let variables!: ReturnType<typeof mlpVariables>;
  tf.tidy(() => void (variables = mlpVariables(weights)));
  const list = mlpTensorList(variables);
  const student: Student = {
    architecture: training.architecture,
    params: variables,
    maxAction: training.maxAction,
  };
  const x = tf.tensor2d(data.states, [data.n, data.obsDim]);
  const y = tf.tensor2d(data.actions, [data.n, data.actDim]);
  const batch = training.batchSize && training.batchSize < data.n ? training.batchSize : 0;
  // Losses before and after are measured on the same rows: all of them, or a fixed probe.
  const probe = batch === 0
    ? null
    : tf.tensor1d(rng.sampleWithoutReplacement(data.n, Math.min(data.n, 4096)), "int32");
  const loss = (xs: tf.Tensor2D, ys: tf.Tensor2D) =>
    tf.mean(tf.squaredDifference(studentActions(student, xs), ys)) as tf.Scalar;
  const probeLoss = () =>
    tf.tidy(() => (probe ? loss(tf.gather(x, probe), tf.gather(y, probe)) : loss(x, y)).dataSync()[0]);
  const optimizer = makeOptimizer(training.optimizer, list);
  try {
    const initialLoss = probeLoss();
    for (let t = 0; t < training.steps; t++) {
      const idx = batch ? Int32Array.from({ length: batch }, () => rng.int(data.n)) : null;
      tf.tidy(() => {
        let xs = x, ys = y;
        if (idx) {
          const i = tf.tensor1d(idx, "int32");
          xs = tf.gather(x, i);
          ys = tf.gather(y, i);
        }
        const { grads } = tf.variableGrads(() => loss(xs, ys), list);
        optimizer.step(list.map((v) => grads[v.name]));
      });
    }
    const finalLoss = probeLoss();
    return { ...student, initialLoss, finalLoss };
  } catch (e) {
    disposeMlp(variables);
    throw e;
  } finally {
    optimizer.dispose();
    tf.dispose([x, y, ...(probe ? [probe] : [])]);
  }
}

/**
 * A policy on raw observations that normalizes with `stats`, runs every member and averages their
 * actions (the paper's ensemble; one member is a single student). The average is taken in float64,
 * so k identical members give exactly the single member's actions.
 */
export function ensemblePolicy(
  members: readonly Student[],
  stats: { readonly obsDim: number; readonly stateMean: Float32Array; readonly stateStd: Float32Array },
): BatchPolicy {
  if (members.length === 0) fail("config", "an ensemble needs at least one student");
  const d = stats.obsDim;
  return (raw, n) => {
    const x = tf.tensor2d(normalizeStates(raw.subarray(0, n * d), stats), [n, d]);
    try {
      if (members.length === 1) return Float32Array.from(readAndDispose(studentActions(members[0], x)));
      // One download for all members (a GPU backend pays per sync), then the average on the CPU.
      const all = readAndDispose(tf.tidy(() => tf.stack(members.map((m) => studentActions(m, x)))));
      const size = all.length / members.length;
      const sum = new Float64Array(size);
      for (let k = 0; k < members.length; k++) for (let i = 0; i < size; i++) sum[i] += all[k * size + i];
      return Float32Array.from(sum, (v) => v / members.length);
    } finally {
      x.dispose();
    }
  };
}

function readAndDispose(t: tf.Tensor): Float32Array {
  const values = t.dataSync() as Float32Array;
  t.dispose();
  return values;
}

// ---------------------------------------------------------------------------------------------
// Scores
// ---------------------------------------------------------------------------------------------

/**
 * What one evaluated method scored: `units` policies (students, ensembles, repeats, BC runs) rolled
 * out for `episodesPerUnit` episodes each. Normalized scores are D4RL percent.
 */
export interface MethodScore {
  /** Name of the method, e.g. `distilled`, `bc`, `teacher`. */
  readonly method: string;
  /** Number of policies evaluated. */
  readonly units: number;
  /** Episodes each policy ran. */
  readonly episodesPerUnit: number;
  /** Mean and std (population, as numpy) over all units' episodes. */
  readonly meanNormalizedScore: number;
  /** Population std of the normalized scores. */
  readonly stdNormalizedScore: number;
  /** Mean undiscounted return. */
  readonly meanReturn: number;
  /** Population std of the undiscounted returns. */
  readonly stdReturn: number;
  /** Mean normalized score of each unit: the per-seed values a table's std over seeds uses. */
  readonly perUnit: number[];
  /** Every episode, unit after unit. */
  readonly normalizedScores: number[];
  /** Undiscounted return of every episode, unit after unit. */
  readonly returns: number[];
  /** Wall-clock seconds spent on this method (training and rollouts). */
  readonly seconds: number;
}

/** The teacher stage's own evaluation of π* as a baseline's score (one unit: the teacher). */
export function teacherScore(evaluation: ScoredUnit): MethodScore {
  return methodScore("teacher", [evaluation], 0);
}

/** Population mean and standard deviation (numpy's default); NaN for no values. */
export function meanStd(values: readonly number[]): { mean: number; std: number } {
  if (values.length === 0) return { mean: NaN, std: NaN };
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return { mean, std: Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length) };
}

type ScoredUnit = Pick<Evaluation, "episodes" | "normalizedScores" | "returns" | "meanNormalizedScore">;

function methodScore(method: string, units: readonly ScoredUnit[], seconds: number): MethodScore {
  const normalizedScores = units.flatMap((u) => Array.from(u.normalizedScores));
  const returns = units.flatMap((u) => Array.from(u.returns));
  const s = meanStd(normalizedScores), r = meanStd(returns);
  return {
    method,
    units: units.length,
    episodesPerUnit: units[0]?.episodes ?? 0,
    meanNormalizedScore: s.mean,
    stdNormalizedScore: s.std,
    meanReturn: r.mean,
    stdReturn: r.std,
    perUnit: units.map((u) => u.meanNormalizedScore),
    normalizedScores,
    returns,
    seconds,
  };
}

/** Environment steps and seconds spent in rollouts (policy inference included). */
class Throughput {
  steps = 0;
  seconds = 0;
  async rollout(env: EnvName, policy: BatchPolicy, episodes: number, seed: number): Promise<Evaluation> {
    const started = performance.now();
    const result = await evaluatePolicy(env, policy, episodes, seed);
    this.seconds += (performance.now() - started) / 1000;
    this.steps += result.lengths.reduce((a, b) => a + b, 0);
    return result;
  }
}

/** `students` paper-protocol students on `set`, `episodes` each; the RNG sequence of the original evaluator. */
async function scoreSet(
  method: string,
  set: SyntheticSet,
  protocol: StudentProtocol,
  options: { readonly students: number; readonly episodes: number; readonly seed: number },
  tally: Throughput,
  onUnit: () => void = () => {},
): Promise<MethodScore> {
  validateSyntheticSet(set);
  const started = performance.now();
  const rng = new Rng(options.seed);
  const units: Evaluation[] = [];
  for (let s = 0; s < options.students; s++) {
    const params = trainStudent(set, protocol, rng.fork());
    try {
      units.push(
        await tally.rollout(
          set.env,
          studentPolicy(params, set, protocol.maxAction),
          options.episodes,
          rng.nextUint32(),
        ),
      );
    } finally {
      disposeMlp(params);
    }
    onUnit();
  }
  return methodScore(method, units, (performance.now() - started) / 1000);
}

// ---------------------------------------------------------------------------------------------
// The paper's summary from the distillation log
// ---------------------------------------------------------------------------------------------

/** One evaluation of the distillation log. */
export interface EvaluationPoint {
  /** Outer step of the evaluation. */
  readonly step: number;
  /** Mean normalized score (D4RL percent) at that step. */
  readonly score: number;
}

/**
 * The evaluations a distillation run logged, in step order: every curve point with an evaluation,
 * then the final evaluation at the last step (the distill stage evaluates the end point separately,
 * as the authors' `eval_intervals` include the last iteration).
 */
export function evaluationLog(run: {
  readonly curve: readonly Pick<CurvePoint, "step" | "evaluation">[];
  readonly finalEvaluation?: { readonly meanNormalizedScore: number };
}): EvaluationPoint[] {
  const log = run.curve.filter((p) => p.evaluation).map((p) => ({
    step: p.step,
    score: p.evaluation!.meanNormalizedScore,
  }));
  const lastStep = run.curve.length ? run.curve[run.curve.length - 1].step : 0;
  if (run.finalEvaluation && (log.length === 0 || log[log.length - 1].step !== lastStep)) {
    log.push({ step: lastStep, score: run.finalEvaluation.meanNormalizedScore });
  }
  return log;
}

/** The mean of a run's last `k` evaluations (fewer when it has fewer), and their std. */
export interface CurveSummary {
  /** k, the number of last evaluations asked for. */
  readonly lastK: number;
  /** Evaluations averaged: min(k, evaluations logged). */
  readonly used: number;
  /** Mean of the evaluations used (NaN when none). */
  readonly mean: number;
  /** Population std of the evaluations used. */
  readonly std: number;
  /** The whole log, for plots. */
  readonly log: EvaluationPoint[];
}

/** The paper's per-seed number: mean of the last `k` logged evaluations (NaN when none). */
export function lastEvaluations(log: readonly EvaluationPoint[], k = 5): CurveSummary {
  if (!Number.isInteger(k) || k < 1) fail("config", `lastEvaluations = ${k} must be a positive integer`);
  const tail = log.slice(-k).map((p) => p.score);
  const { mean, std } = meanStd(tail);
  return { lastK: k, used: tail.length, mean, std, log: [...log] };
}

/** The paper's reported number over seeds. */
export interface SeedSummary {
  /** Mean over seeds of each seed's last-k mean. */
  readonly mean: number;
  /** Population std of the per-seed values (0 for one seed). */
  readonly std: number;
  readonly seeds: number;
  readonly perSeed: number[];
  readonly lastK: number;
}

/**
 * "Mean over seeds of the last 5 evaluations" (OBD, Appendix B): each seed's log is reduced to the
 * mean of its last `k` evaluations, then seeds are averaged. Logs without evaluations are an error,
 * not a silent NaN.
 */
export function seedSummary(logs: readonly (readonly EvaluationPoint[])[], k = 5): SeedSummary {
  if (logs.length === 0) {
    fail("input", "no distillation runs to summarize", "run the distill stage for at least one seed");
  }
  const perSeed = logs.map((log, i) => {
    if (log.length === 0) {
      fail(
        "input",
        `distillation run ${i} logged no evaluation`,
        "set distill.evalEvery > 0 or keep its final evaluation",
      );
    }
    return lastEvaluations(log, k).mean;
  });
  const { mean, std } = meanStd(perSeed);
  return { mean, std, seeds: perSeed.length, perSeed, lastK: k };
}

// ---------------------------------------------------------------------------------------------
// Baseline helpers
// ---------------------------------------------------------------------------------------------

/**
 * The Random selection baseline's set: `size` distinct real (state, action) pairs drawn uniformly
 * from the dataset, in the same normalized space as a distilled set. `normalized` may be passed when
 * already computed.
 */
export function randomSelectionSet(
  dataset: OfflineDataset,
  size: number,
  rng: Rng,
  normalized?: Float32Array,
): SyntheticSet & { readonly indices: Int32Array } {
  if (!Number.isInteger(size) || size < 1 || size > dataset.n) {
    fail(
      "config",
      `random selection of ${size} pairs from a dataset of ${dataset.n}`,
      "choose a size between 1 and the number of transitions",
    );
  }
  const { obsDim: d, actDim: m } = dataset;
  const indices = rng.sampleWithoutReplacement(dataset.n, size);
  const states = new Float32Array(size * d),
    rawStates = new Float32Array(size * d),
    actions = new Float32Array(size * m);
  indices.forEach((row, r) => {
    rawStates.set(dataset.observations.subarray(row * d, (row + 1) * d), r * d);
    actions.set(dataset.actions.subarray(row * m, (row + 1) * m), r * m);
    if (normalized) states.set(normalized.subarray(row * d, (row + 1) * d), r * d);
  });
  if (!normalized) states.set(normalizeStates(rawStates, dataset));
  return {
    env: dataset.env,
    size,
    obsDim: d,
    actDim: m,
    states,
    rawStates,
    actions,
    stateMean: dataset.stateMean,
    stateStd: dataset.stateStd,
    indices,
  };
}

/**
 * Gradient steps of BC on the whole dataset from the OBD paper's Table 4 (steps to convergence by
 * dataset size): the row whose size is nearest to `n` on a log scale.
 */
export function table4BcSteps(env: EnvName, n: number): number {
  const rows = TABLE4[env];
  if (!rows) fail("input", `unknown environment "${env}"`, `choose one of ${ENV_NAMES.join(", ")}`);
  let best = rows[0];
  for (const row of rows) if (Math.abs(Math.log(row[0] / n)) < Math.abs(Math.log(best[0] / n))) best = row;
  return best[1];
}

/** Table 4 of the OBD paper: (dataset size, BC steps to converge) — M-R, M, M-E sizes. */
const TABLE4: Readonly<Record<EnvName, readonly (readonly [number, number])[]>> = {
  halfcheetah: [[2e5, 40_000], [1e6, 25_000], [2e6, 100_000]],
  hopper: [[4e5, 80_000], [1e6, 50_000], [2e6, 100_000]],
  walker2d: [[3e5, 60_000], [1e6, 50_000], [2e6, 125_000]],
};

// ---------------------------------------------------------------------------------------------
// Cross-architecture and cross-optimizer variants (Table 2)
// ---------------------------------------------------------------------------------------------

/** Names of the architectures of Table 2 ("4-layer" is the default student, the reference). */
export const ARCHITECTURE_NAMES = [
  "2-layer",
  "3-layer",
  "4-layer",
  "5-layer",
  "6-layer",
  "residual",
] as const;
/** Names of the optimizers of Table 2 ("sgd" is the default, the reference). */
export const OPTIMIZER_NAMES = ["sgd", "adam", "adamw", "sgdm"] as const;

/** The architecture called `name` at `width` ("n-layer" counts dense layers: n − 1 hidden). */
export function namedArchitecture(
  name: (typeof ARCHITECTURE_NAMES)[number],
  width: number,
): StudentArchitecture {
  if (name === "residual") return { kind: "residual", width, blocks: 2 };
  const layers = Number(name[0]);
  return { kind: "mlp", hidden: Array(layers - 1).fill(width) };
}

/** The optimizer called `name` with the config's hyperparameters. */
export function namedOptimizer(
  name: (typeof OPTIMIZER_NAMES)[number],
  config: EvaluateConfig,
): StudentOptimizer {
  switch (name) {
    case "sgd":
      return { kind: "sgd", learningRate: config.studentLr };
    case "sgdm":
      return { kind: "sgdm", learningRate: config.sgdmLr, momentum: config.sgdmMomentum };
    case "adam":
      return { kind: "adam", learningRate: config.adamLr };
    case "adamw":
      return { kind: "adamw", learningRate: config.adamwLr, weightDecay: config.adamwWeightDecay };
  }
}

/** One row of Table 2 for one set. */
export interface VariantScore {
  /** e.g. `5-layer`, `residual`, `adamw`. */
  readonly name: string;
  /** The student network. */
  readonly architecture: StudentArchitecture;
  /** The optimizer it was trained with. */
  readonly optimizer: StudentOptimizer;
  /** Training steps per student. */
  readonly steps: number;
  /** Mean over students of the training loss before and after. */
  readonly initialLoss: number;
  /** Mean training loss after training. */
  readonly finalLoss: number;
  /** How the trained students scored. */
  readonly score: MethodScore;
}

// ---------------------------------------------------------------------------------------------
// The stage
// ---------------------------------------------------------------------------------------------

/** Which evaluations the stage runs. */
export interface EvaluationSwitches {
  /** Fresh paper-protocol students on the set (Table 1). */
  readonly plain: boolean;
  /** One ensemble of `ensembleSize` students, actions averaged (Table 3). */
  readonly ensemble: boolean;
  /** 2/3/4/5/6-layer and residual students (Table 2). */
  readonly architectures: boolean;
  /** SGD, Adam, AdamW, SGD with momentum on the default student (Table 2). */
  readonly optimizers: boolean;
  /** `randomRepeats` sets of N random real pairs, trained like the set. */
  readonly randomSelection: boolean;
  /** BC on the whole dataset. */
  readonly bc: boolean;
  /** The teacher policy itself (skipped, with a log line, when the run has no teacher). */
  readonly teacher: boolean;
}

/** Everything that determines an evaluation. */
export interface EvaluateConfig {
  /** Which evaluations to run. */
  readonly run: EvaluationSwitches;
  /** Plain evaluation: students (one seed each) and episodes per policy everywhere. */
  readonly students: number;
  /** Episodes per policy, in every evaluation. */
  readonly episodes: number;
  /** The paper protocol: ReLU MLP hiddenLayers × width, studentSteps full-batch SGD at studentLr. */
  readonly hiddenLayers: number;
  /** Units per hidden layer of the paper-protocol student. */
  readonly width: number;
  /** Full-batch SGD steps of a paper-protocol student. */
  readonly studentSteps: number;
  /** SGD learning rate of a paper-protocol student. */
  readonly studentLr: number;
  /** Students per ensemble (Table 3). */
  readonly ensembleSize: number;
  /** Table 2: students per variant and their training steps (the authors' script: 500). */
  readonly variantStudents: number;
  /** Training steps of each variant student. */
  readonly variantSteps: number;
  /** Learning rate of the Adam variant. */
  readonly adamLr: number;
  /** Learning rate of the AdamW variant. */
  readonly adamwLr: number;
  /** Weight decay of the AdamW variant. */
  readonly adamwWeightDecay: number;
  /** Learning rate of the SGD-with-momentum variant. */
  readonly sgdmLr: number;
  /** Momentum of the SGD-with-momentum variant. */
  readonly sgdmMomentum: number;
  /** Random selection: repeats (the paper: 10). */
  readonly randomRepeats: number;
  /** BC on the whole dataset: gradient steps (0: Table 4 of the paper for this dataset's size). */
  readonly bcSteps: number;
  /** Minibatch size of BC on the whole dataset. */
  readonly bcBatchSize: number;
  /** Adam learning rate of BC on the whole dataset. */
  readonly bcLr: number;
  /** Independent BC policies (seeds). */
  readonly bcPolicies: number;
  /** The paper's summary: mean of the last this many evaluations of the distillation log. */
  readonly lastEvaluations: number;
  /** Root seed; each evaluation draws from its own stream derived from it. */
  readonly seed: number;
}

/**
 * The published protocol. Notes on choices the papers leave open:
 * - Adam/AdamW at lr 1e-3 (AdamW's weight decay PyTorch's default 0.01), SGD with momentum 0.9 at
 *   lr 0.01 (the same effective step as plain SGD at 0.1). The authors' cross-optimizer script sets
 *   lr 0.1 for all three but assigns the optimizer name to a misspelled key (`optimier`), so their
 *   Adam/AdamW rows may be plain SGD — which would explain Table 2's identical 39.3 for both.
 * - variant students train 500 steps (the authors' `evaluate_cross_arch.py`).
 * - BC on the whole data: Table 4's steps, Adam 3e-4, batch 256 (CORL's BC).
 */
export const PAPER_EVALUATE: EvaluateConfig = {
  run: {
    plain: true,
    ensemble: true,
    architectures: true,
    optimizers: true,
    randomSelection: true,
    bc: true,
    teacher: true,
  },
  students: 5,
  episodes: 10,
  hiddenLayers: 3,
  width: 256,
  studentSteps: 100,
  studentLr: 0.1,
  ensembleSize: 10,
  variantStudents: 5,
  variantSteps: 500,
  adamLr: 1e-3,
  adamwLr: 1e-3,
  adamwWeightDecay: 0.01,
  sgdmLr: 0.01,
  sgdmMomentum: 0.9,
  randomRepeats: 10,
  bcSteps: 0,
  bcBatchSize: 256,
  bcLr: 3e-4,
  bcPolicies: 5,
  lastEvaluations: 5,
  seed: 0,
};

/** Everything once, small: about a minute on two cores for Hopper and a 64-pair set. */
export const QUICK_EVALUATE: EvaluateConfig = {
  ...PAPER_EVALUATE,
  students: 2,
  episodes: 5,
  variantStudents: 1,
  variantSteps: 100,
  randomRepeats: 3,
  bcSteps: 1000,
  bcLr: 1e-3,
  bcPolicies: 1,
};

/** Inputs of the stage. */
export interface EvaluateInputs {
  /** The offline dataset (BC and random-selection baselines). */
  readonly dataset: OfflineDataset;
  /** The synthetic set to evaluate. */
  readonly distilled: DistilledSet;
  /** The teacher, for the teacher baseline. */
  readonly teacher?: TeacherArtifact;
}

/** The stage's output: every score of one synthetic set and its baselines. */
export interface EvaluationReport {
  /** Environment of the evaluation. */
  readonly env: EnvName;
  /** Source file, its sha256 and its number of transitions. */
  readonly dataset: { readonly file: string; readonly sha256: string; readonly n: number };
  /** Objective of the set (`random` for a baselines-only report). */
  readonly objective: string;
  /** N, the number of synthetic pairs. */
  readonly synsetSize: number;
  /** The configuration of the evaluation. */
  readonly config: EvaluateConfig;
  /** The paper protocol used for plain, ensemble and random-selection students. */
  readonly protocol: StudentProtocol;
  /** The paper's summary from the distillation's own log (this set's seed only). */
  readonly curve: CurveSummary;
  /** Paper-protocol students (Table 1), when run. */
  readonly plain?: MethodScore;
  /** One ensemble of `members` students (Table 3), when run. */
  readonly ensemble?: MethodScore & { readonly members: number };
  /** One row per student architecture (Table 2), when run. */
  readonly architectures?: VariantScore[];
  /** One row per student optimizer (Table 2), when run. */
  readonly optimizers?: VariantScore[];
  /** Random selection, BC on the whole dataset and the teacher, each when run. */
  readonly baselines: {
    readonly randomSelection?: MethodScore;
    readonly bc?: MethodScore & { readonly steps: number; readonly finalLoss: number };
    readonly teacher?: MethodScore;
  };
  /** Rollout throughput over the whole stage, policy inference included. */
  readonly throughput: {
    readonly envSteps: number;
    readonly seconds: number;
    readonly stepsPerSecond: number;
  };
  /** Wall-clock duration of the stage, in seconds. */
  readonly seconds: number;
}

/** Refuses a config that cannot work, naming the setting. */
export function validateEvaluateConfig(config: EvaluateConfig): void {
  const positiveInts = [
    "students",
    "episodes",
    "hiddenLayers",
    "width",
    "studentSteps",
    "ensembleSize",
    "variantStudents",
    "variantSteps",
    "randomRepeats",
    "bcBatchSize",
    "bcPolicies",
    "lastEvaluations",
  ] as const;
  for (const key of positiveInts) {
    const v = config[key];
    if (!Number.isInteger(v) || v < 1) fail("config", `evaluate.${key} = ${v} must be a positive integer`);
  }
  for (const key of ["studentLr", "adamLr", "adamwLr", "sgdmLr", "bcLr"] as const) {
    if (!(config[key] > 0) || !Number.isFinite(config[key])) {
      fail("config", `evaluate.${key} = ${config[key]} must be a positive number`);
    }
  }
  if (!(config.sgdmMomentum >= 0 && config.sgdmMomentum < 1)) {
    fail("config", `evaluate.sgdmMomentum = ${config.sgdmMomentum} must be in [0, 1)`);
  }
  if (!(config.adamwWeightDecay >= 0)) {
    fail("config", `evaluate.adamwWeightDecay = ${config.adamwWeightDecay} must be non-negative`);
  }
  if (!Number.isInteger(config.bcSteps) || config.bcSteps < 0) {
    fail("config", `evaluate.bcSteps = ${config.bcSteps} must be 0 (Table 4) or a positive integer`);
  }
  if (!Number.isInteger(config.seed)) fail("config", `evaluate.seed = ${config.seed} must be an integer`);
  const switches = Object.keys(PAPER_EVALUATE.run) as (keyof EvaluationSwitches)[];
  for (const key of switches) {
    if (typeof config.run?.[key] !== "boolean") {
      fail("config", `evaluate.run.${key} = ${config.run?.[key]} must be true or false`);
    }
  }
}

/** A 32-bit seed for the named part of an evaluation: independent streams per part. */
export function streamSeed(seed: number, part: string): number {
  let h = 0x811c9dc5 ^ seed; // FNV-1a over the part name, salted with the seed
  for (let i = 0; i < part.length; i++) h = Math.imul(h ^ part.charCodeAt(i), 0x01000193);
  return (h ^ Math.imul(seed + 0x9e3779b9, 0x85ebca6b)) >>> 0;
}

/** Records a method's score in the manifest's metrics and the run log. */
function recordScore(ctx: StageContext, name: string, score: MethodScore): void {
  ctx.metric(`normalizedScore.${name}`, score.meanNormalizedScore);
  ctx.metric(`return.${name}`, score.meanReturn);
  ctx.log({
    event: "evaluation",
    method: name,
    normalizedScore: score.meanNormalizedScore,
    std: score.stdNormalizedScore,
    return: score.meanReturn,
    units: score.units,
    seconds: score.seconds,
  });
}

/** What {@link scoreBaselines} reports through: rollout tally, progress ticks, metrics, the log. */
interface ScoringParts {
  readonly tally: Throughput;
  readonly tick: (part: string, score?: number) => void;
  readonly record: (name: string, score: MethodScore) => void;
  readonly log: StageContext["log"];
}

/**
 * The baselines the switches ask for, on one dataset: Random selection (`size` real pairs, trained
 * like a synthetic set), BC on the whole dataset, and the teacher. They depend on the dataset, the
 * teacher and the set size only, so a study of several methods scores them once.
 */
async function scoreBaselines(
  dataset: OfflineDataset,
  teacher: TeacherArtifact | undefined,
  size: number,
  config: EvaluateConfig,
  protocol: StudentProtocol,
  parts: ScoringParts,
): Promise<EvaluationReport["baselines"]> {
  const run = config.run;
  const env = dataset.env;
  const maxAction = protocol.maxAction;
  const bcSteps = config.bcSteps || table4BcSteps(env, dataset.n);
  const needNormalized = run.randomSelection || run.bc;
  const normalized = needNormalized ? normalizeStates(dataset.observations, dataset) : undefined;

  let randomSelection: MethodScore | undefined;
  if (run.randomSelection) {
    const t0 = performance.now();
    const rng = new Rng(streamSeed(config.seed, "random-selection"));
    const units: Evaluation[] = [];
    for (let r = 0; r < config.randomRepeats; r++) {
      const set = randomSelectionSet(dataset, size, rng.fork(), normalized);
      const params = trainStudent(set, protocol, rng.fork());
      try {
        units.push(
          await parts.tally.rollout(env, studentPolicy(params, set, maxAction), config.episodes, rng.nextUint32()),
        );
      } finally {
        disposeMlp(params);
      }
      parts.tick("random selection");
    }
    randomSelection = methodScore("random selection", units, (performance.now() - t0) / 1000);
    parts.record("randomSelection", randomSelection);
  }

  let bc: (MethodScore & { steps: number; finalLoss: number }) | undefined;
  if (run.bc) {
    const t0 = performance.now();
    const rng = new Rng(streamSeed(config.seed, "bc"));
    const pairs: TrainingPairs = {
      n: dataset.n,
      obsDim: dataset.obsDim,
      actDim: dataset.actDim,
      states: normalized!,
      actions: dataset.actions,
    };
    const units: Evaluation[] = [];
    const finalLosses: number[] = [];
    for (let p = 0; p < config.bcPolicies; p++) {
      const student = fitStudent(pairs, {
        architecture: { kind: "mlp", hidden: protocol.hidden },
        optimizer: { kind: "adam", learningRate: config.bcLr },
        steps: bcSteps,
        maxAction,
        batchSize: config.bcBatchSize,
      }, rng.fork());
      try {
        finalLosses.push(student.finalLoss);
        units.push(
          await parts.tally.rollout(env, ensemblePolicy([student], dataset), config.episodes, rng.nextUint32()),
        );
      } finally {
        disposeStudent(student);
      }
      parts.tick("bc");
    }
    bc = {
      ...methodScore("bc", units, (performance.now() - t0) / 1000),
      steps: bcSteps,
      finalLoss: meanStd(finalLosses).mean,
    };
    parts.record("bc", bc);
  }

  let teacherScore: MethodScore | undefined;
  if (run.teacher && teacher) {
    const t0 = performance.now();
    const policy = teacherFromArtifact(teacher);
    try {
      const result = await parts.tally.rollout(
        env,
        policy.policy("deterministic"),
        config.episodes,
        streamSeed(config.seed, "teacher"),
      );
      teacherScore = methodScore("teacher", [result], (performance.now() - t0) / 1000);
    } finally {
      policy.dispose();
    }
    parts.record("teacher", teacherScore);
    parts.tick("teacher", teacherScore.meanNormalizedScore);
  } else if (run.teacher) {
    parts.log({ event: "skipped", method: "teacher", reason: "this run has no teacher (objective dbc)" });
  }
  return {
    ...(randomSelection ? { randomSelection } : {}),
    ...(bc ? { bc } : {}),
    ...(teacherScore ? { teacher: teacherScore } : {}),
  };
}

/**
 * Refuses a bad config, a dataset of an unknown environment and a Random selection larger than the
 * dataset; returns the paper's student protocol the config describes, for that environment.
 */
function checkedProtocol(config: EvaluateConfig, dataset: OfflineDataset, synsetSize: number): StudentProtocol {
  validateEvaluateConfig(config);
  if (!(ENV_NAMES as readonly string[]).includes(dataset.env)) {
    fail(
      "input",
      `the dataset ${dataset.file} is for an unknown environment "${dataset.env}"`,
      `choose one of ${ENV_NAMES.join(", ")}`,
    );
  }
  if (config.run.randomSelection && synsetSize > dataset.n) {
    fail(
      "config",
      `random selection of ${synsetSize} pairs needs a dataset of at least that many transitions (${dataset.n})`,
    );
  }
  return {
    hidden: Array(config.hiddenLayers).fill(config.width),
    steps: config.studentSteps,
    learningRate: config.studentLr,
    maxAction: ENV_SPECS[dataset.env].actionHigh,
  };
}

/**
 * Runs the configured evaluations of one distilled set. Refuses, before any work, a bad config, a
 * set that is empty, non-finite or does not fit the environment, and a dataset or teacher of another
 * environment. Numbers are deterministic for (inputs, config).
 */
export async function evaluate(
  inputs: EvaluateInputs,
  config: EvaluateConfig,
  ctx: StageContext,
): Promise<EvaluationReport> {
  const started = performance.now();
  const { dataset, distilled } = inputs;
  const protocol = checkedProtocol(config, dataset, distilled.size);
  validateSyntheticSet(distilled, { env: dataset.env, obsDim: dataset.obsDim, actDim: dataset.actDim });
  if (inputs.teacher) {
    checkTeacherFitsDataset(inputs.teacher, {
      obsDim: dataset.obsDim,
      actDim: dataset.actDim,
      name: dataset.file,
    });
  }
  const env = dataset.env;
  const maxAction = protocol.maxAction;
  const tally = new Throughput();
  const run = config.run;
  const variantNames = [
    ...(run.architectures ? ARCHITECTURE_NAMES.map((a) => ({ arch: a, opt: "sgd" as const })) : []),
    ...(run.optimizers
      ? OPTIMIZER_NAMES.filter((o) => !(run.architectures && o === "sgd")).map((o) => ({
        arch: "4-layer" as const,
        opt: o,
      }))
      : []),
  ];
  const total = (run.plain ? config.students : 0) + (run.ensemble ? 1 : 0) +
    variantNames.length * config.variantStudents +
    (run.randomSelection ? config.randomRepeats : 0) + (run.bc ? config.bcPolicies : 0) +
    (run.teacher && inputs.teacher ? 1 : 0);
  const bar = ctx.progress("evaluate", total);
  let done = 0;
  const tick = (part: string, score?: number) => {
    bar.update(++done, score === undefined ? { part } : { part, score });
  };
  const record = (name: string, score: MethodScore) => recordScore(ctx, name, score);

  const curve = lastEvaluations(evaluationLog(distilled), config.lastEvaluations);
  if (curve.used > 0) ctx.metric(`curveLast${config.lastEvaluations}`, curve.mean);

  // Plain: the original evaluator's RNG sequence under this part's stream.
  let plain: MethodScore | undefined;
  if (run.plain) {
    plain = await scoreSet(
      "distilled",
      distilled,
      protocol,
      { students: config.students, episodes: config.episodes, seed: streamSeed(config.seed, "plain") },
      tally,
      () => tick("plain"),
    );
    record("plain", plain);
  }

  let ensemble: (MethodScore & { members: number }) | undefined;
  if (run.ensemble) {
    const t0 = performance.now();
    const rng = new Rng(streamSeed(config.seed, "ensemble"));
    const members: Student[] = [];
    try {
      for (let k = 0; k < config.ensembleSize; k++) {
        members.push({
          architecture: { kind: "mlp", hidden: protocol.hidden },
          params: trainStudent(distilled, protocol, rng.fork()),
          maxAction,
        });
      }
      const result = await tally.rollout(
        env,
        ensemblePolicy(members, distilled),
        config.episodes,
        rng.nextUint32(),
      );
      ensemble = {
        ...methodScore("ensemble", [result], (performance.now() - t0) / 1000),
        members: config.ensembleSize,
      };
    } finally {
      members.forEach(disposeStudent);
    }
    record("ensemble", ensemble);
    tick("ensemble", ensemble.meanNormalizedScore);
  }

  // Table 2. Every variant uses the same stream, so students and rollout seeds are paired across
  // rows; the reference (4-layer, SGD) is computed once and appears in both lists.
  const variants = new Map<string, VariantScore>();
  for (const { arch, opt } of variantNames) {
    const t0 = performance.now();
    const rng = new Rng(streamSeed(config.seed, "variants"));
    const architecture = namedArchitecture(arch, config.width);
    const optimizer = namedOptimizer(opt, config);
    const units: Evaluation[] = [];
    const losses: [number, number][] = [];
    for (let s = 0; s < config.variantStudents; s++) {
      const student = fitStudent(setPairs(distilled), {
        architecture,
        optimizer,
        steps: config.variantSteps,
        maxAction,
      }, rng.fork());
      try {
        losses.push([student.initialLoss, student.finalLoss]);
        units.push(
          await tally.rollout(env, ensemblePolicy([student], distilled), config.episodes, rng.nextUint32()),
        );
      } finally {
        disposeStudent(student);
      }
      tick(`${arch}/${opt}`);
    }
    const name = opt === "sgd" ? arch : opt;
    const score = methodScore(name, units, (performance.now() - t0) / 1000);
    variants.set(`${arch}/${opt}`, {
      name,
      architecture,
      optimizer,
      steps: config.variantSteps,
      initialLoss: meanStd(losses.map((l) => l[0])).mean,
      finalLoss: meanStd(losses.map((l) => l[1])).mean,
      score,
    });
    record(`${arch}/${opt}`, score);
  }
  const architectures = run.architectures
    ? ARCHITECTURE_NAMES.map((a) => variants.get(`${a}/sgd`)!)
    : undefined;
  const optimizers = run.optimizers
    ? OPTIMIZER_NAMES.map((o) => ({ ...variants.get(`4-layer/${o}`)!, name: o }))
    : undefined;

  const baselines = await scoreBaselines(dataset, inputs.teacher, distilled.size, config, protocol, {
    tally,
    tick,
    record,
    log: ctx.log,
  });
  bar.finish();

  const stepsPerSecond = tally.seconds > 0 ? tally.steps / tally.seconds : 0;
  ctx.metric("envStepsPerSecond", stepsPerSecond);
  return {
    env,
    dataset: { file: dataset.file, sha256: dataset.sha256, n: dataset.n },
    objective: distilled.objective,
    synsetSize: distilled.size,
    config,
    protocol,
    curve,
    ...(plain ? { plain } : {}),
    ...(ensemble ? { ensemble } : {}),
    ...(architectures ? { architectures } : {}),
    ...(optimizers ? { optimizers } : {}),
    baselines,
    throughput: { envSteps: tally.steps, seconds: tally.seconds, stepsPerSecond },
    seconds: (performance.now() - started) / 1000,
  };
}

/** The evaluate stage: `{ dataset, distilled, teacher? }` → {@link EvaluationReport}. */
export const evaluateStage: Stage<EvaluateInputs, EvaluateConfig, EvaluationReport> = defineStage<
  EvaluateInputs,
  EvaluateConfig,
  EvaluationReport
>({
  name: "evaluate",
  version: "2",
  compute: (inputs, config, ctx) => evaluate(inputs, config, ctx),
});

/** Inputs of the baselines stage: the dataset. */
export interface BaselinesInputs {
  /** The offline dataset. */
  readonly dataset: OfflineDataset;
}

/** Config of the baselines stage: the evaluation settings and the size Random selection draws. */
export interface BaselinesConfig {
  /** The evaluation settings. */
  readonly evaluate: EvaluateConfig;
  /** N of the synthetic sets they are compared with. */
  readonly synsetSize: number;
}

/**
 * The part of an evaluate config the baselines depend on, everything else at the paper's values:
 * a study keys its baselines by this, so changing how synthetic sets are evaluated (ensembles,
 * variants, students per set) or which methods are compared does not recompute Random selection or
 * BC. The teacher's score is not part of it: the teacher stage evaluates π* itself.
 */
export function baselinesConfig(evaluate: EvaluateConfig, synsetSize: number): BaselinesConfig {
  const off = { plain: false, ensemble: false, architectures: false, optimizers: false, teacher: false };
  return {
    synsetSize,
    evaluate: {
      ...PAPER_EVALUATE,
      run: { ...evaluate.run, ...off },
      episodes: evaluate.episodes,
      hiddenLayers: evaluate.hiddenLayers,
      width: evaluate.width,
      studentSteps: evaluate.studentSteps,
      studentLr: evaluate.studentLr,
      randomRepeats: evaluate.randomRepeats,
      bcSteps: evaluate.bcSteps,
      bcBatchSize: evaluate.bcBatchSize,
      bcLr: evaluate.bcLr,
      bcPolicies: evaluate.bcPolicies,
      seed: evaluate.seed,
    },
  };
}

/**
 * Scores the baselines of one dataset once (Random selection, BC on the whole data), as an
 * {@link EvaluationReport} of objective `random` with no synthetic-set scores. The numbers are the
 * same as those `evaluate` reports for any set of that size (same streams).
 */
export async function evaluateBaselines(
  inputs: BaselinesInputs,
  config: BaselinesConfig,
  ctx: StageContext,
): Promise<EvaluationReport> {
  const started = performance.now();
  const { evaluate: settings, synsetSize } = config;
  const { dataset } = inputs;
  if (!Number.isInteger(synsetSize) || synsetSize < 1) {
    fail("config", `baselines.synsetSize = ${synsetSize} must be a positive integer`);
  }
  const protocol = checkedProtocol(settings, dataset, synsetSize);
  const run = settings.run;
  const total = (run.randomSelection ? settings.randomRepeats : 0) + (run.bc ? settings.bcPolicies : 0);
  const bar = ctx.progress("baselines", total);
  let done = 0;
  const tally = new Throughput();
  const baselines = await scoreBaselines(dataset, undefined, synsetSize, settings, protocol, {
    tally,
    tick: (part, score) => bar.update(++done, score === undefined ? { part } : { part, score }),
    record: (name, score) => recordScore(ctx, name, score),
    log: ctx.log,
  });
  bar.finish();
  const stepsPerSecond = tally.seconds > 0 ? tally.steps / tally.seconds : 0;
  return {
    env: dataset.env,
    dataset: { file: dataset.file, sha256: dataset.sha256, n: dataset.n },
    objective: "random",
    synsetSize,
    config: settings,
    protocol,
    curve: { lastK: settings.lastEvaluations, used: 0, mean: 0, std: 0, log: [] },
    baselines,
    throughput: { envSteps: tally.steps, seconds: tally.seconds, stepsPerSecond },
    seconds: (performance.now() - started) / 1000,
  };
}

/** The baselines stage: `{ dataset }` → the baselines' {@link EvaluationReport}. */
export const baselinesStage: Stage<BaselinesInputs, BaselinesConfig, EvaluationReport> = defineStage<
  BaselinesInputs,
  BaselinesConfig,
  EvaluationReport
>({
  name: "baselines",
  version: "2",
  compute: (inputs, config, ctx) => evaluateBaselines(inputs, config, ctx),
});
