/**
 * The layout is the architecture: imports run one way, from the commands at the top down to `core/`
 * at the bottom, and no module imports itself back through a circle. This test reads every source
 * file's relative imports (static, dynamic and worker URLs) and fails on an import that runs back up
 * the layers, on one between two directories of the same layer, and on any circle.
 * @module
 */

import assert from "node:assert/strict";
import { dirname, join, normalize, relative } from "node:path";
import { type ModuleEdges, relativeImports } from "./module_graph.ts";

/** Each top-level source directory and its layer: a module may import only its own directory or lower layers. */
export const LAYERS: Readonly<Record<string, number>> = {
  core: 0,
  numerics: 1,
  formats: 1,
  envs: 2,
  datasets: 3,
  stages: 4,
  study: 5,
  report: 6,
  grid: 7,
  commands: 8,
};

const ROOT = normalize(join(dirname(new URL(import.meta.url).pathname), ".."));

async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(join(ROOT, dir))) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) out.push(...await sourceFiles(path));
    else if (entry.name.endsWith(".ts")) out.push(path);
  }
  return out;
}

/** Every module under the layered directories and the modules it imports (repository-relative paths). */
async function importGraph(): Promise<Map<string, ModuleEdges>> {
  const graph = new Map<string, ModuleEdges>();
  for (const dir of Object.keys(LAYERS)) {
    const exists = await Deno.stat(join(ROOT, dir)).then(() => true, () => false);
    if (!exists) continue;
    for (const file of await sourceFiles(dir)) {
      const text = await Deno.readTextFile(join(ROOT, file));
      const resolve = (spec: string) => relative(ROOT, join(ROOT, dirname(file), spec));
      const { imports, workers } = relativeImports(text);
      graph.set(file, { imports: imports.map(resolve), workers: workers.map(resolve) });
    }
  }
  return graph;
}

/** The problems of an import graph: imports against the layers, and circles. */
export function layerViolations(graph: ReadonlyMap<string, ModuleEdges>): string[] {
  const problems: string[] = [];
  const top = (path: string) => path.split("/")[0];
  for (const [from, { imports, workers }] of graph) {
    for (const to of [...imports, ...workers]) {
      if (to === "deno.json") continue; // the toolkit's version, read by core/version.ts
      const [a, b] = [top(from), top(to)];
      if (!(b in LAYERS)) problems.push(`${from} imports ${to}, outside the layered directories`);
      else if (LAYERS[b] > LAYERS[a]) {
        problems.push(`${from} (layer ${a}) imports ${to} (layer ${b}, above it)`);
      } else if (LAYERS[b] === LAYERS[a] && a !== b) {
        problems.push(`${from} imports ${to}: ${a}/ and ${b}/ are one layer and must not import each other`);
      }
    }
  }
  // Circles: depth-first search, reporting each back edge once as the circle it closes.
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (node: string) => {
    state.set(node, "open");
    stack.push(node);
    for (const next of graph.get(node)?.imports ?? []) {
      if (!graph.has(next)) continue;
      if (state.get(next) === "open") {
        problems.push(`circle: ${[...stack.slice(stack.indexOf(next)), next].join(" → ")}`);
      } else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(node, "done");
  };
  for (const node of [...graph.keys()].sort()) if (!state.has(node)) visit(node);
  return problems;
}

Deno.test("imports run down the layers (core at the bottom, commands on top) and form no circle", async () => {
  const graph = await importGraph();
  assert.ok(graph.size > 40, `found only ${graph.size} modules: is the test looking in the right place?`);
  assert.deepEqual(layerViolations(graph), []);
});

Deno.test("the layer check catches an import up the layers, a worker across one layer and a circle, and lets a pool and its worker name each other", () => {
  const edges = (imports: string[], workers: string[] = []) => ({ imports, workers });
  const graph = new Map<string, ModuleEdges>([
    ["core/a.ts", edges(["stages/b.ts"])],
    ["stages/b.ts", edges(["stages/c.ts"], ["stages/b_worker.ts"])],
    ["stages/b_worker.ts", edges(["stages/b.ts"])],
    ["stages/c.ts", edges(["stages/b.ts"])],
    ["numerics/d.ts", edges([], ["formats/e.ts"])],
    ["formats/e.ts", edges([])],
  ]);
  const problems = layerViolations(graph);
  assert.ok(
    problems.some((p) => p.startsWith("core/a.ts (layer core) imports stages/b.ts")),
    problems.join("\n"),
  );
  assert.ok(problems.some((p) => p.includes("numerics/ and formats/ are one layer")), problems.join("\n"));
  assert.ok(
    problems.some((p) => p === "circle: stages/b.ts → stages/c.ts → stages/b.ts"),
    problems.join("\n"),
  );
  assert.equal(problems.length, 3);
});

Deno.test("relative imports are found in every form a module uses", () => {
  const source = [
    `import { a } from "../core/a.ts";`,
    `import type {\n  B,\n} from "./b.ts";`,
    `export { c } from "./c.ts";`,
    `const m = await import("../numerics/d.ts");`,
    `new Worker(new URL("./e_worker.ts", import.meta.url).href, { type: "module" });`,
    `import * as tf from "@tensorflow/tfjs";`,
  ].join("\n");
  const found = relativeImports(source);
  assert.deepEqual(found.imports.sort(), ["../core/a.ts", "../numerics/d.ts", "./b.ts", "./c.ts"]);
  assert.deepEqual(found.workers, ["./e_worker.ts"]);
});
