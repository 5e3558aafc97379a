/** The public API: `deno doc mod.ts` is its reference, so every export and member it shows is documented. */
import assert from "node:assert/strict";
import { REPO_ROOT } from "./helpers.ts";

Deno.test("deno doc --lint mod.ts finds no undocumented export, member or private type", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["doc", "--lint", "mod.ts"],
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  const ansi = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g"); // deno doc's colour codes
  const errors = text.split("\n").filter((l) => l.includes("error[")).map((l) => l.replace(ansi, ""));
  assert.deepEqual(errors, [], text.slice(0, 4000));
  assert.equal(out.code, 0);
});
