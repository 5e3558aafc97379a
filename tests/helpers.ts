/** Helpers shared by the tests: Debian's Python as a reference, typed failures, tasks' own permissions. */
import assert from "node:assert/strict";
import { PipelineFailure } from "../core/errors.ts";
import { taskPermissions } from "../grid/permissions.ts";
import { silentProgress } from "../core/progress.ts";
import { type Artifact, runStage, type Runtime } from "../core/runtime.ts";
import { loadStage, locateDataset, type OfflineDataset } from "../stages/load.ts";

/** The repository root, where tasks run. */
export const REPO_ROOT = new URL("..", import.meta.url).pathname;

/**
 * Runs Python code with Debian's interpreter (where python3-h5py, -sklearn and -torch install; a
 * pyenv or conda `python3` on PATH would not have them). `sys.argv[1:]` are `args`; stdout is JSON.
 */
export async function python(code: string, ...args: string[]): Promise<any> {
  const out = await new Deno.Command("/usr/bin/python3", {
    args: ["-c", code, ...args],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.ok(out.success, `python failed (tests/setup-debian.sh installs the Debian packages):\n${stderr}`);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

/**
 * Asserts that `run` (a promise or a function) fails with a `PipelineFailure` of `kind` whose
 * one-line message contains every one of `parts`; returns it.
 */
export async function assertFails(
  run: Promise<unknown> | (() => unknown),
  kind: string,
  parts: readonly string[],
): Promise<PipelineFailure> {
  let caught: unknown;
  try {
    await (typeof run === "function" ? run() : run);
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof PipelineFailure, `expected a PipelineFailure, got ${caught}`);
  assert.equal(caught.error.kind, kind, caught.error.message);
  for (const part of parts) {
    assert.ok(caught.error.message.includes(part), `'${part}' not in: ${caught.error.message}`);
  }
  assert.ok(!caught.error.message.includes("\n"), "messages are one line");
  return caught;
}

const denoJsonText = await Deno.readTextFile(new URL("../deno.json", import.meta.url));

/** The `--allow-*`/`--deny-*` flags of a deno.json task, so tests follow the real definition. */
export function taskFlags(task: string): string[] {
  return taskPermissions(denoJsonText, task);
}

/** Runs `script` with `args` under the permissions of `task`, from the repository root. */
export async function runUnderTask(task: string, script: string, args: readonly string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...taskFlags(task), script, ...args],
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr).trim(),
  };
}

/** The embedded dataset through the real load stage of `rt` (at least `minTransitions`), or a thrown error. */
export async function loadEmbedded(rt: Runtime, minTransitions = 1000): Promise<Artifact<OfflineDataset>> {
  const located = await locateDataset("embedded", silentProgress);
  const loaded = await runStage(rt, loadStage, {
    file: located.file,
    sha256: located.sha256,
    env: located.env,
    minTransitions,
  }, {})();
  if (loaded._tag === "Left") throw new Error(loaded.left.message);
  return loaded.right;
}

/**
 * A fresh directory under the repository's `data/` (the tasks may read and write only there), removed when
 * the test module unloads. Returns its repository-relative path, e.g. `data/.test-torch-1a2b3c4d`.
 */
export async function repoScratchDir(prefix: string): Promise<string> {
  const dir = `data/.test-${prefix}-${crypto.randomUUID().slice(0, 8)}`;
  await Deno.mkdir(`${REPO_ROOT}${dir}`, { recursive: true });
  globalThis.addEventListener("unload", () => {
    try {
      Deno.removeSync(`${REPO_ROOT}${dir}`, { recursive: true });
    } catch { /* already gone */ }
  });
  return dir;
}

/** The `PipelineFailure` that `run` throws (the test fails when it throws something else or nothing). */
export async function caughtFailure(run: () => Promise<unknown>): Promise<PipelineFailure> {
  try {
    await run();
  } catch (caught) {
    assert.ok(caught instanceof PipelineFailure, String(caught));
    return caught;
  }
  assert.fail("expected a failure");
}
