/**
 * Worker of `MetaGradientPool` (`metagradient_pool.ts`): starts its own tensor backend on `init`, then
 * computes the meta-gradient of its slice of each job, meeting the other workers at the job's
 * shared-memory all-reduces. A failing job aborts the others' barriers instead of leaving them waiting.
 * @module
 */

/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />

import { type BackendName, initBackend } from "../../numerics/backend.ts";
import { abortJob, runWorkerJob, type WorkerJob, type WorkerReply } from "./metagradient_pool.ts";

type Message = { kind: "init"; backend: BackendName; blas?: string } | WorkerJob;

self.onmessage = async (e: MessageEvent<Message>) => {
  const msg = e.data;
  let reply: WorkerReply;
  try {
    if (msg.kind === "init") {
      const info = await initBackend(msg.backend, msg.blas === undefined ? {} : { blas: msg.blas });
      if ("kind" in info) throw new Error(info.message);
      reply = {
        ok: true,
        states: new Float32Array(),
        actions: new Float32Array(),
        outerLoss: 0,
        innerLoss: 0,
      };
    } else {
      reply = runWorkerJob(msg);
    }
  } catch (err) {
    if (msg.kind === "job") abortJob(msg.control);
    reply = { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
  self.postMessage(reply);
};
