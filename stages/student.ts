/**
 * The student: the policy a synthetic set exists to train. One definition serves the inner loop of
 * distillation and every evaluation of a set (the papers' protocol): a ReLU MLP with a c·tanh
 * output, trained from a fresh initialization by `steps` full-batch SGD steps on the BC loss
 * mean ‖π(s) − a‖² over the set. A set distilled through T inner steps is therefore always scored
 * by students trained exactly that way; there is no second copy of these settings to drift apart.
 *
 * Also here: students of other architectures (the residual MLP of Table 2) as policies, and
 * ensembles of students (Table 3).
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { fail } from "../core/errors.ts";
import { ENV_SPECS, type EnvName } from "../envs/specs.ts";
import type { BatchPolicy } from "../envs/rollout.ts";
import { disposeMlp, initMlpWeights, type MlpParams, mlpSizes, mlpTensors } from "../numerics/mlp.ts";
import type { Rng } from "../numerics/random.ts";
import {
  disposeTrajectory,
  studentForward,
  type StudentParams,
  unrollInnerLoop,
} from "./distill/metagradient.ts";
import { normalizeStates } from "./load.ts";
import type { SyntheticSet } from "./synset.ts";

/** The student's settings: the `student` section of a pipeline config. */
export interface StudentConfig {
  /** Hidden layers of the ReLU MLP (the paper's "4-layer MLP" has 3). */
  readonly hiddenLayers: number;
  /** Units per hidden layer. */
  readonly width: number;
  /** Full-batch SGD steps on the set: T of the inner loop, and every evaluated student's training. */
  readonly steps: number;
  /** SGD learning rate of those steps. */
  readonly learningRate: number;
}

/** The paper's student (Appendix B of the OBD paper): 3 × 256 ReLU, 100 full-batch SGD steps at 0.1. */
export const PAPER_STUDENT: StudentConfig = { hiddenLayers: 3, width: 256, steps: 100, learningRate: 0.1 };

/** Largest hidden width and depth accepted: beyond them a set's students would not fit in memory. */
export const STUDENT_LIMITS = { width: 4096, hiddenLayers: 16, steps: 100_000 } as const;

/** Refuses student settings that cannot work, naming the setting (`section` prefixes its name). */
export function validateStudentConfig(config: StudentConfig, section = "student"): void {
  for (const key of ["hiddenLayers", "width", "steps"] as const) {
    const v = config[key];
    if (!Number.isInteger(v) || v < 1 || v > STUDENT_LIMITS[key]) {
      fail("config", `${section}.${key} = ${v} must be an integer from 1 to ${STUDENT_LIMITS[key]}`);
    }
  }
  if (!(config.learningRate > 0) || !Number.isFinite(config.learningRate)) {
    fail("config", `${section}.learningRate = ${config.learningRate} must be a positive number`);
  }
}

/** The student settings resolved for one environment. */
export interface StudentProtocol {
  /** Hidden layer widths of the student MLP (ReLU), e.g. [256, 256, 256]. */
  readonly hidden: readonly number[];
  /** Full-batch SGD steps of training. */
  readonly steps: number;
  /** SGD learning rate. */
  readonly learningRate: number;
  /** c, the bound of the student's c·tanh output (the environment's largest action). */
  readonly maxAction: number;
}

/** The protocol of `config` in `env`. */
export function studentProtocol(config: StudentConfig, env: EnvName): StudentProtocol {
  return {
    hidden: Array(config.hiddenLayers).fill(config.width),
    steps: config.steps,
    learningRate: config.learningRate,
    maxAction: ENV_SPECS[env].actionHigh,
  };
}

/** A student trained on a set, with its BC loss on the set after training. */
export interface TrainedStudent {
  /** θ_T (the caller disposes it: `disposeMlp`). */
  readonly params: StudentParams;
  /** mean ‖π_θT(s) − a‖² over the set. */
  readonly finalLoss: number;
}

/**
 * Trains a fresh student (initialized from `rng`, PyTorch's default) on the set with the protocol,
 * through the very inner loop distillation differentiates (`distill/metagradient.ts`).
 */
export function trainStudent(set: SyntheticSet, protocol: StudentProtocol, rng: Rng): TrainedStudent {
  const sizes = [set.obsDim, ...protocol.hidden, set.actDim];
  const initial = mlpTensors(initMlpWeights(sizes, rng));
  const x = tf.tensor2d(set.states, [set.size, set.obsDim]);
  const y = tf.tensor2d(set.actions, [set.size, set.actDim]);
  // The unrolled loop keeps every step's record; a plain training run needs only the end point.
  const trajectory = unrollInnerLoop(initial, x, y, protocol);
  const params = trajectory.final;
  disposeTrajectory(trajectory, { keepInitial: protocol.steps === 0, keepFinal: true });
  const finalLoss = tf.tidy(() =>
    tf.mean(tf.squaredDifference(studentForward(params, x, protocol.maxAction), y)).dataSync()[0]
  );
  tf.dispose([x, y]);
  return { params, finalLoss };
}

/**
 * A student network: a ReLU MLP, or the residual MLP of the paper's Table 2 — a first dense layer,
 * `blocks` residual blocks h ← h + relu(h·W + b) of width `width` (the "middle layers"), and the
 * output layer; `blocks` = 2 is the residual 4-layer MLP. Both end in maxAction · tanh.
 */
export type StudentArchitecture =
  | { readonly kind: "mlp"; readonly hidden: readonly number[] }
  | { readonly kind: "residual"; readonly width: number; readonly blocks: number };

/** A trained student of any architecture (owns its tensors: {@link disposeStudent}). */
export interface Student {
  /** Its network. */
  readonly architecture: StudentArchitecture;
  /** Its weights. */
  readonly params: MlpParams;
  /** c of its c·tanh output. */
  readonly maxAction: number;
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

/** A paper-protocol student as a {@link Student}. */
export function mlpStudent(params: StudentParams, maxAction: number): Student {
  return { architecture: { kind: "mlp", hidden: mlpSizes(params).slice(1, -1) }, params, maxAction };
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
