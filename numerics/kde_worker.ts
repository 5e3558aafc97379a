/**
 * Worker of the pruned KDE (`treeKdeLogDensity` in `kde.ts`): takes query blocks from a shared
 * counter until none is left, writing into the shared outputs, then reports its work counters.
 * @module
 */

/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />

import { type KdeSetup, makeEvaluator } from "./kde.ts";
import type { BlockStats } from "./kde_tree.ts";

self.onmessage = (e: MessageEvent<{ setup: KdeSetup; index: number; control: Int32Array }>) => {
  const { setup, index, control } = e.data;
  try {
    const evaluator = makeEvaluator(setup, index);
    const { problem } = setup;
    const stats: BlockStats = { pairs: 0, kernels: 0, skipped: 0, leaves: 0 };
    const blocks = problem.blockStart.length;
    for (;;) {
      const b = Atomics.add(control, 0, 1);
      if (b >= blocks) break;
      evaluator.evaluate(b, stats);
      Atomics.add(control, 1, problem.blockEnd[b] - problem.blockStart[b]);
    }
    self.postMessage({ ok: true, stats });
  } catch (err) {
    self.postMessage({ ok: false, error: err instanceof Error ? err.message : String(err) });
  }
};
