/**
 * Teachers from elsewhere in the pipeline and distilled sets as files:
 * - the authors' / CORL checkpoint layout written by Debian's python3-torch, imported by the pipeline
 *   on a small D4RL-layout file written by h5py: actions equal PyTorch's on states normalized with
 *   the dataset's statistics, cached by the file's sha256 (stage-execution counts: a different file
 *   recomputes the teacher and what follows, never the load), the `pipeline` task end to end;
 * - saved teacher directories: the checksum manifest refuses a missing or changed file naming it
 *   and the expected sha256; dimensions, environment and action bound are checked before any work;
 * - `synsets/<dataset>-<method>-seed<k>.hdf5` read by h5py against the dataset (numpy), and
 *   `deno task evaluate` scoring it exactly as the evaluate stage did; bad set files refused.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../numerics/backend.ts";
import { createRuntime } from "../core/runtime.ts";
import { type PipelineConfig, PRESETS, runStudy, type StudyResult } from "../study/obd.ts";
import { parseGridArgs } from "../grid/spec.ts";
import { loadTeacherDir, saveTeacherDir, teacherFromArtifact } from "../stages/teacher.ts";
import { readSynsetFile } from "../stages/synset_file.ts";
import { importTeacher } from "../commands/teacher.ts";
import { assertFails, python, REPO_ROOT, repoScratchDir, runUnderTask } from "./helpers.ts";

await initBackend("wasm");

// Files live under data/ (the tasks may read only the repository).
const DIR = await repoScratchDir("teacher-source");
const at = (name: string) => join(REPO_ROOT, DIR, name);
const rel = (name: string) => `${DIR}/${name}`;

/**
 * Python: a small D4RL-layout Hopper file (the first 6,000 transitions of the embedded data, written
 * by h5py with boolean flags as D4RL has them), and checkpoints in the authors' layout
 * (trainer.state_dict() of CORL's Cal-QL: `actor` with base_network.{0,2,4,6}, 2·|A| outputs and the
 * log-std Scalars, `critic1`, `critic2`, …) for two seeds and for Walker2d; PyTorch's deterministic
 * actions for raw states normalized with the file's mean and std + 1e-3.
 */
const MAKE = `
import json, sys, os, copy, hashlib
import h5py, numpy as np
import torch, torch.nn as nn
out = sys.argv[1]
src = h5py.File("data/embedded/hopper_medium_replay-obd.hdf5", "r")
n = 6000
with h5py.File(os.path.join(out, "hopper_small.hdf5"), "w") as f:
    for k in ("observations", "actions", "rewards", "next_observations"):
        f.create_dataset(k, data=src[k][:n].astype(np.float32))
    for k in ("terminals", "timeouts"):
        f.create_dataset(k, data=src[k][:n].astype(bool))
obs = src["observations"][:n].astype(np.float32)
mean = obs.mean(0); std = obs.std(0) + 1e-3
class Scalar(nn.Module):
    def __init__(self, v):
        super().__init__(); self.constant = nn.Parameter(torch.tensor(v, dtype=torch.float32))
class Actor(nn.Module):
    def __init__(self, s, a):
        super().__init__(); self.a = a
        self.base_network = nn.Sequential(nn.Linear(s, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 2 * a))
        self.log_std_multiplier = Scalar(1.0); self.log_std_offset = Scalar(-1.0)
def critic(s, a):
    return nn.Sequential(nn.Linear(s + a, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 1))
class Q(nn.Module):
    def __init__(self, s, a):
        super().__init__(); self.network = critic(s, a)
ref = {"mean": mean.tolist(), "std": std.tolist()}
def save(name, s, a, seed):
    torch.manual_seed(seed)
    actor, c1, c2 = Actor(s, a), Q(s, a), Q(s, a)
    torch.save({"actor": actor.state_dict(), "critic1": c1.state_dict(), "critic2": c2.state_dict(),
                "critic1_target": copy.deepcopy(c1).state_dict(), "critic2_target": copy.deepcopy(c2).state_dict(),
                "total_it": 1000000}, os.path.join(out, name))
    if s == 11:
        raw = obs[:5]
        with torch.no_grad():
            mu = actor.base_network(torch.tensor((raw - mean) / std))[:, :a]
        ref[name] = {"raw": raw.tolist(), "actions": torch.tanh(mu).tolist()}
    ref[name + ".sha256"] = hashlib.sha256(open(os.path.join(out, name), "rb").read()).hexdigest()
save("authors-a.pt", 11, 3, 0)
save("authors-b.pt", 11, 3, 1)
save("walker.pt", 17, 6, 2)
ref["data.sha256"] = hashlib.sha256(open(os.path.join(out, "hopper_small.hdf5"), "rb").read()).hexdigest()
print(json.dumps(ref))
`;
const ref = await python(MAKE, at(""));

/** A tiny study: PBC only, two outer steps, one student and episode; the teacher evaluated once. */
const small: PipelineConfig = {
  ...PRESETS.quick,
  seeds: [0],
  load: { minTransitions: 1000 },
  teacher: { ...PRESETS.quick.teacher, steps: 20, evalEpisodes: 1, source: "train" },
  student: { hiddenLayers: 1, width: 16, steps: 2, learningRate: 0.1 },
  distill: {
    ...PRESETS.quick.distill,
    synsetSize: 8,
    outerSteps: 2,
    outerBatches: 1,
    outerBatchSize: 32,
    evalEvery: 0,
  },
  evaluate: {
    ...PRESETS.quick.evaluate,
    run: {
      final: true,
      curve: false,
      ensemble: false,
      architectures: false,
      optimizers: false,
      randomSelection: false,
      bc: false,
    },
    students: 1,
    episodes: 1,
  },
};
const withTeacher = (source: string): PipelineConfig => ({ ...small, teacher: { ...small.teacher, source } });

async function study(cache: string, dataset: string, source: string) {
  const rt = createRuntime({ cacheRoot: cache, backend: "wasm" });
  const result = await runStudy(rt, dataset, { methods: ["pbc"] }, withTeacher(source))();
  return { result, counts: Object.fromEntries(rt.executions) };
}

function rightOf(result: { _tag: string }): StudyResult {
  assert.equal(result._tag, "Right", JSON.stringify(result).slice(0, 400));
  return (result as unknown as { right: StudyResult }).right;
}

function errorOf(result: { _tag: string }): string {
  assert.equal(result._tag, "Left", "expected a refusal");
  const e = (result as unknown as { left: { message: string; kind: string } }).left;
  assert.ok(!e.message.includes("\n"), "one line");
  return `${e.kind}: ${e.message}`;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

Deno.test("an authors' checkpoint becomes the teacher stage's output: PyTorch's actions on the dataset's normalization, keyed by content", async () => {
  const cache = await Deno.makeTempDir();
  const data = rel("hopper_small.hdf5");
  const first = await study(cache, data, rel("authors-a.pt"));
  const s = rightOf(first.result);
  assert.deepEqual(first.counts, { load: 1, teacher: 1, distill: 1, evaluate: 1 });
  const t = s.teacher!.value;
  assert.equal(t.algorithm, "calql");
  assert.equal(t.env, "hopper");
  assert.match(
    t.source,
    /CORL checkpoint \(sha256 [0-9a-f]{16}\), states normalized with the dataset's statistics/,
  );
  assert.ok(t.evaluation, "the imported teacher is evaluated like a trained one");
  assert.equal((s.teacher!.manifest.config as { sha256: string }).sha256, ref["authors-a.pt.sha256"]);
  // Normalization follows the checkpoint's convention: the dataset's mean and std + 1e-3.
  assert.ok(maxAbsDiff(t.stateMean, ref.mean) < 1e-4 && maxAbsDiff(t.stateStd, ref.std) < 1e-4);
  const teacher = teacherFromArtifact(t);
  const raw = tf.tensor2d(ref["authors-a.pt"].raw);
  const normalized = teacher.normalize(raw);
  const actions = teacher.act(normalized);
  assert.ok(maxAbsDiff(actions.dataSync(), ref["authors-a.pt"].actions.flat()) < 1e-5);
  tf.dispose([raw, normalized, actions]);
  teacher.dispose();

  // Same file again, and the same content under another name: nothing recomputed.
  assert.deepEqual((await study(cache, data, rel("authors-a.pt"))).counts, {});
  await Deno.copyFile(at("authors-a.pt"), at("renamed.pt"));
  assert.deepEqual((await study(cache, data, rel("renamed.pt"))).counts, {});
  // Another checkpoint: the teacher and what follows, nothing upstream.
  assert.deepEqual((await study(cache, data, rel("authors-b.pt"))).counts, {
    teacher: 1,
    distill: 1,
    evaluate: 1,
  });
  // Training instead: the same.
  assert.deepEqual((await study(cache, data, "train")).counts, { teacher: 1, distill: 1, evaluate: 1 });
  // A saved teacher directory of checkpoint a (imported with the dataset's statistics): its own entry.
  await saveTeacherDir(at("saved-a"), t);
  const saved = await study(cache, data, rel("saved-a"));
  assert.deepEqual(saved.counts, { teacher: 1, distill: 1, evaluate: 1 });
  const fromDir = rightOf(saved.result).teacher!.value;
  assert.match(fromDir.source, /^saved teacher \(sha256 [0-9a-f]{16}; CORL checkpoint/);
  assert.deepEqual(Array.from(fromDir.actor.net.weights[0]), Array.from(t.actor.net.weights[0]));
  assert.equal(fromDir.evaluation!.meanNormalizedScore, t.evaluation!.meanNormalizedScore);
  await Deno.remove(cache, { recursive: true });
});

Deno.test("a teacher that does not fit is refused before any work, naming the file, the field and the expected value", async () => {
  const cache = await Deno.makeTempDir();
  // The embedded dataset's environment is known before it is read: nothing runs at all.
  const walker = await study(cache, "embedded", rel("walker.pt"));
  assert.match(
    errorOf(walker.result),
    /^input: the teacher \(.*walker\.pt\) takes 17-dimensional states and gives 6-dimensional actions, but dataset embedded has 11 and 3/,
  );
  assert.deepEqual(walker.counts, {});
  // A file's environment is known once loaded: the load only, no teacher.
  const onFile = await study(cache, rel("hopper_small.hdf5"), rel("walker.pt"));
  assert.match(errorOf(onFile.result), /walker\.pt\) takes 17-dimensional states .* has 11 and 3/);
  assert.deepEqual(onFile.counts, { load: 1 });

  const base = await loadTeacherDir(await trainedDir());
  await saveTeacherDir(at("wrong-env"), { ...base, env: "walker2d" });
  const wrongEnv = await study(cache, "embedded", rel("wrong-env"));
  assert.match(
    errorOf(wrongEnv.result),
    /^input: teacher .*wrong-env: env is walker2d, expected hopper \(dataset embedded\)/,
  );
  assert.deepEqual(wrongEnv.counts, {});
  await saveTeacherDir(at("wrong-bound"), { ...base, maxAction: 2 });
  const wrongBound = await study(cache, "embedded", rel("wrong-bound"));
  assert.match(
    errorOf(wrongBound.result),
    /wrong-bound: maxAction is 2, expected 1 \(the action bound of hopper\)/,
  );
  assert.deepEqual(wrongBound.counts, {});
  // A checkpoint saved without the dataset's statistics would get raw states: refused.
  await saveTeacherDir(at("no-stats"), await importTeacher(at("authors-a.pt"), { env: "hopper" }));
  const noStats = await study(cache, "embedded", rel("no-stats"));
  assert.match(
    errorOf(noStats.result),
    /no-stats: stateMean\/stateStd are the identity \(0 and 1\), expected the training data's statistics/,
  );
  assert.deepEqual(noStats.counts, {});
  const missing = await study(cache, "embedded", rel("no-such.pt"));
  assert.match(errorOf(missing.result), /^input: teacher source .*no-such\.pt does not exist/);
  assert.deepEqual(missing.counts, {});
  await Deno.remove(cache, { recursive: true });
});

let trained: string | undefined;
/** A tiny teacher saved by `deno task teacher train --out` under the task's permissions (made once). */
async function trainedDir(): Promise<string> {
  if (trained) return trained;
  const out = rel("tiny");
  const r = await runUnderTask("teacher", "commands/teacher.ts", [
    "train",
    "--steps",
    "20",
    "--eval-episodes",
    "1",
    "--set",
    "evalEvery=10",
    "--out",
    out,
  ]);
  assert.equal(r.code, 0, r.stderr);
  trained = at("tiny");
  return trained;
}

Deno.test("a saved teacher's checksum manifest: a missing, changed or unlisted file is refused with the file and the expected sha256", async () => {
  const dir = await trainedDir();
  const manifest = await Deno.readTextFile(join(dir, "SHA256SUMS"));
  const files = (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).filter((n) =>
    n !== "SHA256SUMS"
  );
  assert.deepEqual(manifest.trim().split("\n").map((l) => l.split("  ")[1]).sort(), files.sort());
  // sha256sum -c agrees with the manifest (an independent checker).
  const check = await new Deno.Command("sha256sum", { args: ["-c", "--quiet", "SHA256SUMS"], cwd: dir })
    .output();
  assert.ok(check.success, new TextDecoder().decode(check.stdout));
  const expected = (name: string) =>
    manifest.split("\n").find((l) => l.endsWith(`  ${name}`))!.split("  ")[0];
  const copy = async (name: string) => {
    const to = at(name);
    await Deno.mkdir(to);
    for (const f of await Array.fromAsync(Deno.readDir(dir))) {
      await Deno.copyFile(join(dir, f.name), join(to, f.name));
    }
    return to;
  };
  const gone = await copy("gone");
  await Deno.remove(join(gone, "critic.1.weight.bin"));
  await assertFails(loadTeacherDir(gone), "input", [
    `${gone}/critic.1.weight.bin is missing`,
    `expects sha256 ${expected("critic.1.weight.bin")}`,
  ]);
  const changed = await copy("changed");
  const bytes = await Deno.readFile(join(changed, "actor.0.weight.bin"));
  bytes[17] ^= 1;
  await Deno.writeFile(join(changed, "actor.0.weight.bin"), bytes);
  await assertFails(loadTeacherDir(changed), "checksum", [
    `${changed}/actor.0.weight.bin has sha256`,
    `SHA256SUMS expects ${expected("actor.0.weight.bin")}`,
  ]);
  // teacher.json is covered too (its per-file sha256 alone could be rewritten with it).
  const index = await copy("index");
  await Deno.writeTextFile(
    join(index, "teacher.json"),
    (await Deno.readTextFile(join(index, "teacher.json"))).replace('"maxAction": 1', '"maxAction": 2'),
  );
  await assertFails(loadTeacherDir(index), "checksum", [
    `${index}/teacher.json has sha256`,
    expected("teacher.json"),
  ]);
  const noManifest = await copy("no-manifest");
  await Deno.remove(join(noManifest, "SHA256SUMS"));
  await assertFails(loadTeacherDir(noManifest), "input", [`${noManifest}/SHA256SUMS is missing`]);
  const extra = await copy("extra");
  await Deno.writeTextFile(join(extra, "notes.txt"), "x");
  await assertFails(loadTeacherDir(extra), "input", [`${extra}/notes.txt is not listed in SHA256SUMS`]);
  // In the pipeline: refused before the dataset is even located.
  const cache = await Deno.makeTempDir();
  const r = await study(cache, "embedded", rel("changed"));
  assert.match(
    errorOf(r.result),
    /^checksum: .*changed\/actor\.0\.weight\.bin has sha256 [0-9a-f]{64}, but SHA256SUMS expects/,
  );
  assert.deepEqual(r.counts, {});
  await Deno.remove(cache, { recursive: true });
});

Deno.test("`deno task pipeline <D4RL-layout file> --teacher <authors' checkpoint>` end to end; its set file read by h5py and scored again by `deno task evaluate`", async () => {
  const common = [
    "--set",
    "distill.synsetSize=8",
    "--set",
    "student.width=16",
    "--set",
    "student.hiddenLayers=1",
    "--set",
    "student.steps=2",
    "--set",
    "evaluate.students=1",
    "--set",
    "evaluate.episodes=1",
    "--set",
    "evaluate.run.ensemble=false",
    "--set",
    "evaluate.run.architectures=false",
    "--set",
    "evaluate.run.optimizers=false",
  ];
  const cli = await runUnderTask("pipeline", "commands/pipeline.ts", [
    rel("hopper_small.hdf5"),
    "--teacher",
    rel("authors-a.pt"),
    "--method",
    "avpbc",
    "--seed",
    "0",
    "--set",
    "load.minTransitions=1000",
    "--set",
    "teacher.evalEpisodes=1",
    "--set",
    "distill.outerSteps=2",
    "--set",
    "distill.outerBatches=1",
    "--set",
    "distill.outerBatchSize=32",
    "--set",
    "distill.evalEvery=0",
    "--set",
    "evaluate.run.curve=false",
    "--set",
    "evaluate.run.randomSelection=false",
    "--set",
    "evaluate.run.bc=false",
    ...common,
    "--cache-dir",
    rel("cache"),
    "--run-dir",
    rel("run"),
  ]);
  assert.equal(cli.code, 0, cli.stderr);
  const summary = JSON.parse(cli.stdout.trim().split("\n").pop()!);
  assert.equal(summary.teacher.file, rel("authors-a.pt"));
  assert.match(summary.teacher.source, /the checkpoint stores none/);
  const report = await Deno.readTextFile(at("run/report.md"));
  assert.match(report, /states normalized with the dataset's statistics: the checkpoint stores none/);
  const file = rel("run/synsets/hopper_small-avpbc-seed0.hdf5");
  assert.deepEqual(summary.synsets, [file]);

  // h5py reads the set; the statistics are numpy's over the dataset; the states agree in both spaces.
  const got = await python(
    `
import h5py, json, sys, numpy as np
f = h5py.File(sys.argv[1], "r")
a = {k: (v.decode() if isinstance(v, bytes) else v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
raw, nrm = f["states"][:], f["states_normalized"][:]
mean, std = f["state_mean"][:], f["state_std"][:]
print(json.dumps({"attrs": a, "shapes": {k: list(f[k].shape) for k in f}, "dtypes": sorted({str(f[k].dtype) for k in f}),
  "mean": mean.tolist(), "std": std.tolist(), "roundTrip": float(np.abs((raw - mean) / std - nrm).max())}))`,
    at("run/synsets/hopper_small-avpbc-seed0.hdf5"),
  );
  assert.deepEqual(got.shapes, {
    actions: [8, 3],
    state_mean: [11],
    state_std: [11],
    states: [8, 11],
    states_normalized: [8, 11],
  });
  assert.deepEqual(got.dtypes, ["float32"]);
  assert.ok(got.roundTrip < 1e-4, `raw and normalized states disagree by ${got.roundTrip}`);
  assert.ok(maxAbsDiff(got.mean, ref.mean) < 1e-4 && maxAbsDiff(got.std, ref.std) < 1e-4);
  const a = got.attrs;
  assert.equal(a.method, "avpbc");
  assert.equal(a.seed, 0);
  assert.equal(a.env, "hopper");
  assert.equal(a.teacher_sha256, ref["authors-a.pt.sha256"]);
  assert.equal(a.dataset_sha256, ref["data.sha256"]);
  assert.ok(Math.abs(a.objective_value - summary.methods[0].finalOuterLoss) < 0.01);
  assert.match(a.code_version, /^obd \d+\.\d+\.\d+, distill stage \d+$/);
  assert.equal(JSON.parse(a.config).distill.outerSteps, 2);
  assert.equal(JSON.parse(a.config).teacher.source, rel("authors-a.pt"));

  // The evaluate task scores the file exactly as the evaluate stage scored the set.
  const evaluated = await runUnderTask("evaluate", "commands/evaluate.ts", [
    file,
    "--dataset",
    rel("hopper_small.hdf5"),
    "--preset",
    "quick",
    ...common,
  ]);
  assert.equal(evaluated.code, 0, evaluated.stderr);
  const scored = JSON.parse(evaluated.stdout.trim().split("\n").pop()!);
  assert.equal(scored.normalizedScore, summary.methods[0].normalizedReturn);
  assert.equal(scored.method, "avpbc");
});

Deno.test("set files with NaNs, wrong dimensions or no normalization statistics are refused, naming the file, the field and the expected value", async () => {
  await python(
    `
import h5py, sys, os, numpy as np
out = sys.argv[1]
rng = np.random.default_rng(0)
def write(name, drop=(), **over):
    d = {"states_normalized": rng.normal(size=(8, 11)).astype(np.float32), "actions": rng.uniform(-1, 1, (8, 3)).astype(np.float32),
         "state_mean": np.zeros(11, np.float32), "state_std": np.ones(11, np.float32)}
    d.update(over)
    with h5py.File(os.path.join(out, name), "w") as f:
        for k, v in d.items():
            if k not in drop: f.create_dataset(k, data=v)
        f.attrs["env"] = "hopper"
write("good.hdf5")
bad = rng.normal(size=(8, 11)).astype(np.float32); bad[3, 5] = np.nan
write("nan.hdf5", states_normalized=bad)
write("wide.hdf5", actions=np.zeros((8, 6), np.float32))
write("no-std.hdf5", drop=("state_std",))
write("zero-std.hdf5", state_std=np.zeros(11, np.float32))
print("{}")`,
    at(""),
  );
  const good = await readSynsetFile(rel("good.hdf5"));
  assert.equal(good.set.size, 8);
  assert.equal(good.set.env, "hopper");
  await assertFails(readSynsetFile(rel("nan.hdf5")), "input", [
    `${
      rel("nan.hdf5")
    }: states_normalized has a non-finite value (NaN) at row 3, column 5; expected finite numbers`,
  ]);
  await assertFails(readSynsetFile(rel("wide.hdf5")), "input", [
    `${rel("wide.hdf5")}: actions has shape [8, 6], expected [8, 3] (hopper)`,
  ]);
  await assertFails(readSynsetFile(rel("no-std.hdf5")), "input", [
    `${rel("no-std.hdf5")} has no dataset state_std`,
  ]);
  await assertFails(readSynsetFile(rel("zero-std.hdf5")), "input", [
    "state std of dimension 0 is 0, not a positive number",
  ]);
  await assertFails(
    readSynsetFile(rel("good.hdf5"), { env: "walker2d", obsDim: 17, actDim: 6, name: "walker2d-m-r" }),
    "input",
    ["attribute env is hopper, expected walker2d (dataset walker2d-m-r)"],
  );
  // The task: one line, exit 1, before any student is trained.
  const cli = await runUnderTask("evaluate", "commands/evaluate.ts", [rel("nan.hdf5")]);
  assert.equal(cli.code, 1);
  assert.match(
    cli.stderr,
    /error\[(evaluate\/)?input\]: .*nan\.hdf5: states_normalized has a non-finite value \(NaN\) at row 3, column 5/,
  );
  assert.ok(!/evaluate: /.test(cli.stderr), "refused before the evaluation started");
});

Deno.test("--teacher on grid is every task's teacher.source; a missing teacher is refused before any task", async () => {
  const request = parseGridArgs(["--datasets", "embedded", "--methods", "pbc", "--teacher", "data/t"]);
  assert.ok(!("kind" in request) && request.mode === "new");
  assert.deepEqual(request.spec.set, ["teacher.source=data/t"]);
  const dry = await runUnderTask("grid", "commands/grid.ts", [
    "--datasets",
    "embedded",
    "--methods",
    "pbc",
    "--teacher",
    rel("authors-a.pt"),
    "--dry-run",
  ]);
  assert.equal(dry.code, 0, dry.stderr);
  assert.ok(dry.stdout.includes(`--set teacher.source=${rel("authors-a.pt")}`), dry.stdout);
  const missing = await runUnderTask("grid", "commands/grid.ts", [
    "--datasets",
    "embedded",
    "--methods",
    "pbc",
    "--teacher",
    rel("nope.pt"),
  ]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^error\[(teacher\/)?input\]: teacher source .*nope\.pt does not exist/);
  assert.ok(!missing.stderr.includes("[grid]"), "no task was started");
});
