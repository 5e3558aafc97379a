/**
 * Evaluation of a synthetic set the way the papers do it: train fresh students on the set by
 * full-batch SGD (the inner loop's protocol: 100 steps at lr 0.1 by default), then roll each out in
 * the environment with deterministic actions, states normalized with the dataset's statistics, and
 * report D4RL normalized returns.
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { type EnvName } from "../envs/locomotion.ts";
import { type BatchPolicy, evaluatePolicy } from "../envs/rollout.ts";
import { disposeMlp, initMlpWeights, mlpTensors } from "../numerics/mlp.ts";
import { Rng } from "../numerics/random.ts";
import { type StudentParams, studentForward, unrollInnerLoop, disposeTrajectory } from "./distill/metagradient.ts";

/** A learned synthetic set: states in the dataset's normalized space, and actions. */
export interface SyntheticSet {
  readonly env: EnvName;
  readonly size: number;
  readonly obsDim: number;
  readonly actDim: number;
  /** `[size, obsDim]`, normalized: (raw − stateMean) / stateStd. */
  readonly states: Float32Array;
  /** `[size, obsDim]`, the same states in the environment's raw observation space. */
  readonly rawStates: Float32Array;
  /** `[size, actDim]` */
  readonly actions: Float32Array;
  readonly stateMean: Float32Array;
  readonly stateStd: Float32Array;
}

/** How students are trained on a set and evaluated. */
export interface StudentProtocol {
  /** Hidden layer widths of the student MLP (ReLU), e.g. [256, 256, 256]. */
  readonly hidden: readonly number[];
  readonly steps: number;
  readonly learningRate: number;
  readonly maxAction: number;
}

/** The paper's protocol: 3×256 ReLU student, 100 full-batch SGD steps at lr 0.1. */
export const PAPER_STUDENT: StudentProtocol = { hidden: [256, 256, 256], steps: 100, learningRate: 0.1, maxAction: 1 };

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
  const d = set.obsDim;
  return (raw, n) => {
    const normalized = Float32Array.from(raw.subarray(0, n * d), (v, i) => (v - set.stateMean[i % d]) / set.stateStd[i % d]);
    const actions = tf.tidy(() => studentForward(params, tf.tensor2d(normalized, [n, d]), maxAction));
    const out = Float32Array.from(actions.dataSync());
    actions.dispose();
    return out;
  };
}

/** What an evaluation of a set measured. */
export interface SetEvaluation {
  readonly students: number;
  readonly episodesPerStudent: number;
  /** Mean and std of normalized scores over all students' episodes. */
  readonly meanNormalizedScore: number;
  readonly stdNormalizedScore: number;
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
  const rng = new Rng(options.seed);
  const scores: number[] = [];
  const returns: number[] = [];
  const perStudent: number[] = [];
  for (let s = 0; s < options.students; s++) {
    const params = trainStudent(set, protocol, rng.fork());
    try {
      const result = await evaluatePolicy(set.env, studentPolicy(params, set, protocol.maxAction), options.episodes, rng.nextUint32());
      scores.push(...result.normalizedScores);
      returns.push(...result.returns);
      perStudent.push(result.meanNormalizedScore);
    } finally {
      disposeMlp(params);
    }
  }
  const mean = scores.reduce((a, b) => a + b, 0) / scores.length;
  const std = Math.sqrt(scores.reduce((a, b) => a + (b - mean) ** 2, 0) / scores.length);
  return {
    students: options.students,
    episodesPerStudent: options.episodes,
    meanNormalizedScore: mean,
    stdNormalizedScore: std,
    meanReturn: returns.reduce((a, b) => a + b, 0) / returns.length,
    perStudent,
  };
}
