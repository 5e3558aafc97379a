/**
 * A pool of rollout workers (one per core): splits a list of policies into contiguous chunks, rolls
 * them out in parallel and merges the results in order, so the outcome does not depend on the
 * number of workers' scheduling, only on the seeds.
 * @module
 */

import { ENV_SPECS, type EnvName } from "../envs/specs.ts";
import { concatTransitions, type LinearPolicy, type RolloutBatch, RunningStats } from "./ars.ts";
import type { RolloutReply, RolloutRequest } from "./ars_worker.ts";

/** Parallel rollouts of linear policies. `close()` when done. */
export class RolloutPool {
  readonly #workers: Worker[];
  readonly #pending = new Map<number, (reply: RolloutReply) => void>();
  #nextId = 0;

  constructor(readonly env: EnvName, size = Math.max(1, navigator.hardwareConcurrency || 1)) {
    this.#workers = Array.from({ length: size }, () => {
      const w = new Worker(new URL("./ars_worker.ts", import.meta.url), { type: "module" });
      w.onmessage = (e: MessageEvent<RolloutReply>) => {
        const resolve = this.#pending.get(e.data.id);
        this.#pending.delete(e.data.id);
        resolve?.(e.data);
      };
      return w;
    });
  }

  /**
   * One episode per policy. Chunk c uses reset/action noise seed `seed + c`, so a batch is
   * reproducible for a given seed and worker count.
   */
  async run(
    policies: readonly LinearPolicy[],
    options: {
      readonly seed: number;
      readonly rewardShift: number;
      readonly record: boolean;
      readonly actionNoise?: number;
    },
  ): Promise<RolloutBatch> {
    const chunks = Math.min(this.#workers.length, policies.length);
    const per = Math.ceil(policies.length / chunks);
    const replies = await Promise.all(
      Array.from({ length: chunks }, (_, c) => {
        const request: RolloutRequest = {
          id: this.#nextId++,
          env: this.env,
          seed: (options.seed + c) >>> 0,
          policies: policies.slice(c * per, (c + 1) * per),
          rewardShift: options.rewardShift,
          record: options.record,
          actionNoise: options.actionNoise ?? 0,
        };
        return new Promise<RolloutReply>((resolve) => {
          this.#pending.set(request.id, resolve);
          this.#workers[c].postMessage(request);
        });
      }),
    );
    const batches = replies.map((r) => {
      if ("error" in r) throw new Error(`rollout worker failed: ${r.error}`);
      return r.batch;
    });
    return mergeBatches(batches, ENV_SPECS[this.env]);
  }

  /** Terminates the workers. */
  close(): void {
    for (const w of this.#workers) w.terminate();
  }
}

function concat<T extends Float32Array | Float64Array | Int32Array | Uint8Array>(parts: T[]): T {
  const out = new (parts[0].constructor as { new (n: number): T })(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function mergeBatches(batches: RolloutBatch[], env: { obsDim: number; actDim: number }): RolloutBatch {
  const states = new RunningStats(batches[0].stateMean.length);
  for (const b of batches) states.merge(b.stateCount, b.stateMean, b.stateM2);
  const transitions = batches.every((b) => b.transitions)
    ? concatTransitions(batches.map((b) => b.transitions!), env.obsDim, env.actDim)
    : undefined;
  return {
    returns: concat(batches.map((b) => b.returns)),
    shiftedReturns: concat(batches.map((b) => b.shiftedReturns)),
    lengths: concat(batches.map((b) => b.lengths)),
    stateCount: states.count,
    stateMean: states.mean,
    stateM2: states.m2,
    transitions,
  };
}
