/** Collected datasets in the eyes of h5py, and the collect command's handling of bad arguments. */
import assert from "node:assert/strict";
import { EMBEDDED_DATASET } from "../stages/load.ts";
import { python, REPO_ROOT, runUnderTask } from "./helpers.ts";

Deno.test("the embedded dataset opens in h5py with D4RL's keys, dtypes and shapes, and its provenance", async () => {
  const facts = await python(`
import h5py, json
f = h5py.File(${JSON.stringify(EMBEDDED_DATASET.file)}, "r")
print(json.dumps({
  "keys": sorted(f.keys()),
  "dtypes": {k: str(f[k].dtype) for k in f.keys()},
  "shapes": {k: list(f[k].shape) for k in f.keys()},
  "attrs": {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()},
  "ends": int(f["terminals"][:].sum() + f["timeouts"][:].sum()),
}))`) as {
    keys: string[];
    dtypes: Record<string, string>;
    shapes: Record<string, number[]>;
    attrs: Record<string, unknown>;
    ends: number;
  };
  assert.deepEqual(facts.keys, [
    "actions",
    "next_observations",
    "observations",
    "rewards",
    "terminals",
    "timeouts",
  ]);
  assert.deepEqual(facts.dtypes, {
    actions: "float32",
    next_observations: "float32",
    observations: "float32",
    rewards: "float32",
    terminals: "bool",
    timeouts: "bool",
  });
  const n = facts.shapes.rewards[0];
  assert.ok(n > 30_000);
  assert.deepEqual(facts.shapes, {
    actions: [n, 3],
    next_observations: [n, 11],
    observations: [n, 11],
    rewards: [n],
    terminals: [n],
    timeouts: [n],
  });
  assert.equal(facts.attrs.env, "hopper");
  assert.equal(facts.attrs.kind, "medium-replay");
  assert.equal(facts.attrs.seed, 0);
  assert.match(String(facts.attrs.note), /not D4RL/);
  assert.match(String(facts.attrs.command), /^deno task collect hopper medium-replay/);
  assert.ok(Number(facts.attrs.medium_score) >= 100 / 3);
  assert.equal(facts.attrs.exploration_noise, 0.3, "the replay is the learner's noisy exploration");
  assert.equal(facts.attrs.replay_episodes, 8);
  assert.equal(facts.ends, 354, "every kept episode ends in a terminal or a timeout");
});

Deno.test("the collect command refuses bad arguments in one line and never overwrites a file", async () => {
  const kind = await runUnderTask("collect", "commands/collect.ts", [
    "hopper",
    "mediocre",
    "--out",
    "data/x.hdf5",
  ]);
  assert.equal(kind.code, 2);
  assert.equal(
    kind.stderr,
    'error[config]: unknown dataset kind "mediocre" — choose one of random, medium, medium-replay, expert, medium-expert',
  );
  const existing = await runUnderTask("collect", "commands/collect.ts", [
    "hopper",
    "random",
    "--out",
    EMBEDDED_DATASET.file,
  ]);
  assert.equal(existing.code, 2);
  assert.match(existing.stderr, /already exists/);
  assert.equal(existing.stderr.split("\n").length, 1);
  const count = await runUnderTask("collect", "commands/collect.ts", [
    "hopper",
    "random",
    "--out",
    "data/y.hdf5",
    "--transitions",
    "lots",
  ]);
  assert.match(count.stderr, /--transitions lots is not a non-negative integer/);
});

Deno.test("collect makes the output's directory before any work, and a path it may not write fails at once", async () => {
  const dir = `data/test-collect-${crypto.randomUUID().slice(0, 8)}`;
  try {
    const made = await runUnderTask("collect", "commands/collect.ts", [
      "hopper",
      "random",
      "--out",
      `${dir}/nested/random.hdf5`,
      "--transitions",
      "2000",
    ]);
    assert.equal(made.code, 0, made.stderr);
    assert.ok((await Deno.stat(`${REPO_ROOT}${dir}/nested/random.hdf5`)).isFile);
  } finally {
    await Deno.remove(`${REPO_ROOT}${dir}`, { recursive: true }).catch(() => {});
  }
  const outside = await runUnderTask("collect", "commands/collect.ts", [
    "hopper",
    "random",
    "--out",
    "/tmp/obd-no-permission/random.hdf5",
  ]);
  assert.equal(outside.code, 2);
  // One line, the error: refused before the run started (its first line is "collect: …").
  assert.equal(outside.stderr.split("\n").length, 1, outside.stderr);
  assert.match(outside.stderr, /^error\[config\]: --out .* is outside the directories this task may write/);
});
