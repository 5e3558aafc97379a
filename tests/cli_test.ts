/** Command-line parsing and `--set` overrides: mistakes are one-line config errors. */
import assert from "node:assert/strict";
import { parseCommandLine } from "../core/cli.ts";
import { applyOverrides } from "../study/config.ts";
import { formatError, type PipelineError } from "../core/errors.ts";

const options = {
  backend: { type: "string", help: "backend" },
  force: { type: "string", multiple: true, help: "stage to recompute" },
  help: { type: "boolean", help: "help" },
} as const;

function isError(x: unknown): x is PipelineError {
  return typeof x === "object" && x !== null && "kind" in x;
}

Deno.test("valid command lines parse, with repeatable options", () => {
  const parsed = parseCommandLine(
    ["hopper-m-r", "--backend", "cpu", "--force", "load", "--force", "density"],
    options,
    1,
  );
  assert.ok(!isError(parsed));
  assert.deepEqual(parsed.positionals, ["hopper-m-r"]);
  assert.equal(parsed.values.backend, "cpu");
  assert.deepEqual(parsed.values.force, ["load", "density"]);
});

Deno.test("an unknown option is a one-line config error listing the valid ones", () => {
  const parsed = parseCommandLine(["--bakend", "cpu"], options, 1);
  assert.ok(isError(parsed));
  assert.equal(parsed.kind, "config");
  assert.match(parsed.message, /unknown option '--bakend'/);
  assert.match(parsed.hint ?? "", /--backend, --force, --help/);
  assert.equal(formatError(parsed).split("\n").length, 1);
});

Deno.test("too many positionals and a missing option value are config errors", () => {
  const extra = parseCommandLine(["a", "b"], options, 1);
  assert.ok(isError(extra) && /unexpected argument "b"/.test(extra.message));
  const missing = parseCommandLine(["--backend"], options, 1);
  assert.ok(isError(missing) && missing.kind === "config");
});

const config = { distill: { steps: 100, objective: "avpbc", clip: true, sizes: [16, 32] }, seed: 0 };

Deno.test("--set overrides existing settings with values of the same type", () => {
  const out = applyOverrides(config, [
    "distill.steps=250",
    "distill.objective=sdw",
    "distill.clip=false",
    "seed=3",
    "distill.sizes=8,64",
  ]);
  assert.ok(!isError(out));
  assert.deepEqual(out, { distill: { steps: 250, objective: "sdw", clip: false, sizes: [8, 64] }, seed: 3 });
  assert.equal(config.distill.steps, 100, "the preset itself is not modified");
});

Deno.test("--set rejects unknown settings and malformed values, naming them", () => {
  const typo = applyOverrides(config, ["distill.stepz=5"]);
  assert.ok(isError(typo));
  assert.equal(typo.message, 'unknown setting "distill.stepz"');
  assert.match(typo.hint ?? "", /distill\.steps/);
  const notNumber = applyOverrides(config, ["distill.steps=many"]);
  assert.ok(isError(notNumber) && notNumber.message === "distill.steps=many is not a finite number");
  const notBool = applyOverrides(config, ["distill.clip=yes"]);
  assert.ok(isError(notBool) && /not a boolean/.test(notBool.message));
  const noEquals = applyOverrides(config, ["distill.steps"]);
  assert.ok(isError(noEquals) && /not of the form/.test(noEquals.message));
  const section = applyOverrides(config, ["distill=3"]);
  assert.ok(isError(section) && /unknown setting/.test(section.message));
});
