/**
 * Shared caches under concurrency, and experiment grids. The lock tests run the real runtime in
 * separate OS processes (Deno subprocesses) racing for one cache entry; the grid tests run the real
 * `grid` command with tiny configs, locally and through a real single-machine Slurm.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createRuntime, runStage } from "../pipeline/runtime.ts";
import { defineStage } from "../pipeline/stage.ts";
import { entryLockPath, type LockHolder, staleReason, thisHost } from "../pipeline/lock.ts";
import { REPO_ROOT } from "./helpers.ts";

// ---------------------------------------------------------------------------------------------
// Locks: a tiny stage computed by several processes.

/**
 * A child process: waits for the `go` file, then runs stage `slow` (which appends its pid to the
 * `marker` file and keeps its main thread busy for `busyMs`) through the real runtime, and prints
 * one JSON line with what it got and the runtime's report lines.
 */
const CHILD_SOURCE = (repo: string) => `
import { createRuntime, runStage } from "${new URL("pipeline/runtime.ts", `file://${repo}`).href}";
import { defineStage } from "${new URL("pipeline/stage.ts", `file://${repo}`).href}";
const [cacheRoot, marker, go, busyMs, staleAfterMs] = Deno.args;
const slow = defineStage({
  name: "slow",
  version: "1",
  compute: (_inputs, { n }) => {
    Deno.writeTextFileSync(marker, Deno.pid + "\\n", { append: true });
    const until = Date.now() + Number(busyMs);
    while (Date.now() < until) { /* a numeric loop that never yields */ }
    return { n, computedBy: Deno.pid, xs: Float64Array.from({ length: n }, (_, i) => i * n) };
  },
});
console.log("ready");
while (!(await Deno.stat(go).then(() => true, () => false))) await new Promise((r) => setTimeout(r, 20));
const reports = [];
const rt = createRuntime({ cacheRoot, backend: "cpu", report: (l) => reports.push(l),
  lock: { pollMs: 50, heartbeatMs: 100, staleAfterMs: Number(staleAfterMs), reportEveryMs: 60000 } });
const r = await runStage(rt, slow, { n: 7 }, {})();
console.log(JSON.stringify(r._tag === "Right"
  ? { ok: true, fromCache: r.right.fromCache, key: r.right.key, value: { ...r.right.value, xs: Array.from(r.right.value.xs) }, reports }
  : { ok: false, error: r.left, reports }));
`;

const slowStage = defineStage<Record<string, never>, { n: number }, { n: number; computedBy: number; xs: Float64Array }>({
  name: "slow",
  version: "1",
  compute: (_inputs, { n }) => ({ n, computedBy: Deno.pid, xs: Float64Array.from({ length: n }, (_, i) => i * n) }),
});

async function childScript(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "obd-lock-child-" });
  const path = join(dir, "child.ts");
  await Deno.writeTextFile(path, CHILD_SOURCE(REPO_ROOT));
  return path;
}

/** Starts a child under `permissions`; resolves `ready` once it printed its first line. */
function startChild(script: string, permissions: string[], args: string[]) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", "--config", join(REPO_ROOT, "deno.json"), ...permissions, script, ...args],
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  let markReady = () => {};
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  const stdout = (async () => {
    let buffered = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buffered += chunk;
      const parts = buffered.split("\n");
      buffered = parts.pop()!;
      for (const line of parts) {
        lines.push(line);
        if (line === "ready") markReady();
      }
    }
    if (buffered) lines.push(buffered);
  })();
  const stderr = new Response(child.stderr).text();
  const done = (async () => {
    const status = await child.status;
    await stdout;
    markReady();
    return { status, lines, stderr: await stderr };
  })();
  return { child, ready, done };
}

function lastJson(lines: string[], stderr: string): any {
  const line = lines.filter((l) => l.startsWith("{")).pop();
  assert.ok(line, `no JSON result; stderr:\n${stderr}`);
  return JSON.parse(line);
}

const touch = (path: string) => Deno.writeTextFile(path, "");
const markerPids = async (marker: string) => (await Deno.readTextFile(marker).catch(() => "")).split("\n").filter(Boolean);

Deno.test("two processes computing the same entry: the stage runs once and both get its value", async () => {
  const script = await childScript();
  const dir = await Deno.makeTempDir({ prefix: "obd-lock-" });
  const [cacheRoot, marker, go] = [join(dir, "cache"), join(dir, "marker"), join(dir, "go")];
  // Without --allow-sys the host name is unknown, so only the heartbeat can keep the lock: a
  // 1 s staleness limit against a holder whose main thread is busy for 3 s shows that the
  // heartbeat thread keeps it alive (were it stalled, the waiter would break the lock and compute).
  const permissions = [`--allow-read=${REPO_ROOT},${dir}`, `--allow-write=${dir}`];
  const children = [0, 1].map(() => startChild(script, permissions, [cacheRoot, marker, go, "3000", "1000"]));
  await Promise.all(children.map((c) => c.ready));
  await touch(go);
  const results = await Promise.all(children.map(async (c) => {
    const { status, lines, stderr } = await c.done;
    assert.equal(status.code, 0, stderr);
    return lastJson(lines, stderr);
  }));
  for (const r of results) assert.equal(r.ok, true, JSON.stringify(r));
  assert.equal((await markerPids(marker)).length, 1, "the stage ran exactly once");
  const computed = results.filter((r) => !r.fromCache);
  const reused = results.filter((r) => r.fromCache);
  assert.equal(computed.length, 1);
  assert.equal(reused.length, 1);
  assert.deepEqual(reused[0].value, computed[0].value);
  assert.deepEqual(reused[0].value.xs, [0, 7, 14, 21, 28, 35, 42]);
  assert.ok(reused[0].reports.some((l: string) => /slow\/[0-9a-f]+: waiting for pid \d+ on unknown/.test(l)), reused[0].reports.join("\n"));
  assert.ok(reused[0].reports.some((l: string) => l.includes("computed by another process")), reused[0].reports.join("\n"));
  assert.ok(!reused[0].reports.some((l: string) => l.includes("breaking")), reused[0].reports.join("\n"));
  // The lock is gone and the entry is there.
  const key = computed[0].key;
  assert.equal(await Deno.stat(entryLockPath(cacheRoot, "slow", key)).then(() => true, () => false), false);
  assert.ok((await Deno.stat(join(cacheRoot, "slow", key, "manifest.json"))).isFile);
});

Deno.test("a stale lock of a dead process on this host is broken, with a line saying so", async () => {
  const cacheRoot = await Deno.makeTempDir({ prefix: "obd-lock-" });
  const exited = new Deno.Command("true").spawn();
  await exited.status;
  const reports: string[] = [];
  const rt = createRuntime({ cacheRoot, backend: "cpu", report: (l) => reports.push(l), lock: { pollMs: 20 } });
  // Find the entry's key with a first run in another cache, then plant a lock there.
  const probe = await runStage(createRuntime({ cacheRoot: await Deno.makeTempDir(), backend: "cpu" }), slowStage, { n: 3 }, {})();
  assert.equal(probe._tag, "Right");
  const key = (probe as { right: { key: string } }).right.key;
  const lock = entryLockPath(cacheRoot, "slow", key);
  await Deno.mkdir(join(cacheRoot, "slow"), { recursive: true });
  const holder: LockHolder = { host: thisHost(), pid: exited.pid, startedAt: new Date().toISOString(), token: "t", what: `slow/${key}` };
  await Deno.writeTextFile(lock, JSON.stringify(holder));
  const started = performance.now();
  const result = await runStage(rt, slowStage, { n: 3 }, {})();
  assert.equal(result._tag, "Right");
  assert.ok(performance.now() - started < 5_000, "broken at once, not after the heartbeat limit");
  assert.deepEqual(Object.fromEntries(rt.executions), { slow: 1 });
  const line = reports.find((l) => l.includes("breaking stale lock"));
  assert.ok(line, reports.join("\n"));
  assert.match(line, new RegExp(`pid ${exited.pid} on .* is gone`));
  assert.equal(await Deno.stat(lock).then(() => true, () => false), false);
});

Deno.test("a lock from another host is waited for while its heartbeat is fresh and broken once it is old", async () => {
  const cacheRoot = await Deno.makeTempDir({ prefix: "obd-lock-" });
  const key = (await runStage(createRuntime({ cacheRoot: await Deno.makeTempDir(), backend: "cpu" }), slowStage, { n: 4 }, {})() as {
    right: { key: string };
  }).right.key;
  const lock = entryLockPath(cacheRoot, "slow", key);
  await Deno.mkdir(join(cacheRoot, "slow"), { recursive: true });
  const holder: LockHolder = { host: "elsewhere.example", pid: 1, startedAt: new Date().toISOString(), token: "t", what: `slow/${key}` };
  await Deno.writeTextFile(lock, JSON.stringify(holder));
  const reports: string[] = [];
  const rt = createRuntime({ cacheRoot, backend: "cpu", report: (l) => reports.push(l), lock: { pollMs: 50, staleAfterMs: 1_500, reportEveryMs: 400 } });
  const started = performance.now();
  const result = await runStage(rt, slowStage, { n: 4 }, {})();
  const waited = performance.now() - started;
  assert.equal(result._tag, "Right");
  assert.ok(waited >= 1_400, `waited ${waited} ms for a fresh lock`);
  assert.ok(reports.filter((l) => l.includes("waiting for pid 1 on elsewhere.example")).length >= 2, reports.join("\n"));
  assert.ok(reports.some((l) => /breaking stale lock .* no heartbeat for \d+ s \(limit 2 s\)/.test(l)), reports.join("\n"));
  assert.deepEqual(Object.fromEntries(rt.executions), { slow: 1 });
});

Deno.test("staleness: same host decides by pid, other hosts and unknown holders by heartbeat age", () => {
  const h = (host: string, pid: number): LockHolder => ({ host, pid, startedAt: "", token: "", what: "" });
  const opts = { staleAfterMs: 1000 };
  assert.match(staleReason(h("a", 5), 10, "a", () => false, opts)!, /pid 5 on a, is gone/);
  assert.equal(staleReason(h("a", 5), 10, "b", () => false, opts), undefined); // lock state not trusted across hosts
  assert.equal(staleReason(h("a", 5), 10_000, "a", () => true, opts), undefined); // alive: age does not matter
  assert.equal(staleReason(h("b", 5), 500, "a", () => false, opts), undefined); // other host: pid not consulted
  assert.match(staleReason(h("b", 5), 5000, "a", () => false, opts)!, /no heartbeat for 5 s/);
  assert.match(staleReason(h("a", 5), 5000, "a", () => undefined, opts)!, /no heartbeat/); // no flock on this file system
  assert.equal(staleReason(undefined, 500, "a", () => false, opts), undefined); // still being written
  assert.match(staleReason(undefined, 5000, "a", () => false, opts)!, /no heartbeat/);
  assert.equal(staleReason(h("unknown", 5), 500, "unknown", () => false, opts), undefined);
});

Deno.test("a process killed while computing leaves no entry anyone trusts; the next one breaks its lock and computes", async () => {
  const script = await childScript();
  const dir = await Deno.makeTempDir({ prefix: "obd-lock-" });
  const [cacheRoot, marker, go] = [join(dir, "cache"), join(dir, "marker"), join(dir, "go")];
  const permissions = [`--allow-read=${REPO_ROOT},${dir},/etc/hostname`, `--allow-write=${dir}`];
  await touch(go);
  const victim = startChild(script, permissions, [cacheRoot, marker, go, "60000", "600000"]);
  const deadline = Date.now() + 30_000;
  while ((await markerPids(marker)).length === 0) {
    assert.ok(Date.now() < deadline, "the child never started computing");
    await new Promise((r) => setTimeout(r, 50));
  }
  victim.child.kill("SIGKILL");
  await victim.done;
  const locks = [...Deno.readDirSync(join(cacheRoot, "slow"))].map((e) => e.name);
  assert.ok(locks.some((n) => n.endsWith(".lock")), `a lock is left behind: ${locks}`);
  assert.ok(!locks.some((n) => /^[0-9a-f]{32}$/.test(n)), `no entry: ${locks}`);
  const reports: string[] = [];
  const rt = createRuntime({ cacheRoot, backend: "cpu", report: (l) => reports.push(l), lock: { pollMs: 20 } });
  const result = await runStage(rt, slowStage, { n: 7 }, {})();
  assert.equal(result._tag, "Right", JSON.stringify(result));
  assert.equal((result as { right: { fromCache: boolean } }).right.fromCache, false);
  assert.ok(reports.some((l) => l.includes("breaking stale lock") && l.includes("is gone")), reports.join("\n"));
});
