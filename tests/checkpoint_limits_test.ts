/**
 * Hostile checkpoints against `teacher import`: tiny zips crafted here (a stride-0 view of
 * 65,536 × 65,536 values, a zip bomb declared honestly and one that lies about its size, a storage
 * shorter than its declared length, NaN and Inf weights) run through the `teacher` task under a
 * memory limit (V8's heap capped, and the process's resident memory watched and killed past
 * 1 GiB). Each must be refused within seconds, in one line naming the entry and the sizes.
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { crc32 } from "../stages/teacher/zip.ts";
import { readTorchCheckpoint } from "../stages/teacher/torch_checkpoint.ts";
import { teacherFromCorl } from "../stages/teacher/corl_import.ts";
import { saveTeacherDir } from "../stages/teacher/model.ts";
import { REPO_ROOT, repoScratchDir, runUnderTask, taskFlags } from "./helpers.ts";

const DIR = await repoScratchDir("ckpt");

// ---- a pickle writer (protocol 2), enough for state dicts of tensors ----------------------------

const enc = new TextEncoder();
const bytes = (...parts: (number | Uint8Array)[]): Uint8Array => {
  const arrays = parts.map((p) => typeof p === "number" ? new Uint8Array([p]) : p);
  const out = new Uint8Array(arrays.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of arrays) (out.set(a, at), (at += a.length));
  return out;
};
const u32 = (n: number) => new Uint8Array(new Uint32Array([n]).buffer);
const str = (s: string) => bytes(0x58, u32(enc.encode(s).length), enc.encode(s)); // BINUNICODE
/** BININT, or LONG1 (little-endian two's complement) past 32 bits. */
const int = (n: number) => {
  if (n >= -(2 ** 31) && n < 2 ** 31) return bytes(0x4a, new Uint8Array(new Int32Array([n]).buffer));
  const le: number[] = [];
  for (let v = BigInt(n); v > 0n; v >>= 8n) le.push(Number(v & 0xffn));
  if (le[le.length - 1] & 0x80) le.push(0);
  return bytes(0x8a, le.length, new Uint8Array(le));
};
const global = (module: string, name: string) => bytes(0x63, enc.encode(`${module}\n${name}\n`));
const tuple = (...items: (number | Uint8Array)[]) => bytes(0x28, ...items, 0x74); // MARK … TUPLE

/** `_rebuild_tensor_v2(('storage', FloatStorage, key, 'cpu', numel), offset, shape, stride, False, OrderedDict())`. */
function tensor(key: string, numel: number, shape: number[], stride: number[], offset = 0): Uint8Array {
  const storage = bytes(
    tuple(str("storage"), global("torch", "FloatStorage"), str(key), str("cpu"), int(numel)),
    0x51, // BINPERSID
  );
  return bytes(
    global("torch._utils", "_rebuild_tensor_v2"),
    tuple(
      storage,
      int(offset),
      tuple(...shape.map(int)),
      tuple(...stride.map(int)),
      0x89, // NEWFALSE
      bytes(global("collections", "OrderedDict"), 0x29, 0x52), // OrderedDict()
    ),
    0x52, // REDUCE
  );
}

type Value = Uint8Array | Map<string, Value>;
function dict(entries: Map<string, Value>): Uint8Array {
  const parts: Uint8Array[] = [new Uint8Array([0x7d])]; // EMPTY_DICT
  for (const [k, v] of entries) parts.push(str(k), v instanceof Map ? dict(v) : v, new Uint8Array([0x73]));
  return bytes(...parts);
}
const pickle = (root: Map<string, Value>) => bytes(0x80, 2, dict(root), 0x2e);

// ---- a zip writer: stored or deflated entries, sizes as declared --------------------------------

interface Entry {
  readonly name: string;
  readonly data: Uint8Array;
  /** Deflate the data (default: stored). */
  readonly deflate?: boolean;
  /** The inflated size to declare (default: the true one). */
  readonly declaredSize?: number;
  /** Deflated bytes to store as they are (then `data` is only used for the CRC). */
  readonly deflated?: Uint8Array;
}

async function deflateRaw(chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<Uint8Array> {
  const cs = new CompressionStream("deflate-raw");
  const writer = cs.writable.getWriter();
  const out = new Response(cs.readable).arrayBuffer();
  for await (const c of chunks) await writer.write(c as Uint8Array<ArrayBuffer>);
  await writer.close();
  return new Uint8Array(await out);
}

async function zip(entries: readonly Entry[]): Promise<Uint8Array> {
  const locals: Uint8Array[] = [], centrals: Uint8Array[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = enc.encode(e.name);
    const body = e.deflated ?? (e.deflate ? await deflateRaw([e.data]) : e.data);
    const header = (central: boolean) => {
      const b = new Uint8Array(central ? 46 : 30);
      const v = new DataView(b.buffer);
      v.setUint32(0, central ? 0x02014b50 : 0x04034b50, true);
      const o = central ? 2 : 0; // the central header has "version made by" first
      v.setUint16(8 + o, e.deflate || e.deflated ? 8 : 0, true);
      v.setUint32(14 + o, crc32(e.data), true);
      v.setUint32(18 + o, body.length, true);
      v.setUint32(22 + o, e.declaredSize ?? e.data.length, true);
      v.setUint16(26 + o, name.length, true);
      if (central) v.setUint32(42, offset, true);
      return bytes(b, name);
    };
    locals.push(header(false), body);
    centrals.push(header(true));
    offset += 30 + name.length + body.length;
  }
  const cd = bytes(...centrals);
  const eocd = new Uint8Array(22);
  const v = new DataView(eocd.buffer);
  v.setUint32(0, 0x06054b50, true);
  v.setUint16(8, entries.length, true);
  v.setUint16(10, entries.length, true);
  v.setUint32(12, cd.length, true);
  v.setUint32(16, offset, true);
  return bytes(...locals, cd, eocd);
}

const floats = (...v: number[]) => new Uint8Array(new Float32Array(v).buffer);

// ---- running the importer under a memory limit --------------------------------------------------

const RSS_LIMIT_MIB = 1024;

/**
 * The watchdog, in Python (the tests' Debian interpreter): runs argv[3:], samples its resident memory
 * every 20 ms from /proc, kills it past argv[1] MiB or argv[2] seconds; prints JSON with the exit
 * code, the peak resident memory (the kernel's own maximum, from getrusage) and why it was killed.
 */
const WATCHDOG = `
import json, os, resource, subprocess, sys, time
limit, seconds, cmd = int(sys.argv[1]) * 2**20, float(sys.argv[2]), sys.argv[3:]
start = time.time(); p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
import threading; err = []; t = threading.Thread(target=lambda: err.append(p.stderr.read())); t.start()
killed = ""
while p.poll() is None:
    try:
        rss = int(open(f"/proc/{p.pid}/status").read().split("VmRSS:")[1].split()[0]) * 1024
    except Exception:
        rss = 0
    if rss > limit: killed = f"resident memory {rss // 2**20} MiB"
    elif time.time() - start > seconds: killed = f"{seconds:.0f} s"
    if killed: p.kill(); p.wait(); break
    time.sleep(0.02)
t.join()
print(json.dumps({"code": p.returncode, "stderr": err[0].decode(), "seconds": time.time() - start,
  "peakMiB": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "killed": killed}))
`;

/**
 * Runs `teacher import <file>` under the task's permissions with V8's heap capped at 256 MiB, its
 * resident memory watched and the process killed past 1 GiB or 60 s.
 */
async function importUnderLimit(name: string, archive: Uint8Array) {
  const file = `${DIR}/${name}.pt`;
  await Deno.writeFile(join(REPO_ROOT, file), archive);
  const deno = [
    Deno.execPath(),
    "run",
    "--no-prompt",
    "--v8-flags=--max-old-space-size=256",
    ...taskFlags("teacher"),
    join(REPO_ROOT, "commands/teacher.ts"),
    "import",
    file,
    "--out",
    `${DIR}/${name}-out`,
  ];
  const out = await new Deno.Command("/usr/bin/python3", {
    args: ["-c", WATCHDOG, String(RSS_LIMIT_MIB), "60", ...deno],
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const r = JSON.parse(new TextDecoder().decode(out.stdout));
  return { ...r, stderr: (r.stderr as string).trim(), file } as {
    code: number;
    stderr: string;
    seconds: number;
    peakMiB: number;
    killed: string;
    file: string;
  };
}

function assertRefused(r: Awaited<ReturnType<typeof importUnderLimit>>, parts: RegExp[]) {
  console.log(`${r.file}: ${r.seconds.toFixed(1)} s, peak ${r.peakMiB.toFixed(0)} MiB`);
  assert.equal(r.killed, "", `killed past the limit (${r.killed}); stderr: ${r.stderr.slice(0, 300)}`);
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stderr.split("\n").length, 1, `one line expected:\n${r.stderr}`);
  assert.match(r.stderr, /^error\[input\]: /);
  for (const p of parts) assert.match(r.stderr, p);
  assert.ok(r.seconds < 30, `took ${r.seconds.toFixed(1)} s`);
}

/** A CORL-layout root (one Linear in the actor, one in the critic) over storage "0" with `values`. */
function corl(
  values: Uint8Array,
  actorWeight = tensor("0", 8, [2, 3], [3, 1]),
  criticWeight = tensor("0", values.length / 4, [1, 4], [4, 1]),
) {
  const n = values.length / 4;
  return {
    pkl: pickle(
      new Map<string, Value>([
        [
          "actor",
          new Map<string, Value>([
            ["base_network.0.weight", actorWeight],
            ["base_network.0.bias", tensor("0", n, [2], [1])],
            ["log_std_multiplier.constant", tensor("0", n, [], [])],
            ["log_std_offset.constant", tensor("0", n, [], [])],
          ]),
        ],
        [
          "critic1",
          new Map<string, Value>([
            ["network.0.weight", criticWeight],
            ["network.0.bias", tensor("0", n, [1], [1])],
          ]),
        ],
      ]),
    ),
    storage: values,
  };
}

const archive = (pkl: Uint8Array, storages: Record<string, Uint8Array>, deflatePkl = false) =>
  zip([
    { name: "ckpt/data.pkl", data: pkl, deflate: deflatePkl },
    ...Object.entries(storages).map(([k, data]) => ({ name: `ckpt/data/${k}`, data })),
    { name: "ckpt/version", data: enc.encode("3\n") },
  ]);

Deno.test("the crafted CORL checkpoint imports (the writer here is sound)", async () => {
  const { pkl, storage } = corl(floats(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8));
  const r = await importUnderLimit("sound", await archive(pkl, { "0": storage }));
  assert.equal(r.code, 0, r.stderr);
});

Deno.test("a stride-0 view of 65,536 × 65,536 values is refused before anything is allocated", async () => {
  // An actor taking 2^31-dimensional states: its first weight [2, 2^31] (as many values as
  // 65,536 × 65,536) is one float repeated by zero strides; the critic agrees on the sizes.
  const { pkl, storage } = corl(
    floats(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
    tensor("0", 8, [2, 2 ** 31], [0, 0]),
    tensor("0", 8, [1, 2 ** 31 + 1], [0, 0]),
  );
  const r = await importUnderLimit("stride0", await archive(pkl, { "0": storage }));
  assertRefused(r, [/ckpt\/data\/0/, /shape \[2, 2147483648\]/, /4294967296 values/, /MiB allowed/]);
});

Deno.test("a view past the end of its storage, and a storage shorter than declared, are refused naming both sizes", async () => {
  const past = corl(floats(1, 2, 3, 4, 5, 6, 7, 8), tensor("0", 8, [2, 3], [3, 4]));
  const r1 = await importUnderLimit("past", await archive(past.pkl, { "0": past.storage }));
  assertRefused(r1, [/ckpt\/data\/0/, /reads element 11, past the storage's 8 float32 values/]);
  const short = corl(floats(1, 2, 3, 4, 5, 6, 7, 8), tensor("0", 1_000_000, [1000, 1000], [1000, 1]));
  const r2 = await importUnderLimit("short", await archive(short.pkl, { "0": short.storage }));
  assertRefused(r2, [/ckpt\/data\/0 holds 32 bytes, fewer than its declared 1000000 float32 values/]);
});

Deno.test("a zip bomb is refused by its declared size, and one that lies about its size stops at it", async () => {
  // 1.5 GiB of zeros deflate to about 1.5 MB: declared honestly, far past 16× the file + 64 MiB.
  const zeros = new Uint8Array(2 ** 24);
  const bomb = await deflateRaw((function* () {
    for (let i = 0; i < 96; i++) yield zeros;
  })());
  const withBomb = (declared: number) =>
    zip([{ name: "ckpt/data.pkl", data: new Uint8Array(), deflated: bomb, declaredSize: declared }]);
  const r1 = await importUnderLimit("bomb", await withBomb(96 * 2 ** 24));
  assertRefused(r1, [
    /ckpt\/data\.pkl declares 1536\.0 MiB inflated/,
    /MiB allowed for a 1\.\d MiB checkpoint/,
  ]);
  const r2 = await importUnderLimit("liar", await withBomb(4096));
  assertRefused(r2, [/ckpt\/data\.pkl inflates past its declared 4096 bytes/]);
});

Deno.test("NaN or Inf weights are refused at import, naming the key", async () => {
  for (const [name, bad] of [["nan", NaN], ["inf", -Infinity]] as const) {
    const { pkl, storage } = corl(floats(0.1, 0.2, 0.3, bad, 0.5, 0.6, 0.7, 0.8));
    const r = await importUnderLimit(name, await archive(pkl, { "0": storage }));
    assertRefused(r, [/actor\.base_network\.0\.weight holds \d+ non-finite value/, new RegExp(String(bad))]);
  }
});

Deno.test("`teacher act` refuses a saved teacher whose weights hold NaN instead of printing null actions", async () => {
  const { pkl, storage } = corl(floats(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8));
  const file = `${DIR}/act.pt`;
  await Deno.writeFile(join(REPO_ROOT, file), await archive(pkl, { "0": storage }));
  const artifact = teacherFromCorl(
    await readTorchCheckpoint(await Deno.readFile(join(REPO_ROOT, file)), file),
    {
      file,
      env: null,
    },
  );
  artifact.actor.net.weights[0][0] = NaN; // as a diverged run would leave it
  await saveTeacherDir(join(REPO_ROOT, DIR, "nan-teacher"), artifact);
  await Deno.writeTextFile(join(REPO_ROOT, DIR, "states.json"), JSON.stringify([[0.5, -0.5, 1]]));
  const r = await runUnderTask("teacher", "commands/teacher.ts", [
    "act",
    `${DIR}/nan-teacher`,
    "--states",
    `${DIR}/states.json`,
  ]);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.equal(r.stdout, "");
  assert.match(
    r.stderr.trim().split("\n").at(-1)!,
    /^error\[numeric\]: .*non-finite action or q-value for state 0/,
  );
});
