/**
 * The resumable training loop every long stage runs on (distillation, the teachers): `total` steps,
 * a checkpoint every `checkpointEvery`, and a restart from the last checkpoint of the same run.
 * Each step's randomness must come from the step alone (`deriveSeed(seed, t)`), so a resumed run
 * ends exactly where an uninterrupted one does.
 * @module
 */

import { canonicalJson } from "./hash.ts";
import { exitIfInterrupted } from "./interrupt.ts";
import type { CheckpointStore } from "./stage.ts";

/** What a loop needs from its algorithm. */
export interface ResumableLoop {
  /** Where checkpoints go (a stage's `ctx.checkpoint`). */
  readonly checkpoint: CheckpointStore;
  /**
   * What the state belongs to (the config, the inputs' identities): a checkpoint saved under
   * another fingerprint is ignored, never resumed from.
   */
  readonly fingerprint: unknown;
  /** Steps in all. */
  readonly total: number;
  /** Save every this many steps (not after the last: the result is cached then). */
  readonly checkpointEvery: number;
  /** The state to save after step t (plain values and typed arrays). */
  readonly snapshot: () => unknown;
  /** Restores a saved state; returns the number of steps it had done. */
  readonly restore: (saved: unknown) => number;
  /** Step t (0-based). */
  readonly step: (t: number) => Promise<void> | void;
}

/** Runs the loop from its last checkpoint (or from step 0); returns the step it resumed at. */
export async function runResumable(loop: ResumableLoop): Promise<number> {
  const fingerprint = canonicalJson(loop.fingerprint);
  const saved = await loop.checkpoint.load() as { fingerprint?: string; state?: unknown } | undefined;
  let start = 0;
  if (saved?.fingerprint === fingerprint && saved.state !== undefined) {
    start = loop.restore(saved.state);
    if (!Number.isInteger(start) || start < 0 || start > loop.total) start = 0;
  }
  for (let t = start; t < loop.total; t++) {
    exitIfInterrupted();
    await loop.step(t);
    const done = t + 1;
    if (done % loop.checkpointEvery === 0 && done < loop.total) {
      await loop.checkpoint.save({ fingerprint, state: loop.snapshot() });
    }
  }
  return start;
}
