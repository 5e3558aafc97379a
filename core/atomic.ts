/**
 * Writing a file or a directory whole or not at all, the one way every output of the toolkit is
 * written (cache entries, checkpoints, teachers, reports, grid records, HDF5 files, downloads):
 * the content is produced at a temporary sibling path and renamed into place, so a reader, or a
 * run killed mid-write, never meets half of it. Temporary names are `.<name>.tmp-<nonce>` (and
 * `.<name>.old-<nonce>` for a directory being replaced), so what an interrupted write left behind
 * is recognisable ({@link leftoversOf}).
 * @module
 */

import { basename, dirname, join } from "node:path";

/** Options of {@link writeAtomic}. */
export interface AtomicOptions {
  /** Replace an existing `path` (default true); false refuses with `Deno.errors.AlreadyExists`. */
  readonly replace?: boolean;
}

/**
 * Produces `path` atomically: `fill(tmp)` writes a file or a directory at a temporary path in the
 * same directory, which is then renamed onto `path`. When both are directories the old one is moved
 * aside first and removed after (a rename cannot replace a non-empty directory), and restored if the
 * rename fails; a file is never written over a directory. On any failure the temporary path is
 * removed and `path` is as it was.
 */
export async function writeAtomic(
  path: string,
  fill: (tmp: string) => Promise<void> | void,
  options: AtomicOptions = {},
): Promise<void> {
  const parent = dirname(path), name = basename(path);
  const nonce = crypto.randomUUID().slice(0, 8);
  const tmp = join(parent, `.${name}.tmp-${nonce}`);
  try {
    await fill(tmp);
    const existing = await Deno.lstat(path).catch(() => null);
    if (existing && options.replace === false) throw new Deno.errors.AlreadyExists(`${path} already exists`);
    // A directory replaces a directory; a file never replaces a directory (the rename refuses).
    if (existing?.isDirectory && (await Deno.lstat(tmp)).isDirectory) {
      const old = join(parent, `.${name}.old-${nonce}`);
      await Deno.rename(path, old);
      try {
        await Deno.rename(tmp, path);
      } catch (e) {
        await Deno.rename(old, path).catch(() => {});
        throw e;
      }
      await Deno.remove(old, { recursive: true });
    } else {
      await Deno.rename(tmp, path);
    }
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
}

/** Writes `data` (bytes or text) to `path` atomically. */
export async function writeFileAtomic(
  path: string,
  data: Uint8Array | string,
  options?: AtomicOptions,
): Promise<void> {
  await writeAtomic(
    path,
    (tmp) => typeof data === "string" ? Deno.writeTextFile(tmp, data) : Deno.writeFile(tmp, data),
    options,
  );
}

/** Writes `value` as indented JSON with a final newline to `path` atomically. */
export async function writeJsonAtomic(path: string, value: unknown, options?: AtomicOptions): Promise<void> {
  await writeFileAtomic(path, JSON.stringify(value, null, 2) + "\n", options);
}

/** Whether `entry` (a name in `path`'s directory) is what an interrupted {@link writeAtomic} of `path` left. */
export function leftoversOf(path: string, entry: string): boolean {
  const name = basename(path);
  return entry.startsWith(`.${name}.tmp-`) || entry.startsWith(`.${name}.old-`);
}
