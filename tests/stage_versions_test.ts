/**
 * A stage's code version cannot be forgotten: `tests/stage_versions.json` records, for every cached
 * stage, its version and a hash of the code it runs (its module and every project module it imports
 * or starts as a worker, outside `core/`; with the MuJoCo models when it simulates), comments and
 * whitespace left out. The test fails when that code changed but the version did not: bump the
 * stage's `version` if the change alters what the stage computes (its cache entries are then
 * recomputed), and record the new state with `deno task stage-versions` either way.
 * @module
 */

import assert from "node:assert/strict";
import { dirname, join, normalize, relative } from "node:path";
import { sha256Hex } from "../core/hash.ts";
import { baselinesStage } from "../stages/baselines.ts";
import { densityStage } from "../stages/density.ts";
import { distillStage } from "../stages/distill.ts";
import { evaluateStage } from "../stages/evaluate.ts";
import { loadStage } from "../stages/load.ts";
import { subsetStage } from "../stages/subsets.ts";
import { subsetEvaluationStage, subsetStudentsStage } from "../stages/subset_students.ts";
import { teacherStage } from "../stages/teacher.ts";
import { relativeImports } from "./module_graph.ts";

const ROOT = normalize(join(dirname(new URL(import.meta.url).pathname), ".."));
const RECORD = join(ROOT, "tests/stage_versions.json");

/** Every cached stage and the module that defines it. */
const STAGES = [
  { stage: loadStage, module: "stages/load.ts" },
  { stage: teacherStage, module: "stages/teacher.ts" },
  { stage: densityStage, module: "stages/density.ts" },
  { stage: distillStage, module: "stages/distill.ts" },
  { stage: baselinesStage, module: "stages/baselines.ts" },
  { stage: evaluateStage, module: "stages/evaluate.ts" },
  { stage: subsetStage, module: "stages/subsets.ts" },
  { stage: subsetStudentsStage, module: "stages/subset_students.ts" },
  { stage: subsetEvaluationStage, module: "stages/subset_students.ts" },
];

/**
 * Source without comments, whitespace, trailing commas and semicolons before a brace: what `deno fmt`
 * changes, whatever the line width.
 */
export function codeOf(source: string): string {
  return source
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .replace(/(^|[^:"'`\\])\/\/.*$/gm, "$1")
    .replace(/\s+/g, "")
    .replace(/,([)\]}])/g, "$1")
    .replace(/;}/g, "}");
}

/** The modules a stage's module runs (imports and workers, transitively), `core/` excepted, sorted. */
async function closure(module: string): Promise<string[]> {
  const seen = new Set<string>();
  const visit = async (file: string) => {
    if (seen.has(file) || file.startsWith("core/")) return;
    seen.add(file);
    const { imports, workers } = relativeImports(await Deno.readTextFile(join(ROOT, file)));
    for (const spec of [...imports, ...workers]) {
      const target = relative(ROOT, join(ROOT, dirname(file), spec));
      if (target.endsWith(".ts")) await visit(target);
    }
  };
  await visit(module);
  if (seen.has("envs/locomotion.ts")) {
    for await (const e of Deno.readDir(join(ROOT, "envs/models"))) {
      if (e.name.endsWith(".xml")) seen.add(`envs/models/${e.name}`);
    }
  }
  return [...seen].sort();
}

async function codeHash(module: string): Promise<string> {
  const files = await closure(module);
  const parts = await Promise.all(
    files.map(async (f) => `${f}\n${codeOf(await Deno.readTextFile(join(ROOT, f)))}`),
  );
  return (await sha256Hex(parts.join("\n"))).slice(0, 16);
}

/** The current version and code hash of every stage. */
async function current(): Promise<Record<string, { version: string; code: string }>> {
  const out: Record<string, { version: string; code: string }> = {};
  for (const { stage, module } of STAGES) {
    out[stage.name] = { version: stage.version, code: await codeHash(module) };
  }
  return out;
}

Deno.test("comments and whitespace do not count as code; code does", () => {
  assert.equal(codeOf("const a = 1; // one\n/* two\n lines */ const  b = 2;"), "consta=1;constb=2;");
  assert.equal(codeOf('const url = "http://x"; // c'), 'consturl="http://x";');
  assert.equal(
    codeOf("f(\n  a,\n  b,\n);"),
    codeOf("f(a, b);"),
    "line breaks and trailing commas are formatting",
  );
  assert.equal(
    codeOf("const f = (x: number) => {\n  return x;\n};"),
    codeOf("const f = (x: number) => { return x };"),
  );
  assert.notEqual(codeOf("const a = 1;"), codeOf("const a = 2;"));
});

Deno.test("no stage's code changed without its version being bumped (and recorded)", async () => {
  const recorded = JSON.parse(await Deno.readTextFile(RECORD)) as Record<
    string,
    { version: string; code: string }
  >;
  const now = await current();
  const problems: string[] = [];
  for (const [name, { version, code }] of Object.entries(now)) {
    const before = recorded[name];
    if (!before) problems.push(`stage ${name} is not recorded`);
    else if (before.code !== code && before.version === version) {
      problems.push(
        `the code of stage ${name} changed since version ${version} was recorded: bump its version if what it computes changed`,
      );
    } else if (before.code !== code || before.version !== version) {
      problems.push(`stage ${name} (version ${version}) is not recorded as it is now`);
    }
  }
  assert.deepEqual(
    problems,
    [],
    `${problems.join("; ")}; then run \`deno task stage-versions\` to record the stages`,
  );
});

if (import.meta.main && Deno.args.includes("--record")) {
  await Deno.writeTextFile(RECORD, JSON.stringify(await current(), null, 2) + "\n");
  console.log(`recorded ${STAGES.length} stages in ${relative(ROOT, RECORD)}`);
}
