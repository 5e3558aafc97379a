/**
 * Tests of the D4RL HDF5 layer: round trips, h5py interoperability in both directions (through Debian's
 * h5py at /usr/bin/python3), bad files, atomic writes, and the scoped permissions our tasks run with.
 *
 * Run: deno test --allow-read --allow-write --allow-run --allow-env tests/hdf5_test.ts
 */

import assert from "node:assert/strict";
import { assertFails, python, REPO_ROOT } from "./helpers.ts";
import {
  atomicWrite,
  type D4rlArrays,
  inspectHdf5File,
  readD4rlFile,
  writeD4rlFile,
} from "../datasets/hdf5.ts";

/** Deterministic arrays with values exactly representable in float32 (so comparisons can be exact). */
function makeArrays(n: number, obsDim: number, actDim: number, withNext = true): D4rlArrays {
  return {
    n,
    obsDim,
    actDim,
    observations: Float32Array.from({ length: n * obsDim }, (_, i) => (i % 97) * 0.25 - 7),
    actions: Float32Array.from({ length: n * actDim }, (_, i) => ((i % 9) - 4) / 4),
    rewards: Float32Array.from({ length: n }, (_, i) => i * 0.5 - 1),
    terminals: Uint8Array.from({ length: n }, (_, i) => (i % 5 === 4 ? 1 : 0)),
    timeouts: Uint8Array.from({ length: n }, (_, i) => (i % 7 === 6 ? 1 : 0)),
    ...(withNext
      ? { nextObservations: Float32Array.from({ length: n * obsDim }, (_, i) => (i % 89) * 0.5) }
      : {}),
  };
}

async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort();
}

Deno.test("round trip: our writer, our reader, identical values, shapes, dtypes and attributes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/rt.hdf5`;
    const data = makeArrays(37, 11, 3);
    const attrs = {
      env: "hopper",
      kind: "medium_replay",
      seed: 3_000_000_000, // beyond int32: stored as int64
      seeds: [0, 1, 2],
      policy_returns: [1.5, -2.25, 3125.125],
      tool_version: "0.1.0",
      notes: ["a", "ü"],
    };
    await writeD4rlFile(path, data, attrs);
    const raw = await readD4rlFile(path);
    assert.deepEqual(raw.keys, [
      "actions",
      "next_observations",
      "observations",
      "rewards",
      "terminals",
      "timeouts",
    ]);
    const d = raw.datasets;
    assert.deepEqual(d.observations?.shape, [37, 11]);
    assert.deepEqual(d.actions?.shape, [37, 3]);
    assert.deepEqual(d.rewards?.shape, [37]);
    assert.deepEqual(d.next_observations?.shape, [37, 11]);
    assert.equal(d.observations?.dtype, "float32");
    assert.equal(d.terminals?.dtype, "bool");
    assert.equal(d.timeouts?.dtype, "bool");
    assert.deepEqual(d.observations?.data, data.observations);
    assert.deepEqual(d.actions?.data, data.actions);
    assert.deepEqual(d.rewards?.data, data.rewards);
    assert.deepEqual(d.next_observations?.data, data.nextObservations);
    assert.deepEqual(d.terminals?.data, data.terminals);
    assert.deepEqual(d.timeouts?.data, data.timeouts);
    assert.equal(d.terminals?.data.reduce((a, b) => a + b, 0), 7); // rows 4, 9, ..., 34
    assert.deepEqual(raw.attrs, attrs);
    assert.deepEqual(await listDir(dir), ["rt.hdf5"], "no temporary file is left behind");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("h5py reads our file with D4RL's keys, dtypes (bool flags), shapes and values", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/ours.hdf5`;
    const data = makeArrays(50, 17, 6);
    await writeD4rlFile(path, data, { env: "walker2d", seed: 7, returns: [0.5, 1.5] });
    const seen = await python(
      `
import sys, json, h5py
f = h5py.File(sys.argv[1], "r")
out = {k: {"dtype": str(f[k].dtype), "shape": list(f[k].shape), "values": f[k][()].ravel().tolist()} for k in f}
out["attrs"] = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in f.attrs.items()}
out["attr_types"] = {k: type(v).__name__ for k, v in f.attrs.items()}
print(json.dumps(out))
`,
      path,
    );
    assert.deepEqual(
      Object.keys(seen).filter((k) => !k.startsWith("attr")).sort(),
      ["actions", "next_observations", "observations", "rewards", "terminals", "timeouts"],
    );
    const expected: Record<string, [string, number[], ArrayLike<number>]> = {
      observations: ["float32", [50, 17], data.observations],
      actions: ["float32", [50, 6], data.actions],
      rewards: ["float32", [50], data.rewards],
      next_observations: ["float32", [50, 17], data.nextObservations!],
      terminals: ["bool", [50], data.terminals],
      timeouts: ["bool", [50], data.timeouts],
    };
    for (const [key, [dtype, shape, values]] of Object.entries(expected)) {
      assert.equal(seen[key].dtype, dtype, key);
      assert.deepEqual(seen[key].shape, shape, key);
      const got = dtype === "bool" ? seen[key].values.map((b: boolean) => (b ? 1 : 0)) : seen[key].values;
      assert.deepEqual(got, Array.from(values), key);
    }
    assert.equal(seen.terminals.values.filter(Boolean).length, 10);
    assert.deepEqual(seen.attrs, { env: "walker2d", seed: 7, returns: [0.5, 1.5] });
    assert.equal(seen.attr_types.env, "str");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Writes a D4RL-layout file the way D4RL's own scripts do (h5py, gzip, bool flags, infos/ group). */
const H5PY_WRITER = `
import sys, json, h5py, numpy as np
path, n, obs_dim, act_dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
drop = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
i = np.arange(n * obs_dim)
data = {
    "observations": ((i % 97) * 0.25 - 7).astype(np.float32).reshape(n, obs_dim),
    "next_observations": ((i % 89) * 0.5).astype(np.float32).reshape(n, obs_dim),
    "actions": (((np.arange(n * act_dim) % 9) - 4) / 4).astype(np.float32).reshape(n, act_dim),
    "rewards": (np.arange(n) * 0.5 - 1).astype(np.float32),
    "terminals": np.arange(n) % 5 == 4,
    "timeouts": np.arange(n) % 7 == 6,
}
for key in drop.get("remove", []):
    del data[key]
for key, rows in drop.get("truncate", {}).items():
    data[key] = data[key][:rows]
with h5py.File(path, "w") as f:
    for key, value in data.items():
        f.create_dataset(key, data=value, compression="gzip")
    f.create_dataset("infos/qpos", data=np.zeros((n, 6)))
    f.attrs["env"] = "hopper"
    f.attrs["bytes_attr"] = np.bytes_(b"raw")
    f.attrs["flag"] = True
    f.attrs["score"] = np.float64(12.5)
print(json.dumps({k: str(v.dtype) for k, v in data.items()}))
`;

Deno.test("our reader reads an h5py-written D4RL file (gzip, bool flags, infos/ ignored)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/h5py.hdf5`;
    const dtypes = await python(H5PY_WRITER, path, "40", "11", "3");
    assert.equal(dtypes.terminals, "bool");
    const raw = await readD4rlFile(path);
    const want = makeArrays(40, 11, 3);
    assert.deepEqual(raw.keys, [
      "actions",
      "infos",
      "next_observations",
      "observations",
      "rewards",
      "terminals",
      "timeouts",
    ]);
    assert.equal(raw.datasets.terminals?.dtype, "bool");
    assert.deepEqual(raw.datasets.observations?.shape, [40, 11]);
    assert.deepEqual(raw.datasets.observations?.data, want.observations);
    assert.deepEqual(raw.datasets.next_observations?.data, want.nextObservations);
    assert.deepEqual(raw.datasets.actions?.data, want.actions);
    assert.deepEqual(raw.datasets.rewards?.data, want.rewards);
    assert.deepEqual(raw.datasets.terminals?.data, want.terminals);
    assert.deepEqual(raw.datasets.timeouts?.data, want.timeouts);
    assert.deepEqual(Array.from(raw.datasets.terminals!.data.slice(0, 10)), [0, 0, 0, 0, 1, 0, 0, 0, 0, 1]);
    assert.deepEqual(raw.attrs, { env: "hopper", bytes_attr: "raw", flag: true, score: 12.5 });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a truncated file is an 'input' error naming the file and both sizes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const good = `${dir}/good.hdf5`, cut = `${dir}/cut.hdf5`;
    await writeD4rlFile(good, makeArrays(200, 11, 3));
    const bytes = await Deno.readFile(good);
    const half = Math.floor(bytes.length / 2);
    await Deno.writeFile(cut, bytes.subarray(0, half));
    const facts = await inspectHdf5File(good);
    assert.equal(facts.end, bytes.length);
    assert.equal(facts.superblockVersion, 0);
    const failure = await assertFails(readD4rlFile(cut), "input", [
      cut,
      "truncated",
      `${half} bytes`,
      `${bytes.length}`,
    ]);
    assert.ok(failure.error.hint?.includes("download"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("missing and non-HDF5 files are 'input' errors naming the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assertFails(readD4rlFile(`${dir}/absent.hdf5`), "input", [`${dir}/absent.hdf5`, "not found"]);
    const html = `${dir}/page.hdf5`;
    await Deno.writeTextFile(html, "<html>404 Not Found</html>".repeat(40));
    await assertFails(readD4rlFile(html), "input", [html, "not an HDF5 file", "1040 bytes"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a corrupt compressed chunk is an 'input' error, not silently garbage values", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/corrupt.hdf5`;
    const { offset } = await python(
      `
import sys, json, h5py, numpy as np
with h5py.File(sys.argv[1], "w") as f:
    f.create_dataset("observations", data=np.arange(22000, dtype=np.float32).reshape(2000, 11),
                     compression="gzip", chunks=(500, 11))
with h5py.File(sys.argv[1], "r") as f:
    print(json.dumps({"offset": f["observations"].id.get_chunk_info(1).byte_offset}))
`,
      path,
    );
    assert.ok(offset > 0);
    assert.equal((await readD4rlFile(path)).datasets.observations?.data[21999], 21999); // intact: reads
    const bytes = await Deno.readFile(path);
    for (let i = offset + 10; i < offset + 200; i++) bytes[i] ^= 0x5a;
    await Deno.writeFile(path, bytes);
    await assertFails(readD4rlFile(path), "input", [path, "failed to read dataset 'observations'"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a D4RL key of an unusable dtype is an 'input' error naming key and dtype", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/int64.hdf5`;
    await python(
      `
import sys, json, h5py, numpy as np
with h5py.File(sys.argv[1], "w") as f:
    f["observations"] = np.zeros((4, 2), np.float32)
    f["terminals"] = np.array([0, 1, 0, 3], np.int64)
print("{}")
`,
      path,
    );
    await assertFails(readD4rlFile(path), "input", [path, "'terminals'", "int64"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("atomic write: a failing write leaves the existing file byte-identical and no temporary file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/data.hdf5`;
    await writeD4rlFile(path, makeArrays(20, 11, 3), { version: 1 });
    const before = await Deno.readFile(path);

    // 1. Wrong shape: 'actions' is one value short of [20, 3].
    const bad = { ...makeArrays(20, 11, 3), actions: new Float32Array(59) };
    await assertFails(writeD4rlFile(path, bad), "input", [path, "'actions'", "59 values", "[20, 3]", "60"]);
    assert.deepEqual(await Deno.readFile(path), before);
    assert.deepEqual(await listDir(dir), ["data.hdf5"]);

    // 2. A failure after the temporary file has been partly written.
    let tempSeen = "";
    await assertFails(
      atomicWrite(path, async (temp) => {
        tempSeen = temp;
        await Deno.writeFile(temp, before.subarray(0, 100));
        throw new Error("disk on fire");
      }),
      "internal",
      [path, "disk on fire"],
    );
    assert.ok(tempSeen.includes(".data.hdf5.tmp-"), tempSeen);
    assert.deepEqual(await Deno.readFile(path), before);
    assert.deepEqual(await listDir(dir), ["data.hdf5"]);

    // 3. A complete HDF5 write whose final rename fails (the target is a non-empty directory).
    const blocked = `${dir}/blocked.hdf5`;
    await Deno.mkdir(blocked);
    await Deno.writeTextFile(`${blocked}/keep.txt`, "keep");
    await assertFails(writeD4rlFile(blocked, makeArrays(20, 11, 3)), "io", [blocked]);
    assert.deepEqual(await listDir(dir), ["blocked.hdf5", "data.hdf5"]);
    assert.deepEqual(await listDir(blocked), ["keep.txt"]);

    // 4. And a successful write does replace the file.
    await writeD4rlFile(path, makeArrays(21, 11, 3));
    assert.deepEqual((await readD4rlFile(path)).datasets.rewards?.shape, [21]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writer rejects flags other than 0/1 and unstorable attributes before touching the disk", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/x.hdf5`;
    const flags = makeArrays(10, 11, 3);
    (flags.timeouts as Uint8Array)[3] = 2;
    await assertFails(writeD4rlFile(path, flags), "input", [path, "'timeouts'[3] is 2"]);
    await assertFails(
      writeD4rlFile(path, makeArrays(10, 11, 3), { huge: Array.from({ length: 5000 }, (_, i) => i) }),
      "input",
      ["'huge'", "5000 numbers"],
    );
    await assertFails(writeD4rlFile(path, makeArrays(10, 11, 3), { empty: [] }), "input", [
      "'empty'",
      "empty array",
    ]);
    assert.deepEqual(await listDir(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("works under the task permissions --allow-read=. --allow-write=data (no env, no /tmp)", async () => {
  const name = `data/cache/hdf5-test-${crypto.randomUUID().slice(0, 8)}.hdf5`;
  const script = `
import { readD4rlFile, writeD4rlFile } from "./datasets/hdf5.ts";
const n = 6;
await writeD4rlFile("${name}", {
  n, obsDim: 2, actDim: 1,
  observations: Float32Array.from({ length: 12 }, (_, i) => i),
  actions: new Float32Array(6).fill(0.5),
  rewards: Float32Array.of(1, 2, 3, 4, 5, 6),
  terminals: Uint8Array.of(0, 0, 1, 0, 0, 0),
  timeouts: Uint8Array.of(0, 0, 0, 0, 0, 1),
}, { env: "hopper" });
const raw = await readD4rlFile("${name}");
console.log(JSON.stringify({ rewards: Array.from(raw.datasets.rewards.data), terminals: raw.datasets.terminals.dtype,
  attrs: raw.attrs }));
`;
  await Deno.mkdir(`${REPO_ROOT}/data/cache`, { recursive: true });
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", "--allow-read=.", "--allow-write=data", "-"],
      cwd: REPO_ROOT,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(script));
    await writer.close();
    const out = await child.output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.ok(out.success, stderr);
    assert.deepEqual(JSON.parse(new TextDecoder().decode(out.stdout)), {
      rewards: [1, 2, 3, 4, 5, 6],
      terminals: "bool",
      attrs: { env: "hopper" },
    });
  } finally {
    await Deno.remove(`${REPO_ROOT}/${name}`).catch(() => {});
  }
});
