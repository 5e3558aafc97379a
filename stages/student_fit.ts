/**
 * Students beyond the paper's protocol: any {@link StudentArchitecture} trained with any of Table 2's
 * optimizers (SGD, SGD with momentum, Adam, AdamW, with PyTorch's update rules), full batch or
 * minibatches, by autodiff (`tf.variableGrads`) on the plain BC loss — no hand-derived gradients for
 * residual nets or adaptive optimizers. BC on the whole dataset is such a student too. On the default
 * MLP with plain SGD this trainer and the inner loop of `student.ts` agree (tests/evaluate_test.ts).
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { fail } from "../core/errors.ts";
import { Adam, disposeMlp, initMlpWeights, mlpTensorList, mlpVariables } from "../numerics/mlp.ts";
import type { Rng } from "../numerics/random.ts";
import { architectureSizes, type Student, studentActions, type StudentArchitecture } from "./student.ts";
import type { SyntheticSet } from "./synset.ts";

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
  /** The network. */
  readonly architecture: StudentArchitecture;
  /** The optimizer and its hyperparameters. */
  readonly optimizer: StudentOptimizer;
  /** Optimizer steps. */
  readonly steps: number;
  /** c of the student's c·tanh output. */
  readonly maxAction: number;
  /** Rows per step, drawn uniformly with replacement; absent, 0 or ≥ the data: full batch. */
  readonly batchSize?: number;
}

/** A student from {@link fitStudent}, with its training loss before and after. */
export interface FittedStudent extends Student {
  /** Mean squared error on the training pairs before training (a fixed probe of ≤ 4096 rows when minibatched). */
  readonly initialLoss: number;
  /** The same after training. */
  readonly finalLoss: number;
}

/** (state, action) pairs to train on, states already normalized. */
export interface TrainingPairs {
  /** Pairs. */
  readonly n: number;
  /** State dimension. */
  readonly obsDim: number;
  /** Action dimension. */
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
  config: OptimizerSettings,
): StudentOptimizer {
  switch (name) {
    case "sgd":
      return { kind: "sgd", learningRate: config.sgdLr };
    case "sgdm":
      return { kind: "sgdm", learningRate: config.sgdmLr, momentum: config.sgdmMomentum };
    case "adam":
      return { kind: "adam", learningRate: config.adamLr };
    case "adamw":
      return { kind: "adamw", learningRate: config.adamwLr, weightDecay: config.adamwWeightDecay };
  }
}

/** The hyperparameters of Table 2's optimizers. */
export interface OptimizerSettings {
  /** Learning rate of plain SGD (the protocol's). */
  readonly sgdLr: number;
  /** Learning rate of SGD with momentum. */
  readonly sgdmLr: number;
  /** Its momentum. */
  readonly sgdmMomentum: number;
  /** Learning rate of Adam. */
  readonly adamLr: number;
  /** Learning rate of AdamW. */
  readonly adamwLr: number;
  /** Weight decay of AdamW. */
  readonly adamwWeightDecay: number;
}
