/**
 * Cache locks under the `pipeline` task's own permissions: the holder's host is known (not
 * "unknown"), so a holder killed with -9 is seen gone at once by the next process (not after the
 * two-minute heartbeat limit); SIGINT and SIGTERM remove the lock file and stop the process, at
 * once, also while its main thread is busy in a loop that reports progress.
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { REPO_ROOT, repoScratchDir, taskFlags } from "./helpers.ts";

const DIR = await repoScratchDir("locks");

/** Takes the lock at argv[0], prints "held", then idles, or keeps its main thread busy for argv[1] ms. */
const HOLDER = `
import { acquireLock, thisHost } from "../../core/lock.ts";
import { consoleProgress } from "../../core/progress.ts";
const [path, busyMs] = Deno.args;
console.log(JSON.stringify({ host: thisHost() }));
await acquireLock(path, "test-entry", (line) => console.error(line));
console.log("held");
if (busyMs) {
  // A numeric loop that reports progress now and then, and never returns to the event loop.
  const progress = consoleProgress({ write: () => {} })("busy", 1e9);
  const t = Date.now();
  for (let i = 0; Date.now() - t < Number(busyMs); i++) if (i % 1000 === 0) progress.update(i);
  console.log("went on after the signal");
}
await new Promise((r) => setTimeout(r, 60_000));
`;
await Deno.writeTextFile(join(REPO_ROOT, DIR, "holder.ts"), HOLDER);

interface Holder {
  readonly child: Deno.ChildProcess;
  readonly host: string;
  /** Lines of stdout and stderr so far. */
  readonly out: string[];
  readonly err: string[];
  /** Resolves when a stdout line matches. */
  until(pattern: RegExp, timeoutMs: number): Promise<boolean>;
}

async function startHolder(lock: string, busyMs?: number): Promise<Holder> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      ...taskFlags("pipeline"),
      `${DIR}/holder.ts`,
      lock,
      ...(busyMs ? [String(busyMs)] : []),
    ],
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out: string[] = [], err: string[] = [];
  const pump = async (stream: ReadableStream<Uint8Array>, into: string[]) => {
    for await (const line of stream.pipeThrough(new TextDecoderStream()).pipeThrough(lines())) {
      into.push(line);
    }
  };
  void pump(child.stdout, out);
  void pump(child.stderr, err);
  const until = async (pattern: RegExp, timeoutMs: number) => {
    const end = performance.now() + timeoutMs;
    while (performance.now() < end) {
      if (out.some((l) => pattern.test(l))) return true;
      await new Promise((r) => setTimeout(r, 25));
    }
    return false;
  };
  assert.ok(await until(/^\{"host"/, 20_000), `no start line: ${err.join("\n")}`);
  return { child, host: JSON.parse(out[0]).host, out, err, until };
}

function lines(): TransformStream<string, string> {
  let buffer = "";
  return new TransformStream({
    transform(chunk, controller) {
      buffer += chunk;
      const parts = buffer.split("\n");
      buffer = parts.pop()!;
      for (const p of parts) controller.enqueue(p);
    },
    flush(controller) {
      if (buffer) controller.enqueue(buffer);
    },
  });
}

const exists = (path: string) => Deno.stat(join(REPO_ROOT, path)).then(() => true, () => false);

Deno.test("the pipeline task knows its host; a holder killed with -9 is seen gone at once", async () => {
  const lock = `${DIR}/kill9.lock`;
  const first = await startHolder(lock);
  assert.notEqual(first.host, "unknown", "the pipeline task cannot read the host name");
  assert.ok(await first.until(/^held$/, 10_000));
  first.child.kill("SIGKILL");
  await first.child.status;
  assert.ok(await exists(lock), "kill -9 leaves the lock file behind");
  const started = performance.now();
  const second = await startHolder(lock);
  const got = await second.until(/^held$/, 15_000);
  const seconds = (performance.now() - started) / 1000;
  second.child.kill("SIGKILL");
  await second.child.status;
  assert.ok(got, `the second process did not get the lock in 15 s:\n${second.err.join("\n")}`);
  assert.ok(seconds < 10, `took ${seconds.toFixed(1)} s`);
  assert.ok(second.err.some((l) => /breaking stale lock .* is gone/.test(l)), second.err.join("\n"));
});

Deno.test("SIGINT and SIGTERM release the lock file and stop an idle holder (130, 143)", async () => {
  for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    const lock = `${DIR}/${signal}.lock`;
    const h = await startHolder(lock);
    assert.ok(await h.until(/^held$/, 10_000));
    assert.ok(await exists(lock));
    h.child.kill(signal);
    const status = await h.child.status;
    assert.equal(status.code, code, h.err.join("\n"));
    assert.ok(!(await exists(lock)), `${signal} left the lock file behind`);
  }
});

Deno.test("SIGINT while the main thread is busy in a loop removes the lock and stops the loop at once", async () => {
  const lock = `${DIR}/busy.lock`;
  const h = await startHolder(lock, 20_000);
  assert.ok(await h.until(/^held$/, 10_000));
  await new Promise((r) => setTimeout(r, 300));
  h.child.kill("SIGINT");
  const sent = performance.now();
  while (await exists(lock) && performance.now() - sent < 2000) await new Promise((r) => setTimeout(r, 25));
  assert.ok(!(await exists(lock)), "the lock file outlived the signal by 2 s");
  const status = await h.child.status;
  const seconds = (performance.now() - sent) / 1000;
  assert.equal(status.code, 130, h.err.join("\n"));
  assert.ok(seconds < 5, `the busy loop went on for ${seconds.toFixed(1)} s after the signal`);
  assert.ok(!h.out.includes("went on after the signal"), h.out.join("\n"));
  assert.ok(
    h.err.some((l) => /^test-entry: SIGINT: released lock .*busy\.lock; stopping/.test(l)),
    h.err.join("\n"),
  );
});
