/**
 * Shared caches under concurrency, and experiment grids. The lock tests run the real runtime in
 * separate OS processes (Deno subprocesses) racing for one cache entry; the grid tests run the real
 * `grid` command with tiny configs, locally and through a real single-machine Slurm.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createRuntime, runStage } from "../core/runtime.ts";
import { defineStage } from "../core/stage.ts";
import { entryLockPath, type LockHolder, type LockOptions, staleReason, thisHost } from "../core/lock.ts";
import { expandGrid, parseGridArgs, type TaskOutcome } from "../grid/spec.ts";
import { widenPermissions, workerPermissions } from "../grid/permissions.ts";
import { slurmAvailable } from "../grid/slurm.ts";
import { REPO_ROOT, taskFlags } from "./helpers.ts";

// ---------------------------------------------------------------------------------------------
// Locks: a tiny stage computed by several processes.

/**
 * A child process: waits for the `go` file, then runs stage `slow` (which appends its pid to the
 * `marker` file and keeps its main thread busy for `busyMs`) through the real runtime, and prints
 * one JSON line with what it got and the runtime's report lines.
 */
const CHILD_SOURCE = (repo: string) => `
import { createRuntime, runStage } from "${new URL("core/runtime.ts", `file://${repo}`).href}";
import { defineStage } from "${new URL("core/stage.ts", `file://${repo}`).href}";
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

const slowStage = defineStage<
  Record<string, never>,
  { n: number },
  { n: number; computedBy: number; xs: Float64Array }
>({
  name: "slow",
  version: "1",
  compute: (_inputs, { n }) => ({
    n,
    computedBy: Deno.pid,
    xs: Float64Array.from({ length: n }, (_, i) => i * n),
  }),
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
const markerPids = async (marker: string) =>
  (await Deno.readTextFile(marker).catch(() => "")).split("\n").filter(Boolean);

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
  assert.ok(
    reused[0].reports.some((l: string) => /slow\/[0-9a-f]+: waiting for pid \d+ on unknown/.test(l)),
    reused[0].reports.join("\n"),
  );
  assert.ok(
    reused[0].reports.some((l: string) => l.includes("computed by another process")),
    reused[0].reports.join("\n"),
  );
  assert.ok(!reused[0].reports.some((l: string) => l.includes("breaking")), reused[0].reports.join("\n"));
  // The lock is gone and the entry is there.
  const key = computed[0].key;
  assert.equal(await Deno.stat(entryLockPath(cacheRoot, "slow", key)).then(() => true, () => false), false);
  assert.ok((await Deno.stat(join(cacheRoot, "slow", key, "manifest.json"))).isFile);
});

/** A cpu runtime on `cacheRoot` with these lock timings, collecting its report lines. */
function reportingRuntime(cacheRoot: string, lock: Partial<LockOptions>) {
  const reports: string[] = [];
  return { rt: createRuntime({ cacheRoot, backend: "cpu", report: (l) => reports.push(l), lock }), reports };
}

Deno.test("a stale lock of a dead process on this host is broken, with a line saying so", async () => {
  const cacheRoot = await Deno.makeTempDir({ prefix: "obd-lock-" });
  const exited = new Deno.Command("true").spawn();
  await exited.status;
  const { rt, reports } = reportingRuntime(cacheRoot, { pollMs: 20 });
  // Find the entry's key with a first run in another cache, then plant a lock there.
  const probe = await runStage(
    createRuntime({ cacheRoot: await Deno.makeTempDir(), backend: "cpu" }),
    slowStage,
    { n: 3 },
    {},
  )();
  assert.equal(probe._tag, "Right");
  const key = (probe as { right: { key: string } }).right.key;
  const lock = entryLockPath(cacheRoot, "slow", key);
  await Deno.mkdir(join(cacheRoot, "slow"), { recursive: true });
  const holder: LockHolder = {
    host: thisHost(),
    pid: exited.pid,
    startedAt: new Date().toISOString(),
    token: "t",
    what: `slow/${key}`,
  };
  await Deno.writeTextFile(lock, JSON.stringify(holder));
  // What the dead process's interrupted write left: removed by the next holder, never read.
  await Deno.mkdir(join(cacheRoot, "slow", `.${key}.tmp-dead0000`));
  await Deno.writeTextFile(join(cacheRoot, "slow", `.${key}.tmp-dead0000`, "value.json"), '{"n": 99');
  const started = performance.now();
  const result = await runStage(rt, slowStage, { n: 3 }, {})();
  assert.equal(result._tag, "Right");
  assert.ok(performance.now() - started < 5_000, "broken at once, not after the heartbeat limit");
  assert.deepEqual(Object.fromEntries(rt.executions), { slow: 1 });
  const line = reports.find((l) => l.includes("breaking stale lock"));
  assert.ok(line, reports.join("\n"));
  assert.match(line, new RegExp(`pid ${exited.pid} on .* is gone`));
  assert.equal(await Deno.stat(lock).then(() => true, () => false), false);
  assert.ok(
    reports.some((l) => l.includes(`removed what an interrupted write of ${key} left: .${key}.tmp-dead0000`)),
    reports.join("\n"),
  );
  assert.deepEqual([...Deno.readDirSync(join(cacheRoot, "slow"))].map((e) => e.name), [key]);
});

Deno.test("a lock from another host is waited for while its heartbeat is fresh and broken once it is old", async () => {
  const cacheRoot = await Deno.makeTempDir({ prefix: "obd-lock-" });
  const key =
    (await runStage(createRuntime({ cacheRoot: await Deno.makeTempDir(), backend: "cpu" }), slowStage, {
      n: 4,
    }, {})() as {
      right: { key: string };
    }).right.key;
  const lock = entryLockPath(cacheRoot, "slow", key);
  await Deno.mkdir(join(cacheRoot, "slow"), { recursive: true });
  const holder: LockHolder = {
    host: "elsewhere.example",
    pid: 1,
    startedAt: new Date().toISOString(),
    token: "t",
    what: `slow/${key}`,
  };
  await Deno.writeTextFile(lock, JSON.stringify(holder));
  const { rt, reports } = reportingRuntime(cacheRoot, {
    pollMs: 50,
    staleAfterMs: 1_500,
    reportEveryMs: 400,
  });
  const started = performance.now();
  const result = await runStage(rt, slowStage, { n: 4 }, {})();
  const waited = performance.now() - started;
  assert.equal(result._tag, "Right");
  assert.ok(waited >= 1_400, `waited ${waited} ms for a fresh lock`);
  assert.ok(
    reports.filter((l) => l.includes("waiting for pid 1 on elsewhere.example")).length >= 2,
    reports.join("\n"),
  );
  assert.ok(
    reports.some((l) => /breaking stale lock .* no heartbeat for \d+ s \(limit 2 s\)/.test(l)),
    reports.join("\n"),
  );
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
  const { rt, reports } = reportingRuntime(cacheRoot, { pollMs: 20 });
  const result = await runStage(rt, slowStage, { n: 7 }, {})();
  assert.equal(result._tag, "Right", JSON.stringify(result));
  assert.equal((result as { right: { fromCache: boolean } }).right.fromCache, false);
  assert.ok(
    reports.some((l) => l.includes("breaking stale lock") && l.includes("is gone")),
    reports.join("\n"),
  );
});

// ---------------------------------------------------------------------------------------------
// Grids: the real grid command with tiny configs (each task takes seconds).

/** The `small` sizes of tests/pipeline_test.ts as `--set` overrides. */
const TINY = [
  "student.hiddenLayers=1",
  "student.width=16",
  "student.steps=3",
  "distill.synsetSize=8",
  "distill.outerSteps=2",
  "distill.outerBatches=1",
  "distill.outerBatchSize=32",
  "distill.evalEvery=0",
  "evaluate.run.curve=false",
  "evaluate.run.ensemble=false",
  "evaluate.run.architectures=false",
  "evaluate.run.optimizers=false",
  "evaluate.run.bc=false",
  "evaluate.students=1",
  "evaluate.episodes=1",
  "evaluate.randomRepeats=1",
].flatMap((s) => ["--set", s]);

/**
 * Runs the grid command under the `grid` task's permissions from deno.json, widened to `dir` the
 * way the grid widens its workers' (the test's cache and dataset files live in a temp dir).
 */
async function grid(dir: string, args: readonly string[]) {
  const flags = widenPermissions(taskFlags("grid"), { read: [dir], write: [dir] });
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...flags, "commands/grid.ts", ...args],
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  const last = stdout.trim().split("\n").pop() ?? "";
  let json: any;
  try {
    json = JSON.parse(last);
  } catch {
    json = undefined;
  }
  return { code: out.code, stdout, stderr, json };
}

const exists = (path: string) => Deno.stat(path).then(() => true, () => false);
const inRepo = (path: string) => (path.startsWith("/") ? path : join(REPO_ROOT, path));

/** Rows of the report's evaluations.csv as `dataset|method|seed`. */
async function reportRows(runDir: string): Promise<string[]> {
  const text = await Deno.readTextFile(join(inRepo(runDir), "evaluations.csv"));
  return text.trim().split("\n").slice(1).map((l) => l.split(",").slice(0, 3).join("|"));
}

Deno.test("local grid: 2 workers, a failing task listed with its log, fixed and resubmitted alone; a rerun computes nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "obd-grid-" });
  const cache = join(dir, "cache");
  const late = join(dir, "hopper_late.hdf5"); // does not exist yet
  const args = [
    "--datasets",
    `embedded,${late}`,
    "--methods",
    "dbc,random",
    "--seeds",
    "0,1",
    "--workers",
    "2",
    "--cache-dir",
    cache,
    ...TINY,
  ];
  const t0 = performance.now();
  const first = await grid(dir, args);
  console.log(`first grid: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  assert.equal(first.code, 1, first.stderr);
  assert.ok(first.json, first.stdout + first.stderr);
  assert.equal(first.json.tasks, 8);
  assert.equal(first.json.succeeded, 4);
  assert.equal(first.json.failed.length, 4);
  for (const f of first.json.failed) {
    assert.equal(f.dataset, late);
    assert.match(f.error, /^error\[load\/input\]: dataset file .*hopper_late\.hdf5 does not exist/);
    assert.equal(f.logs.length, 1);
    assert.ok((await Deno.readTextFile(f.logs[0])).includes(f.error), `the log ${f.logs[0]} holds the error`);
    assert.ok(
      first.stderr.includes(
        `[grid] failed: task ${f.index} (${late} ${f.method} seed ${f.seed}): ${f.error} — log ${f.logs[0]}`,
      ),
      first.stderr,
    );
  }
  // The others completed and are in the report, every combination of them.
  const runDir = first.json.grid;
  assert.ok(await exists(join(inRepo(runDir), "report.md")));
  assert.match(first.stdout, /\|method\|embedded\|\n/, "one dataset: no average column");
  assert.match(first.stdout, /\|DBC\|[-\d.]+ \[[-\d.]+, [-\d.]+\] · IQM [-\d.]+\|/);
  assert.match(first.stdout, /\|Random selection\|[-\d.]+ \[/);
  const rows = await reportRows(runDir);
  for (const seed of [0, 1]) assert.ok(rows.includes(`embedded|DBC|${seed}`), rows.join("\n"));
  const table1 = await Deno.readTextFile(join(inRepo(runDir), "table1_methods.csv"));
  assert.match(
    table1,
    /^DBC,embedded,[-\d.]+,[-\d.]+,[-\d.]+,[-\d.]+,[-\d.]+,[-\d.]+,2,\d+$/m,
    "both seeds pooled",
  );
  assert.ok(first.json.stagesComputedByTasks.load >= 1, JSON.stringify(first.json));
  assert.deepEqual(first.json.stagesComputedBySummary, {}, "the summary reuses what the tasks computed");
  // Each task's own log lives in the grid's run directory, not in a run directory of its own.
  const taskDirs = (await Array.fromAsync(Deno.readDir(join(inRepo(runDir), "tasks")))).filter((e) =>
    e.isDirectory
  );
  assert.equal(taskDirs.length, 8, taskDirs.map((e) => e.name).join(", "));
  for (const e of taskDirs) {
    assert.ok(await exists(join(inRepo(runDir), "tasks", e.name, "metrics.jsonl")), e.name);
  }

  // Fix the input and resubmit: only the four failed tasks run.
  await Deno.copyFile(join(REPO_ROOT, "data/embedded/hopper_medium_replay-obd.hdf5"), late);
  const t1 = performance.now();
  const again = await grid(dir, ["--resubmit-failed", runDir]);
  console.log(`resubmission: ${((performance.now() - t1) / 1000).toFixed(1)} s`);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.json.grid, runDir);
  assert.equal(again.json.ran, 4);
  assert.equal(again.json.succeeded, 8);
  assert.deepEqual(again.json.failed, []);
  const status = JSON.parse(await Deno.readTextFile(join(inRepo(runDir), "status.json")));
  const retried = Object.values(status.outcomes as Record<string, TaskOutcome>).filter((o) =>
    o.attempt === 2
  );
  assert.equal(retried.length, 4);
  for (const o of retried) assert.match(o.logs[0], /\.attempt2\.log$/);
  assert.match(again.stdout, new RegExp(`\\|method\\|embedded\\|${late.replace(/[/.]/g, "\\$&")}\\|avg\\|`));
  const allRows = await reportRows(runDir);
  for (const dataset of ["embedded", late]) {
    for (const seed of [0, 1]) assert.ok(allRows.includes(`${dataset}|DBC|${seed}`), allRows.join("\n"));
  }

  // The same grid again: every stage of every task and of the summary is a cache hit.
  const t2 = performance.now();
  const rerun = await grid(dir, args);
  console.log(`rerun: ${((performance.now() - t2) / 1000).toFixed(1)} s`);
  assert.equal(rerun.code, 0, rerun.stderr);
  assert.equal(rerun.json.ran, 8);
  assert.deepEqual(rerun.json.stagesComputedByTasks, {});
  assert.deepEqual(rerun.json.stagesComputedBySummary, {});
  const rerunStatus = JSON.parse(await Deno.readTextFile(join(inRepo(rerun.json.grid), "status.json")));
  for (const o of Object.values(rerunStatus.outcomes as Record<string, TaskOutcome>)) {
    assert.deepEqual(o.stagesComputed, {}, JSON.stringify(o));
  }
});

Deno.test("grid command line: one description, expanded in order with exact commands; mistakes are one-line errors", async () => {
  const request = parseGridArgs([
    "--datasets",
    "embedded,data/x.hdf5",
    "--methods",
    "dbc,avpbc",
    "--seeds",
    "0,2",
    "--set",
    "distill.outerSteps=5",
    "--cache-dir",
    "/tmp/c",
  ]);
  assert.ok(!("kind" in request) && request.mode === "new");
  const spec = request.spec;
  assert.deepEqual({ ...spec, slurm: undefined }, {
    datasets: ["embedded", "data/x.hdf5"],
    methods: ["dbc", "avpbc"],
    seeds: [0, 2],
    preset: "quick",
    set: ["distill.outerSteps=5"],
    cacheDir: "/tmp/c",
    executor: "local",
    workers: 2,
    slurm: undefined,
  });
  const tasks = expandGrid(spec);
  assert.deepEqual(tasks.map((t) => t.name), [
    "000-embedded-dbc-s0",
    "001-embedded-dbc-s2",
    "002-embedded-avpbc-s0",
    "003-embedded-avpbc-s2",
    "004-x-dbc-s0",
    "005-x-dbc-s2",
    "006-x-avpbc-s0",
    "007-x-avpbc-s2",
  ]);
  assert.deepEqual(tasks[3].args, [
    "embedded",
    "--method",
    "avpbc",
    "--seed",
    "2",
    "--preset",
    "quick",
    "--set",
    "distill.outerSteps=5",
    "--cache-dir",
    "/tmp/c",
    "--until",
    "evaluate",
  ]);
  const perms = workerPermissions(taskFlags("pipeline"), spec);
  assert.ok(perms.includes("--allow-write=data,/tmp/c"), perms.join(" "));
  // The task's $HOME entries (D4RL's and Minari's caches) expanded as `deno task` expands them.
  const home = Deno.env.get("HOME");
  const caches = home ? `${home}/.d4rl/datasets,${home}/.minari/datasets,` : "";
  assert.ok(perms.includes(`--allow-read=.,${caches}/tmp/c,/etc/hostname`), perms.join(" "));
  const cases: [string[], RegExp][] = [
    [["--methods", "dbc"], /--datasets is missing/],
    [["--datasets", "embedded", "--methods", "dbc,bogus"], /--methods: no method "bogus"/],
    [
      ["--datasets", "embedded", "--methods", "dbc", "--seeds", "0,x"],
      /--seeds 0,x: seeds are non-negative integers/,
    ],
    [
      ["--datasets", "embedded", "--methods", "dbc", "--set", "distill.outerStepz=3"],
      /unknown setting "distill\.outerStepz"/,
    ],
    [
      ["--datasets", "embedded", "--methods", "dbc", "--executor", "cloud"],
      /--executor cloud: no such executor/,
    ],
    [
      ["--datasets", "embedded", "--methods", "dbc", "--workers", "0"],
      /--workers 0 is not a positive integer/,
    ],
    [
      ["--datasets", "embedded", "--methods", "dbc", "--time", "soon"],
      /--time soon is not a Slurm time limit/,
    ],
    [
      ["--resubmit-failed", "data/runs/x", "--methods", "dbc"],
      /--resubmit-failed takes the grid from data\/runs\/x\/grid\.json, but --methods was given too/,
    ],
  ];
  for (const [args, expected] of cases) {
    const error = parseGridArgs(args);
    assert.ok("kind" in error && error.kind === "config", JSON.stringify(error));
    assert.match(error.message, expected);
  }
  const cli = await grid(await Deno.makeTempDir(), ["--datasets", "embedded", "--methods", "nope"]);
  assert.equal(cli.code, 2);
  assert.equal(cli.stderr.trim().split("\n").length, 1, cli.stderr);
  assert.match(cli.stderr, /^error\[config\]: --methods: no method "nope" — methods: random, dbc/);
  // A cache the grid process may not read is refused before anything runs.
  const elsewhere = await Deno.makeTempDir();
  const denied = await grid(await Deno.makeTempDir(), [
    "--datasets",
    "embedded",
    "--methods",
    "dbc",
    "--cache-dir",
    elsewhere,
  ]);
  assert.equal(denied.code, 2, denied.stderr);
  assert.match(
    denied.stderr,
    new RegExp(
      `^error\\[config\\]: the grid summarizes its tasks itself and may not read ${elsewhere} — .*--allow-read=\\.,${elsewhere}`,
    ),
  );
});

Deno.test("slurm --dry-run prints the job script with one array task per grid task and submits nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "obd-grid-" });
  const out = await grid(dir, [
    "--datasets",
    "embedded",
    "--methods",
    "dbc,random",
    "--seeds",
    "0,1",
    "--cache-dir",
    join(dir, "cache"),
    "--executor",
    "slurm",
    "--partition",
    "main",
    "--gpus-per-job",
    "1",
    "--time",
    "00:20:00",
    "--set",
    "distill.outerSteps=7",
    "--dry-run",
  ]);
  assert.equal(out.code, 0, out.stderr);
  const script = out.stdout;
  for (
    const line of [
      "#SBATCH --array=0-3",
      "#SBATCH --partition=main",
      "#SBATCH --gres=gpu:1",
      "#SBATCH --time=00:20:00",
      `#SBATCH --chdir=${REPO_ROOT.replace(/\/$/, "")}`,
    ]
  ) {
    assert.ok(script.includes(line), `${line} in\n${script}`);
  }
  for (let i = 0; i < 4; i++) {
    assert.match(
      script,
      new RegExp(
        `^  ${i}\\) exec \\S+ run --no-prompt .*commands/pipeline\\.ts embedded --method (dbc|random) --seed [01] .*--set distill\\.outerSteps=7 .*;;$`,
        "m",
      ),
    );
  }
  assert.match(out.stderr, /dry run: nothing was submitted/);
  const runDir = /run (data\/runs\/\S+)/.exec(out.stderr)![1];
  assert.deepEqual(JSON.parse(await Deno.readTextFile(join(REPO_ROOT, runDir, "status.json"))).attempts, []);
  assert.equal(await exists(join(REPO_ROOT, runDir, "slurm-attempt1.sh")), false);
});

// Slurm through the real single-machine Slurm of tests/setup-slurm.sh.
const slurmSetup = await new Deno.Command("sh", {
  args: [`${REPO_ROOT}tests/setup-slurm.sh`],
  stdout: "piped",
  stderr: "piped",
}).output()
  .catch((e) => ({ success: false, stderr: new TextEncoder().encode(String(e)) }));
const slurm = slurmSetup.success ? await slurmAvailable() : {
  ok: false as const,
  reason: new TextDecoder().decode(slurmSetup.stderr).trim().split("\n").pop() ??
    "tests/setup-slurm.sh failed",
};
const skipSlurm = !slurm.ok && Deno.env.get("CI") !== "true";
if (skipSlurm) {
  console.log(`grid_test: skipping the Slurm grid test: ${"reason" in slurm ? slurm.reason : ""}`);
}

Deno.test("slurm grid: a job array with one failed task, resubmitted alone, then one report", {
  ignore: skipSlurm,
}, async () => {
  assert.ok(slurm.ok, `Slurm is not usable on CI: ${"reason" in slurm ? slurm.reason : ""}`);
  const dir = await Deno.makeTempDir({ prefix: "obd-grid-slurm-" });
  const late = join(dir, "hopper_late.hdf5");
  const args = [
    "--datasets",
    `embedded,${late}`,
    "--methods",
    "dbc",
    "--seeds",
    "0",
    "--cache-dir",
    join(dir, "cache"),
    "--executor",
    "slurm",
    "--time",
    "00:10:00",
    ...TINY,
  ];
  const t0 = performance.now();
  const first = await grid(dir, args);
  console.log(`slurm grid: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  assert.equal(first.code, 1, first.stderr);
  assert.match(first.stderr, /\[grid\] submitted Slurm array job (\d+) with 2 task\(s\)/);
  assert.match(first.stderr, /\[grid\] job \d+: 1 completed, 1 failed/);
  assert.equal(first.json.succeeded, 1);
  assert.equal(first.json.failed.length, 1);
  const failed = first.json.failed[0];
  assert.equal(failed.index, 1);
  assert.match(failed.error, /^error\[load\/input\]: dataset file .*hopper_late\.hdf5 does not exist/);
  assert.match(failed.logs[1], /tasks\/obd-grid_\d+_1\.err$/);
  assert.ok((await Deno.readTextFile(failed.logs[1])).includes(failed.error));
  assert.ok(first.stderr.includes(`— log ${failed.logs.join(" ")}`), first.stderr);
  assert.match(first.stdout, /\|DBC\|[-\d.]+ \[[-\d.]+, [-\d.]+\] · IQM [-\d.]+\|/);

  await Deno.copyFile(join(REPO_ROOT, "data/embedded/hopper_medium_replay-obd.hdf5"), late);
  const t1 = performance.now();
  const again = await grid(dir, ["--resubmit-failed", first.json.grid]);
  console.log(`slurm resubmission: ${((performance.now() - t1) / 1000).toFixed(1)} s`);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /submitted Slurm array job \d+ with 1 task\(s\)/);
  assert.match(
    await Deno.readTextFile(join(inRepo(first.json.grid), "slurm-attempt2.sh")),
    /#SBATCH --array=1\n/,
  );
  assert.equal(again.json.ran, 1);
  assert.deepEqual(again.json.failed, []);
  assert.deepEqual(again.json.stagesComputedBySummary, {});
  const rows = await reportRows(first.json.grid);
  assert.ok(rows.includes("embedded|DBC|0") && rows.includes(`${late}|DBC|0`), rows.join("\n"));
  assert.ok(await exists(join(inRepo(first.json.grid), "report.md")));
});
