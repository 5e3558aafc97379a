/**
 * Output paths under the tasks' own permissions: a symbolic link inside data/ to a directory
 * outside it must not carry `collect --out`, `teacher import --out`, `--run-dir` or `--cache-dir`
 * out of data/ (Deno's permission check does not resolve links); `--run-dir ../x` and a full disk
 * under the run directory (its log a link to /dev/full) end in one line, not a stack trace.
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { REPO_ROOT, runUnderTask } from "./helpers.ts";
import { realOutputPath } from "../core/paths.ts";

/** `ln -s` (Deno.symlink needs unscoped read and write permissions, which the test run does not grant). */
async function symlink(target: string, path: string) {
  const out = await new Deno.Command("ln", { args: ["-s", target, path] }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
}

const DIR = `data/.test-paths-${crypto.randomUUID().slice(0, 8)}`;
const OUTSIDE = await Deno.makeTempDir({ prefix: "obd-outside-" });
await Deno.mkdir(join(REPO_ROOT, DIR), { recursive: true });
await symlink(OUTSIDE, join(REPO_ROOT, DIR, "escape"));
globalThis.addEventListener("unload", () => {
  for (const p of [join(REPO_ROOT, DIR), OUTSIDE]) {
    try {
      Deno.removeSync(p, { recursive: true });
    } catch { /* already gone */ }
  }
});

async function outsideIsEmpty() {
  const left: string[] = [];
  for await (const e of Deno.readDir(OUTSIDE)) left.push(e.name);
  assert.deepEqual(left, [], `written outside data/: ${left.join(", ")}`);
}

function assertOneLine(r: { code: number; stderr: string }, code: number, pattern: RegExp) {
  const lines = r.stderr.split("\n").filter((l) => l.startsWith("error") || /^\s+at /.test(l));
  assert.equal(r.code, code, r.stderr);
  assert.equal(lines.length, 1, `one error line expected:\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /Uncaught|\n\s+at /);
  assert.match(lines[0], pattern);
}

Deno.test("realOutputPath follows links in existing ancestors and dangling links", async () => {
  assert.equal(realOutputPath(`${DIR}/escape/a/b`), join(await Deno.realPath(OUTSIDE), "a/b"));
  await symlink(join(OUTSIDE, "not-yet"), join(REPO_ROOT, DIR, "dangling"));
  assert.equal(realOutputPath(`${DIR}/dangling/c`), join(await Deno.realPath(OUTSIDE), "not-yet/c"));
  assert.equal(realOutputPath(`${DIR}/plain/d`), join(REPO_ROOT, DIR, "plain/d"));
});

Deno.test("collect --out and teacher import --out through a link out of data/ are refused, nothing written", async () => {
  const collect = await runUnderTask("collect", "commands/collect.ts", [
    "hopper",
    "medium",
    "--out",
    `${DIR}/escape/x.hdf5`,
  ]);
  assertOneLine(
    collect,
    2,
    /--out .*escape\/x\.hdf5 is outside the directories this task may write \(through a symbolic link it leads to .*obd-outside-/,
  );
  const imported = await runUnderTask("teacher", "commands/teacher.ts", [
    "import",
    "tests/fixtures/none.pt",
    "--out",
    `${DIR}/escape/t`,
  ]);
  assertOneLine(imported, 2, /--out .*escape\/t is outside the directories this task may write/);
  const dangling = await runUnderTask("teacher", "commands/teacher.ts", [
    "import",
    "tests/fixtures/none.pt",
    "--out",
    `${DIR}/dangling/t`,
  ]);
  assertOneLine(dangling, 2, /--out .*dangling\/t is outside/);
  await outsideIsEmpty();
});

Deno.test("pipeline --run-dir and --cache-dir through a link, and --run-dir ../x, are refused in one line", async () => {
  for (
    const [args, pattern] of [
      [["--run-dir", `${DIR}/escape/r`], /--run-dir .*escape\/r is outside/],
      [["--cache-dir", `${DIR}/escape/c`], /--cache-dir .*escape\/c is outside/],
      [["--run-dir", "../x"], /--run-dir \.\.\/x is outside the directories this task may write/],
    ] as const
  ) {
    const r = await runUnderTask("pipeline", "commands/pipeline.ts", [
      "embedded",
      "--until",
      "load",
      ...args,
    ]);
    assertOneLine(r, 2, pattern);
  }
  await outsideIsEmpty();
  assert.ok(!(await Deno.stat(join(REPO_ROOT, "../x")).then(() => true, () => false)));
});

Deno.test("a full disk under the run directory ends the pipeline in one line", async () => {
  const run = `${DIR}/full`;
  await Deno.mkdir(join(REPO_ROOT, run));
  await symlink("/dev/full", join(REPO_ROOT, run, "metrics.jsonl"));
  // Deno lets only --allow-all reach a device through a link.
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "commands/pipeline.ts", "embedded", "--until", "load", "--run-dir", run],
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const r = { code: out.code, stderr: new TextDecoder().decode(out.stderr).trim() };
  assertOneLine(r, 1, /^error\[io\]: .*disk full/);
});

Deno.test("a granted directory that is itself a link (a larger disk) keeps working; a link inside it out does not", async () => {
  const disk = await Deno.makeTempDir({ prefix: "obd-disk-" });
  try {
    await Deno.mkdir(join(disk, "real"));
    await symlink(join(disk, "real"), join(disk, "granted")); // the grant names the link
    await symlink(OUTSIDE, join(disk, "real", "escape"));
    const script = join(REPO_ROOT, DIR, "check.ts");
    await Deno.writeTextFile(
      script,
      `import { checkOutputPath } from "${join(REPO_ROOT, "core/paths.ts")}";
for (const p of Deno.args) {
  try { checkOutputPath(p, "--cache-dir"); console.log("ok"); } catch (e) { console.log(e.error.message); }
}`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        `--allow-read=${REPO_ROOT},${disk}`,
        `--allow-write=${join(disk, "granted")}`,
        script,
        join(disk, "granted", "cache"),
        join(disk, "granted", "escape", "cache"),
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
    assert.equal(lines[0], "ok", new TextDecoder().decode(out.stderr));
    assert.match(lines[1], /--cache-dir .*escape\/cache is outside .*through a symbolic link/);
  } finally {
    await Deno.remove(disk, { recursive: true });
  }
  await outsideIsEmpty();
});
