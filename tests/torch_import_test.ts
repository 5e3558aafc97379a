/**
 * Importing CORL Cal-QL checkpoints without Python: the zip/pickle reader against Debian's
 * python3-torch (checkpoints written by torch.save in CORL's layout, pickles of every protocol),
 * actions and q-values of the imported teacher against PyTorch to 1e-5 (library and the `teacher`
 * task's `import` / `act` commands under their own permissions), dataset normalization, the
 * dimension-mismatch refusal and damaged or mislabelled checkpoints.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../numerics/backend.ts";
import { createRuntime } from "../core/runtime.ts";
import { Rng } from "../numerics/random.ts";
import { loadTeacherDir, teacherFromArtifact } from "../stages/teacher.ts";
import { PyGlobal, PyObject, unpickle } from "../stages/teacher/pickle.ts";
import { readTorchCheckpoint, TorchTensor } from "../stages/teacher/torch_checkpoint.ts";
import { readZipDirectory } from "../stages/teacher/zip.ts";
import { importTeacher } from "../commands/teacher.ts";
import { assertFails, python, REPO_ROOT, repoScratchDir, runUnderTask } from "./helpers.ts";

await initBackend("wasm");

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

// Checkpoints are written under data/ (the `teacher` task may read only the repository).
const DIR = await repoScratchDir("torch");

/** Eps for the sampled-action check: what `teacher.act(s, "sampled", new Rng(9))` draws. */
const N_STATES = 6;
const epsFor = (actDim: number) => Array.from(new Rng(9).fillNormal(new Float32Array(N_STATES * actDim)));

/**
 * Python: CORL-layout modules (TanhGaussianPolicy with base_network + Scalar log-std parameters,
 * FullyConnectedQFunction critics), trained one Adam step so that optimizer states hold tensors,
 * saved as trainer.state_dict() would be (pickled Scalar modules included), plus variants:
 * Walker-sized, damaged, legacy format; and PyTorch's own actions / q-values for given states.
 */
const MAKE = `
import json, sys, os, copy, pickle, collections
import torch, torch.nn as nn
from torch.distributions import Normal, TanhTransform, TransformedDistribution
torch.manual_seed(0)
out = sys.argv[1]; eps_h = json.loads(sys.argv[2]); eps_w = json.loads(sys.argv[3]); n = int(sys.argv[4])
class Scalar(nn.Module):
    def __init__(self, v):
        super().__init__(); self.constant = nn.Parameter(torch.tensor(v, dtype=torch.float32))
    def forward(self): return self.constant
class Actor(nn.Module):
    def __init__(self, s, a):
        super().__init__(); self.a = a
        self.base_network = nn.Sequential(nn.Linear(s, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 2 * a))
        for m in self.base_network:
            if isinstance(m, nn.Linear): nn.init.orthogonal_(m.weight, gain=2 ** 0.5); nn.init.uniform_(m.bias, -0.1, 0.1)
        self.log_std_multiplier = Scalar(1.3); self.log_std_offset = Scalar(-0.7)
    def heads(self, s):
        mean, ls = torch.split(self.base_network(s), self.a, dim=-1)
        return mean, torch.clamp(self.log_std_multiplier() * ls + self.log_std_offset(), -20.0, 2.0)
class Critic(nn.Module):
    def __init__(self, s, a):
        super().__init__()
        self.network = nn.Sequential(nn.Linear(s + a, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 1))
    def forward(self, s, a): return self.network(torch.cat([s, a], -1)).squeeze(-1)
def make(s, a, eps):
    actor, c1, c2 = Actor(s, a), Critic(s, a), Critic(s, a)
    opt = torch.optim.Adam(list(actor.parameters()), 3e-5); copt = torch.optim.Adam(list(c1.parameters()), 3e-4)
    x = torch.randn(8, s)
    (actor.heads(x)[0].sum() + c1(x, torch.zeros(8, a)).sum()).backward(); opt.step(); copt.step()
    log_alpha = Scalar(0.1)
    ckpt = {"actor": actor.state_dict(), "critic1": c1.state_dict(), "critic2": c2.state_dict(),
        "critic1_target": copy.deepcopy(c1).state_dict(), "critic2_target": copy.deepcopy(c2).state_dict(),
        "critic_1_optimizer": copt.state_dict(), "critic_2_optimizer": copt.state_dict(), "actor_optim": opt.state_dict(),
        "sac_log_alpha": log_alpha, "sac_log_alpha_optim": torch.optim.Adam(log_alpha.parameters(), 3e-5).state_dict(),
        "cql_log_alpha": Scalar(1.0), "total_it": 12345}
    states = torch.randn(n, s) * 1.5
    with torch.no_grad():
        mean, ls = actor.heads(states)
        act = torch.tanh(mean) * 1.0
        q = c1(states, act)
        d = TransformedDistribution(Normal(mean, ls.exp()), TanhTransform(cache_size=1))
        sampled = d.transforms[0](mean + ls.exp() * torch.tensor(eps).reshape(n, a))
    return ckpt, {"states": states.tolist(), "actions": act.tolist(), "q": q.tolist(), "sampled": sampled.reshape(-1).tolist()}
ref = {}
ckpt, ref["hopper"] = make(11, 3, eps_h)
torch.save(ckpt, os.path.join(out, "hopper.pt"))
wk, ref["walker"] = make(17, 6, eps_w)
torch.save(wk, os.path.join(out, "walker.pt"))
def variant(name, edit):
    c = copy.deepcopy(ckpt); edit(c); torch.save(c, os.path.join(out, name + ".pt"))
variant("missing-bias", lambda c: c["actor"].pop("base_network.4.bias"))
variant("missing-layer", lambda c: [c["actor"].pop(k) for k in ("base_network.2.weight", "base_network.2.bias")])
variant("wrong-shape", lambda c: c["actor"].__setitem__("base_network.2.weight", torch.randn(256, 128)))
variant("critic-input", lambda c: c["critic1"].__setitem__("network.0.weight", torch.randn(256, 15)))
variant("no-critic1", lambda c: c.pop("critic1"))
variant("no-log-std", lambda c: c["actor"].pop("log_std_offset.constant"))
variant("odd-actor", lambda c: [c["actor"].__setitem__("base_network.6.weight", torch.randn(7, 256)), c["actor"].__setitem__("base_network.6.bias", torch.randn(7))])
torch.save(ckpt, os.path.join(out, "legacy.pt"), _use_new_zipfile_serialization=False)
import zipfile
with zipfile.ZipFile(os.path.join(out, "hopper.pt")) as src, zipfile.ZipFile(os.path.join(out, "deflated.pt"), "w", zipfile.ZIP_DEFLATED) as dst:
    for info in src.infolist(): dst.writestr(info.filename, src.read(info.filename))
# Tensors of other dtypes and layouts.
base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 7
torch.save(collections.OrderedDict([("t", base.t()), ("slice", base[1:3, 2:5]), ("f64", base.double() * 1e-3),
    ("f16", (base / 10).half()), ("bf16", (base / 10).bfloat16()), ("i64", torch.tensor([-3, 2 ** 40])), ("scalar", torch.tensor(2.5)),
    ("empty", torch.zeros(0, 3)), ("nested", {"list": [base[0], 1.5, None, True], "tuple": (1, "x")})]), os.path.join(out, "dtypes.pt"))
ref["dtypes"] = {"t": base.t().reshape(-1).tolist(), "slice": base[1:3, 2:5].reshape(-1).tolist(), "f64": (base.double() * 1e-3).reshape(-1).tolist(),
    "f16": (base / 10).half().float().reshape(-1).tolist(), "bf16": (base / 10).bfloat16().float().reshape(-1).tolist(), "i64": [-3, 2 ** 40]}
print(json.dumps(ref))
`;

const ref = await python(
  MAKE,
  join(REPO_ROOT, DIR),
  JSON.stringify(epsFor(3)),
  JSON.stringify(epsFor(6)),
  String(N_STATES),
);
const file = (name: string) => `${DIR}/${name}.pt`;
const absolute = (name: string) => join(REPO_ROOT, file(name));

Deno.test("torch.save archives: every dtype, strides, offsets and nested containers read as PyTorch has them", async () => {
  const ckpt = await readTorchCheckpoint(await Deno.readFile(absolute("dtypes")), "dtypes.pt");
  const root = ckpt.root as Map<string, unknown>;
  for (const key of ["t", "slice", "f64", "f16", "bf16"]) {
    const t = root.get(key) as TorchTensor;
    assert.ok(t instanceof TorchTensor, key);
    const tol = key === "f64" ? 1e-9 : 1e-7;
    assert.ok(maxAbsDiff(ckpt.values(t), ref.dtypes[key]) <= tol, key);
  }
  assert.deepEqual((root.get("t") as TorchTensor).shape, [6, 4]);
  assert.deepEqual((root.get("t") as TorchTensor).stride, [1, 6], "a transposed view keeps its strides");
  assert.equal((root.get("slice") as TorchTensor).offset, 8);
  assert.deepEqual(Array.from(ckpt.values(root.get("i64") as TorchTensor)), ref.dtypes.i64);
  assert.deepEqual((root.get("scalar") as TorchTensor).shape, []);
  assert.deepEqual(Array.from(ckpt.values(root.get("scalar") as TorchTensor)), [2.5]);
  assert.equal(ckpt.values(root.get("empty") as TorchTensor).length, 0);
  const nested = root.get("nested") as Map<string, unknown[]>;
  assert.deepEqual(nested.get("list")!.slice(1), [1.5, null, true]);
  assert.deepEqual(nested.get("tuple"), [1, "x"]);
});

Deno.test("the unpickler reads protocols 2–5 like Python (ints of every width, floats, strings, bytes, containers)", async () => {
  const out = await python(`
import pickle, json, base64, collections
obj = {"ints": [0, 1, 255, 256, 65535, 65536, -1, -129, 2**31 - 1, -2**31, 2**40, -2**52], "f": [3.25, -1e300, 0.1],
  "s": ["", "ünïcode ✓", "x" * 300], "t": (1, (2, 3), (4, 5, 6), (7, 8, 9, 10)), "l": [[], [None, True, False]],
  "d": {1: "one", "k": {}}, "set": {7}, "od": collections.OrderedDict([("b", 2), ("a", 1)])}
res = {}
for p in (2, 3, 4, 5):
    o = dict(obj)
    if p >= 3: o["bytes"] = b"\\x00\\x01\\xff"
    res[str(p)] = base64.b64encode(pickle.dumps(o, protocol=p)).decode()
print(json.dumps(res))`);
  for (const [protocol, b64] of Object.entries(out as Record<string, string>)) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const v = unpickle(bytes, { persistentLoad: () => assert.fail("no persistent ids here") }) as Map<
      string,
      unknown
    >;
    assert.deepEqual(v.get("ints"), [
      0,
      1,
      255,
      256,
      65535,
      65536,
      -1,
      -129,
      2 ** 31 - 1,
      -(2 ** 31),
      2 ** 40,
      -(2 ** 52),
    ], `ints, protocol ${protocol}`);
    assert.deepEqual(v.get("f"), [3.25, -1e300, 0.1]);
    assert.deepEqual(v.get("s"), ["", "ünïcode ✓", "x".repeat(300)]);
    assert.deepEqual(v.get("t"), [1, [2, 3], [4, 5, 6], [7, 8, 9, 10]]);
    assert.deepEqual(v.get("l"), [[], [null, true, false]]);
    assert.deepEqual(v.get("d"), new Map<unknown, unknown>([[1, "one"], ["k", new Map()]]));
    assert.deepEqual(v.get("set"), new Set([7]));
    assert.deepEqual([...(v.get("od") as Map<string, number>).entries()], [["b", 2], ["a", 1]]);
    if (Number(protocol) >= 3) assert.deepEqual(Array.from(v.get("bytes") as Uint8Array), [0, 1, 255]);
  }
});

Deno.test("a CORL Cal-QL checkpoint imports: deterministic actions, sampled actions and q1 equal PyTorch's to 1e-5", async () => {
  const artifact = await importTeacher(absolute("hopper"), {});
  assert.equal(artifact.obsDim, 11);
  assert.equal(artifact.actDim, 3);
  assert.deepEqual(artifact.actor.net.sizes, [11, 256, 256, 256, 6]);
  assert.deepEqual(artifact.critic.sizes, [14, 256, 256, 1]);
  assert.equal(artifact.training.steps, 12345);
  assert.ok(artifact.actor.kind === "tanh-gaussian");
  assert.ok(
    Math.abs(artifact.actor.head.logStdMultiplier - 1.3) < 1e-6 &&
      Math.abs(artifact.actor.head.logStdOffset + 0.7) < 1e-6,
  );
  assert.deepEqual(
    Array.from(artifact.stateStd),
    new Array(11).fill(1),
    "no dataset: identity normalization",
  );
  const teacher = teacherFromArtifact(artifact);
  const s = tf.tensor2d(ref.hopper.states);
  const a = teacher.act(s, "deterministic");
  const q = teacher.q(s, a);
  const sampled = teacher.act(s, "sampled", new Rng(9));
  const da = maxAbsDiff(a.dataSync(), ref.hopper.actions.flat());
  const dq = maxAbsDiff(q.dataSync(), ref.hopper.q);
  const ds = maxAbsDiff(sampled.dataSync(), ref.hopper.sampled);
  assert.ok(da < 1e-5, `actions differ by ${da}`);
  assert.ok(dq < 1e-5 * Math.max(1, ...ref.hopper.q.map(Math.abs)), `q differs by ${dq}`);
  assert.ok(ds < 1e-5, `sampled actions (log-std head) differ by ${ds}`);
  assert.ok(maxAbsDiff(a.dataSync(), sampled.dataSync()) > 1e-3);
  tf.dispose([s, a, q, sampled]);
  teacher.dispose();
});

Deno.test("a re-zipped checkpoint with deflated entries imports to the same teacher", async () => {
  const [a, b] = [await importTeacher(absolute("hopper"), {}), await importTeacher(absolute("deflated"), {})];
  assert.deepEqual(
    b.actor.net.weights.map((w) => Array.from(w)),
    a.actor.net.weights.map((w) => Array.from(w)),
  );
  assert.deepEqual(Array.from(b.critic.biases[2]), Array.from(a.critic.biases[2]));
});

Deno.test("`deno task teacher import` and `act` under the task's permissions print PyTorch's actions and q1", async () => {
  const out = `${DIR}/hopper-teacher`;
  const imported = await runUnderTask("teacher", "commands/teacher.ts", [
    "import",
    file("hopper"),
    "--out",
    out,
  ]);
  assert.equal(imported.code, 0, imported.stderr);
  assert.equal(JSON.parse(imported.stdout).actDim, 3);
  const statesFile = `${DIR}/states.json`;
  await Deno.writeTextFile(join(REPO_ROOT, statesFile), JSON.stringify({ states: ref.hopper.states }));
  const acted = await runUnderTask("teacher", "commands/teacher.ts", [
    "act",
    out,
    "--states",
    statesFile,
  ]);
  assert.equal(acted.code, 0, acted.stderr);
  const result = JSON.parse(acted.stdout);
  assert.ok(maxAbsDiff(result.actions.flat(), ref.hopper.actions.flat()) < 1e-5);
  assert.ok(maxAbsDiff(result.q, ref.hopper.q) < 1e-5 * Math.max(1, ...ref.hopper.q.map(Math.abs)));
  // Results are never overwritten; states of the wrong width are refused.
  const again = await runUnderTask("teacher", "commands/teacher.ts", [
    "import",
    file("hopper"),
    "--out",
    out,
  ]);
  assert.equal(again.code, 2);
  assert.match(again.stderr, /already exists/);
  await Deno.writeTextFile(join(REPO_ROOT, statesFile), JSON.stringify([[1, 2, 3]]));
  const bad = await runUnderTask("teacher", "commands/teacher.ts", [
    "act",
    out,
    "--states",
    statesFile,
  ]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /state 0 is not a list of 11 finite numbers/);
});

Deno.test("--dataset normalizes with the dataset's statistics; a dataset of other dimensions is refused before any work", async () => {
  const cache = await Deno.makeTempDir();
  const rt = createRuntime({ cacheRoot: cache, backend: "cpu" });
  const withData = await importTeacher(absolute("hopper"), { dataset: "embedded", rt });
  assert.equal(withData.env, "hopper");
  const stats = await python(`
import h5py, json, numpy as np
o = h5py.File("data/embedded/hopper_medium_replay-obd.hdf5", "r")["observations"][:]
print(json.dumps({"mean": o.mean(0).tolist(), "std": (o.std(0) + 1e-3).tolist()}))`);
  assert.ok(maxAbsDiff(withData.stateMean, stats.mean) < 1e-4);
  assert.ok(maxAbsDiff(withData.stateStd, stats.std) < 1e-4);
  // Walker-sized checkpoint (17 states, 6 actions) against the Hopper dataset: refused, nothing written.
  await assertFails(importTeacher(absolute("walker"), { dataset: "embedded", rt }), "input", [
    "takes 17-dimensional states and gives 6-dimensional actions",
    "dataset embedded has 11 and 3",
  ]);
  assert.deepEqual(
    rt.executions.get("load") ?? 0,
    1,
    "the dataset was loaded once, for the matching checkpoint only",
  );
  await assertFails(importTeacher(absolute("walker"), { env: "hopper" }), "input", [
    "17-dimensional states",
    "has 11 and 3",
  ]);
  const out = `${DIR}/walker-on-hopper`;
  const cli = await runUnderTask("teacher", "commands/teacher.ts", [
    "import",
    file("walker"),
    "--out",
    out,
    "--dataset",
    "embedded",
  ]);
  assert.equal(cli.code, 1);
  assert.match(
    cli.stderr,
    /error\[.*input\]: the teacher \(imported:walker\.pt\) takes 17-dimensional states/,
  );
  assert.ok(!(await Deno.stat(join(REPO_ROOT, out)).then(() => true, () => false)), "no output directory");
  // The walker checkpoint itself is fine where it belongs.
  const walker = await importTeacher(absolute("walker"), { env: "walker2d" });
  const t = teacherFromArtifact(walker);
  const s = tf.tensor2d(ref.walker.states);
  assert.ok(maxAbsDiff(t.act(s).dataSync(), ref.walker.actions.flat()) < 1e-5);
  t.dispose();
  s.dispose();
  await Deno.remove(cache, { recursive: true });
});

Deno.test("bad checkpoints name the key and the shapes", async () => {
  const cases: [string, string, string[]][] = [
    ["missing-bias", "input", ["actor.base_network.4.bias is missing"]],
    ["missing-layer", "input", ["actor.base_network.2.weight is missing"]],
    ["wrong-shape", "input", ["actor.base_network.2.weight has shape [256, 128], expected [256, 256]"]],
    ["critic-input", "input", ["critic1.network.0.weight has shape [256, 15], expected [256, 14]"]],
    ["no-critic1", "input", ['has no "critic1" state dict', "actor, critic2"]],
    ["no-log-std", "input", ["actor.log_std_offset.constant is missing"]],
    ["odd-actor", "input", ["has 7 outputs", "2·|A|"]],
    ["legacy", "input", ["not a torch.save zip checkpoint", "legacy"]],
  ];
  for (const [name, kind, parts] of cases) await assertFails(importTeacher(absolute(name), {}), kind, parts);
  // Truncated, and a flipped byte inside a tensor's storage.
  const bytes = await Deno.readFile(absolute("hopper"));
  const truncated = absolute("truncated");
  await Deno.writeFile(truncated, bytes.subarray(0, bytes.length - 100));
  await assertFails(importTeacher(truncated, {}), "input", ["not a readable zip archive"]);
  // Flip a byte inside the storage of actor.base_network.2.weight (read lazily, checked by CRC-32).
  const ckpt = await readTorchCheckpoint(bytes, "hopper.pt");
  const key = (((ckpt.root as Map<string, unknown>).get("actor") as Map<string, TorchTensor>).get(
    "base_network.2.weight",
  )!).storage.key;
  const entry = [...readZipDirectory(bytes).values()].find((x) => x.name.endsWith(`/data/${key}`))!;
  const damaged = bytes.slice();
  damaged[entry.dataOffset + 1000] ^= 0xff;
  await Deno.writeFile(absolute("damaged"), damaged);
  await assertFails(importTeacher(absolute("damaged"), {}), "checksum", [
    `data/${key} fails its CRC-32 check`,
  ]);
  await assertFails(importTeacher(absolute("nope"), {}), "input", ["cannot read"]);
});

Deno.test("pickled Python objects stay inert values: a CORL Scalar module, optimizer states", async () => {
  const ckpt = await readTorchCheckpoint(await Deno.readFile(absolute("hopper")), "hopper.pt");
  const root = ckpt.root as Map<string, unknown>;
  const scalar = root.get("sac_log_alpha") as PyObject;
  assert.ok(scalar instanceof PyObject);
  assert.equal(scalar.cls.name, "Scalar");
  assert.ok(scalar.cls instanceof PyGlobal);
  const params = (scalar.state as Map<string, unknown>).get("_parameters") as Map<string, TorchTensor>;
  assert.ok(Math.abs(ckpt.values(params.get("constant")!)[0] - 0.1) < 1e-7);
  const optimizer = root.get("actor_optim") as Map<string, Map<number, Map<string, unknown>>>;
  const state0 = optimizer.get("state")!.get(0)!;
  assert.deepEqual((state0.get("exp_avg") as TorchTensor).shape, [256, 11]);
});

Deno.test("the saved teacher of an import records the checkpoint's step count; test files are removed", async () => {
  const loaded = await loadTeacherDir(join(REPO_ROOT, DIR, "hopper-teacher"));
  assert.equal(loaded.training.steps, 12345);
  assert.equal(loaded.source, "imported:hopper.pt");
  await Deno.remove(join(REPO_ROOT, DIR), { recursive: true });
});
