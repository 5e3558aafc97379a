/**
 * Where D4RL files are found before any download (temp directories standing for data/d4rl,
 * $D4RL_DATASET_DIR and ~/.d4rl/datasets), and mirrors tried in turn against a loopback HTTP server,
 * every file checked against the size and sha256 we know.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { silentProgress } from "../core/progress.ts";
import { fileSha256 } from "../datasets/download.ts";
import { d4rlMirrors, downloadFromMirrors } from "../datasets/sources.ts";
import { locateDataset } from "../stages/load.ts";
import { caughtFailure, runUnderTask } from "./helpers.ts";

const body = new Uint8Array(50_000).map((_, i) => (i * 7) % 253);
const other = new Uint8Array(50_000).map((_, i) => (i * 11) % 251);
const hex = async (bytes: Uint8Array<ArrayBuffer>) =>
  Array.from(
    new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)),
    (b) => b.toString(16).padStart(2, "0"),
  )
    .join("");
const bodySha = await hex(body);

async function withServer(fn: (base: string, hits: string[]) => Promise<void>) {
  const hits: string[] = [];
  const controller = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: controller.signal, onListen() {} },
    (req) => {
      const path = new URL(req.url).pathname;
      hits.push(path);
      if (path.startsWith("/good/")) return new Response(body);
      if (path.startsWith("/wrong/")) return new Response(other);
      if (path.startsWith("/short/")) return new Response(body.subarray(0, 100));
      return new Response("no", { status: 404 });
    },
  );
  try {
    await fn(`http://127.0.0.1:${server.addr.port}`, hits);
  } finally {
    controller.abort();
    await server.finished;
  }
}

const vars = (values: Record<string, string>) => (name: string) => values[name];

Deno.test("D4RL files are found in data/d4rl, then $D4RL_DATASET_DIR, then ~/.d4rl/datasets (flat or D4RL master's layout), and the file and its sha256 are printed", async () => {
  const root = await Deno.makeTempDir();
  try {
    const project = join(root, "project"), custom = join(root, "custom"), home = join(root, "home");
    const file = "walker2d_medium-v2.hdf5"; // no published checksum: any content is accepted
    const env = vars({ HOME: home, D4RL_DATASET_DIR: custom });
    const place = async (dir: string, bytes: Uint8Array) => {
      await Deno.mkdir(dir, { recursive: true });
      await Deno.writeFile(join(dir, file), bytes);
    };
    const locate = async () => {
      const notes: string[] = [];
      const found = await locateDataset("walker2d-m", silentProgress, {
        env,
        d4rlDir: project,
        note: (l) => notes.push(l),
      });
      return { found, notes };
    };
    await place(join(home, ".d4rl/datasets/offline_rl/gym_mujoco_v2"), other);
    let { found, notes } = await locate();
    assert.equal(found.file, join(home, ".d4rl/datasets/offline_rl/gym_mujoco_v2", file));
    assert.equal(found.origin, "~/.d4rl/datasets");
    assert.equal(found.env, "walker2d");
    assert.equal(found.sha256, await hex(other));
    assert.match(
      notes[0],
      new RegExp(`dataset walker2d-m: .*${file} \\(from ~/\\.d4rl/datasets\\), sha256 ${found.sha256}`),
    );

    await place(join(home, ".d4rl/datasets"), body);
    ({ found } = await locate());
    assert.equal(found.file, join(home, ".d4rl/datasets", file), "the flat layout first");

    await place(custom, other);
    ({ found } = await locate());
    assert.equal(found.origin, "$D4RL_DATASET_DIR");
    assert.equal(found.file, join(custom, file));

    await place(project, body);
    ({ found, notes } = await locate());
    assert.equal(found.file, join(project, file));
    assert.equal(found.sha256, bodySha);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a D4RL file in D4RL's cache is checked against the size and sha256 we know", async () => {
  const home = await Deno.makeTempDir();
  try {
    await Deno.mkdir(join(home, ".d4rl/datasets"), { recursive: true });
    const path = join(home, ".d4rl/datasets/hopper_medium_replay-v2.hdf5");
    await Deno.writeFile(path, body);
    const caught = await caughtFailure(() =>
      locateDataset("hopper-m-r", silentProgress, {
        env: vars({ HOME: home }),
        d4rlDir: join(home, "none"),
        note: () => {},
      })
    );
    assert.equal(caught.error.kind, "checksum");
    assert.match(caught.error.message, new RegExp(`${path} has 50000 bytes, expected 75854457`));
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("mirrors are tried in turn: a 404, a wrong sha256 and a short body are skipped, the first good copy lands", async () => {
  const dir = await Deno.makeTempDir();
  await withServer(async (base, hits) => {
    const notes: string[] = [];
    const path = join(dir, "x.hdf5");
    const got = await downloadFromMirrors(
      { fileName: "x.hdf5", path, bytes: body.length, sha256: bodySha },
      [`${base}/missing/x.hdf5`, `${base}/wrong/x.hdf5`, `${base}/short/x.hdf5`, `${base}/good/x.hdf5`],
      silentProgress,
      (l) => notes.push(l),
    );
    assert.equal(got.url, `${base}/good/x.hdf5`);
    assert.equal(got.sha256, bodySha);
    assert.equal(await fileSha256(path), bodySha);
    assert.deepEqual(hits, ["/missing/x.hdf5", "/wrong/x.hdf5", "/short/x.hdf5", "/good/x.hdf5"]);
    assert.equal(notes.length, 3);
    assert.match(notes[0], /HTTP 404/);
    assert.match(notes[1], /sha256 .*expected/);
    assert.match(notes[2], /gave 100 bytes, expected 50000/);
    assert.deepEqual((await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name), ["x.hdf5"]);

    // Every source failing: one network error listing each try, nothing left behind.
    const none = join(dir, "y.hdf5");
    const caught = await caughtFailure(() =>
      downloadFromMirrors(
        { fileName: "y.hdf5", path: none, sha256: bodySha },
        [`${base}/wrong/y.hdf5`, "http://rail.eecs.berkeley.edu/y.hdf5"],
        silentProgress,
      )
    );
    assert.equal(caught.error.kind, "network");
    assert.match(
      caught.error.message,
      /wrong\/y\.hdf5: .*sha256.*; http:\/\/rail\.eecs\.berkeley\.edu\/y\.hdf5: host rail\.eecs\.berkeley\.edu not allowed/,
    );
    assert.match(caught.error.hint!, /OBD_D4RL_MIRRORS/);
    assert.deepEqual((await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name), ["x.hdf5"]);
  });
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a D4RL alias found nowhere is downloaded from $OBD_D4RL_MIRRORS into data/d4rl before D4RL's host", async () => {
  const root = await Deno.makeTempDir();
  await withServer(async (base, hits) => {
    const notes: string[] = [];
    const found = await locateDataset("walker2d-m", silentProgress, {
      env: vars({ HOME: join(root, "home"), OBD_D4RL_MIRRORS: `${base}/missing/, ${base}/good` }),
      d4rlDir: join(root, "d4rl"),
      note: (l) => notes.push(l),
    });
    assert.equal(found.file, join(root, "d4rl/walker2d_medium-v2.hdf5"));
    assert.equal(found.origin, `${base}/good/walker2d_medium-v2.hdf5`);
    assert.equal(found.sha256, bodySha);
    assert.deepEqual(hits, ["/missing/walker2d_medium-v2.hdf5", "/good/walker2d_medium-v2.hdf5"]);
    assert.match(notes.at(-1)!, /downloaded .*\/good\/walker2d_medium-v2\.hdf5 to .*, sha256 [0-9a-f]{64}/);
  });
  await Deno.remove(root, { recursive: true });
});

Deno.test("OBD_D4RL_MIRRORS: base URLs separated by commas or spaces; anything else is a config error naming it", async () => {
  assert.deepEqual(d4rlMirrors(vars({ OBD_D4RL_MIRRORS: "https://a.example/d4rl, http://b.example/x/" })), [
    "https://a.example/d4rl/",
    "http://b.example/x/",
  ]);
  assert.deepEqual(d4rlMirrors(vars({})), []);
  for (const bad of ["not a url", "ftp://host/x/"]) {
    const caught = await caughtFailure(() => Promise.resolve(d4rlMirrors(vars({ OBD_D4RL_MIRRORS: bad }))));
    assert.equal(caught.error.kind, "config");
    assert.match(caught.error.message, /^OBD_D4RL_MIRRORS: '/);
  }
});

Deno.test("under the pipeline task, a $D4RL_DATASET_DIR outside what it may read is one error naming the flag, before any download", async () => {
  const dir = await Deno.makeTempDir();
  Deno.env.set("D4RL_DATASET_DIR", dir);
  try {
    const out = await runUnderTask("pipeline", "commands/pipeline.ts", ["walker2d-m", "--until", "load"]);
    assert.notEqual(out.code, 0);
    const last = out.stderr.split("\n").at(-1)!;
    assert.match(
      last,
      new RegExp(
        `^error\\[load/io\\]: looking for walker2d_medium-v2\\.hdf5: \\$D4RL_DATASET_DIR is ${dir}, which this command may not read .*--allow-read=\\.,${dir}`,
      ),
    );
  } finally {
    Deno.env.delete("D4RL_DATASET_DIR");
    await Deno.remove(dir, { recursive: true });
  }
});
