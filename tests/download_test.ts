/** Downloads against a local HTTP server: checksums, truncation, and the offline message. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { download, fileSha256, verifyFile } from "../datasets/download.ts";
import { PipelineFailure } from "../core/errors.ts";
import { silentProgress } from "../core/progress.ts";

const body: Uint8Array<ArrayBuffer> = new Uint8Array(300_000).map((_, i) => (i * 31) % 251);
const bodySha = await fileSha256Bytes(body);

async function fileSha256Bytes(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function withServer(fn: (base: string) => Promise<void>) {
  const controller = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: controller.signal, onListen() {} },
    (req) => {
      const path = new URL(req.url).pathname;
      if (path === "/ok.hdf5") return new Response(body);
      if (path === "/short.hdf5") return new Response(body.subarray(0, 1000));
      return new Response("no", { status: 404 });
    },
  );
  try {
    await fn(`http://127.0.0.1:${server.addr.port}`);
  } finally {
    controller.abort();
    await server.finished;
  }
}

async function failureOf(p: Promise<unknown>) {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof PipelineFailure, String(e));
    return e.error;
  }
  assert.fail("expected a failure");
}

async function dirEntries(dir: string) {
  return (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();
}

Deno.test("a download with the right size and sha256 lands under its final name", async () => {
  const dir = await Deno.makeTempDir();
  await withServer(async (base) => {
    const path = join(dir, "ok.hdf5");
    const sha = await download(
      { url: `${base}/ok.hdf5`, path, bytes: body.length, sha256: bodySha },
      silentProgress,
    );
    assert.equal(sha, bodySha);
    assert.equal(await fileSha256(path), bodySha);
    assert.equal(await verifyFile({ url: "", path, bytes: body.length, sha256: bodySha }), bodySha);
    assert.deepEqual(await dirEntries(dir), ["ok.hdf5"]);
  });
});

Deno.test("a wrong checksum or a short body is an error and leaves no file", async () => {
  const dir = await Deno.makeTempDir();
  await withServer(async (base) => {
    const wrongSha = await failureOf(
      download({ url: `${base}/ok.hdf5`, path: join(dir, "a.hdf5"), sha256: "0".repeat(64) }, silentProgress),
    );
    assert.equal(wrongSha.kind, "checksum");
    assert.match(wrongSha.message, /has sha256 .*expected 000000000000/);
    const short = await failureOf(
      download({ url: `${base}/short.hdf5`, path: join(dir, "b.hdf5"), bytes: body.length }, silentProgress),
    );
    assert.equal(short.kind, "checksum");
    assert.match(short.message, /gave 1000 bytes, expected 300000/);
    const missing = await failureOf(
      download({ url: `${base}/nothing.hdf5`, path: join(dir, "c.hdf5") }, silentProgress),
    );
    assert.equal(missing.kind, "network");
    assert.match(missing.message, /HTTP 404/);
    assert.deepEqual(await dirEntries(dir), []);
  });
});

Deno.test("offline, the error names the file, the URL and where to put it", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "hopper_medium_replay-v2.hdf5");
  // Port 9 on loopback: nothing listens, the connection is refused like an unreachable host.
  const error = await failureOf(
    download({ url: "http://127.0.0.1:9/hopper_medium_replay-v2.hdf5", path }, silentProgress),
  );
  assert.equal(error.kind, "network");
  assert.match(
    error.message,
    /hopper_medium_replay-v2\.hdf5 is missing and http:\/\/127\.0\.0\.1:9\/hopper_medium_replay-v2\.hdf5 could not be reached/,
  );
  assert.equal(
    error.hint,
    `download http://127.0.0.1:9/hopper_medium_replay-v2.hdf5 on a machine with internet access and put it at ${path}, or run the offline demo on the embedded dataset: deno task pipeline embedded`,
  );
});

Deno.test("verifyFile reports a truncated local file with the fix", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "t.hdf5");
  await Deno.writeFile(path, body.subarray(0, 10));
  const error = await failureOf(verifyFile({ url: "http://host/t.hdf5", path, bytes: body.length }));
  assert.equal(error.kind, "checksum");
  assert.match(error.message, /has 10 bytes, expected 300000/);
  assert.match(error.hint ?? "", /delete .*t\.hdf5 and run again/);
});
