/**
 * Messages that say what is really wrong, and inputs that are not wrong at all: a dataset path
 * outside the task's read permission or naming a directory (not "does not exist"); a finite float64
 * beyond float32's range (not "Infinity"); a D4RL v0/v1 file without `timeouts` (accepted, and the
 * load report says so); the teacher command's settings refused before any work, with their range.
 * Files are written with Debian's h5py.
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { loadD4rlDataset } from "../datasets/d4rl.ts";
import { createRuntime, runStage } from "../core/runtime.ts";
import { loadStage } from "../stages/load.ts";
import { assertFails, python, REPO_ROOT, repoScratchDir, runUnderTask } from "./helpers.ts";

const DIR = await repoScratchDir("messages");

/** A hopper-shaped D4RL file of 40 rows: argv[2] JSON {remove: [keys], float64: bool, big: [row, dim]}. */
const WRITER = `
import sys, json, h5py, numpy as np
path, spec = sys.argv[1], json.loads(sys.argv[2])
n = 40; rng = np.random.default_rng(0)
dtype = np.float64 if spec.get("float64") else np.float32
data = {"observations": rng.normal(size=(n, 11)).astype(dtype), "actions": rng.uniform(-1, 1, (n, 3)).astype(dtype),
        "rewards": rng.normal(size=n).astype(dtype), "terminals": np.zeros(n, bool), "timeouts": np.zeros(n, bool)}
data["terminals"][19] = True
if "big" in spec: data["observations"][spec["big"][0], spec["big"][1]] = 1e300
for key in spec.get("remove", []): del data[key]
with h5py.File(path, "w") as f:
    for key, value in data.items(): f[key] = value
print("{}")
`;

async function writeFile(name: string, spec: Record<string, unknown>): Promise<string> {
  const path = `${DIR}/${name}`;
  await python(WRITER, join(REPO_ROOT, path), JSON.stringify(spec));
  return path;
}

Deno.test("a D4RL v0/v1 file without timeouts loads (no timeouts = none) and the load report says so", async () => {
  const file = await writeFile("hopper-v0.hdf5", { remove: ["timeouts"] });
  const data = await loadD4rlDataset(join(REPO_ROOT, file), { env: "hopper" });
  assert.equal(data.n, 40);
  assert.equal(data.timeoutsAbsent, true);
  assert.deepEqual(Array.from(data.timeouts), new Array(40).fill(0));
  const rt = createRuntime({ cacheRoot: await Deno.makeTempDir(), backend: "none" });
  const loaded = await runStage(rt, loadStage, {
    file: join(REPO_ROOT, file),
    sha256: "test",
    env: "hopper",
    minTransitions: 10,
  }, {})();
  assert.equal(loaded._tag, "Right", JSON.stringify(loaded));
  if (loaded._tag !== "Right") return;
  assert.match(
    String(loaded.right.manifest.metrics.timeouts),
    /^absent .*v0\/v1.*episodes end only at terminals/,
  );
  assert.deepEqual(Array.from(loaded.right.value.episodeLengths), [20, 20]);
  // A file with timeouts says nothing about them.
  const v2 = await writeFile("hopper-v2.hdf5", {});
  assert.equal((await loadD4rlDataset(join(REPO_ROOT, v2))).timeoutsAbsent, undefined);
});

Deno.test("a finite float64 beyond float32's range is named as an overflow, not as Infinity", async () => {
  const file = await writeFile("big.hdf5", { float64: true, big: [7, 4] });
  const failure = await assertFails(() => loadD4rlDataset(join(REPO_ROOT, file)), "numeric", [
    "'observations' holds 1e+300 at row 7, dim 4 (float64), which overflows float32",
  ]);
  assert.doesNotMatch(failure.error.message, /Infinity/);
});

Deno.test("a dataset outside the task's read permission, or a directory, is not said to be missing", async () => {
  const outside = await Deno.makeTempDir({ prefix: "obd-dataset-" });
  try {
    await python(WRITER, join(outside, "hopper.hdf5"), "{}");
    const r1 = await runUnderTask("pipeline", "commands/pipeline.ts", [
      join(outside, "hopper.hdf5"),
      "--until",
      "load",
    ]);
    assert.equal(r1.code, 1, r1.stderr);
    assert.match(
      r1.stderr.split("\n").at(-1)!,
      /^error\[load\/input\]: dataset file .*hopper\.hdf5 is outside what this task may read/,
    );
  } finally {
    await Deno.remove(outside, { recursive: true });
  }
  await Deno.mkdir(join(REPO_ROOT, DIR, "folder.hdf5"));
  const r2 = await runUnderTask("pipeline", "commands/pipeline.ts", [
    `${DIR}/folder.hdf5`,
    "--until",
    "load",
  ]);
  assert.equal(r2.code, 1, r2.stderr);
  assert.match(r2.stderr.split("\n").at(-1)!, /dataset file .*folder\.hdf5 is a directory/);
  const r3 = await runUnderTask("pipeline", "commands/pipeline.ts", [
    `${DIR}/nothing.hdf5`,
    "--until",
    "load",
  ]);
  assert.match(r3.stderr.split("\n").at(-1)!, /dataset file .*nothing\.hdf5 does not exist/);
});

Deno.test("teacher train: bad settings are refused before any work, with their valid range", async () => {
  for (
    const [set, pattern] of [
      ["td3bc.actorLr=-1", /teacher\.td3bc\.actorLr = -1 must be a positive number/],
      ["td3bc.hidden=0", /hidden layer 0 width = 0 is not an integer from 1 to 4096/],
      ["td3bc.hidden=100000000", /width = 100000000 is not an integer from 1 to 4096/],
    ] as const
  ) {
    const r = await runUnderTask("teacher", "commands/teacher.ts", ["train", "--steps", "5", "--set", set]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr.split("\n").length, 1, `one line, before the run starts:\n${r.stderr}`);
    assert.match(r.stderr, pattern);
  }
});
