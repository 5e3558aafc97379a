/**
 * Checkpoints that let long loops resume: a value (objects with typed arrays, as stage outputs)
 * saved to a directory by write-to-temporary-then-rename, with sha256 of every file, so an
 * interrupted save leaves the previous checkpoint intact and a damaged one is ignored, not loaded.
 * @module
 */

import { basename, dirname, join } from "node:path";
import { decodeArtifact, encodeArtifact } from "./artifact.ts";
import { sha256Hex } from "./hash.ts";

const INDEX = "checkpoint.json";

/** Saves `value` to `dir` atomically (replacing an older checkpoint there). */
export async function saveCheckpoint(dir: string, value: unknown): Promise<void> {
  const parent = dirname(dir);
  await Deno.mkdir(parent, { recursive: true });
  const nonce = crypto.randomUUID().slice(0, 8);
  const tmp = join(parent, `.${basename(dir)}.tmp-${nonce}`);
  const old = join(parent, `.${basename(dir)}.old-${nonce}`);
  await Deno.mkdir(tmp);
  try {
    const files = encodeArtifact(value);
    const sums: Record<string, string> = {};
    for (const [name, bytes] of files) {
      await Deno.writeFile(join(tmp, name), bytes);
      sums[name] = await sha256Hex(bytes);
    }
    await Deno.writeTextFile(join(tmp, INDEX), JSON.stringify({ savedAt: new Date().toISOString(), files: sums }));
    const hadOld = await Deno.rename(dir, old).then(() => true, () => false);
    try {
      await Deno.rename(tmp, dir);
    } catch (e) {
      if (hadOld) await Deno.rename(old, dir).catch(() => {});
      throw e;
    }
    if (hadOld) await Deno.remove(old, { recursive: true });
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
}

/** Loads the checkpoint in `dir`; `undefined` when there is none or it fails its checksums. */
export async function loadCheckpoint(dir: string): Promise<unknown | undefined> {
  let index: { files: Record<string, string> };
  try {
    index = JSON.parse(await Deno.readTextFile(join(dir, INDEX)));
  } catch {
    return undefined;
  }
  const files = new Map<string, Uint8Array>();
  for (const [name, sum] of Object.entries(index.files)) {
    const bytes = await Deno.readFile(join(dir, name)).catch(() => undefined);
    if (!bytes || await sha256Hex(bytes) !== sum) return undefined;
    files.set(name, bytes);
  }
  return decodeArtifact(files);
}

/** Removes a checkpoint once the work it protected is done. */
export async function removeCheckpoint(dir: string): Promise<void> {
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}
