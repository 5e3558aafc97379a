/**
 * Tests of the D4RL facts and views: the alias registry, validation of bad datasets, D4RL's Q-learning
 * transitions, observation statistics (against numpy) and episode returns.
 *
 * Run: deno test --allow-read --allow-write --allow-run --allow-env tests/d4rl_test.ts
 */

import assert from "node:assert/strict";
import { assertFails, python } from "./helpers.ts";
import type { D4rlArrays, RawD4rlFile } from "../datasets/hdf5.ts";
import { writeD4rlFile } from "../datasets/hdf5.ts";
import {
  D4RL_DATASETS,
  d4rlAliases,
  episodeReturns,
  loadD4rlDataset,
  observationStats,
  qlearningView,
  resolveD4rlAlias,
  validateD4rl,
} from "../datasets/d4rl.ts";

function hopperArrays(n: number): D4rlArrays {
  return {
    n,
    obsDim: 11,
    actDim: 3,
    observations: Float32Array.from({ length: n * 11 }, (_, i) => Math.sin(i) * 3),
    actions: Float32Array.from({ length: n * 3 }, (_, i) => Math.cos(i)),
    rewards: Float32Array.from({ length: n }, (_, i) => i / 8),
    terminals: Uint8Array.from({ length: n }, (_, i) => (i === n - 3 ? 1 : 0)),
    timeouts: new Uint8Array(n),
  };
}

/** A RawD4rlFile built in memory, as readD4rlFile would return it for `arrays`. */
function rawOf(arrays: D4rlArrays, path = "mem.hdf5"): RawD4rlFile {
  const { n, obsDim, actDim } = arrays;
  return {
    path,
    keys: ["actions", "observations", "rewards", "terminals", "timeouts"],
    attrs: {},
    datasets: {
      observations: { data: arrays.observations, shape: [n, obsDim], dtype: "float32" },
      actions: { data: arrays.actions, shape: [n, actDim], dtype: "float32" },
      rewards: { data: arrays.rewards, shape: [n], dtype: "float32" },
      terminals: { data: arrays.terminals, shape: [n], dtype: "bool" },
      timeouts: { data: arrays.timeouts, shape: [n], dtype: "bool" },
    },
  };
}

Deno.test("registry: 15 datasets, short and long aliases, file names, URLs and known facts", () => {
  assert.equal(D4RL_DATASETS.length, 15);
  assert.equal(new Set(d4rlAliases()).size, 15);
  const hmr = resolveD4rlAlias("hopper-m-r");
  assert.equal(hmr.fileName, "hopper_medium_replay-v2.hdf5");
  assert.equal(
    hmr.url,
    "http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_v2/hopper_medium_replay-v2.hdf5",
  );
  assert.equal(hmr.sizeBytes, 75_854_457);
  assert.equal(hmr.sha256, "e121c5f7c9857a307baa9edc6a2c3b48e85fedb9ac316ecddd0f48ca7ef4e39b");
  assert.equal(hmr.samples, 402_000);
  assert.deepEqual([hmr.obsDim, hmr.actDim], [11, 3]);
  assert.equal(resolveD4rlAlias("hopper-medium-replay"), hmr);
  assert.equal(resolveD4rlAlias(" Hopper-Medium-Replay-v2 "), hmr);

  const wmr = resolveD4rlAlias("walker2d-medium-replay");
  assert.equal(wmr.alias, "walker2d-m-r");
  assert.equal(wmr.sizeBytes, 86_323_963);
  assert.equal(wmr.sha256, "e75de96a4f77acf7d4e0d6fdf0d7ccb177c26c44bb4388e4fd99f543ccfa18db");
  assert.equal(wmr.samples, undefined);

  const expected: Array<[string, string, number, number]> = [
    ["hopper-m", "hopper_medium-v2.hdf5", 11, 3],
    ["hopper-m-e", "hopper_medium_expert-v2.hdf5", 11, 3],
    ["hopper-r", "hopper_random-v2.hdf5", 11, 3],
    ["hopper-e", "hopper_expert-v2.hdf5", 11, 3],
    ["halfcheetah-m-r", "halfcheetah_medium_replay-v2.hdf5", 17, 6],
    ["halfcheetah-m-e", "halfcheetah_medium_expert-v2.hdf5", 17, 6],
    ["walker2d-r", "walker2d_random-v2.hdf5", 17, 6],
    ["walker2d-e", "walker2d_expert-v2.hdf5", 17, 6],
  ];
  for (const [alias, fileName, obsDim, actDim] of expected) {
    const info = resolveD4rlAlias(alias);
    assert.equal(info.fileName, fileName);
    assert.ok(info.url.endsWith(`/gym_mujoco_v2/${fileName}`));
    assert.deepEqual([info.obsDim, info.actDim], [obsDim, actDim]);
    assert.equal(info.sha256, undefined, `${alias}: unknown facts stay undefined`);
    assert.equal(info.sizeBytes, undefined);
  }
  assert.equal(resolveD4rlAlias("halfcheetah-medium-expert").kind, "medium_expert");
});

Deno.test("an unknown alias is a 'config' error listing the valid aliases", async () => {
  await assertFails(() => resolveD4rlAlias("hopper-mr"), "config", [
    "'hopper-mr'",
    "hopper-m-r",
    "walker2d-e",
  ]);
  await assertFails(() => resolveD4rlAlias("ant-m"), "config", ["halfcheetah-m-e"]);
});

Deno.test("validation accepts a good dataset and returns its arrays and dims", () => {
  const arrays = hopperArrays(30);
  const ds = validateD4rl(rawOf(arrays), { env: "hopper", minTransitions: 30 });
  assert.deepEqual([ds.n, ds.obsDim, ds.actDim], [30, 11, 3]);
  assert.equal(ds.observations, arrays.observations);
  assert.equal(ds.nextObservations, undefined);
  assert.equal(ds.path, "mem.hdf5");
});

Deno.test("validation: missing key and length mismatch in h5py-written files are 'input' errors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const writer = `
import sys, json, h5py, numpy as np
path, spec = sys.argv[1], json.loads(sys.argv[2])
n = 12
data = {"observations": np.zeros((n, 11), np.float32), "actions": np.zeros((n, 3), np.float32),
        "rewards": np.zeros(n, np.float32), "terminals": np.zeros(n, bool), "timeouts": np.zeros(n, bool)}
for key in spec.get("remove", []): del data[key]
for key, rows in spec.get("rows", {}).items(): data[key] = data[key][:rows]
with h5py.File(path, "w") as f:
    for key, value in data.items(): f[key] = value
print("{}")
`;
    const missing = `${dir}/missing.hdf5`;
    await python(writer, missing, JSON.stringify({ remove: ["terminals"] }));
    await assertFails(() => loadD4rlDataset(missing), "input", [
      missing,
      "missing D4RL key 'terminals'",
      "observations",
    ]);

    const short = `${dir}/short.hdf5`;
    await python(writer, short, JSON.stringify({ rows: { rewards: 11 } }));
    await assertFails(() => loadD4rlDataset(short), "input", [
      short,
      "'rewards' has 11 rows",
      "'observations' has 12",
    ]);

    const good = `${dir}/good.hdf5`;
    await python(writer, good, "{}");
    assert.equal((await loadD4rlDataset(good, { env: "hopper" })).n, 12);
    await assertFails(() => loadD4rlDataset(good, { env: "walker2d" }), "input", ["11/3", "walker2d (17/6)"]);
    await assertFails(() => loadD4rlDataset(good, { minTransitions: 13 }), "input", [
      "only 12 transitions",
      "13",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("validation: NaN in observations is a 'numeric' error naming the key and index", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/nan.hdf5`;
    const arrays = hopperArrays(20);
    (arrays.observations as Float32Array)[7 * 11 + 4] = NaN;
    (arrays.observations as Float32Array)[9 * 11] = NaN; // a later one: the first must be reported
    await writeD4rlFile(path, arrays);
    await assertFails(() => loadD4rlDataset(path), "numeric", [
      path,
      "'observations'",
      "NaN",
      "row 7, dim 4",
      "81",
    ]);

    const inf = hopperArrays(5);
    (inf.rewards as Float32Array)[3] = -Infinity;
    await assertFails(() => validateD4rl(rawOf(inf)), "numeric", ["'rewards'", "-Infinity", "row 3"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("validation: actions out of [-1, 1] are an 'input' error reporting the largest", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/oob.hdf5`;
    const arrays = hopperArrays(20);
    (arrays.actions as Float32Array)[5] = 1.25;
    (arrays.actions as Float32Array)[40] = -1.5;
    await writeD4rlFile(path, arrays);
    await assertFails(() => loadD4rlDataset(path), "input", [path, "max |action| = 1.5", "row 13, dim 1"]);

    const nearly = hopperArrays(5);
    (nearly.actions as Float32Array)[2] = 1.00005; // within the default tolerance of 1e-4
    assert.equal(validateD4rl(rawOf(nearly)).n, 5);
    await assertFails(() => validateD4rl(rawOf(nearly), { actionTolerance: 1e-5 }), "input", [
      "max |action|",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("validation: flags other than 0/1, wrong dtypes and wrong ranks are 'input' errors", async () => {
  const flags = hopperArrays(6);
  (flags.terminals as Uint8Array)[4] = 255; // an int8 -1 read as bytes
  await assertFails(() => validateD4rl(rawOf(flags)), "input", ["'terminals' holds 255 at row 4"]);

  const raw = rawOf(hopperArrays(6));
  const asInt = {
    ...raw,
    datasets: { ...raw.datasets, rewards: { ...raw.datasets.rewards!, dtype: "int32" } },
  };
  await assertFails(() => validateD4rl(asInt), "input", ["'rewards' has dtype int32"]);
  const flat = { ...raw, datasets: { ...raw.datasets, actions: { ...raw.datasets.actions!, shape: [18] } } };
  await assertFails(() => validateD4rl(flat), "input", ["'actions' has shape [18]", "[N, dim]"]);
});

/**
 * 8 rows, one observation dimension equal to 10 × row. Row 2 is a timeout, row 4 terminal, row 6 both
 * (the timeout wins, as in D4RL), row 7 the last.
 */
function handBuilt(withNext: boolean): D4rlArrays {
  return {
    n: 8,
    obsDim: 1,
    actDim: 1,
    observations: Float32Array.of(0, 10, 20, 30, 40, 50, 60, 70),
    actions: Float32Array.of(0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7),
    rewards: Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8),
    terminals: Uint8Array.of(0, 0, 0, 0, 1, 0, 1, 0),
    timeouts: Uint8Array.of(0, 0, 1, 0, 0, 0, 1, 0),
    ...(withNext ? { nextObservations: Float32Array.of(5, 15, 25, 35, 45, 55, 65, 75) } : {}),
  };
}

Deno.test("Q-learning view derived like D4RL's qlearning_dataset: exact rows, next obs and terminals", () => {
  const view = qlearningView(handBuilt(false));
  assert.equal(view.nextSource, "derived");
  assert.deepEqual(Array.from(view.rows), [0, 1, 3, 4, 5]); // drop timeouts 2 and 6, and the last row 7
  assert.equal(view.n, 5);
  assert.deepEqual(Array.from(view.observations), [0, 10, 30, 40, 50]);
  assert.deepEqual(Array.from(view.nextObservations), [10, 20, 40, 50, 60]); // terminal row 4 keeps obs[5]
  assert.deepEqual(Array.from(view.terminals), [0, 0, 0, 1, 0]);
  assert.deepEqual(Array.from(view.rewards), [1, 2, 4, 5, 6]);
  assert.deepEqual(Array.from(view.actions), Array.from(Float32Array.of(0, 0.1, 0.3, 0.4, 0.5)));

  // Stored next_observations: every row, its own next observation; useStored: false reproduces D4RL.
  const stored = qlearningView(handBuilt(true));
  assert.equal(stored.nextSource, "stored");
  assert.deepEqual(Array.from(stored.rows), [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(Array.from(stored.nextObservations), [5, 15, 25, 35, 45, 55, 65, 75]);
  assert.deepEqual(Array.from(stored.terminals), [0, 0, 0, 0, 1, 0, 1, 0]);
  assert.deepEqual(Array.from(qlearningView(handBuilt(true), { useStored: false }).rows), [0, 1, 3, 4, 5]);
});

Deno.test("Q-learning view of a dataset with no complete transition is an 'input' error", async () => {
  const one = { ...handBuilt(false), n: 1, observations: Float32Array.of(0), actions: Float32Array.of(0) };
  await assertFails(() => qlearningView(one), "input", ["1-row", "empty"]);
});

Deno.test("observation statistics: hand-computed and numpy (float64, ddof=0) agree, std includes 1e-3", async () => {
  const small = observationStats(Float32Array.of(1, 10, 2, 10, 3, 10, 4, 10), 2);
  assert.equal(small.count, 4);
  assert.deepEqual(Array.from(small.mean), [2.5, 10]);
  assert.ok(Math.abs(small.std[0] - (Math.sqrt(1.25) + 1e-3)) < 1e-12);
  assert.equal(small.std[1], 1e-3); // a constant dimension

  const n = 500, dim = 11;
  const obs = Float32Array.from(
    { length: n * dim },
    (_, i) => Math.sin(i * 0.37) * (1 + (i % dim)) + (i % dim) * 3,
  );
  const stats = observationStats(obs, dim);
  const numpy = await python(
    `
import sys, json, numpy as np
x = np.array(json.loads(sys.argv[1]), dtype=np.float32).reshape(-1, int(sys.argv[2]))
x = x.astype(np.float64)
print(json.dumps({"mean": x.mean(0).tolist(), "std": (x.std(0) + 1e-3).tolist()}))
`,
    JSON.stringify(Array.from(obs)),
    String(dim),
  );
  for (let d = 0; d < dim; d++) {
    assert.ok(
      Math.abs(stats.mean[d] - numpy.mean[d]) < 1e-9,
      `mean[${d}] ${stats.mean[d]} vs ${numpy.mean[d]}`,
    );
    assert.ok(Math.abs(stats.std[d] - numpy.std[d]) < 1e-9, `std[${d}] ${stats.std[d]} vs ${numpy.std[d]}`);
  }
  assert.ok(stats.mean[10] > 25 && stats.mean[10] < 35, `mean[10] = ${stats.mean[10]}`);
});

Deno.test("episode returns split at terminals and timeouts; a trailing partial episode is counted and marked", () => {
  const result = episodeReturns(handBuilt(false));
  // Episodes: rows 0-2 (timeout at 2), 3-4 (terminal at 4), 5-6 (both at 6), 7 (unfinished).
  assert.deepEqual(Array.from(result.returns), [1 + 2 + 3, 4 + 5, 6 + 7, 8]);
  assert.deepEqual(Array.from(result.lengths), [3, 2, 2, 1]);
  assert.equal(result.lastIncomplete, true);

  const closed = episodeReturns({
    n: 4,
    rewards: Float32Array.of(0.5, 0.25, 1, 2),
    terminals: Uint8Array.of(0, 1, 0, 0),
    timeouts: Uint8Array.of(0, 0, 0, 1),
  });
  assert.deepEqual(Array.from(closed.returns), [0.75, 3]);
  assert.deepEqual(Array.from(closed.lengths), [2, 2]);
  assert.equal(closed.lastIncomplete, false);
});

Deno.test("a file we write loads, validates for hopper and gives the expected Q-learning view", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/hopper.hdf5`;
    const arrays = {
      ...hopperArrays(40),
      timeouts: Uint8Array.from({ length: 40 }, (_, i) => (i % 10 === 9 ? 1 : 0)),
    };
    await writeD4rlFile(path, arrays, { env: "hopper", kind: "medium_replay" });
    const ds = await loadD4rlDataset(path, { env: "hopper", minTransitions: 40 });
    assert.deepEqual(ds.attrs, { env: "hopper", kind: "medium_replay" });
    assert.deepEqual(ds.rewards, arrays.rewards);
    const view = qlearningView(ds);
    // Rows 0..38 minus the timeouts 9, 19, 29 (row 39 is the last row anyway).
    assert.equal(view.n, 36);
    assert.equal(view.rows[9], 10);
    assert.equal(episodeReturns(ds).returns.length, 5); // 4 timeouts + the terminal at row 37
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
