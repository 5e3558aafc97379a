/**
 * Each deno.json task grants only what it needs. A stage run under the `pipeline` task's own flags
 * can write its cache under data/ but cannot write anywhere else.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runUnderTask, taskFlags } from "./helpers.ts";

async function runProbe(task: string, cacheRoot: string, target: string) {
  const out = await runUnderTask(task, "tests/fixtures/write_probe_stage.ts", [cacheRoot, target]);
  const text = out.stdout.trim();
  assert.ok(text, out.stderr);
  return JSON.parse(text.split("\n").pop()!);
}

Deno.test("the pipeline task grants no general write, read-all, run or ffi access", () => {
  const flags = taskFlags("pipeline");
  assert.ok(flags.includes("--allow-write=data"), flags.join(" "));
  assert.ok(flags.some((f) => f.startsWith("--allow-read=")));
  assert.ok(flags.includes("--allow-net=rail.eecs.berkeley.edu"));
  for (
    const forbidden of [
      "--allow-all",
      "-A",
      "--allow-write",
      "--allow-read",
      "--allow-run",
      "--allow-ffi",
      "--allow-env",
      "--allow-net",
    ]
  ) {
    assert.ok(!flags.includes(forbidden), `unscoped ${forbidden}`);
  }
});

Deno.test("under the pipeline task's permissions a stage cannot write outside data/", async () => {
  const outside = join(await Deno.makeTempDir(), "escaped.txt");
  const cacheRoot = "data/cache/.permission-test";
  try {
    const denied = await runProbe("pipeline", cacheRoot, outside);
    assert.equal(denied.ok, false);
    assert.equal(denied.kind, "io");
    assert.match(denied.error, /permission denied/);
    assert.equal(await Deno.stat(outside).then(() => true, () => false), false, "the file must not exist");
    // The same stage writing inside data/ succeeds: the denial is the scope, not a broken probe.
    const inside = await runProbe("pipeline", cacheRoot, `${cacheRoot}/allowed.txt`);
    assert.deepEqual(inside, { ok: true });
  } finally {
    await Deno.remove(cacheRoot, { recursive: true }).catch(() => {});
  }
});
