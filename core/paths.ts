/**
 * Output paths checked where they really lead. Deno's `--allow-write=data` compares the path as
 * written, without resolving symbolic links, so `data/escape/x` with `data/escape` a link to a
 * directory elsewhere would be written outside `data/`. Every command resolves its output paths
 * (`--out`, `--run-dir`, `--cache-dir`) here first: the nearest existing ancestor through `realpath`,
 * dangling links followed by hand, and refuses one whose real location this process may not write.
 * @module
 */

import { basename, dirname, isAbsolute, join, relative, resolve } from "node:path";
import { fail } from "./errors.ts";

/**
 * Where `path` really leads: the real path of its nearest existing ancestor (symbolic links resolved)
 * joined with the rest; a dangling link is followed to where it points. A path this process may not
 * read is resolved as written.
 */
export function realOutputPath(path: string): string {
  let p = resolve(path);
  let rest: string[] = [];
  for (let hops = 0; hops < 64; hops++) {
    try {
      return join(Deno.realPathSync(p), ...rest);
    } catch (e) {
      if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
        return join(p, ...rest);
      }
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    let target: string | undefined;
    try {
      target = Deno.lstatSync(p).isSymlink ? Deno.readLinkSync(p) : undefined;
    } catch { /* not there at all */ }
    if (target !== undefined) {
      p = isAbsolute(target) ? target : resolve(dirname(p), target); // a dangling link: where it points
      continue;
    }
    const parent = dirname(p);
    if (parent === p) return join(p, ...rest);
    rest = [basename(p), ...rest];
    p = parent;
  }
  return fail("io", `${path}: too many levels of symbolic links`, "remove the loop of links");
}

function granted(path: string): boolean {
  return Deno.permissions.querySync({ name: "write", path }).state === "granted";
}

function inside(path: string, dir: string): boolean {
  const r = relative(dir, path);
  return r === "" || (!r.startsWith("..") && !isAbsolute(r));
}

/**
 * Refuses (a `config` error naming `option`, the path and where it leads) an output path whose real
 * location this process may not write: outside what its task grants (`data/` for the deno tasks),
 * whether through a symbolic link or `..`. The grant is judged where it really is too: the real path
 * must lie in the real location of the outermost granted ancestor of the path as written, so a
 * granted `data/` (or cluster scratch directory) that is itself a link keeps working, while a link
 * inside it that leads elsewhere does not.
 */
export function checkOutputPath(path: string, option: string): void {
  const real = realOutputPath(path);
  if (granted(real)) return;
  const written = resolve(path);
  const parts = written.split("/").filter(Boolean);
  for (let k = 0; k <= parts.length; k++) {
    const ancestor = "/" + parts.slice(0, k).join("/");
    if (!granted(ancestor)) continue;
    if (inside(real, realOutputPath(ancestor))) return;
    break;
  }
  const via = resolve(path) === real ? ` (${real})` : ` (through a symbolic link it leads to ${real})`;
  fail(
    "config",
    `${option} ${path} is outside the directories this task may write${via}`,
    "give a path under data/ that is no symbolic link out of it, or run the module with --allow-write for that place",
  );
}
