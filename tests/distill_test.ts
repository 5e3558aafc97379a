/** The distill stage: refusals before work, a DBC run through the runtime, snapshots, exact resume, divergence. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { initBackend } from "../numerics/backend.ts";
import { PipelineFailure } from "../core/errors.ts";
import { createRuntime, runStage } from "../core/runtime.ts";
import { directoryCheckpoint } from "../core/checkpoint.ts";
import { type StageContext, standaloneContext } from "../core/stage.ts";
import {
  distill,
  type DistillConfig,
  type DistilledSet,
  distillStage,
  QUICK_DISTILL,
  validateDistill,
} from "../stages/distill.ts";
import type { OfflineDataset } from "../stages/load.ts";
import { randomRealSet } from "../stages/synset.ts";
import { assertFails, loadEmbedded } from "./helpers.ts";

await initBackend("wasm");
const cache = await Deno.makeTempDir();
const rt = createRuntime({ cacheRoot: cache, backend: "wasm" });
const datasetArtifact = await loadEmbedded(rt);
const dataset = datasetArtifact.value;

const tiny: DistillConfig = {
  ...QUICK_DISTILL,
  objective: "dbc",
  seed: 0,
  student: { hiddenLayers: 2, width: 32, steps: 5, learningRate: 0.1 },
  synsetSize: 16,
  outerSteps: 6,
  outerBatches: 1,
  outerBatchSize: 64,
  evalEvery: 3,
  checkpointEvery: 2,
};

function context(workDir: string, onStep?: (step: number) => void): StageContext {
  return standaloneContext({
    progress: () => ({ update: (done) => onStep?.(done), finish() {} }),
    backend: "wasm",
    checkpoint: directoryCheckpoint(join(workDir, "checkpoint")),
  });
}

Deno.test("bad configs and mismatched inputs are refused before any work, naming the field", async () => {
  await assertFails(() => validateDistill({ ...tiny, synsetSize: dataset.n + 1 }, { dataset }), "config", [
    "distill.synsetSize",
    "larger than the dataset",
  ]);
  await assertFails(
    () => validateDistill({ ...tiny, student: { ...tiny.student, steps: 0 } }, { dataset }),
    "config",
    ["student.steps = 0"],
  );
  await assertFails(
    () => validateDistill({ ...tiny, student: { ...tiny.student, width: 1e8 } }, { dataset }),
    "config",
    ["student.width = 100000000", "4096"],
  );
  await assertFails(() => validateDistill({ ...tiny, outerMomentum: 1 }, { dataset }), "config", [
    "distill.outerMomentum",
  ]);
  await assertFails(() => validateDistill({ ...tiny, objective: "avpbc" }, { dataset }), "config", [
    "needs a teacher",
  ]);
  await assertFails(() => validateDistill({ ...tiny, objective: "nope" as never }, { dataset }), "config", [
    "objective nope is unknown",
  ]);
  const otherDensity = { weight: new Float32Array(dataset.n - 5) };
  const fakeTeacher = { obsDim: dataset.obsDim, actDim: dataset.actDim } as never;
  await assertFails(
    () =>
      validateDistill({ ...tiny, objective: "sdw-pbc" }, {
        dataset,
        teacher: fakeTeacher,
        density: otherDensity,
      }),
    "input",
    ["another dataset"],
  );
  const wrongTeacher = { obsDim: 17, actDim: 6 } as never;
  await assertFails(
    () => validateDistill({ ...tiny, objective: "pbc" }, { dataset, teacher: wrongTeacher }),
    "input",
    ["17-d states"],
  );
});

Deno.test("a DBC run through the runtime: finite curve, snapshots from Random selection's set, cached, checkpoint cadence not in the key", async () => {
  const result = await runStage(rt, distillStage, tiny, { dataset: datasetArtifact })();
  assert.equal(result._tag, "Right", JSON.stringify(result).slice(0, 400));
  const set = (result as { right: { value: DistilledSet } }).right.value;
  assert.equal(set.states.length, 16 * 11);
  assert.equal(set.actions.length, 16 * 3);
  assert.equal(set.curve.length, 6);
  assert.equal(set.seed, 0);
  assert.ok(set.curve.every((p) => Number.isFinite(p.outerLoss) && p.gradNorm > 0));
  assert.deepEqual(
    set.snapshots.map((s) => s.step),
    [0, 3],
    "the initial set and step 3 (step 6 is the set itself)",
  );
  // The distillation of seed 0 starts from Random selection's set of repeat 0.
  const start = randomRealSet(dataset, 16, 0);
  assert.deepEqual(set.snapshots[0].states, start.states);
  assert.deepEqual(set.snapshots[0].actions, start.actions);
  assert.notDeepEqual(set.snapshots[1].states, start.states, "the set moved");
  // Raw states are the normalized ones mapped back with the dataset's statistics.
  assert.ok(Math.abs(set.rawStates[5] - (set.states[5] * dataset.stateStd[5] + dataset.stateMean[5])) < 1e-5);
  const again = await runStage(rt, distillStage, tiny, { dataset: datasetArtifact })();
  assert.equal(again._tag === "Right" && again.right.fromCache, true);
  const otherCadence = await runStage(rt, distillStage, { ...tiny, checkpointEvery: 5 }, {
    dataset: datasetArtifact,
  })();
  assert.equal(
    otherCadence._tag === "Right" && otherCadence.right.fromCache,
    true,
    "checkpointEvery is a cadence, not in the key",
  );
  const otherSeed = await runStage(rt, distillStage, { ...tiny, seed: 1 }, { dataset: datasetArtifact })();
  assert.equal(otherSeed._tag === "Right" && otherSeed.right.fromCache, false);
});

Deno.test("a run killed after a checkpoint and resumed equals an uninterrupted run", async () => {
  const straight = await distill({ dataset }, { ...tiny, evalEvery: 0 }, context(await Deno.makeTempDir()));
  const workDir = await Deno.makeTempDir();
  const killed = distill(
    { dataset },
    { ...tiny, evalEvery: 0 },
    context(workDir, (step) => {
      if (step === 5) throw new Error("killed");
    }),
  );
  await assert.rejects(killed, /killed/);
  assert.ok((await Deno.stat(join(workDir, "checkpoint"))).isDirectory, "a checkpoint was left");
  const resumedFrom: number[] = [];
  const resumed = await distill({ dataset }, { ...tiny, evalEvery: 0 }, {
    ...context(workDir),
    log: (r) => void (r.event === "resume" && resumedFrom.push(r.step as number)),
  });
  assert.deepEqual(resumedFrom, [4]);
  assert.deepEqual(resumed.states, straight.states);
  assert.deepEqual(resumed.actions, straight.actions);
  assert.deepEqual(resumed.curve.map((p) => p.outerLoss), straight.curve.map((p) => p.outerLoss));
});

Deno.test("a non-finite loss stops the run with a numeric error and keeps the last good checkpoint", async () => {
  const workDir = await Deno.makeTempDir();
  const config = { ...tiny, evalEvery: 0 };
  // Run to a checkpoint at step 4, then "resume" on data whose states turned NaN.
  await assert.rejects(
    distill(
      { dataset },
      config,
      context(workDir, (step) => {
        if (step === 5) throw new Error("killed");
      }),
    ),
    /killed/,
  );
  const poisoned: OfflineDataset = {
    ...dataset,
    observations: dataset.observations.map((v, i) => (i % 11 === 3 ? NaN : v)),
  };
  const error = await distill({ dataset: poisoned }, config, context(workDir)).then(
    () => undefined,
    (e) => e,
  );
  assert.ok(error instanceof PipelineFailure, String(error));
  assert.equal(error.error.kind, "numeric");
  assert.match(error.error.message, /diverged at outer step 4: outer loss NaN/);
  assert.match(error.error.hint ?? "", /last good checkpoint \(step 4\) is kept/);
  const resumedFrom: number[] = [];
  await distill({ dataset }, config, {
    ...context(workDir),
    log: (r) => void (r.event === "resume" && resumedFrom.push(r.step as number)),
  });
  assert.deepEqual(resumedFrom, [4], "the checkpoint survived the failure");
});
