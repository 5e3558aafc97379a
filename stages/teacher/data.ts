/**
 * The offline data as the teacher algorithms consume it: normalized states on the tensor backend
 * (so a GPU backend gathers minibatches without a host round trip), uniform minibatch indices from
 * a per-step random stream, and Cal-QL's Monte-Carlo returns-to-go.
 *
 * Randomness: step t of a run with seed s draws everything (indices, noise) from
 * `new Rng(deriveSeed(s, t))` (`numerics/random.ts`), a fresh stream per step. A run resumed from a checkpoint at step t therefore
 * draws exactly what the uninterrupted run would have drawn.
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import type { Rng } from "../../numerics/random.ts";
import { normalizeStates, type OfflineDataset } from "../load.ts";

/** The dataset on the backend. States are normalized with the dataset's mean and std. */
export interface ReplayTensors {
  readonly n: number;
  readonly obsDim: number;
  readonly actDim: number;
  readonly states: tf.Tensor2D;
  readonly actions: tf.Tensor2D;
  readonly rewards: tf.Tensor1D;
  readonly nextStates: tf.Tensor2D;
  /** 1 − terminal: whether to bootstrap. */
  readonly notDone: tf.Tensor1D;
  /** Discounted return-to-go of each transition (Cal-QL's lower bound), when computed. */
  readonly mcReturns?: tf.Tensor1D;
}

/** A minibatch (rows of {@link ReplayTensors}). */
export interface Batch {
  readonly states: tf.Tensor2D;
  readonly actions: tf.Tensor2D;
  readonly rewards: tf.Tensor1D;
  readonly nextStates: tf.Tensor2D;
  readonly notDone: tf.Tensor1D;
  readonly mcReturns?: tf.Tensor1D;
}

/** Uploads `data` (normalized with its own statistics) and, when given, the MC returns. */
export function replayTensors(data: OfflineDataset, mcReturns?: Float32Array): ReplayTensors {
  const { n, obsDim, actDim } = data;
  const notDone = new Float32Array(n);
  for (let i = 0; i < n; i++) notDone[i] = data.terminals[i] ? 0 : 1;
  return {
    n,
    obsDim,
    actDim,
    states: tf.tensor2d(normalizeStates(data.observations, data), [n, obsDim]),
    actions: tf.tensor2d(data.actions, [n, actDim]),
    rewards: tf.tensor1d(data.rewards),
    nextStates: tf.tensor2d(normalizeStates(data.nextObservations, data), [
      n,
      obsDim,
    ]),
    notDone: tf.tensor1d(notDone),
    mcReturns: mcReturns && tf.tensor1d(mcReturns),
  };
}

/** Frees the tensors of `replay`. */
export function disposeReplay(replay: ReplayTensors): void {
  tf.dispose([replay.states, replay.actions, replay.rewards, replay.nextStates, replay.notDone]);
  if (replay.mcReturns) replay.mcReturns.dispose();
}

/** `batchSize` indices uniform in [0, n), with replacement (`np.random.randint(0, n, size)`). */
export function sampleIndices(rng: Rng, n: number, batchSize: number): Int32Array {
  const idx = new Int32Array(batchSize);
  for (let i = 0; i < batchSize; i++) idx[i] = rng.int(n);
  return idx;
}

/** Gathers rows `idx` of `replay` (inside the caller's `tf.tidy`). */
export function gatherBatch(replay: ReplayTensors, idx: Int32Array): Batch {
  const i = tf.tensor1d(idx, "int32");
  return {
    states: tf.gather(replay.states, i),
    actions: tf.gather(replay.actions, i),
    rewards: tf.gather(replay.rewards, i),
    nextStates: tf.gather(replay.nextStates, i),
    notDone: tf.gather(replay.notDone, i),
    mcReturns: replay.mcReturns && tf.gather(replay.mcReturns, i),
  };
}

/** A batch from host arrays (tests, and peers that fix the batch). */
export function batchFromArrays(b: {
  states: Float32Array;
  actions: Float32Array;
  rewards: Float32Array;
  nextStates: Float32Array;
  notDone: Float32Array;
  mcReturns?: Float32Array;
  obsDim: number;
  actDim: number;
}): Batch {
  const n = b.rewards.length;
  return {
    states: tf.tensor2d(b.states, [n, b.obsDim]),
    actions: tf.tensor2d(b.actions, [n, b.actDim]),
    rewards: tf.tensor1d(b.rewards),
    nextStates: tf.tensor2d(b.nextStates, [n, b.obsDim]),
    notDone: tf.tensor1d(b.notDone),
    mcReturns: b.mcReturns && tf.tensor1d(b.mcReturns),
  };
}

/**
 * Monte-Carlo discounted returns-to-go, Cal-QL's calibration targets (CORL `get_return_to_go`):
 * the data is cut into episodes where a transition is terminal, where the next row does not
 * continue it (‖s_{t+1} − s'_t‖ > 1e-6), at the last row, or after `horizon` steps; within an
 * episode, backwards, G_t = r_t + γ (1 − d_t) G_{t+1}, with G = 0 after the episode's last step.
 */
export function returnsToGo(
  data: Pick<OfflineDataset, "n" | "obsDim" | "observations" | "nextObservations" | "rewards" | "terminals">,
  discount: number,
  horizon = 1000,
): Float32Array {
  const { n, obsDim } = data;
  const out = new Float32Array(n);
  let start = 0;
  for (let t = 0; t < n; t++) {
    let last = t === n - 1 || t - start + 1 === horizon;
    if (!last) {
      let sq = 0;
      for (let j = 0; j < obsDim; j++) {
        const d = data.observations[(t + 1) * obsDim + j] - data.nextObservations[t * obsDim + j];
        sq += d * d;
      }
      last = Math.sqrt(sq) > 1e-6;
    }
    if (data.terminals[t] || last) {
      let g = 0;
      for (let i = t; i >= start; i--) {
        g = data.rewards[i] + discount * g * (data.terminals[i] ? 0 : 1);
        out[i] = g;
      }
      start = t + 1;
    }
  }
  return out;
}
