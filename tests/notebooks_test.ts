/**
 * The notebooks in `notebooks/` run headless, as a reader would run them: Debian's nbconvert
 * (`/usr/bin/python3 -m nbconvert --execute`, installed by `tests/setup-debian.sh`) drives the Deno
 * Jupyter kernel of the very deno binary that runs these tests. Its kernelspec is installed with
 * `deno jupyter --install` into a temporary data directory (XDG_DATA_HOME), and nbconvert finds it
 * through JUPYTER_PATH, so the user's own kernelspecs are neither used nor touched.
 *
 * Each notebook must execute without an error cell and show what it promises (tables as Markdown,
 * plots as SVG); a notebook with a throwing cell is shown to fail the harness.
 * @module
 */
import assert from "node:assert/strict";
import { join, resolve } from "node:path";

const PYTHON = "/usr/bin/python3";
const NOTEBOOKS = resolve("notebooks");
/** Seconds a cell may run (nbconvert's per-cell limit) and a whole notebook may take. */
const CELL_TIMEOUT_S = 300;
const NOTEBOOK_TIMEOUT_MS = 600_000;

interface Output {
  readonly output_type: string;
  readonly name?: string;
  readonly text?: string | string[];
  readonly data?: Record<string, string | string[]>;
  readonly ename?: string;
  readonly evalue?: string;
}
interface Cell {
  readonly cell_type: string;
  readonly source: string | string[];
  readonly execution_count?: number | null;
  readonly outputs?: Output[];
}
interface Notebook {
  readonly nbformat: number;
  readonly metadata: { readonly kernelspec?: { readonly name: string; readonly language?: string } };
  readonly cells: Cell[];
}

const text = (v: string | string[] | undefined) => (Array.isArray(v) ? v.join("") : v ?? "");
const decoder = new TextDecoder();

/** Runs a command with a wall-clock limit; returns its exit status and output. */
async function command(
  program: string,
  args: string[],
  env: Record<string, string> = {},
  limitMs = NOTEBOOK_TIMEOUT_MS,
) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), limitMs);
  try {
    const out = await new Deno.Command(program, {
      args,
      env,
      stdout: "piped",
      stderr: "piped",
      signal: controller.signal,
    })
      .output();
    return {
      success: out.success,
      code: out.code,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
  } finally {
    clearTimeout(timer);
  }
}

let jupyterEnv: Promise<Record<string, string>> | undefined;

/**
 * Once per test run: checks that nbconvert is importable and installs the Deno kernelspec for
 * `Deno.execPath()` into a temporary directory; returns the environment nbconvert runs under.
 */
function jupyter(): Promise<Record<string, string>> {
  jupyterEnv ??= (async () => {
    const probe = await command(PYTHON, ["-c", "import nbconvert, nbclient; print(nbconvert.__version__)"]);
    assert.ok(
      probe.success,
      `${PYTHON} cannot import nbconvert/nbclient: run \`sh tests/setup-debian.sh\` (installs jupyter-nbconvert, python3-nbclient)\n${probe.stderr}`,
    );
    const root = await Deno.makeTempDir({ prefix: "obd-jupyter-" });
    const install = await command(Deno.execPath(), ["jupyter", "--install", "--force"], {
      XDG_DATA_HOME: root,
    });
    assert.ok(install.success, `deno jupyter --install failed:\n${install.stdout}\n${install.stderr}`);
    const specFile = join(root, "jupyter", "kernels", "deno", "kernel.json");
    const spec = JSON.parse(
      await Deno.readTextFile(specFile).catch(() => {
        throw new Error(
          `deno jupyter --install did not write ${specFile} (it said: ${install.stdout}${install.stderr})`,
        );
      }),
    );
    assert.equal(
      await Deno.realPath(spec.argv[0]),
      await Deno.realPath(Deno.execPath()),
      "the kernelspec must start the deno that runs the tests",
    );
    return {
      JUPYTER_PATH: join(root, "jupyter"),
      JUPYTER_DATA_DIR: join(root, "data"),
      JUPYTER_RUNTIME_DIR: join(root, "runtime"),
      JUPYTER_CONFIG_DIR: join(root, "config"),
    };
  })();
  return jupyterEnv;
}

/** Executes a notebook with nbconvert into a temporary directory; the executed notebook if it ran. */
async function execute(
  path: string,
  extra: string[] = [],
  limits: { readonly cellS: number; readonly totalMs: number } = {
    cellS: CELL_TIMEOUT_S,
    totalMs: NOTEBOOK_TIMEOUT_MS,
  },
) {
  const env = await jupyter();
  const outDir = await Deno.makeTempDir({ prefix: "obd-notebook-out-" });
  const started = performance.now();
  const run = await command(
    PYTHON,
    [
      "-m",
      "nbconvert",
      "--to",
      "notebook",
      "--execute",
      `--ExecutePreprocessor.timeout=${limits.cellS}`,
      "--ExecutePreprocessor.startup_timeout=120",
      ...extra,
      "--output-dir",
      outDir,
      path,
    ],
    env,
    limits.totalMs,
  );
  const seconds = (performance.now() - started) / 1000;
  const outFile = join(outDir, path.split("/").pop()!);
  const executed = run.success ? JSON.parse(await Deno.readTextFile(outFile)) as Notebook : undefined;
  return { ...run, seconds, executed };
}

/** Every output of the code cells, with the index of its cell. */
function outputs(nb: Notebook): (Output & { cell: number })[] {
  return nb.cells.flatMap((c, cell) => (c.outputs ?? []).map((o) => ({ ...o, cell })));
}

/** Error outputs, each as `cell i: Name: message`. */
function errors(nb: Notebook): string[] {
  return outputs(nb).filter((o) => o.output_type === "error").map((o) =>
    `cell ${o.cell}: ${o.ename}: ${o.evalue}`
  );
}

/** The content of every rich output of one MIME type. */
function rich(nb: Notebook, mime: string): string[] {
  return outputs(nb).flatMap((o) => (o.data && mime in o.data ? [text(o.data[mime])] : []));
}

/** Executes a notebook of `notebooks/` and checks the harness-level promises: success, no error cell, every cell run. */
async function executeClean(
  name: string,
  limits?: { readonly cellS: number; readonly totalMs: number },
): Promise<Notebook> {
  const run = await execute(join(NOTEBOOKS, name), [], limits);
  assert.ok(run.success, `nbconvert failed on ${name} (exit ${run.code}):\n${run.stderr.slice(-4000)}`);
  const nb = run.executed!;
  assert.deepEqual(errors(nb), [], `${name} has error outputs`);
  const code = nb.cells.filter((c) => c.cell_type === "code");
  assert.ok(
    code.every((c) => typeof c.execution_count === "number"),
    `${name}: a code cell was not executed`,
  );
  console.log(`${name}: executed in ${run.seconds.toFixed(1)} s`);
  return nb;
}

/** An SVG document as the helpers in report/svg.ts write it. */
function assertSvg(svg: string, title: string) {
  assert.match(svg.trimStart(), /^<svg[^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.match(svg.trimEnd(), /<\/svg>$/);
  assert.ok(svg.includes(title), `an SVG titled "${title}"`);
  assert.ok(!svg.includes("NaN"), "no NaN coordinates");
}

Deno.test("the committed notebooks are nbformat 4 for the Deno kernel, import the public API and hold no outputs", async () => {
  const names = [...Deno.readDirSync(NOTEBOOKS)].map((e) => e.name).filter((n) => n.endsWith(".ipynb"))
    .sort();
  assert.deepEqual(names, [
    "01_dataset_and_density.ipynb",
    "02_distill_and_evaluate.ipynb",
    "03_diversity_vs_quality.ipynb",
  ]);
  for (const name of names) {
    const nb = JSON.parse(await Deno.readTextFile(join(NOTEBOOKS, name))) as Notebook;
    assert.equal(nb.nbformat, 4, name);
    assert.equal(nb.metadata.kernelspec?.name, "deno", name);
    assert.equal(nb.metadata.kernelspec?.language, "typescript", name);
    assert.ok(nb.cells.some((c) => c.cell_type === "markdown"), `${name} explains its steps`);
    assert.ok(nb.cells.some((c) => text(c.source).includes(`from "../mod.ts"`)), `${name} imports ../mod.ts`);
    assert.deepEqual(outputs(nb), [], `${name} is committed without outputs`);
  }
});

Deno.test("notebook 01: the embedded dataset, its statistics and the SDW weight histogram", async () => {
  const nb = await executeClean("01_dataset_and_density.ipynb");
  const markdown = rich(nb, "text/markdown");
  const dataset = markdown.find((m) => m.includes("transitions (Q-learning view)"));
  assert.ok(dataset, "a table describing the dataset");
  assert.match(dataset, /\| environment \| hopper \|/);
  assert.match(dataset, /\| transitions \(Q-learning view\) \| [1-9]\d* \|/);
  assert.ok(
    markdown.some((m) => /normalized return: mean \| -?\d+\.\d/.test(m)),
    "normalized episode returns",
  );
  // The arquero table: one row per state dimension, and its std agrees with the load stage's.
  const stats = markdown.find((m) => m.startsWith("|dim|name|mean|std|min|max|std_check|"));
  assert.ok(stats, "the per-dimension statistics table");
  const rows = stats.trim().split("\n").slice(2).map((r) => r.split("|").slice(1, -1));
  assert.deepEqual(rows.map((r) => r[0]), Array.from({ length: 11 }, (_, k) => `s${k}`));
  for (const r of rows) {
    assert.ok(Math.abs(Number(r[6])) < 1e-4, `std of ${r[0]} differs from the load stage's: ${r[6]}`);
  }
  const density = markdown.find((m) => m.includes("reference states M"));
  assert.ok(density, "the density stage's summary");
  assert.match(density, /\| reference states M \| 2000 \|/);
  assert.match(density, /\| bandwidth h \(scott\) \| \d+\.\d+ \|/);
  const svgs = rich(nb, "image/svg+xml");
  assert.equal(svgs.length, 2, "two plots: episode returns and density weights");
  assertSvg(svgs[0], "Episode returns");
  assertSvg(svgs[1], "SDW state density weights");
});

Deno.test("notebook 02: a tiny DBC study with Table 1, Figure 1 and the PCA plot", async () => {
  const nb = await executeClean("02_distill_and_evaluate.ipynb");
  const markdown = rich(nb, "text/markdown");
  const table1 = markdown.find((m) => m.includes("Table 1"));
  assert.ok(table1, "Table 1 in Markdown");
  assert.match(table1, /\|DBC\|-?\d+\.\d \[-?\d+\.\d, -?\d+\.\d\] · IQM -?\d+\.\d\|/);
  assert.match(table1, /\|Random selection\|-?\d+\.\d \[-?\d+\.\d, -?\d+\.\d\] · IQM -?\d+\.\d\|/);
  assert.ok(
    markdown.some((m) =>
      /fresh students on the final set \(evaluate stage\) \| -?\d+\.\d ± \d+\.\d \(2 students × 2 episodes\)/
        .test(m)
    ),
  );
  const log = outputs(nb).filter((o) => o.output_type === "stream").map((o) => text(o.text)).join("");
  assert.match(log, /distill: computing/);
  assert.doesNotMatch(log, /teacher: computing/, "DBC needs no teacher");
  const svgs = rich(nb, "image/svg+xml");
  assert.equal(svgs.length, 2, "two plots: Figure 1 and the PCA");
  assertSvg(svgs[0], "Normalized return during distillation");
  assertSvg(svgs[1], "PCA");
});

Deno.test("notebook 03: the quick diversity study, its figure and the crossing verdict", async () => {
  // The quick study itself (about 5 minutes on two busy cores with the native kernels): more time than the others.
  const nb = await executeClean("03_diversity_vs_quality.ipynb", { cellS: 900, totalMs: 1_800_000 });
  const markdown = rich(nb, "text/markdown");
  assert.ok(
    markdown.some((m) => /\| Quality \(best episodes\) \| -?\d+\.\d+ \| \d+\.\d+ \|/.test(m)),
    "the subsets' measures",
  );
  const tables = markdown.find((m) => m.includes("### Normalized return by training level"));
  assert.ok(tables, "the return table");
  assert.match(tables, /\| Diversity \(k-center\) \| \d+\.\d{4} \| -?\d+\.\d \| \[-?\d+\.\d, -?\d+\.\d\] \|/);
  assert.match(tables, /crossing/i, "the crossing verdict");
  const svgs = rich(nb, "image/svg+xml");
  assert.equal(svgs.length, 1, "one figure: return against training loss");
  assertSvg(svgs[0], "return vs training loss");
  assert.ok(svgs[0].includes('class="band"'), "confidence bands");
});

Deno.test("the harness fails on a notebook whose cell throws, and finds the error in its outputs", async () => {
  const dir = await Deno.makeTempDir({ prefix: "obd-notebook-bad-" });
  const path = join(dir, "throws.ipynb");
  const code = (source: string) => ({
    cell_type: "code",
    id: crypto.randomUUID().slice(0, 8),
    metadata: {},
    execution_count: null,
    outputs: [],
    source,
  });
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      nbformat: 4,
      nbformat_minor: 5,
      metadata: { kernelspec: { name: "deno", display_name: "Deno", language: "typescript" } },
      cells: [
        code("const answer: number = 6 * 7;\nanswer"),
        code(`throw new Error("deliberate failure " + answer)`),
        code("console.log('after')"),
      ],
    }),
  );
  const failed = await execute(path);
  assert.equal(failed.success, false, "nbconvert must report the throwing cell");
  assert.match(failed.stderr, /deliberate failure 42/);
  // With --allow-errors nbconvert writes the notebook anyway; the error output is what the checks above reject.
  const kept = await execute(path, ["--allow-errors"]);
  assert.ok(kept.success, kept.stderr.slice(-2000));
  assert.deepEqual(errors(kept.executed!), ["cell 1: Error: deliberate failure 42"]);
});
