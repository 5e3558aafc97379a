/**
 * Minari datasets: files in Minari's layout written by Debian's h5py (episodes cut from the embedded
 * dataset, the last one truncated), read through the load stage and compared with numpy's view of
 * the same rows; bad directories refused before any work; and a quick study on one through the
 * pipeline command under its own task permissions.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createRuntime, runStage } from "../core/runtime.ts";
import { silentProgress } from "../core/progress.ts";
import { readMinariMetadata } from "../datasets/minari.ts";
import { loadStage, locateDataset, type OfflineDataset, scoreScale } from "../stages/load.ts";
import { caughtFailure, python, REPO_ROOT, runUnderTask } from "./helpers.ts";
import { evaluatePolicy } from "../envs/rollout.ts";
import { normalizedScore } from "../envs/specs.ts";

/**
 * Writes a Minari dataset directory from the first `episodes` episodes of the embedded dataset:
 * observations (T + 1 rows, float64), actions (float32), rewards (float64), terminations and
 * truncations (bool) per `episode_<i>` group, and metadata.json as Minari writes it. The last episode
 * is cut after `cut` steps and marked truncated. `tweak` names a defect to plant. Prints numpy's
 * view of the same rows.
 */
const WRITE_MINARI = `
import h5py, json, sys, os
import numpy as np
out, episodes, cut, env_id, tweak, reference = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
src = h5py.File("data/embedded/hopper_medium_replay-obd.hdf5", "r")
obs, act, rew = src["observations"][:], src["actions"][:], src["rewards"][:]
nxt, term, tout = src["next_observations"][:], src["terminals"][:], src["timeouts"][:]
ends = np.flatnonzero(term | tout)
data = os.path.join(out, "data")
os.makedirs(data, exist_ok=True)
rows_o, rows_n, rows_a, rows_r, rows_t, rows_u, lengths, returns = [], [], [], [], [], [], [], []
with h5py.File(os.path.join(data, "main_data.hdf5"), "w") as f:
    start = 0
    for e in range(episodes):
        end = ends[e] + 1
        last = e == episodes - 1
        if last:
            end = start + cut
        o = np.concatenate([obs[start:end], nxt[end - 1:end]]).astype(np.float64)
        a = act[start:end]
        r = rew[start:end].astype(np.float64)
        terminated = np.zeros(end - start, dtype=bool)
        truncated = np.zeros(end - start, dtype=bool)
        if last:
            truncated[-1] = True
        else:
            terminated[-1] = bool(term[end - 1])
            truncated[-1] = bool(tout[end - 1])
        if tweak == "short-observations" and e == 1:
            o = o[:-1]
        g = f.create_group(f"episode_{e}")
        g.attrs["id"] = e
        g.attrs["total_steps"] = int(end - start)
        g.create_dataset("observations", data=o)
        g.create_dataset("actions", data=a)
        g.create_dataset("rewards", data=r)
        g.create_dataset("terminations", data=terminated)
        g.create_dataset("truncations", data=truncated)
        rows_o.append(o[:-1]); rows_n.append(o[1:]); rows_a.append(a); rows_r.append(r)
        rows_t.append(terminated); rows_u.append(truncated)
        lengths.append(int(end - start)); returns.append(float(r.sum()))
        start = ends[e] + 1
spec = {"id": env_id, "entry_point": "gymnasium.envs.mujoco:HopperEnv", "reward_threshold": 3800.0,
        "nondeterministic": False, "max_episode_steps": 1000, "order_enforce": True,
        "disable_env_checker": False, "kwargs": {"reset_noise_scale": 0.5} if tweak == "kwargs" else {},
        "additional_wrappers": [], "vector_entry_point": None}
box = lambda n, dtype: json.dumps({"type": "Box", "dtype": dtype, "shape": [n], "low": [-np.inf] * n, "high": [np.inf] * n})
meta = {"dataset_id": "mujoco/hopper/test-v0", "total_episodes": episodes, "total_steps": int(sum(lengths)),
        "data_format": "hdf5", "env_spec": json.dumps(spec), "observation_space": box(11, "float64"),
        "action_space": box(3, "float32"), "minari_version": "0.5.1", "algorithm_name": "embedded ARS"}
if reference == "yes":
    meta["ref_min_score"], meta["ref_max_score"] = -20.0, 3200.0
if tweak != "no-metadata":
    with open(os.path.join(data, "metadata.json"), "w") as f:
        json.dump(meta, f)
O = np.concatenate(rows_o)
print(json.dumps({
    "n": int(O.shape[0]), "lengths": lengths, "returns": returns,
    "terminalRows": np.flatnonzero(np.concatenate(rows_t)).tolist(),
    "timeoutRows": np.flatnonzero(np.concatenate(rows_u)).tolist(),
    "mean": O.astype(np.float32).astype(np.float64).mean(0).tolist(),
    "std": (O.astype(np.float32).astype(np.float64).std(0) + 1e-3).tolist(),
    "obsSum": float(O.astype(np.float32).sum(dtype=np.float64)),
    "nextSum": float(np.concatenate(rows_n).astype(np.float32).sum(dtype=np.float64)),
    "actSum": float(np.concatenate(rows_a).sum(dtype=np.float64)),
}))
`;

interface Written {
  n: number;
  lengths: number[];
  returns: number[];
  terminalRows: number[];
  timeoutRows: number[];
  mean: number[];
  std: number[];
  obsSum: number;
  nextSum: number;
  actSum: number;
}

async function writeMinari(
  dir: string,
  options: { episodes?: number; cut?: number; envId?: string; tweak?: string; reference?: boolean } = {},
): Promise<Written> {
  const { episodes = 6, cut = 40, envId = "Hopper-v3", tweak = "none", reference = true } = options;
  return await python(
    `import os; os.chdir(${JSON.stringify(REPO_ROOT)})\n` + WRITE_MINARI,
    dir,
    String(episodes),
    String(cut),
    envId,
    tweak,
    reference ? "yes" : "no",
  );
}

const sum = (a: ArrayLike<number>) => Array.from(a).reduce((s, x) => s + x, 0);

const quiet = { note: () => {} };

Deno.test("a Minari directory written by h5py loads as numpy sees it: T + 1 observations, the truncated last episode a timeout", async () => {
  const dir = await Deno.makeTempDir({ prefix: "minari-" });
  const cache = await Deno.makeTempDir();
  try {
    const want = await writeMinari(dir);
    const notes: string[] = [];
    const located = await locateDataset(dir, silentProgress, { note: (l) => notes.push(l) });
    assert.equal(located.env, "hopper");
    assert.ok(located.minari);
    assert.match(notes.join("\n"), /Minari mujoco\/hopper\/test-v0 \(Hopper-v3\).*sha256 [0-9a-f]{64}/);
    const rt = createRuntime({ cacheRoot: cache, backend: "wasm" });
    const result = await runStage(rt, loadStage, {
      file: located.file,
      sha256: located.sha256,
      env: located.env,
      minari: located.minari,
      minTransitions: 1,
    }, {})();
    assert.equal(result._tag, "Right", JSON.stringify(result).slice(0, 400));
    const data = (result as { right: { value: OfflineDataset } }).right.value;
    // Every step is a transition with its stored next observation: none is dropped at the cut.
    assert.equal(data.n, want.n);
    assert.deepEqual(Array.from(data.episodeLengths), want.lengths);
    data.episodeReturns.forEach((r, i) => assert.ok(Math.abs(r - want.returns[i]) < 1e-3, `episode ${i}`));
    const flagged = (flags: Uint8Array) => Array.from(flags).flatMap((f, i) => f ? [i] : []);
    assert.deepEqual(flagged(data.terminals), want.terminalRows);
    assert.equal(want.timeoutRows.at(-1), want.n - 1, "the writer truncated the last episode");
    assert.equal(data.terminals[want.n - 1], 0, "a truncation is not a terminal");
    assert.ok(Math.abs(sum(data.observations) - want.obsSum) < 1e-6 * Math.abs(want.obsSum) + 1e-3);
    assert.ok(Math.abs(sum(data.nextObservations) - want.nextSum) < 1e-6 * Math.abs(want.nextSum) + 1e-3);
    assert.ok(Math.abs(sum(data.actions) - want.actSum) < 1e-4);
    data.stateMean.forEach((m, d) => assert.ok(Math.abs(m - want.mean[d]) < 1e-5, `mean ${d}`));
    data.stateStd.forEach((s, d) => assert.ok(Math.abs(s - want.std[d]) < 1e-5, `std ${d}`));
    assert.deepEqual(data.reference, {
      min: -20,
      max: 3200,
      source: "mujoco/hopper/test-v0 metadata.json",
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("minari:<id> is found under $MINARI_DATASETS_PATH, else ~/.minari/datasets; absent, the error says where it looked and how to get it", async () => {
  const root = await Deno.makeTempDir();
  const home = await Deno.makeTempDir();
  try {
    await writeMinari(join(home, ".minari/datasets/mujoco/hopper/test-v0"), { reference: false });
    const env = (vars: Record<string, string>) => (name: string) => vars[name];
    const fromHome = await locateDataset("minari:mujoco/hopper/test-v0", silentProgress, {
      ...quiet,
      env: env({ HOME: home, MINARI_DATASETS_PATH: root }),
    });
    assert.equal(fromHome.origin, "~/.minari/datasets");
    assert.equal(fromHome.env, "hopper", "a Hopper-v3 dataset runs in our Hopper-v3");
    await writeMinari(join(root, "mujoco/hopper/test-v0"), {
      reference: false,
      episodes: 3,
      envId: "Hopper-v5",
    });
    const fromVar = await locateDataset("minari:mujoco/hopper/test-v0", silentProgress, {
      ...quiet,
      env: env({ HOME: home, MINARI_DATASETS_PATH: root }),
    });
    assert.equal(fromVar.origin, "$MINARI_DATASETS_PATH");
    assert.equal(fromVar.env, "hopper-v5", "a Hopper-v5 dataset runs in Hopper-v5");
    assert.equal(
      scoreScale({ env: "hopper-v5" }),
      "raw returns (Hopper-v5 has no reference returns and the dataset gives none)",
    );
    assert.match(
      scoreScale({ env: "hopper" }),
      /^D4RL normalized \(Hopper-v3 references -20\.272305 … 3234\.3\)$/,
    );
    assert.ok(fromVar.file.startsWith(root));
    const missing = await caughtFailure(() =>
      locateDataset("minari:mujoco/walker2d/medium-v0", silentProgress, {
        ...quiet,
        env: env({ HOME: home }),
      })
    );
    assert.equal(missing.error.kind, "input");
    assert.match(
      missing.error.message,
      /Minari dataset mujoco\/walker2d\/medium-v0 not found \(looked in .*\.minari\/datasets\/mujoco\/walker2d\/medium-v0\/data\)/,
    );
    assert.match(missing.error.hint!, /minari download mujoco\/walker2d\/medium-v0/);
  } finally {
    await Deno.remove(root, { recursive: true });
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("bad Minari input is refused with the path and the field before any work", async () => {
  const base = await Deno.makeTempDir();
  try {
    const cases: [string, Parameters<typeof writeMinari>[1], RegExp][] = [
      ["no-metadata", { tweak: "no-metadata" }, /data\/metadata\.json is missing/],
      [
        "ant",
        { envId: "Ant-v5" },
        /metadata\.json: field 'env_spec\.id' is 'Ant-v5', an environment we do not model/,
      ],
      [
        "v4",
        { envId: "Hopper-v4" },
        /metadata\.json: field 'env_spec\.id' is 'Hopper-v4', a version we do not model/,
      ],
      [
        "kwargs",
        { envId: "Hopper-v5", tweak: "kwargs" },
        /field 'env_spec\.kwargs\.reset_noise_scale' is 0\.5/,
      ],
    ];
    for (const [name, options, pattern] of cases) {
      const dir = join(base, name);
      await writeMinari(dir, options);
      const caught = await caughtFailure(() => locateDataset(dir, silentProgress, quiet));
      assert.equal(caught.error.kind, "input", name);
      assert.ok(caught.error.message.startsWith(join(dir, "data")), caught.error.message);
      assert.match(caught.error.message, pattern, name);
    }
    // Mismatched lengths: found when the episodes are read, the first thing the load stage does.
    const dir = join(base, "short");
    await writeMinari(dir, { tweak: "short-observations" });
    const located = await locateDataset(dir, silentProgress, quiet);
    const cache = join(base, "cache");
    const rt = createRuntime({ cacheRoot: cache, backend: "wasm" });
    const result = await runStage(rt, loadStage, {
      file: located.file,
      sha256: located.sha256,
      env: located.env,
      minari: located.minari,
      minTransitions: 1,
    }, {})();
    assert.equal(result._tag, "Left");
    const error = (result as { left: { kind: string; message: string } }).left;
    assert.equal(error.kind, "input");
    assert.match(
      error.message,
      /main_data\.hdf5: 'episode_1\/observations' has \d+ rows; expected \d+ \(actions' \d+ \+ 1\)/,
    );
    const cached = await Array.fromAsync(Deno.readDir(join(cache, "load"))).catch(() => []);
    assert.deepEqual(cached.filter((e) => !e.name.startsWith(".")), [], "nothing cached");
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("metadata.json as Python writes it: Infinity in env_spec, reference scores optional", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(join(dir, "data"));
    const spec = {
      id: "Hopper-v5",
      max_episode_steps: 1000,
      kwargs: { healthy_z_range: [0.7, "INF"], ctrl_cost_weight: 0.001 },
    };
    const text = JSON.stringify({
      dataset_id: "mujoco/hopper/x-v0",
      total_episodes: 1,
      total_steps: 1,
      env_spec: JSON.stringify(spec).replace('"INF"', "Infinity"),
    });
    await Deno.writeTextFile(join(dir, "data/metadata.json"), text);
    const meta = await readMinariMetadata(join(dir, "data/metadata.json"));
    assert.equal(meta.envId, "Hopper-v5");
    assert.equal(meta.envVersion, 5);
    assert.equal(meta.reference, undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the pipeline command runs a quick study on a Minari Hopper-v5 directory under its task permissions", async () => {
  const dir = await Deno.makeTempDir({ dir: join(REPO_ROOT, "data"), prefix: "minari-test-" });
  const rel = dir.slice(REPO_ROOT.length);
  try {
    const want = await writeMinari(dir, { episodes: 8, envId: "Hopper-v5" });
    const out = await runUnderTask("pipeline", "commands/pipeline.ts", [
      rel,
      "--method",
      "dbc",
      "--seed",
      "0",
      "--cache-dir",
      `${rel}/cache`,
      "--run-dir",
      `${rel}/run`,
      "--set",
      "load.minTransitions=100",
      "--set",
      "distill.synsetSize=8",
      "--set",
      "distill.outerSteps=2",
      "--set",
      "distill.outerBatchSize=32",
      "--set",
      "distill.evalEvery=0",
      "--set",
      "student.width=16",
      "--set",
      "student.steps=3",
      "--set",
      "evaluate.students=1",
      "--set",
      "evaluate.episodes=1",
      "--set",
      "evaluate.run.randomSelection=false",
      "--set",
      "evaluate.run.bc=false",
    ]);
    assert.equal(out.code, 0, out.stderr.slice(-2000));
    assert.match(out.stderr, /Minari mujoco\/hopper\/test-v0 \(Hopper-v5\)/);
    const summary = JSON.parse(out.stdout.trim().split("\n").at(-1)!);
    assert.equal(summary.env, "hopper-v5", "the environment chosen from the metadata");
    assert.equal(summary.transitions, want.n);
    assert.deepEqual(summary.stagesComputed, { load: 1, distill: 1, evaluate: 1 });
    assert.equal(summary.methods[0].method, "dbc");
    assert.equal(
      summary.scores,
      "normalized with mujoco/hopper/test-v0 metadata.json's reference returns -20 … 3200",
    );
    assert.ok(Number.isFinite(summary.methods[0].normalizedReturn));
    // The dataset's own reference scores normalize its mean episode return.
    const meanReturn = want.returns.reduce((a, b) => a + b, 0) / want.returns.length;
    assert.ok(Math.abs(summary.datasetMeanNormalizedReturn - (100 * (meanReturn + 20)) / 3220) < 0.01);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("with a dataset's reference returns, rollouts are scored against them; without, with the environment's", async () => {
  const zero = (_states: Float32Array, n: number) => new Float32Array(n * 3);
  const reference = { min: -20, max: 3200 };
  const own = await evaluatePolicy("hopper", zero, 2, 5, reference);
  const d4rl = await evaluatePolicy("hopper", zero, 2, 5);
  assert.deepEqual(Array.from(own.returns), Array.from(d4rl.returns), "the same episodes");
  own.returns.forEach((r, i) => {
    assert.ok(Math.abs(own.normalizedScores[i] - (100 * (r + 20)) / 3220) < 1e-9);
    assert.ok(Math.abs(d4rl.normalizedScores[i] - normalizedScore("hopper", r)) < 1e-9);
  });
  assert.notEqual(own.normalizedScores[0], d4rl.normalizedScores[0]);
});
