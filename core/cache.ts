/**
 * The content-addressed artifact cache: `<root>/<stage>/<key>/` holds a stage's output files and a
 * `manifest.json` describing them. Entries are written into a temporary directory and renamed into
 * place, so a reader sees a complete entry or none; every read re-checks the files' sha256 against
 * the manifest, and the manifest against its own digest, so a damaged or edited entry is reported
 * and recomputed instead of used. A process killed
 * mid-write leaves only a temporary directory, which no lookup reads; the next writer of that key
 * (the holder of its compute lock, see `core/lock.ts`) removes it with `removeLeftovers`.
 * @module
 */

import { join } from "node:path";
import { leftoversOf, writeAtomic } from "./atomic.ts";
import { canonicalJson, sha256Hex } from "./hash.ts";

/** Everything recorded about one cached stage output. */
export interface Manifest {
  /** The stage that computed the output. */
  readonly stage: string;
  /** The stage's code version. */
  readonly version: string;
  /** The cache key: sha256 of stage, version, config and input keys. */
  readonly key: string;
  /** The stage's config, as hashed. */
  readonly config: unknown;
  /** Upstream artifacts this output was computed from: input name → cache key. */
  readonly inputs: Readonly<Record<string, string>>;
  /** Tensor backend that produced the numbers (e.g. "wasm", "cpu", "tensorflow:tfjs-node"). */
  readonly backend: string;
  /** When the entry was written (ISO 8601). */
  readonly createdAt: string;
  /** Wall-clock seconds the stage took. */
  readonly timings: { readonly seconds: number };
  /** Summary metrics the stage recorded (scores, losses, throughput). */
  readonly metrics: Readonly<Record<string, number | string>>;
  /** Output files (relative names) with their size and sha256. */
  readonly files: Readonly<Record<string, { readonly bytes: number; readonly sha256: string }>>;
  /**
   * sha256 of the canonical JSON of every other field: an edited manifest (a metric, the config)
   * no longer matches it and the entry is invalid, as a damaged file makes it.
   */
  readonly digest: string;
}

/** The digest of a manifest's fields other than `digest` (as they read back from JSON). */
export function manifestDigest(
  manifest: Omit<Manifest, "digest"> & { readonly digest?: string },
): Promise<string> {
  const { digest: _, ...rest } = manifest;
  return sha256Hex(canonicalJson(JSON.parse(JSON.stringify(rest))));
}

/** Name of the manifest inside an entry; written last, so its presence marks a complete entry. */
export const MANIFEST_FILE = "manifest.json";

/** The file-system operations the cache uses; injectable so tests can simulate a full disk. */
export interface CacheFs {
  writeFile(path: string, data: Uint8Array): Promise<void>;
}

const denoFs: CacheFs = { writeFile: (path, data) => Deno.writeFile(path, data) };

/** Outcome of looking an entry up. */
export type Lookup =
  | { readonly status: "hit"; readonly manifest: Manifest; readonly files: Map<string, Uint8Array> }
  | { readonly status: "miss" }
  | { readonly status: "invalid"; readonly reason: string };

/** A cache rooted at one directory (normally `data/cache`). */
export class ArtifactCache {
  /** The cache's directory. */
  readonly root: string;
  readonly #fs: CacheFs;

  /** A cache in `root`; `fs` replaces file writes (tests simulate a full disk with it). */
  constructor(root: string, fs: CacheFs = denoFs) {
    this.root = root;
    this.#fs = fs;
  }

  /** Directory of an entry. */
  entryDir(stage: string, key: string): string {
    return join(this.root, stage, key);
  }

  /** Reads and verifies an entry. Never returns a partial or corrupted entry as a hit. */
  async lookup(stage: string, key: string): Promise<Lookup> {
    const dir = this.entryDir(stage, key);
    let manifestText: string;
    try {
      manifestText = await Deno.readTextFile(join(dir, MANIFEST_FILE));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      const exists = await Deno.stat(dir).then(() => true, () => false);
      return exists
        ? { status: "invalid", reason: `${dir} has no ${MANIFEST_FILE} (incomplete entry)` }
        : { status: "miss" };
    }
    let manifest: Manifest;
    try {
      manifest = JSON.parse(manifestText);
    } catch {
      return { status: "invalid", reason: `${join(dir, MANIFEST_FILE)} is not valid JSON` };
    }
    if (manifest.key !== key || manifest.stage !== stage) {
      return { status: "invalid", reason: `${dir}: manifest names ${manifest.stage}/${manifest.key}` };
    }
    if (typeof manifest.digest !== "string") {
      return {
        status: "invalid",
        reason: `${join(dir, MANIFEST_FILE)} has no digest (written by an older version)`,
      };
    }
    if (await manifestDigest(manifest) !== manifest.digest) {
      return {
        status: "invalid",
        reason: `${join(dir, MANIFEST_FILE)} was edited: its contents no longer match its digest`,
      };
    }
    const files = new Map<string, Uint8Array>();
    for (const [name, expected] of Object.entries(manifest.files ?? {})) {
      let bytes: Uint8Array;
      try {
        bytes = await Deno.readFile(join(dir, name));
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) {
          return { status: "invalid", reason: `${dir}: ${name} is missing` };
        }
        throw e;
      }
      if (bytes.byteLength !== expected.bytes) {
        return {
          status: "invalid",
          reason: `${dir}: ${name} has ${bytes.byteLength} bytes, manifest says ${expected.bytes}`,
        };
      }
      if (await sha256Hex(bytes) !== expected.sha256) {
        return { status: "invalid", reason: `${dir}: ${name} does not match its sha256 in the manifest` };
      }
      files.set(name, bytes);
    }
    return { status: "hit", manifest, files };
  }

  /**
   * Removes what interrupted writes of one entry left in its stage directory and returns their
   * names. Call it only while holding the entry's compute lock: then no other process is writing
   * that key.
   */
  async removeLeftovers(stage: string, key: string): Promise<string[]> {
    const stageDir = join(this.root, stage);
    const entry = this.entryDir(stage, key);
    const names: string[] = [];
    try {
      for await (const e of Deno.readDir(stageDir)) if (leftoversOf(entry, e.name)) names.push(e.name);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return [];
      throw e;
    }
    for (const name of names) await Deno.remove(join(stageDir, name), { recursive: true });
    return names;
  }

  /**
   * Writes an entry atomically (`core/atomic.ts`): files and then the manifest into a temporary
   * directory, then one rename. On any failure whatever entry was there before is left as it was.
   */
  async write(
    partial: Omit<Manifest, "files" | "digest">,
    files: ReadonlyMap<string, Uint8Array>,
  ): Promise<Manifest> {
    await Deno.mkdir(join(this.root, partial.stage), { recursive: true });
    let manifest!: Manifest;
    await writeAtomic(this.entryDir(partial.stage, partial.key), async (tmp) => {
      await Deno.mkdir(tmp);
      const described: Record<string, { bytes: number; sha256: string }> = {};
      for (const [name, bytes] of files) {
        await this.#fs.writeFile(join(tmp, name), bytes);
        described[name] = { bytes: bytes.byteLength, sha256: await sha256Hex(bytes) };
      }
      const sealed = { ...partial, files: described };
      manifest = { ...sealed, digest: await manifestDigest(sealed) };
      await this.#fs.writeFile(
        join(tmp, MANIFEST_FILE),
        new TextEncoder().encode(JSON.stringify(manifest, null, 2)),
      );
    });
    return manifest;
  }
}
