/**
 * A worker thread running ARS rollouts on its own MuJoCo instance, so that collection uses every
 * core. Protocol: one `RolloutRequest` in, one `RolloutReply` out (typed arrays transferred).
 * @module
 */

/// <reference lib="deno.worker" />
import { VecLocomotionEnv } from "../envs/locomotion.ts";
import type { EnvName } from "../envs/specs.ts";
import { Rng } from "../numerics/random.ts";
import { type LinearPolicy, type RolloutBatch, rollouts, sliceTransitions } from "./ars.ts";

/** A batch of episodes to roll out, one per policy. */
export interface RolloutRequest {
  readonly id: number;
  readonly env: EnvName;
  /** Seed of the reset noise and action noise of this batch. */
  readonly seed: number;
  readonly policies: readonly LinearPolicy[];
  readonly rewardShift: number;
  readonly record: boolean;
  readonly actionNoise: number;
}

/** The answer to a `RolloutRequest`. */
export type RolloutReply = { readonly id: number; readonly batch: RolloutBatch } | {
  readonly id: number;
  readonly error: string;
};

self.onmessage = async (event: MessageEvent<RolloutRequest>) => {
  const request = event.data;
  let env: VecLocomotionEnv | undefined;
  try {
    env = await VecLocomotionEnv.create(request.env, request.policies.length, { seed: request.seed });
    const raw = rollouts(env, request.policies, {
      rewardShift: request.rewardShift,
      record: request.record,
      actionNoise: request.actionNoise,
      rng: new Rng(request.seed ^ 0x5bd1e995),
    });
    const { obsDim, actDim } = env.spec;
    const batch = raw.transitions
      ? { ...raw, transitions: sliceTransitions(raw.transitions, 0, raw.transitions.size, obsDim, actDim) }
      : raw;
    const t = batch.transitions;
    const transfer = t
      ? [t.observations, t.actions, t.rewards, t.nextObservations, t.terminals, t.timeouts].map((a) =>
        a.buffer as ArrayBuffer
      )
      : [];
    self.postMessage({ id: request.id, batch } satisfies RolloutReply, { transfer });
  } catch (e) {
    self.postMessage({ id: request.id, error: (e as Error).stack ?? String(e) } satisfies RolloutReply);
  } finally {
    env?.dispose();
  }
};
