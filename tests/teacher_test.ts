/**
 * The teacher stage: MLP numerics, TD3+BC and Cal-QL against hand computations and PyTorch (same
 * initial weights, same batch, same noise), Monte-Carlo returns, evaluation rollouts, the saved
 * format, resumption from checkpoints, and bad configurations.
 */
import { directoryCheckpoint } from "../core/checkpoint.ts";
import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../numerics/backend.ts";
import { activeBlas } from "../numerics/blas_kernels.ts";
import { LocomotionEnv } from "../envs/locomotion.ts";
import { normalizedScore } from "../envs/specs.ts";
import { evaluatePolicy } from "../envs/rollout.ts";
import type { PipelineError } from "../core/errors.ts";
import { memoryMetricsLog } from "../core/metrics.ts";
import { silentProgress } from "../core/progress.ts";
import { createRuntime, runStage } from "../core/runtime.ts";
import type { StageContext } from "../core/stage.ts";
import {
  Adam,
  initMlpWeights,
  mlpForward,
  mlpTensorList,
  mlpTensors,
  mlpVariables,
  type MlpWeights,
  stopGradient,
} from "../numerics/mlp.ts";
import { Rng } from "../numerics/random.ts";
import type { OfflineDataset } from "../stages/load.ts";
import {
  defaultTeacherConfig,
  loadTeacherDir,
  saveTeacherDir,
  type TeacherArtifact,
  type TeacherConfig,
  teacherFromArtifact,
  teacherStage,
} from "../stages/teacher.ts";
import {
  Calql,
  CALQL_DEFAULTS,
  calqlActorLoss,
  type CalqlConfig,
  calqlCriticLoss,
  calqlNoise,
  cqlSamples,
  initCalqlWeights,
} from "../stages/teacher/calql.ts";
import { type Batch, batchFromArrays, returnsToGo } from "../stages/teacher/data.ts";
import { tidyPlain } from "../numerics/mlp.ts";
import { criticForward } from "../stages/teacher/model.ts";
import {
  initTd3bcWeights,
  targetNoise,
  Td3bc,
  TD3BC_DEFAULTS,
  td3bcActorLoss,
  type Td3bcConfig,
  td3bcCriticLoss,
  td3bcTarget,
  type Td3bcWeights,
} from "../stages/teacher/td3bc.ts";
import { python } from "./helpers.ts";

const backend = await initBackend("wasm");
assert.ok(!("kind" in backend), "the wasm backend starts");

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, "lengths");
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: number,
  what: string,
): void {
  const d = maxAbsDiff(actual, expected);
  assert.ok(d <= tol, `${what}: max |diff| ${d.toExponential(2)} > ${tol}`);
}

/** A synthetic offline dataset (random walk states, episodes of 20 steps, the last one terminal). */
function syntheticDataset(n: number, obsDim = 11, actDim = 3, seed = 1): OfflineDataset {
  const rng = new Rng(seed);
  const observations = rng.fillNormal(new Float32Array(n * obsDim));
  const nextObservations = new Float32Array(n * obsDim);
  const terminals = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const last = i % 20 === 19;
    for (let j = 0; j < obsDim; j++) {
      const next = last ? rng.normal() : observations[(i + 1) * obsDim + j];
      nextObservations[i * obsDim + j] = i + 1 < n ? next : rng.normal();
    }
    terminals[i] = last && i % 40 === 39 ? 1 : 0;
  }
  const actions = rng.fillUniform(new Float32Array(n * actDim), -1, 1);
  const rewards = new Float32Array(n).map((_, i) =>
    1 - actions[i * actDim] ** 2 + 0.1 * observations[i * obsDim]
  );
  const mean = new Float32Array(obsDim), std = new Float32Array(obsDim);
  for (let j = 0; j < obsDim; j++) {
    let s = 0, s2 = 0;
    for (let i = 0; i < n; i++) {
      (s += observations[i * obsDim + j]), (s2 += observations[i * obsDim + j] ** 2);
    }
    mean[j] = s / n;
    std[j] = Math.sqrt(Math.max(0, s2 / n - (s / n) ** 2)) + 1e-3;
  }
  return {
    env: "hopper",
    file: "synthetic",
    sha256: "-",
    n,
    obsDim,
    actDim,
    observations,
    actions,
    rewards,
    nextObservations,
    terminals,
    stateMean: mean,
    stateStd: std,
    episodeReturns: new Float64Array([1]),
    episodeLengths: new Int32Array([n]),
  };
}

interface HostBatch {
  states: Float32Array;
  actions: Float32Array;
  rewards: Float32Array;
  nextStates: Float32Array;
  notDone: Float32Array;
  mcReturns: Float32Array;
  obsDim: number;
  actDim: number;
}

function hostBatch(rng: Rng, b: number, obsDim: number, actDim: number): HostBatch {
  return {
    states: rng.fillNormal(new Float32Array(b * obsDim)),
    actions: rng.fillUniform(new Float32Array(b * actDim), -0.99, 0.99),
    rewards: rng.fillNormal(new Float32Array(b)),
    nextStates: rng.fillNormal(new Float32Array(b * obsDim)),
    notDone: new Float32Array(b).map((_, i) => (i % 5 === 4 ? 0 : 1)),
    mcReturns: rng.fillNormal(new Float32Array(b), 1.5),
    obsDim,
    actDim,
  };
}

const netJson = (w: MlpWeights) => ({
  sizes: w.sizes,
  weights: w.weights.map((a) => Array.from(a)),
  biases: w.biases.map((a) => Array.from(a)),
});
const batchJson = (b: HostBatch) =>
  Object.fromEntries(Object.entries(b).map(([k, v]) => [k, typeof v === "number" ? v : Array.from(v)]));
const flat = (w: MlpWeights) => [...w.weights, ...w.biases].flatMap((a) => Array.from(a));
const flatRef = (w: { weights: number[][]; biases: number[][] }) => [...w.weights, ...w.biases].flat();

/** Python that builds torch MLPs from our [in, out] weights and reads them back in that layout. */
const TORCH_PRELUDE = `
import json, sys, copy, math
import torch
import torch.nn.functional as F
torch.set_num_threads(1)
spec = json.load(open(sys.argv[1]))
def mlp(w, out=None):
    layers = []
    n = len(w["sizes"]) - 1
    for i in range(n):
        lin = torch.nn.Linear(w["sizes"][i], w["sizes"][i + 1])
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(w["weights"][i]).reshape(w["sizes"][i], w["sizes"][i + 1]).T)
            lin.bias.copy_(torch.tensor(w["biases"][i]))
        layers.append(lin)
        if i < n - 1: layers.append(torch.nn.ReLU())
    if out is not None: layers.append(out)
    return torch.nn.Sequential(*layers)
def dump(net):
    lins = [m for m in net if isinstance(m, torch.nn.Linear)]
    return {"weights": [l.weight.detach().T.reshape(-1).tolist() for l in lins], "biases": [l.bias.detach().tolist() for l in lins]}
def grads(net):
    lins = [m for m in net if isinstance(m, torch.nn.Linear)]
    return [x for l in lins for x in l.weight.grad.T.reshape(-1).tolist()] + [x for l in lins for x in l.bias.grad.tolist()]
def soft(target, source, tau):
    for t, s in zip(target.parameters(), source.parameters()):
        t.data.copy_((1 - tau) * t.data + tau * s.data)
def T(x, *shape): return torch.tensor(x, dtype=torch.float32).reshape(*shape)
`;

async function torchRun(script: string, spec: unknown): Promise<any> {
  const file = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(file, JSON.stringify(spec));
  try {
    return await python(TORCH_PRELUDE + script, file);
  } finally {
    await Deno.remove(file);
  }
}

function memoryContext(
  workDir: string,
  progress = silentProgress,
): StageContext & { records: Record<string, unknown>[]; metrics: Record<string, unknown> } {
  const records: Record<string, unknown>[] = [];
  const metrics: Record<string, unknown> = {};
  return {
    progress,
    log: (r) => void records.push({ ...r }),
    metric: (k, v) => void (metrics[k] = v),
    backend: "wasm",
    threads: 1,
    checkpoint: directoryCheckpoint(join(workDir, "checkpoint")),
    records,
    metrics,
  };
}

// ---------------------------------------------------------------------------------------------
// numerics/mlp.ts
// ---------------------------------------------------------------------------------------------

Deno.test("MLP init: PyTorch's U(±1/√fan_in) bounds and variance; orthogonal gives WᵀW = gain²·I", () => {
  const w = initMlpWeights([64, 128, 3], new Rng(3));
  for (const [i, fanIn] of [[0, 64], [1, 128]]) {
    const bound = 1 / Math.sqrt(fanIn);
    const all = [...w.weights[i], ...w.biases[i]];
    assert.ok(all.every((x) => Math.abs(x) <= bound), `layer ${i} within ±${bound}`);
    const variance = w.weights[i].reduce((s, x) => s + x * x, 0) / w.weights[i].length;
    assert.ok(Math.abs(variance / (bound * bound / 3) - 1) < 0.1, `layer ${i} variance ${variance}`);
  }
  for (const [fanIn, fanOut] of [[20, 20], [30, 8], [8, 30]]) {
    const o = initMlpWeights([fanIn, fanOut], new Rng(4), { kind: "orthogonal", gain: Math.SQRT2 });
    const m = o.weights[0]; // [in, out]
    const k = Math.min(fanIn, fanOut);
    // The smaller Gram matrix is 2·I: columns orthogonal when in ≥ out, rows when in < out.
    for (let a = 0; a < k; a++) {
      for (let b = 0; b < k; b++) {
        let dot = 0;
        if (fanIn >= fanOut) { for (let r = 0; r < fanIn; r++) dot += m[r * fanOut + a] * m[r * fanOut + b]; }
        else for (let c = 0; c < fanOut; c++) dot += m[a * fanOut + c] * m[b * fanOut + c];
        assert.ok(Math.abs(dot - (a === b ? 2 : 0)) < 1e-5, `[${fanIn}×${fanOut}] gram ${a},${b} = ${dot}`);
      }
    }
    assert.ok(o.biases[0].every((x) => x === 0));
  }
});

Deno.test("MLP forward equals a float64 hand computation; stopGradient blocks gradients", () => {
  const w: MlpWeights = {
    sizes: [2, 3, 1],
    weights: [Float32Array.from([0.5, -1, 0.25, 2, 0.75, -0.5]), Float32Array.from([1, -2, 0.5])],
    biases: [Float32Array.from([0.1, 0.2, -0.3]), Float32Array.from([0.05])],
  };
  const x = [[1, -1], [0.5, 2]];
  const expected = x.map(([a, b]) => {
    const h = [0, 1, 2].map((j) =>
      Math.max(0, a * w.weights[0][j] + b * w.weights[0][3 + j] + w.biases[0][j])
    );
    return Math.tanh(h[0] * 1 + h[1] * -2 + h[2] * 0.5 + 0.05);
  });
  const net = mlpTensors(w);
  const out = tf.tidy(() => mlpForward(net, tf.tensor2d(x), "relu", "tanh").dataSync());
  assertClose(out, expected, 1e-6, "forward");
  const g = tf.tidy(() =>
    tf.grad((v: tf.Tensor) => tf.sum(tf.add(tf.mul(v, 3), stopGradient(tf.mul(v, 5)))))(tf.tensor1d([1, 2]))
      .dataSync()
  );
  assert.deepEqual(Array.from(g), [3, 3]);
});

Deno.test("Adam follows torch.optim.Adam over 5 steps with varying gradients", async () => {
  const p = tf.variable(tf.tensor1d([0.5, -1.5, 2, 0]));
  const adam = new Adam([p], { learningRate: 0.01 });
  const grads = [[1, -2, 0.5, 0], [0.3, 0.1, -4, 1e-3], [-1, 2, 3, -0.5], [0.01, -0.02, 0.5, 7], [
    2,
    2,
    -2,
    -2,
  ]];
  for (const g of grads) adam.apply([tf.tensor1d(g)]);
  const ref = await torchRun(
    `
p = torch.nn.Parameter(torch.tensor([0.5, -1.5, 2, 0]))
opt = torch.optim.Adam([p], lr=0.01)
for g in spec["grads"]:
    opt.zero_grad(); p.grad = torch.tensor(g, dtype=torch.float32); opt.step()
print(json.dumps(p.detach().tolist()))`,
    { grads },
  );
  assertClose(p.dataSync(), ref, 1e-7, "Adam");
  assert.equal(adam.step, 5);
  const state = adam.state();
  const copy = tf.variable(tf.tensor1d([0.5, -1.5, 2, 0]));
  const other = new Adam([copy], { learningRate: 0.01 });
  other.setState(state);
  assert.equal(other.step, 5);
  assert.deepEqual(Array.from(other.state().m[0]), Array.from(state.m[0]));
  tf.dispose([p, copy]);
  adam.dispose();
  other.dispose();
});

// ---------------------------------------------------------------------------------------------
// TD3+BC
// ---------------------------------------------------------------------------------------------

Deno.test("TD3+BC loss terms equal a float64 hand computation on one-layer networks", () => {
  // Linear actor a = tanh(s·Wa + ba) (one layer), linear critics q = [s, a]·Wq + bq.
  const actor: MlpWeights = {
    sizes: [2, 1],
    weights: [Float32Array.from([0.5, -0.25])],
    biases: [Float32Array.from([0.1])],
  };
  const c1: MlpWeights = {
    sizes: [3, 1],
    weights: [Float32Array.from([1, -1, 2])],
    biases: [Float32Array.from([0.5])],
  };
  const c2: MlpWeights = {
    sizes: [3, 1],
    weights: [Float32Array.from([0.5, 0.5, -1])],
    biases: [Float32Array.from([0])],
  };
  const s = [[1, 2], [-1, 0.5]],
    a = [[0.3], [-0.6]],
    r = [1, -0.5],
    s2 = [[0, 1], [2, -1]],
    nd = [1, 0],
    eps = [0.1, -0.2];
  const pi = (x: number[]) => Math.tanh(x[0] * 0.5 + x[1] * -0.25 + 0.1);
  const q = (w: MlpWeights, x: number[], u: number) =>
    x[0] * w.weights[0][0] + x[1] * w.weights[0][1] + u * w.weights[0][2] + w.biases[0][0];
  const y = s2.map((x, i) => {
    const u = Math.min(1, Math.max(-1, pi(x) + eps[i]));
    return r[i] + 0.99 * nd[i] * Math.min(q(c1, x, u), q(c2, x, u));
  });
  const criticLoss = [c1, c2].reduce(
    (sum, c) => sum + s.reduce((t, x, i) => t + (q(c, x, a[i][0]) - y[i]) ** 2, 0) / 2,
    0,
  );
  const qPi = s.map((x) => q(c1, x, pi(x)));
  const lambda = 2.5 / ((Math.abs(qPi[0]) + Math.abs(qPi[1])) / 2);
  const actorLoss = -lambda * (qPi[0] + qPi[1]) / 2 +
    s.reduce((t, x, i) => t + (pi(x) - a[i][0]) ** 2, 0) / 2;

  const [A, C1, C2] = [actor, c1, c2].map(mlpTensors);
  const batch: Batch = {
    states: tf.tensor2d(s),
    actions: tf.tensor2d(a),
    rewards: tf.tensor1d(r),
    nextStates: tf.tensor2d(s2),
    notDone: tf.tensor1d(nd),
  };
  const [yT, lossQ, l] = tidyPlain(() => {
    const target = td3bcTarget(
      { actor: A, critic1: C1, critic2: C2 },
      batch,
      tf.tensor2d(eps, [2, 1]),
      0.99,
      1,
    );
    const lq = td3bcCriticLoss(C1, C2, batch, target);
    const la = td3bcActorLoss(A, C1, batch, 2.5, 1);
    return [Array.from(target.dataSync()), lq.dataSync()[0], {
      loss: la.loss.dataSync()[0],
      lambda: la.lambda.dataSync()[0],
    }];
  });
  assertClose(yT, y, 1e-5, "target y");
  assertClose([lossQ], [criticLoss], 1e-5, "critic loss");
  assertClose([l.lambda, l.loss], [lambda, actorLoss], 1e-5, "λ and actor loss");
});

Deno.test("TD3+BC: two updates (critic, then critic + delayed actor + targets) match PyTorch to 1e-5 on both engines", async () => {
  const config: Td3bcConfig = { ...TD3BC_DEFAULTS, hidden: [32, 32], batchSize: 16 };
  const [obsDim, actDim] = [5, 2];
  const init = initTd3bcWeights(obsDim, actDim, config, new Rng(7));
  const rng = new Rng(8);
  const batches = [hostBatch(rng, 16, obsDim, actDim), hostBatch(rng, 16, obsDim, actDim)];
  const noises = batches.map(() => targetNoise(rng, 16, actDim, config, 1));
  const ref = await torchRun(
    `
c = spec["config"]
actor = mlp(spec["init"]["actor"], torch.nn.Tanh()); c1 = mlp(spec["init"]["critic1"]); c2 = mlp(spec["init"]["critic2"])
actor_t, c1_t, c2_t = copy.deepcopy(actor), copy.deepcopy(c1), copy.deepcopy(c2)
opt_a = torch.optim.Adam(actor.parameters(), lr=c["actorLr"])
opt_c = torch.optim.Adam(list(c1.parameters()) + list(c2.parameters()), lr=c["criticLr"])
out = []
for it, (b, eps) in enumerate(zip(spec["batches"], spec["noises"])):
    B, S, A = len(b["rewards"]), b["obsDim"], b["actDim"]
    s, a, r, s2, nd = T(b["states"], B, S), T(b["actions"], B, A), T(b["rewards"], B), T(b["nextStates"], B, S), T(b["notDone"], B)
    with torch.no_grad():
        a2 = (actor_t(s2) + T(eps, B, A)).clamp(-1, 1)
        y = r + nd * c["discount"] * torch.min(c1_t(torch.cat([s2, a2], 1)), c2_t(torch.cat([s2, a2], 1))).squeeze(1)
    sa = torch.cat([s, a], 1)
    lq = F.mse_loss(c1(sa).squeeze(1), y) + F.mse_loss(c2(sa).squeeze(1), y)
    opt_c.zero_grad(); lq.backward(); opt_c.step()
    st = {"criticLoss": lq.item()}
    if (it + 1) % c["policyDelay"] == 0:
        pi = actor(s)
        q = c1(torch.cat([s, pi], 1))
        lmbda = c["alpha"] / q.abs().mean().detach()
        la = -lmbda * q.mean() + F.mse_loss(pi, a)
        opt_a.zero_grad(); la.backward(); opt_a.step()
        for t, n in ((c1_t, c1), (c2_t, c2), (actor_t, actor)): soft(t, n, c["tau"])
        st.update(actorLoss=la.item(), lambda_=lmbda.item(), bcLoss=F.mse_loss(pi, a).item())
    out.append(st)
print(json.dumps({"stats": out, "actor": dump(actor), "critic1": dump(c1), "critic2": dump(c2),
  "actorTarget": dump(actor_t), "critic1Target": dump(c1_t), "critic2Target": dump(c2_t)}))`,
    {
      config,
      init: Object.fromEntries(Object.entries(init).map(([k, v]) => [k, netJson(v)])),
      batches: batches.map(batchJson),
      noises: noises.map((n) => Array.from(n)),
    },
  );
  assert.ok(activeBlas(), "the host engine needs the BLAS: run with the test task's --allow-ffi");
  for (const engine of ["tensors", "host"] as const) {
    const learner = new Td3bc(init, config, 1, engine);
    assert.equal(learner.engine, engine);
    const stats = batches.map((b, i) =>
      tidyPlain(() => learner.update(batchFromArrays(b), noises[i], true))!
    );
    const after = learner.weights();
    learner.dispose();
    for (
      const key of ["actor", "critic1", "critic2", "actorTarget", "critic1Target", "critic2Target"] as const
    ) {
      assertClose(flat(after[key as keyof Td3bcWeights]), flatRef(ref[key]), 1e-5, key);
      // The test must be able to fail: every network moved away from its initial weights.
      assert.ok(
        maxAbsDiff(flat(after[key as keyof Td3bcWeights]), flat(init[key as keyof Td3bcWeights])) > 1e-6,
        `${key} changed`,
      );
    }
    assert.equal(stats[0].actorLoss, undefined, "no actor update on step 1 (policy delay 2)");
    assertClose(
      [stats[0].criticLoss, stats[1].criticLoss],
      [ref.stats[0].criticLoss, ref.stats[1].criticLoss],
      1e-5 * (1 + ref.stats[0].criticLoss),
      "critic losses",
    );
    assertClose(
      [stats[1].actorLoss!, stats[1].lambda!, stats[1].bcLoss!],
      [ref.stats[1].actorLoss, ref.stats[1].lambda_, ref.stats[1].bcLoss],
      1e-5,
      `${engine}: actor loss, λ, BC term`,
    );
  }
});

Deno.test("TD3+BC: the host engine's state resumes on the tensor engine and both continue alike", () => {
  const config: Td3bcConfig = { ...TD3BC_DEFAULTS, hidden: [24, 16], batchSize: 12 };
  const [obsDim, actDim] = [4, 3];
  const rng = new Rng(21);
  const host = new Td3bc(initTd3bcWeights(obsDim, actDim, config, new Rng(20)), config, 1, "host");
  const steps = Array.from({ length: 6 }, () => ({
    batch: hostBatch(rng, 12, obsDim, actDim),
    noise: targetNoise(rng, 12, actDim, config, 1),
  }));
  for (const s of steps.slice(0, 3)) tidyPlain(() => host.update(batchFromArrays(s.batch), s.noise));
  const tensors = new Td3bc(initTd3bcWeights(obsDim, actDim, config, new Rng(99)), config, 1, "tensors");
  tensors.setState(host.state());
  for (const s of steps.slice(3)) {
    const a = tidyPlain(() => host.update(batchFromArrays(s.batch), s.noise, true))!;
    const b = tidyPlain(() => tensors.update(batchFromArrays(s.batch), s.noise, true))!;
    assertClose([a.criticLoss, a.actorLoss ?? 0], [b.criticLoss, b.actorLoss ?? 0], 1e-4, "losses");
  }
  const [x, y] = [host.state(), tensors.state()];
  assert.equal(x.step, 6);
  assert.equal(y.step, 6);
  for (
    const key of ["actor", "critic1", "critic2", "actorTarget", "critic1Target", "critic2Target"] as const
  ) {
    assertClose(flat(x.weights[key]), flat(y.weights[key]), 1e-4, key);
  }
  assertClose(
    x.criticOptimizer.v.flatMap((v) => [...v]),
    y.criticOptimizer.v.flatMap((v) => [...v]),
    1e-4,
    "v",
  );
  host.dispose();
  tensors.dispose();
});

// ---------------------------------------------------------------------------------------------
// Cal-QL
// ---------------------------------------------------------------------------------------------

const CALQL_REFERENCE = `
from torch.distributions import Normal, TanhTransform, TransformedDistribution
c = spec["config"]; w = spec["init"]; b = spec["batch"]; z = spec["noise"]
B, S, A, N = len(b["rewards"]), b["obsDim"], b["actDim"], c["cqlNActions"]
actor = mlp(w["actor"]); c1 = mlp(w["critic1"]); c2 = mlp(w["critic2"])
c1_t, c2_t = mlp(w["critic1Target"]), mlp(w["critic2Target"])
mult = torch.nn.Parameter(torch.tensor(w["logStdMultiplier"])); off = torch.nn.Parameter(torch.tensor(w["logStdOffset"]))
log_alpha = torch.nn.Parameter(torch.tensor(w["logAlpha"]))
def policy(states, eps):
    mean, ls = torch.split(actor(states), A, dim=-1)
    ls = torch.clamp(mult * ls + off, -20.0, 2.0)
    dist = TransformedDistribution(Normal(mean, ls.exp()), TanhTransform(cache_size=1))
    y = dist.transforms[0](mean + ls.exp() * eps)   # rsample with our ε; the transform caches x
    return y, dist.log_prob(y).sum(-1)
def q(net, s, a):
    if a.dim() == 3:
        s = s.unsqueeze(1).repeat_interleave(a.shape[1], dim=1).reshape(-1, S); 
        return net(torch.cat([s, a.reshape(-1, A)], 1)).reshape(B, -1)
    return net(torch.cat([s, a], 1)).squeeze(-1)
s, a, r, s2, nd, G = T(b["states"], B, S), T(b["actions"], B, A), T(b["rewards"], B), T(b["nextStates"], B, S), T(b["notDone"], B), T(b["mcReturns"], B)
alpha = log_alpha.exp() * c["alphaMultiplier"] if c["automaticEntropyTuning"] else torch.tensor(c["alphaMultiplier"])
new_a, log_pi = policy(s, T(z["policy"], B, A))
alpha_loss = -(log_alpha * (log_pi - A).detach()).mean()
policy_loss = (alpha * log_pi - torch.min(q(c1, s, new_a), q(c2, s, new_a))).mean()
with torch.no_grad():
    a2, lp2 = policy(s2, T(z["next"], B, A))
    tq = torch.min(q(c1_t, s2, a2), q(c2_t, s2, a2))
    if c["backupEntropy"]: tq = tq - alpha * lp2
    y = r + nd * c["discount"] * tq
    a_cur, lp_cur = policy(s.unsqueeze(1).repeat_interleave(N, 1), T(z["cqlCurrent"], B, N, A))
    a_nxt, lp_nxt = policy(s2.unsqueeze(1).repeat_interleave(N, 1), T(z["cqlNext"], B, N, A))
a_rand = T(z["random"], B, N, A)
loss_q = 0; terms = {}
for i, net in ((1, c1), (2, c2)):
    qp = q(net, s, a)
    q_rand, q_cur, q_nxt = q(net, s, a_rand), q(net, s, a_cur), q(net, s, a_nxt)
    low = G.reshape(-1, 1).repeat(1, N)
    if i == 1: terms["boundRate"] = (q_cur < low).float().mean().item()
    if c["calibration"]: q_cur, q_nxt = torch.maximum(q_cur, low), torch.maximum(q_nxt, low)
    if c["cqlImportanceSample"]:
        cat = torch.cat([q_rand - math.log(0.5 ** A), q_nxt - lp_nxt, q_cur - lp_cur], 1)
    else:
        cat = torch.cat([q_rand, qp.unsqueeze(1), q_nxt, q_cur], 1)
    ood = torch.logsumexp(cat / c["cqlTemp"], 1) * c["cqlTemp"]
    diff = (ood - qp).mean(); td = F.mse_loss(qp, y)
    terms["qf%dLoss" % i] = td.item(); terms["cqlDiff%d" % i] = diff.item()
    loss_q = loss_q + td + c["cqlAlpha"] * diff
actor_params = list(actor.parameters()) + [mult, off]
g_actor = torch.autograd.grad(policy_loss, actor_params, retain_graph=True)
g_critic = torch.autograd.grad(loss_q, list(c1.parameters()) + list(c2.parameters()), retain_graph=True)
def flat_grads(gs, nets):
    out = []; k = 0
    for net in nets:
        lins = [m for m in net if isinstance(m, torch.nn.Linear)]
        ws = [gs[k + 2 * j].T.reshape(-1).tolist() for j in range(len(lins))]
        bs = [gs[k + 2 * j + 1].tolist() for j in range(len(lins))]
        out.append([x for l in ws for x in l] + [x for l in bs for x in l]); k += 2 * len(lins)
    return out
ga, = flat_grads(g_actor, [actor]); gc1, gc2 = flat_grads(g_critic, [c1, c2])
# One full step in CORL's order, from these losses.
opt_alpha = torch.optim.Adam([log_alpha], lr=c["policyLr"]); opt_a = torch.optim.Adam(actor_params, lr=c["policyLr"])
opt_c = torch.optim.Adam(list(c1.parameters()) + list(c2.parameters()), lr=c["qfLr"])
if c["automaticEntropyTuning"]:
    opt_alpha.zero_grad(); alpha_loss.backward(); opt_alpha.step()
opt_a.zero_grad(); policy_loss.backward(); opt_a.step()
opt_c.zero_grad(); loss_q.backward(); opt_c.step()
soft(c1_t, c1, c["tau"]); soft(c2_t, c2, c["tau"])
print(json.dumps({"terms": terms, "policyLoss": policy_loss.item(), "criticLoss": loss_q.item(),
  "gradActor": ga + [g_actor[-2].item(), g_actor[-1].item()], "gradCritic1": gc1, "gradCritic2": gc2,
  "actor": dump(actor), "critic1": dump(c1), "critic2": dump(c2), "critic1Target": dump(c1_t), "critic2Target": dump(c2_t),
  "logStdMultiplier": mult.item(), "logStdOffset": off.item(), "logAlpha": log_alpha.item()}))`;

for (
  const [label, overrides] of [
    ["Cal-QL (CORL defaults: importance sampling, calibration, entropy tuning)", {}],
    ["CQL variant (no importance sampling or calibration, fixed α, entropy backup)", {
      cqlImportanceSample: false,
      calibration: false,
      automaticEntropyTuning: false,
      backupEntropy: true,
      alphaMultiplier: 0.2,
    }],
  ] as const
) {
  Deno.test(`${label}: gradients and one update match PyTorch to 1e-5`, async () => {
    const config: CalqlConfig = {
      ...CALQL_DEFAULTS,
      actorHidden: [16, 16, 16],
      criticHidden: [16, 16],
      batchSize: 8,
      cqlNActions: 3,
      ...overrides,
    };
    const [obsDim, actDim, B] = [5, 2, 8];
    const init0 = initCalqlWeights(obsDim, actDim, config, new Rng(11));
    // Non-trivial scalars, so that their gradients and the entropy term are exercised.
    const init = { ...init0, logStdMultiplier: 0.8, logStdOffset: -0.6, logAlpha: -0.3 };
    const rng = new Rng(12);
    const hb = hostBatch(rng, B, obsDim, actDim);
    const noise = calqlNoise(rng, B, actDim, config.cqlNActions);

    // Gradients of the two losses at the initial parameters.
    const actor = mlpVariables(init.actor), c1 = mlpVariables(init.critic1), c2 = mlpVariables(init.critic2);
    const [t1, t2] = [mlpTensors(init.critic1Target), mlpTensors(init.critic2Target)];
    const mult = tf.variable(tf.scalar(init.logStdMultiplier)),
      off = tf.variable(tf.scalar(init.logStdOffset));
    const ap = { net: actor, logStdMultiplier: mult, logStdOffset: off };
    const alpha = config.automaticEntropyTuning ? Math.exp(init.logAlpha) : config.alphaMultiplier;
    const batch = batchFromArrays(hb);
    const actorVars = [...mlpTensorList(actor), mult, off];
    const criticVars = [...mlpTensorList(c1), ...mlpTensorList(c2)];
    const ours = tidyPlain(() => {
      const pg = tf.variableGrads(
        () => calqlActorLoss(ap, c1, c2, batch, tf.tensor2d(noise.policy, [B, actDim]), alpha, 1).loss,
        actorVars,
      );
      const samples = cqlSamples(ap, { critic1: t1, critic2: t2 }, batch, noise, alpha, config, 1);
      const terms = calqlCriticLoss(c1, c2, batch, samples, config);
      const cg = tf.variableGrads(() => calqlCriticLoss(c1, c2, batch, samples, config).loss, criticVars);
      const gradOf = (vars: tf.Variable[], g: Record<string, tf.Tensor>) => {
        const mats = vars.filter((v) => v.rank === 2),
          vecs = vars.filter((v) => v.rank === 1),
          scal = vars.filter((v) => v.rank === 0);
        return [...mats, ...vecs, ...scal].flatMap((v) => Array.from(g[v.name].dataSync()));
      };
      return {
        policyLoss: pg.value.dataSync()[0],
        criticLoss: terms.loss.dataSync()[0],
        boundRate: terms.boundRate.dataSync()[0],
        cqlDiff1: terms.cqlDiff1.dataSync()[0],
        gradActor: gradOf(actorVars, pg.grads),
        gradCritic1: gradOf(mlpTensorList(c1), cg.grads),
        gradCritic2: gradOf(mlpTensorList(c2), cg.grads),
      };
    });
    tf.dispose([...actorVars, ...criticVars, ...mlpTensorList(t1), ...mlpTensorList(t2)]);

    // One full update of the learner.
    const learner = new Calql(init, config, 1);
    const stats = tidyPlain(() => learner.update(batchFromArrays(hb), noise, true))!;
    const after = learner.weights();
    learner.dispose();

    const ref = await torchRun(CALQL_REFERENCE, {
      config,
      init: {
        ...Object.fromEntries(
          ["actor", "critic1", "critic2", "critic1Target", "critic2Target"].map((
            k,
          ) => [k, netJson(init[k as "actor"])]),
        ),
        logStdMultiplier: init.logStdMultiplier,
        logStdOffset: init.logStdOffset,
        logAlpha: init.logAlpha,
      },
      batch: batchJson(hb),
      noise: Object.fromEntries(Object.entries(noise).map(([k, v]) => [k, Array.from(v as Float32Array)])),
    });
    const rel = (x: number) => 1e-5 * (1 + Math.abs(x));
    assertClose([ours.policyLoss], [ref.policyLoss], rel(ref.policyLoss), "policy loss");
    assertClose([ours.criticLoss], [ref.criticLoss], rel(ref.criticLoss), "critic loss");
    assertClose(
      [ours.cqlDiff1, stats.qf1Loss, stats.cqlDiff2],
      [ref.terms.cqlDiff1, ref.terms.qf1Loss, ref.terms.cqlDiff2],
      rel(ref.terms.cqlDiff1),
      "CQL terms",
    );
    assert.equal(ours.boundRate, ref.terms.boundRate);
    if (config.calibration) {
      assert.ok(
        ours.boundRate > 0 && ours.boundRate < 1,
        `calibration active on some samples (${ours.boundRate})`,
      );
    }
    const gScale = (g: number[]) => 1e-5 * Math.max(1, ...g.map(Math.abs));
    assertClose(
      ours.gradActor,
      ref.gradActor,
      gScale(ref.gradActor),
      "actor gradient (with log-std scalars)",
    );
    assertClose(ours.gradCritic1, ref.gradCritic1, gScale(ref.gradCritic1), "critic 1 gradient");
    assertClose(ours.gradCritic2, ref.gradCritic2, gScale(ref.gradCritic2), "critic 2 gradient");
    for (const key of ["actor", "critic1", "critic2", "critic1Target", "critic2Target"] as const) {
      assertClose(flat(after[key]), flatRef(ref[key]), 1e-5, `${key} after one step`);
    }
    assertClose(
      [after.logStdMultiplier, after.logStdOffset, after.logAlpha],
      [ref.logStdMultiplier, ref.logStdOffset, ref.logAlpha],
      1e-6,
      "scalars after one step",
    );
    if (config.automaticEntropyTuning) {
      assert.ok(Math.abs(after.logAlpha - init.logAlpha) > 1e-6, "log α is tuned");
    } else assert.equal(after.logAlpha, Math.fround(init.logAlpha), "log α stays when not tuned");
  });
}

Deno.test("returns-to-go cut episodes at terminals, discontinuities and the horizon (CORL get_return_to_go)", () => {
  // Rows 0–2: an episode ending in a terminal; 3–4: a timeout (next row does not continue);
  // 5–8: a continuous stretch cut by a horizon of 3; 9: the last row.
  const n = 10, obs = new Float32Array(n), next = new Float32Array(n);
  for (let i = 0; i < n; i++) (obs[i] = i), (next[i] = i + 1);
  next[4] = 99; // discontinuity after row 4
  const rewards = Float32Array.from([1, 2, 3, 4, 5, 1, 1, 1, 1, 7]);
  const terminals = Uint8Array.from([0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
  const g = 0.5;
  const out = returnsToGo(
    { n, obsDim: 1, observations: obs, nextObservations: next, rewards, terminals },
    g,
    3,
  );
  const expected = [
    1 + g * (2 + g * 3),
    2 + g * 3,
    3,
    4 + g * 5,
    5,
    1 + g * (1 + g * 1),
    1 + g * 1,
    1,
    1 + g * 7,
    7,
  ];
  assertClose(out, expected, 1e-6, "returns-to-go");
});

// ---------------------------------------------------------------------------------------------
// Evaluation rollouts
// ---------------------------------------------------------------------------------------------

Deno.test("evaluatePolicy: deterministic, masks finished episodes, and matches a single-environment rollout", async () => {
  const policy = (states: Float32Array, n: number) => {
    const out = new Float32Array(n * 3);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < 3; j++) out[i * 3 + j] = Math.tanh(states[i * 11 + 5 + j]) * 0.8;
    }
    return out;
  };
  const a = await evaluatePolicy("hopper", policy, 3, 42);
  const b = await evaluatePolicy("hopper", policy, 3, 42);
  assert.deepEqual(Array.from(a.returns), Array.from(b.returns));
  assert.ok(a.lengths.every((l) => l >= 1 && l <= 1000));
  // Episode 1 started from the 2nd fork of Rng(42); replay it alone.
  const root = new Rng(42);
  root.fork();
  const env = await LocomotionEnv.create("hopper", { rng: root.fork() });
  let obs = env.reset(), ret = 0, steps = 0;
  for (;;) {
    const r = env.step(policy(obs, 1), obs);
    ret += r.reward;
    steps++;
    obs = r.obs;
    if (r.terminated || r.truncated) break;
  }
  env.dispose();
  assert.equal(a.lengths[1], steps);
  assert.ok(Math.abs(a.returns[1] - ret) < 1e-9, `${a.returns[1]} vs ${ret}`);
  assertClose(
    a.normalizedScores,
    Array.from(a.returns, (x) => normalizedScore("hopper", x)),
    1e-12,
    "scores",
  );
  assert.ok(Math.abs(a.meanNormalizedScore - a.normalizedScores.reduce((s, x) => s + x, 0) / 3) < 1e-12);
});

// ---------------------------------------------------------------------------------------------
// The stage: artifact, saved format, resumption, bad input
// ---------------------------------------------------------------------------------------------

const SMALL_TD3: TeacherConfig = {
  ...defaultTeacherConfig("td3bc"),
  steps: 40,
  evalEpisodes: 2,
  logEvery: 10,
  checkpointEvery: 15,
  td3bc: { ...TD3BC_DEFAULTS, hidden: [32, 32], batchSize: 32 },
};

Deno.test("the stage runs through the runtime: manifest metric, run log, artifact usable as a Teacher", async () => {
  const cache = await Deno.makeTempDir();
  const metrics = memoryMetricsLog();
  const rt = createRuntime({ cacheRoot: cache, backend: "wasm", metrics });
  const data = syntheticDataset(400);
  const dataArtifact = {
    stage: "load",
    key: "synthetic",
    value: data,
    fromCache: false,
    manifest: {} as never,
  };
  const first = await runStage(rt, teacherStage, SMALL_TD3, { dataset: dataArtifact })();
  assert.equal(first._tag, "Right", JSON.stringify(first).slice(0, 400));
  const art =
    (first as { right: { value: TeacherArtifact; manifest: { metrics: Record<string, number> } } }).right;
  const t = art.value;
  assert.equal(t.algorithm, "td3bc");
  assert.equal(t.training.steps, 40);
  assert.ok(t.evaluation && t.evaluation.episodes === 2);
  assert.equal(art.manifest.metrics.normalizedScore, +t.evaluation!.meanNormalizedScore.toFixed(3));
  const trainRecords = metrics.records.filter((r) => r.event === "train");
  assert.deepEqual(trainRecords.map((r) => r.step), [10, 20, 30, 40]);
  assert.ok(trainRecords.every((r) => Number.isFinite(r.criticLoss as number)));
  assert.ok(trainRecords.some((r) => Number.isFinite(r.actorLoss as number)));
  // Cached: the second run reuses it, value intact.
  const second = await runStage(rt, teacherStage, SMALL_TD3, { dataset: dataArtifact })();
  assert.equal(rt.executions.get("teacher"), 1);
  const cached = (second as { right: { value: TeacherArtifact; fromCache: boolean } }).right;
  assert.ok(cached.fromCache);
  // Logging and checkpoint cadence are not in the key; a setting that changes the weights is, and so
  // is evalEvery: the evaluation curve is part of the output (same weights, one more point).
  const cadence = { ...SMALL_TD3, logEvery: 20, checkpointEvery: 7 };
  const third = await runStage(rt, teacherStage, cadence, { dataset: dataArtifact })();
  assert.ok((third as { right: { fromCache: boolean } }).right.fromCache);
  assert.equal(rt.executions.get("teacher"), 1);
  const fourth = await runStage(rt, teacherStage, { ...SMALL_TD3, steps: 41 }, { dataset: dataArtifact })();
  assert.equal((fourth as { right: { fromCache: boolean } }).right.fromCache, false);
  assert.equal(rt.executions.get("teacher"), 2);
  const curved = await runStage(rt, teacherStage, { ...SMALL_TD3, evalEvery: 20 }, {
    dataset: dataArtifact,
  })();
  assert.equal(rt.executions.get("teacher"), 3);
  const withCurve = (curved as { right: { value: TeacherArtifact } }).right.value;
  assert.deepEqual(withCurve.training.curve?.map((p) => p.step), [20, 40]);
  assert.equal(withCurve.training.curve![1].normalizedScore, withCurve.evaluation!.meanNormalizedScore);
  assert.deepEqual(Array.from(withCurve.actor.net.weights[1]), Array.from(t.actor.net.weights[1]));
  assert.deepEqual(Array.from(cached.value.actor.net.weights[1]), Array.from(t.actor.net.weights[1]));
  // As a Teacher: act = tanh(MLP)·m, q = critic 1, both on normalized states.
  const teacher = teacherFromArtifact(cached.value);
  const raw = tf.tensor2d(data.observations.subarray(0, 5 * 11), [5, 11]);
  const s = teacher.normalize(raw);
  const a = teacher.act(s, "deterministic");
  const sampled = teacher.act(s, "sampled");
  const q = teacher.q(s, a);
  const expected = tf.tidy(() => mlpForward(mlpTensors(t.actor.net), s, "relu", "tanh"));
  assertClose(a.dataSync(), expected.dataSync(), 1e-6, "act");
  assert.deepEqual(
    Array.from(sampled.dataSync()),
    Array.from(a.dataSync()),
    "a deterministic actor's sample is its action",
  );
  const qExpected = tf.tidy(() => criticForward(mlpTensors(t.critic), s, a));
  assertClose(q.dataSync(), qExpected.dataSync(), 1e-6, "q");
  const sRef = Array.from(
    data.observations.subarray(0, 11),
    (x, j) => (x - data.stateMean[j]) / data.stateStd[j],
  );
  assertClose(s.dataSync().subarray(0, 11), sRef, 1e-5, "normalize");
  tf.dispose([raw, s, a, sampled, q, expected, qExpected]);
  teacher.dispose();
  await Deno.remove(cache, { recursive: true });
});

const SMALL_CALQL: TeacherConfig = {
  ...defaultTeacherConfig("calql"),
  steps: 8,
  evalEpisodes: 0,
  logEvery: 2,
  checkpointEvery: 3,
  calql: {
    ...CALQL_DEFAULTS,
    actorHidden: [16, 16, 16],
    criticHidden: [16, 16],
    batchSize: 16,
    cqlNActions: 4,
  },
};

for (
  const [name, config, crashAt, resumeAt, logged] of [
    ["TD3+BC", { ...SMALL_TD3, evalEpisodes: 0 }, 25, 15, [20, 30, 40]],
    ["Cal-QL", SMALL_CALQL, 7, 6, [8]],
  ] as const
) {
  Deno.test(`${name}: an interrupted run resumes from its checkpoint and ends with the uninterrupted run's weights`, async () => {
    const data = syntheticDataset(300);
    const plain = await teacherStage.run(
      { dataset: data },
      config,
      memoryContext(await Deno.makeTempDir()),
    )();
    assert.equal(plain._tag, "Right");

    // Crash at step `crashAt`: the last checkpoint before it survives in the work directory.
    const workDir = await Deno.makeTempDir();
    const failing = (_label: string, _total: number) => ({
      update(done: number) {
        if (done === crashAt) throw new Error("simulated crash");
      },
      finish() {},
    });
    const crashed = await teacherStage.run({ dataset: data }, config, memoryContext(workDir, failing))();
    assert.equal(crashed._tag, "Left");
    assert.ok(
      await Deno.stat(join(workDir, "checkpoint", "checkpoint.json")).then(() => true, () => false),
      "checkpoint kept",
    );
    const ctx = memoryContext(workDir);
    const resumed = await teacherStage.run({ dataset: data }, config, ctx)();
    assert.equal(resumed._tag, "Right");
    assert.deepEqual(ctx.records.find((r) => r.event === "resume"), { event: "resume", step: resumeAt });
    assert.deepEqual(ctx.records.filter((r) => r.event === "train").map((r) => r.step), logged);
    const [p, r] = [plain, resumed].map((x) => (x as { right: TeacherArtifact }).right);
    assert.equal(maxAbsDiff(flat(p.actor.net), flat(r.actor.net)), 0, "bitwise identical actor");
    assert.equal(maxAbsDiff(flat(p.critic), flat(r.critic)), 0, "bitwise identical critic");
    assert.deepEqual(
      p.actor.kind === "tanh-gaussian" && p.actor.head,
      r.actor.kind === "tanh-gaussian" && r.actor.head,
    );
    // And a different seed does differ (the comparison can fail).
    const other = await teacherStage.run(
      { dataset: data },
      { ...config, seed: 1 },
      memoryContext(await Deno.makeTempDir()),
    )();
    assert.ok(maxAbsDiff(flat((other as { right: TeacherArtifact }).right.critic), flat(p.critic)) > 1e-4);
  });
}

Deno.test("Cal-QL runs as a stage at a small step count: finite losses, tanh-Gaussian teacher, save and load", async () => {
  const data = syntheticDataset(300);
  const config: TeacherConfig = {
    ...defaultTeacherConfig("calql"),
    steps: 6,
    evalEpisodes: 1,
    logEvery: 3,
    calql: { ...CALQL_DEFAULTS, actorHidden: [32, 32, 32], criticHidden: [32, 32], batchSize: 32 },
  };
  const ctx = memoryContext(await Deno.makeTempDir());
  const result = await teacherStage.run({ dataset: data }, config, ctx)();
  assert.equal(result._tag, "Right", JSON.stringify(result).slice(0, 300));
  const t = (result as { right: TeacherArtifact }).right;
  assert.equal(t.actor.kind, "tanh-gaussian");
  assert.equal(t.actor.net.sizes.at(-1), 6);
  const train = ctx.records.filter((r) => r.event === "train");
  assert.equal(train.length, 2);
  for (const k of ["qf1Loss", "cqlDiff1", "policyLoss", "alpha", "boundRate"]) {
    assert.ok(Number.isFinite(train[1][k] as number), k);
  }
  assert.ok((train[1].alpha as number) < 1, "α is being tuned down from 1");
  // Sampled actions differ from the deterministic ones and stay within the bounds.
  const teacher = teacherFromArtifact(t);
  const s = tf.tensor2d(new Rng(5).fillNormal(new Float32Array(4 * 11)), [4, 11]);
  const det = teacher.act(s, "deterministic"), smp = teacher.act(s, "sampled", new Rng(1));
  assert.ok(maxAbsDiff(det.dataSync(), smp.dataSync()) > 1e-3);
  assert.ok(smp.dataSync().every((x) => Math.abs(x) <= 1));
  // The saved directory format round-trips exactly.
  const dir = join(await Deno.makeTempDir(), "teacher");
  await saveTeacherDir(dir, t);
  const back = await loadTeacherDir(dir);
  assert.deepEqual(flat(back.actor.net), flat(t.actor.net));
  assert.deepEqual(back.actor, { ...t.actor, net: back.actor.net });
  assert.deepEqual(Array.from(back.stateStd), Array.from(t.stateStd));
  assert.equal(back.evaluation!.meanNormalizedScore, t.evaluation!.meanNormalizedScore);
  const t2 = teacherFromArtifact(back);
  assert.deepEqual(Array.from(t2.act(s).dataSync()), Array.from(det.dataSync()));
  // A damaged weight file is refused by its checksum.
  const bin = join(dir, "critic.1.weight.bin");
  const bytes = await Deno.readFile(bin);
  bytes[7] ^= 1;
  await Deno.writeFile(bin, bytes);
  await assert.rejects(
    loadTeacherDir(dir),
    (e: { error?: PipelineError }) =>
      e.error?.kind === "checksum" && /critic\.1\.weight\.bin/.test(e.error.message),
  );
  tf.dispose([s, det, smp]);
  teacher.dispose();
  t2.dispose();
});

Deno.test("bad configurations and datasets are typed errors before any training", async () => {
  const data = syntheticDataset(100);
  const run = (config: TeacherConfig, d: OfflineDataset = data) =>
    teacherStage.run({ dataset: d }, config, memoryContext("/tmp/never-used"))();
  const zero = await run({ ...SMALL_TD3, steps: 0 });
  assert.equal(zero._tag, "Left");
  assert.match((zero as { left: PipelineError }).left.message, /teacher\.steps = 0/);
  const algo = await run({ ...SMALL_TD3, algorithm: "sac" as never });
  assert.match((algo as { left: PipelineError }).left.message, /"sac" is not td3bc or calql/);
  const wrongDims = await run(SMALL_TD3, syntheticDataset(100, 17, 6));
  assert.equal(wrongDims._tag, "Left");
  assert.equal((wrongDims as { left: PipelineError }).left.kind, "input");
  assert.match((wrongDims as { left: PipelineError }).left.message, /17\/6 .* hopper has 11\/3/);
});
