/**
 * The stage runtime's contract, shown by counting stage executions on a three-stage chain
 * (source → double → total) whose outputs include typed arrays like real stages do.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { pipe } from "fp-ts/function.js";
import * as TE from "fp-ts/TaskEither.js";
import { ArtifactCache, type CacheFs, MANIFEST_FILE } from "../core/cache.ts";
import { fail, formatError, type PipelineError } from "../core/errors.ts";
import { createRuntime, runStage, type Runtime } from "../core/runtime.ts";
import { defineStage } from "../core/stage.ts";

const source = defineStage<Record<string, never>, { n: number }, { xs: Float32Array }>({
  name: "source",
  version: "1",
  compute: (_inputs, { n }) => ({ xs: Float32Array.from({ length: n }, (_, i) => i + 0.5) }),
});
const double = defineStage<{ source: { xs: Float32Array } }, { factor: number }, { ys: Float64Array }>({
  name: "double",
  version: "1",
  compute: ({ source }, { factor }) => ({ ys: Float64Array.from(source.xs, (x) => x * factor) }),
});
const total = defineStage<
  { double: { ys: Float64Array } },
  { label: string },
  { label: string; sum: number }
>({
  name: "total",
  version: "1",
  compute: ({ double }, { label }, ctx) => {
    const sum = double.ys.reduce((a, b) => a + b, 0);
    ctx.metric("sum", sum);
    return { label, sum };
  },
});

interface ChainConfig {
  n: number;
  factor: number;
  label: string;
}
const base: ChainConfig = { n: 5, factor: 2, label: "t" };

function chain(rt: Runtime, c: ChainConfig) {
  return pipe(
    runStage(rt, source, { n: c.n }, {}),
    TE.chain((s) =>
      pipe(runStage(rt, double, { factor: c.factor }, { source: s }), TE.map((d) => ({ s, d })))
    ),
    TE.chain(({ s, d }) =>
      pipe(runStage(rt, total, { label: c.label }, { double: d }), TE.map((t) => ({ s, d, t })))
    ),
  );
}

async function runChain(root: string, c: ChainConfig, force: string[] = [], cache?: ArtifactCache) {
  const reports: string[] = [];
  const rt = createRuntime({ cacheRoot: root, backend: "cpu", force, cache, report: (l) => reports.push(l) });
  const result = await chain(rt, c)();
  return { rt, result, reports, counts: Object.fromEntries(rt.executions) };
}

function right<E, A>(r: { _tag: "Left"; left: E } | { _tag: "Right"; right: A }): A {
  if (r._tag === "Left") throw new Error(`expected Right, got ${JSON.stringify(r.left)}`);
  return r.right;
}

async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(d: string) {
    for await (const e of Deno.readDir(d)) {
      const p = join(d, e.name);
      out.push(p.slice(dir.length + 1));
      if (e.isDirectory) await walk(p);
    }
  }
  await walk(dir);
  return out.sort();
}

Deno.test("first run computes every stage; second run reuses all of them", async () => {
  const root = await Deno.makeTempDir();
  const first = await runChain(root, base);
  assert.deepEqual(first.counts, { source: 1, double: 1, total: 1 });
  assert.equal(right(first.result).t.value.sum, 2 * (0.5 + 1.5 + 2.5 + 3.5 + 4.5));
  const second = await runChain(root, base);
  assert.deepEqual(second.counts, {});
  const values = right(second.result);
  assert.equal(values.t.fromCache, true);
  assert.deepEqual(Array.from(values.d.value.ys), [1, 3, 5, 7, 9]);
  assert.ok(values.d.value.ys instanceof Float64Array);
});

Deno.test("a changed config recomputes that stage and everything downstream, nothing upstream", async () => {
  const root = await Deno.makeTempDir();
  await runChain(root, base);
  const changedMiddle = await runChain(root, { ...base, factor: 3 });
  assert.deepEqual(changedMiddle.counts, { double: 1, total: 1 });
  assert.equal(right(changedMiddle.result).t.value.sum, 3 * 12.5);
  const changedLast = await runChain(root, { ...base, factor: 3, label: "u" });
  assert.deepEqual(changedLast.counts, { total: 1 });
  const changedFirst = await runChain(root, { ...base, n: 6 });
  assert.deepEqual(changedFirst.counts, { source: 1, double: 1, total: 1 });
  // Key order in a config does not matter: {factor} and the original chain hit the cache.
  assert.deepEqual((await runChain(root, { label: "t", factor: 2, n: 5 })).counts, {});
});

Deno.test("--force recomputes exactly the named stage", async () => {
  const root = await Deno.makeTempDir();
  await runChain(root, base);
  const forced = await runChain(root, base, ["double"]);
  assert.deepEqual(forced.counts, { double: 1 });
  assert.ok(forced.reports.some((l) => l.includes("double") && l.includes("--force")));
});

Deno.test("manifest records key, config, input keys, backend, timings, metrics and checksums", async () => {
  const root = await Deno.makeTempDir();
  const { result } = await runChain(root, base);
  const { d, t } = right(result);
  const manifest = JSON.parse(await Deno.readTextFile(join(root, "total", t.key, MANIFEST_FILE)));
  assert.equal(manifest.key, t.key);
  assert.deepEqual(manifest.config, { label: "t" });
  assert.deepEqual(manifest.inputs, { double: d.key });
  assert.equal(manifest.backend, "cpu");
  assert.equal(typeof manifest.timings.seconds, "number");
  assert.equal(manifest.metrics.sum, 25);
  const value = await Deno.readFile(join(root, "total", t.key, "value.json"));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", value));
  assert.equal(
    manifest.files["value.json"].sha256,
    Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""),
  );
});

Deno.test("a corrupted or incomplete entry is reported and recomputed, never used", async () => {
  const root = await Deno.makeTempDir();
  const { result } = await runChain(root, base);
  const { d, s } = right(result);
  // Flip one byte of the typed array file of `double`.
  const bin = join(root, "double", d.key, "array-0.bin");
  const bytes = await Deno.readFile(bin);
  bytes[3] ^= 0xff;
  await Deno.writeFile(bin, bytes);
  const afterCorruption = await runChain(root, base);
  assert.deepEqual(afterCorruption.counts, { double: 1 });
  assert.ok(afterCorruption.reports.some((l) => l.includes("invalid") && l.includes("sha256")));
  assert.deepEqual(Array.from(right(afterCorruption.result).d.value.ys), [1, 3, 5, 7, 9]);
  // Remove the manifest of `source`: incomplete.
  await Deno.remove(join(root, "source", s.key, MANIFEST_FILE));
  const afterTruncation = await runChain(root, base);
  assert.deepEqual(afterTruncation.counts, { source: 1 });
  assert.ok(afterTruncation.reports.some((l) => l.includes("incomplete")));
  // A file cut short.
  await Deno.writeFile(join(root, "source", s.key, "array-0.bin"), new Uint8Array(3));
  assert.deepEqual((await runChain(root, base)).counts, { source: 1 });
});

Deno.test("an edited manifest (a metric, the config) is reported and recomputed, never trusted", async () => {
  const root = await Deno.makeTempDir();
  const { result } = await runChain(root, base);
  const path = join(root, "total", right(result).t.key, MANIFEST_FILE);
  const original = await Deno.readTextFile(path);
  for (
    const edit of [
      (m: any) => (m.metrics.sum = 99),
      (m: any) => (m.config = { label: "edited" }),
      (m: any) => delete m.digest,
    ]
  ) {
    const manifest = JSON.parse(original);
    edit(manifest);
    await Deno.writeTextFile(path, JSON.stringify(manifest, null, 2));
    const again = await runChain(root, base);
    assert.deepEqual(again.counts, { total: 1 });
    assert.ok(
      again.reports.some((l) => l.includes("invalid") && /was edited|has no digest/.test(l)),
      again.reports.join("\n"),
    );
    assert.equal(right(again.result).t.manifest.metrics.sum, 25);
    assert.equal(JSON.parse(await Deno.readTextFile(path)).metrics.sum, 25);
  }
});

Deno.test("a full disk during a write gives a one-line cache error and leaves the cache as it was", async () => {
  const root = await Deno.makeTempDir();
  await runChain(root, base);
  const before = await listTree(root);
  let writes = 0;
  const fullDisk: CacheFs = {
    writeFile: async (path, data) => {
      if (++writes === 2) throw new Error("No space left on device (os error 28)");
      await Deno.writeFile(path, data);
    },
  };
  const { result, counts } = await runChain(
    root,
    { ...base, factor: 7 },
    [],
    new ArtifactCache(root, fullDisk),
  );
  assert.equal(result._tag, "Left");
  const error = (result as { left: PipelineError }).left;
  assert.equal(error.kind, "cache");
  assert.equal(error.stage, "double");
  assert.match(error.message, /disk full/);
  assert.equal(formatError(error).includes("\n"), false);
  assert.deepEqual(counts, { double: 1 }); // computed, not stored; `total` never ran
  const after = (await listTree(root)).filter((p) => !p.includes(".work-"));
  assert.deepEqual(after, before);
});

Deno.test("an unwritable cache directory is a one-line cache error", async () => {
  const dir = await Deno.makeTempDir();
  const root = join(dir, "cache");
  await Deno.writeTextFile(root, "a file where the cache directory should be");
  const { result } = await runChain(root, base);
  assert.equal(result._tag, "Left");
  const error = (result as { left: PipelineError }).left;
  assert.equal(error.kind, "cache");
  assert.match(error.message, /cache/);
  assert.equal(formatError(error).split("\n").length, 1);
  assert.equal(await Deno.readTextFile(root), "a file where the cache directory should be");
});

Deno.test("a failing stage is a Left carrying its stage name, and nothing is cached", async () => {
  const root = await Deno.makeTempDir();
  const broken = defineStage<Record<string, never>, { n: number }, number>({
    name: "broken",
    version: "1",
    compute: () => fail("numeric", "loss is NaN at step 3", "lower the learning rate"),
  });
  const rt = createRuntime({ cacheRoot: root, backend: "cpu" });
  const result = await runStage(rt, broken, { n: 1 }, {})();
  assert.deepEqual(result, {
    _tag: "Left",
    left: {
      kind: "numeric",
      message: "loss is NaN at step 3",
      hint: "lower the learning rate",
      stage: "broken",
    },
  });
  const entries = await listTree(join(root, "broken")).catch(() => []);
  assert.deepEqual(entries.filter((p) => !p.startsWith(".work-")), []);
});

Deno.test("a config holding NaN is rejected as a config error", async () => {
  const root = await Deno.makeTempDir();
  const rt = createRuntime({ cacheRoot: root, backend: "cpu" });
  const result = await runStage(rt, source, { n: NaN }, {})();
  assert.equal(result._tag, "Left");
  const error = (result as { left: PipelineError }).left;
  assert.equal(error.kind, "config");
  assert.match(error.message, /config of stage source: n is NaN/);
  assert.equal(rt.executions.size, 0);
});

Deno.test("a stage's checkpoint survives its failure, is handed to the rerun, and goes with the cached result", async () => {
  const root = await Deno.makeTempDir();
  let failing = true;
  const seen: unknown[] = [];
  const resumable = defineStage<Record<string, never>, { n: number; checkpointEvery: number }, { n: number }>(
    {
      name: "resumable",
      version: "1",
      cadence: ["checkpointEvery"],
      compute: async (_inputs, { n }, ctx) => {
        seen.push(await ctx.checkpoint.load());
        await ctx.checkpoint.save({ done: n, xs: Float32Array.of(1, 2) });
        if (failing) fail("numeric", "diverged");
        return { n };
      },
    },
  );
  const rt = createRuntime({ cacheRoot: root, backend: "cpu" });
  assert.equal((await runStage(rt, resumable, { n: 3, checkpointEvery: 1 }, {})())._tag, "Left");
  failing = false;
  const done = right(await runStage(rt, resumable, { n: 3, checkpointEvery: 1 }, {})());
  assert.deepEqual(
    seen,
    [undefined, { done: 3, xs: Float32Array.of(1, 2) }],
    "the rerun found the checkpoint",
  );
  const stageDir = (await Array.fromAsync(Deno.readDir(join(root, "resumable")))).map((e) => e.name);
  assert.deepEqual(stageDir, [done.key], "the work directory is gone once the output is cached");
  // A cadence setting is not part of the key: another checkpoint interval reuses the entry.
  const again = right(await runStage(rt, resumable, { n: 3, checkpointEvery: 7 }, {})());
  assert.equal(again.fromCache, true);
  assert.equal(again.key, done.key);
});
