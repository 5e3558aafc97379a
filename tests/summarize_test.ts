/**
 * Summaries from hand-made runs whose numbers are known: the paper's tables (every episode pooled,
 * means and interquartile means with bootstrap intervals, baselines counted once, missing cells),
 * the comparisons between methods and which are significant, their Markdown/CSV/JSON, SVG plots as
 * well-formed XML with the expected elements, PCA, the run report's links, and bad input.
 */
import assert from "node:assert/strict";
import { PipelineFailure } from "../core/errors.ts";
import { TOOL_VERSION } from "../core/version.ts";
import { Rng } from "../numerics/random.ts";
import type { BaselinesReport } from "../stages/baselines.ts";
import type { CurvePoint } from "../stages/distill.ts";
import {
  type EvaluationReport,
  PAPER_EVALUATE,
  setEvaluationConfig,
  type VariantScore,
} from "../stages/evaluate.ts";
import type { PolicyScores } from "../stages/scores.ts";
import { PAPER_STUDENT, studentProtocol } from "../stages/student.ts";
import { namedArchitecture } from "../stages/student_fit.ts";
import { fitPca2, projectPca2, symmetricEigen } from "../report/pca.ts";
import {
  type BaselineRecord,
  type RunRecord,
  stageTimings,
  summarize,
  type SummaryInput,
  writeSummaryFiles,
} from "../report/summarize.ts";
import { histogram, lineChart, niceTicks, scatterPlot } from "../report/svg.ts";
import { assertFails } from "./helpers.ts";

// ---------------------------------------------------------------------------------------------
// A tiny XML well-formedness check (Deno has no DOMParser): one root, balanced tags, quoted unique
// attributes, only the five predefined entities or character references.
// ---------------------------------------------------------------------------------------------

function parseXml(xml: string): { root: string; elements: Map<string, number> } {
  const elements = new Map<string, number>();
  const stack: string[] = [];
  let root: string | undefined;
  const token =
    /<!--[\s\S]*?-->|<(\/?)([A-Za-z_][\w:.-]*)((?:\s+[A-Za-z_][\w:.-]*\s*=\s*"[^"<]*")*)\s*(\/?)>|([^<]+)/y;
  const badEntity = /&(?!(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/;
  let pos = 0;
  while (pos < xml.length) {
    token.lastIndex = pos;
    const m = token.exec(xml);
    if (!m) throw new Error(`malformed XML at ${pos}: ${JSON.stringify(xml.slice(pos, pos + 40))}`);
    pos = token.lastIndex;
    const [, closing, name, attrs, selfClosing, text] = m;
    if (text !== undefined) {
      if (badEntity.test(text)) throw new Error(`bad entity in text ${JSON.stringify(text.slice(0, 40))}`);
      if (stack.length === 0 && text.trim() !== "") {
        throw new Error(`text outside the root: ${JSON.stringify(text.slice(0, 40))}`);
      }
      continue;
    }
    if (name === undefined) continue; // a comment
    if (closing) {
      if (selfClosing || attrs.trim()) throw new Error(`malformed closing tag </${name}>`);
      const open = stack.pop();
      if (open !== name) throw new Error(`</${name}> closes <${open}>`);
      continue;
    }
    const names = [...attrs.matchAll(/([A-Za-z_][\w:.-]*)\s*=\s*"([^"]*)"/g)].map((a) => {
      if (badEntity.test(a[2])) throw new Error(`bad entity in attribute ${a[1]} of <${name}>`);
      return a[1];
    });
    if (new Set(names).size !== names.length) throw new Error(`duplicate attribute in <${name}>`);
    if (stack.length === 0) {
      if (root !== undefined) throw new Error(`a second root element <${name}>`);
      root = name;
    }
    elements.set(name, (elements.get(name) ?? 0) + 1);
    if (!selfClosing) stack.push(name);
  }
  if (stack.length) throw new Error(`unclosed <${stack.join("> <")}>`);
  if (!root) throw new Error("no root element");
  return { root, elements };
}

/** Elements of `tag` with `class` before the legend (i.e. in the plot area). */
function count(svg: string, pattern: RegExp): number {
  return (svg.split('<g class="legend">')[0].match(pattern) ?? []).length;
}

// ---------------------------------------------------------------------------------------------
// Hand-made runs
// ---------------------------------------------------------------------------------------------

/** Scores whose unit u ran two episodes, u − 1 and u + 1; returns are 32.5 × the normalized scores. */
function scores(seed: number, perUnit: number[]): PolicyScores {
  const normalized = perUnit.map((u) => [u - 1, u + 1]);
  return {
    seed,
    normalized,
    returns: normalized.map((u) => u.map((v) => v * 32.5)),
    trainLoss: perUnit.map(() => 0.01),
    seconds: 1,
  };
}

/** Scores whose every episode is exactly `value` (a point interval). */
function flat(seed: number, value: number, units = 1, episodes = 2): PolicyScores {
  const normalized = Array.from({ length: units }, () => Array(episodes).fill(value));
  return { seed, normalized, returns: normalized.map((u) => u.map((v) => v * 32.5)), seconds: 1 };
}

function variant(name: "2-layer" | "residual", seed: number, value: number): VariantScore {
  return {
    name,
    architecture: namedArchitecture(name, 256),
    optimizer: { kind: "sgd", learningRate: 0.1 },
    steps: 500,
    initialLoss: 1,
    finalLoss: 0.1,
    score: scores(seed, [value]),
  };
}

function report(options: {
  env?: "hopper" | "walker2d";
  objective: string;
  size: number;
  seed: number;
  final: PolicyScores;
  curve?: number[];
  ensemble?: number;
  variants?: VariantScore[];
}): EvaluationReport {
  const env = options.env ?? "hopper";
  const curve = options.curve?.map((v, i) => ({ step: i * 1000, scores: scores(options.seed, [v]) }));
  return {
    env,
    dataset: { file: "x.hdf5", sha256: "0", n: 1000 },
    objective: options.objective,
    seed: options.seed,
    synsetSize: options.size,
    config: setEvaluationConfig(PAPER_EVALUATE, PAPER_STUDENT),
    protocol: studentProtocol(PAPER_STUDENT, env),
    final: options.final,
    curve: [...(curve ?? []), { step: (curve?.length ?? 0) * 1000, scores: options.final }],
    ...(options.ensemble !== undefined
      ? { ensemble: { ...scores(options.seed, [options.ensemble]), members: 10 } }
      : {}),
    ...(options.variants ? { architectures: options.variants } : {}),
    throughput: { envSteps: 1000, seconds: 2, stepsPerSecond: 500 },
    seconds: 10,
  };
}

function distilled(objective: string, size: number, steps: number, env: "hopper" | "walker2d" = "hopper") {
  const curve: CurvePoint[] = Array.from(
    { length: steps },
    (_, i) => ({ step: i + 1, outerLoss: 1, innerLoss: 1, gradNorm: 1 }),
  );
  return { env, objective, size, curve } as RunRecord["distilled"];
}

const RUNS: RunRecord[] = [
  {
    dataset: "hopper-m-r",
    seed: 0,
    distilled: distilled("avpbc", 256, 5000),
    report: report({
      objective: "avpbc",
      size: 256,
      seed: 0,
      final: scores(0, [35]),
      curve: [10, 20, 30, 40, 50],
      ensemble: 42,
      variants: [variant("2-layer", 0, 20), variant("residual", 0, 30)],
    }),
  },
  {
    dataset: "hopper-m-r",
    seed: 1,
    distilled: distilled("avpbc", 256, 5000),
    report: report({
      objective: "avpbc",
      size: 256,
      seed: 1,
      final: scores(1, [33]),
      curve: [30, 30, 30, 30, 30],
      ensemble: 38,
      variants: [variant("2-layer", 1, 22), variant("residual", 1, 34)],
    }),
  },
  {
    dataset: "hopper-m-r",
    seed: 0,
    distilled: distilled("dbc", 256, 10),
    report: report({ objective: "dbc", size: 256, seed: 0, final: flat(0, 12) }),
  },
  {
    dataset: "hopper-m-r",
    seed: 0,
    distilled: distilled("avpbc", 64, 10),
    report: report({ objective: "avpbc", size: 64, seed: 0, final: scores(0, [25]) }),
  },
  {
    dataset: "walker2d-m",
    seed: 0,
    report: report({ env: "walker2d", objective: "avpbc", size: 256, seed: 0, final: scores(0, [50]) }),
  },
];

const HOPPER_BASELINES: BaselinesReport = {
  env: "hopper",
  dataset: { file: "x.hdf5", sha256: "0", n: 1000 },
  synsetSize: 256,
  config: {} as never,
  protocol: studentProtocol(PAPER_STUDENT, "hopper"),
  randomSelection: [flat(0, 7), flat(1, 7), flat(2, 7)],
  bc: { ...flat(0, 45), steps: 100, finalLoss: 0.1 },
  throughput: { envSteps: 1000, seconds: 2, stepsPerSecond: 500 },
  seconds: 3,
};

const BASELINES: BaselineRecord[] = [
  {
    dataset: "hopper-m-r",
    report: HOPPER_BASELINES,
    teacher: { episodes: 10, normalizedScores: new Float64Array(10).fill(80) },
    teacherLabel: "TD3+BC, 100000 steps",
  },
];

const INPUT: SummaryInput = {
  runName: "2026-01-01T00-00-00-test",
  runs: RUNS,
  baselines: BASELINES,
  backend: "wasm",
  config: { evaluate: { students: 5 } },
  timings: [
    { stage: "load", seconds: 1.25, cached: true, key: "k1", backend: "wasm" },
    { stage: "distill", seconds: 600, cached: false, key: "k2", backend: "wasm" },
  ],
  createdAt: "2026-01-01T00:00:00.000Z",
  resamples: 500,
};

const cellOf = (json: { cells: Record<string, unknown>[] }, row: string, column: string) =>
  json.cells.find((c) => c.row === row && c.column === column) as Record<string, number>;

Deno.test("the XML check accepts well-formed and rejects malformed documents", () => {
  assert.equal(parseXml('<svg a="1"><g><text>a &amp; b</text></g><rect/></svg>\n').root, "svg");
  for (
    const bad of [
      "<svg><g></svg>",
      "<svg a=1/>",
      "<svg>a & b</svg>",
      "<svg/><svg/>",
      '<svg a="1" a="2"/>',
      "<svg>",
    ]
  ) {
    assert.throws(() => parseXml(bad), Error, bad);
  }
});

Deno.test("Table 1: every episode pooled, mean and IQM with intervals; baselines once; Markdown, CSV and JSON", () => {
  const { files } = summarize(INPUT);
  const csv = files["table1_methods.csv"].split("\n");
  assert.equal(csv[0], "row,column,mean,low,high,iqm,iqmLow,iqmHigh,seeds,episodes");
  // Cells whose every episode is one value have point intervals: known exactly.
  assert.ok(csv.includes("Random selection,hopper-m-r,7,7,7,7,7,7,3,6"), files["table1_methods.csv"]);
  assert.ok(csv.includes("DBC,hopper-m-r,12,12,12,12,12,12,1,2"));
  assert.ok(csv.includes("BC (whole data),hopper-m-r,45,45,45,45,45,45,1,2"));
  assert.ok(csv.includes("Teacher (offline RL),hopper-m-r,80,80,80,80,80,80,1,10"));
  const json = JSON.parse(files["table1_methods.json"]);
  assert.deepEqual(json.columns, ["hopper-m-r", "walker2d-m", "avg"]);
  // Av-PBC on hopper: episodes 34, 36 (seed 0) and 32, 34 (seed 1): mean 34; IQM of [32, 34, 34, 36] is 34.
  const avpbc = cellOf(json, "Av-PBC", "hopper-m-r");
  assert.deepEqual([avpbc.mean, avpbc.iqm, avpbc.seeds, avpbc.episodes], [34, 34, 2, 4]);
  assert.ok(avpbc.low >= 32 && avpbc.low < 34 && avpbc.high > 34 && avpbc.high <= 36, JSON.stringify(avpbc));
  // The average over datasets pools both strata: (34 + 36 + 32 + 34 + 49 + 51) / 6.
  const avg = cellOf(json, "Av-PBC", "avg");
  assert.ok(Math.abs(avg.mean - 236 / 6) < 1e-12, `${avg.mean}`);
  assert.equal(
    cellOf(json, "Random selection", "avg"),
    undefined,
    "only rows measured on every dataset are averaged",
  );
  const md = files["table1_methods.md"];
  assert.match(md, /^# Table 1 — /);
  assert.ok(md.includes("|method|hopper-m-r|walker2d-m|avg|"), md);
  assert.ok(md.includes("|Random selection|7.0 [7.0, 7.0] · IQM 7.0|—|—|"), md);
  assert.ok(md.includes("TD3+BC, 100000 steps"), "the teacher is named in the note");
  // Row order is the paper's: Random selection, DBC, …, Av-PBC, BC, teacher.
  const rows = md.split("\n").filter((l) =>
    l.startsWith("|") && !l.startsWith("|:") && !l.startsWith("|method")
  );
  assert.deepEqual(rows.map((l) => l.split("|")[1]), [
    "Random selection",
    "DBC",
    "Av-PBC",
    "BC (whole data)",
    "Teacher (offline RL)",
  ]);
});

Deno.test("comparisons: paired on common seeds, intervals, and which differences are significant", () => {
  const { files } = summarize(INPUT);
  const list = JSON.parse(files["table1_comparisons.json"]).comparisons as Record<string, unknown>[];
  const find = (a: string, b: string, dataset = "hopper-m-r") =>
    list.find((c) => c.a === a && c.b === b && c.dataset === dataset) as Record<string, number | boolean>;
  // DBC seed 0 against Random selection repeat 0: both constant, paired, exactly 12 − 7.
  const dbc = find("DBC", "Random selection");
  assert.deepEqual([dbc.meanDifference, dbc.meanLow, dbc.meanHigh, dbc.paired, dbc.significant], [
    5,
    5,
    5,
    true,
    true,
  ]);
  // Av-PBC (seeds 0, 1) against Random selection restricted to repeats 0 and 1: +27, every resample positive.
  const avpbc = find("Av-PBC", "Random selection");
  assert.equal(avpbc.meanDifference, 27);
  assert.equal(avpbc.paired, true);
  assert.equal(avpbc.significant, true);
  assert.ok((avpbc.meanLow as number) >= 25 && (avpbc.meanHigh as number) <= 29);
  // Against BC (another layout): unpaired.
  assert.equal(find("Av-PBC", "BC (whole data)").paired, false);
  assert.equal(find("Av-PBC", "BC (whole data)").meanDifference, 34 - 45);
  // Between distilled methods: Av-PBC and DBC share seed 0.
  const pair = find("DBC", "Av-PBC");
  assert.equal(pair.paired, true);
  assert.equal(pair.meanDifference, 12 - 35, "on the common seed 0 only");
  assert.ok(
    files["table1_comparisons.md"].includes(
      "|hopper-m-r|DBC − Random selection|+5.0 [5.0, 5.0]|+5.0 [5.0, 5.0]|yes|yes, higher|",
    ),
    files["table1_comparisons.md"],
  );
  assert.ok(
    files["report.md"].includes("DBC > Random selection (hopper-m-r, 5.0 points)"),
    files["report.md"],
  );
});

Deno.test("Tables 2, 3 and 5, the seeds table and the run-by-run table", () => {
  const { files } = summarize(INPUT);
  const t2 = JSON.parse(files["table2_students.json"]);
  assert.equal(cellOf(t2, "2-layer MLP", "hopper-m-r").mean, 21);
  assert.equal(cellOf(t2, "Residual 4-layer MLP", "hopper-m-r").mean, 32);
  const t3 = JSON.parse(files["table3_ensemble.json"]);
  assert.equal(cellOf(t3, "Av-PBC · 1 student", "hopper-m-r").mean, 34);
  assert.equal(cellOf(t3, "Av-PBC · ensemble of 10", "hopper-m-r").mean, 40);
  const t5 = files["table5_size.md"];
  assert.ok(t5.includes("|dataset · method|N=64|N=256|"), t5);
  const t5json = JSON.parse(files["table5_size.json"]);
  assert.equal(cellOf(t5json, "hopper-m-r · Av-PBC", "N=64").mean, 25);
  assert.equal(cellOf(t5json, "hopper-m-r · Av-PBC", "N=256").mean, 34);
  assert.equal(cellOf(t5json, "walker2d-m · Av-PBC", "N=256").mean, 50);
  assert.ok(t5.includes("|hopper-m-r · DBC|—|12.0 [12.0, 12.0] · IQM 12.0|"), t5);
  // The seeds table: the paper's last-5 summary of seed 0's curve (20, 30, 40, 50 and the final 35).
  const seeds = JSON.parse(files["table1_seeds.json"]).rows as Record<string, number>[];
  const seed0 = seeds.find((r) => r.method === ("Av-PBC" as never) && r.seed === 0 && r.N === 256)!;
  assert.equal(seed0.lastK, (20 + 30 + 40 + 50 + 35) / 5);
  assert.equal(seed0.mean, 35);
  // Raw returns per run, beside normalized ones.
  const detail = JSON.parse(files["evaluations.json"]);
  assert.equal(detail.length, 5);
  assert.deepEqual(
    {
      lastK: detail[0].lastK,
      normalized: detail[0].normalized,
      return: detail[0].return,
      ensemble: detail[0].ensemble,
    },
    { lastK: 35, normalized: 35, return: 35 * 32.5, ensemble: 42 },
  );
  assert.ok(
    files["evaluations.md"].includes(
      "|hopper-m-r|Av-PBC|0|256|1 × 2|35.0 ± 1.0|1138 ± 33|35.0 (5)|42.0 ± 1.0|",
    ),
    files["evaluations.md"],
  );
});

Deno.test("Figure 1: one line per method with interval bands, baselines dashed, only where a curve exists", () => {
  const { files } = summarize(INPUT);
  const svg = files["figure1_hopper-m-r.svg"];
  const { root, elements } = parseXml(svg);
  assert.equal(root, "svg");
  assert.equal(count(svg, /class="series"/g), 1, "Av-PBC has a line; DBC's single point has none");
  assert.equal(count(svg, /class="marker"/g), 7, "6 Av-PBC points and 1 DBC point");
  assert.equal(count(svg, /class="band"/g), 1);
  assert.equal(count(svg, /class="reference"/g), 3);
  assert.ok(elements.get("text")! >= 10);
  for (
    const label of [
      "Av-PBC (2 seeds)",
      "DBC (1 seed)",
      "Random selection",
      "BC (whole data)",
      "Teacher (offline RL)",
      "distillation step",
      "D4RL normalized return (%)",
    ]
  ) {
    assert.ok(svg.includes(`>${label}</text>`), label);
  }
  for (const tick of ["1k", "2k", "5k"]) assert.ok(svg.includes(`>${tick}</text>`), tick);
});

Deno.test("density histogram and PCA plot: well-formed, the expected bars and points, the variance shares", () => {
  const rng = new Rng(1);
  const density = Float32Array.from({ length: 5000 }, () => 10 ** rng.uniformRange(-2, 2));
  // Data along (1, 1, 0) with a little noise: PC1 explains nearly everything.
  const n = 500, d = 3;
  const observations = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    const t = rng.normal() * 3;
    observations.set([t + 0.1 * rng.normal(), t + 0.1 * rng.normal(), 0.1 * rng.normal()], i * d);
  }
  const states = {
    dataset: {
      n,
      obsDim: d,
      observations,
      stateMean: new Float32Array(d),
      stateStd: new Float32Array(d).fill(1),
    },
    synthetic: { size: 4, obsDim: d, states: Float32Array.from([1, 1, 0, -1, -1, 0, 2, 2, 0, 0, 0, 3]) },
    label: "test",
  };
  const { files } = summarize({ ...INPUT, density, states, pcaSample: 200 });
  const hist = files["density_weights.svg"];
  parseXml(hist);
  assert.ok(hist.includes(">log10 weight ρ(s)</text>"), "weights spanning 10^4 are binned on log10");
  const bars = count(hist, /class="bar"/g);
  assert.ok(bars >= 35 && bars <= 40, `${bars} bars`);
  const pca = files["states_pca.svg"];
  parseXml(pca);
  assert.equal(count(pca, /r="1.6"/g), 200);
  assert.equal(count(pca, /r="4"/g), 4);
  const pc1 = Number(pca.match(/PC1 \(([\d.]+)% of variance\)/)![1]);
  assert.ok(pc1 > 99, `PC1 explains ${pc1}%`);
  assert.ok(files["report.md"].includes("Density weights: 5000 weights: min 0.010"), files["report.md"]);
});

Deno.test("the run report states version, backend, timings and configuration, and links only files it has", () => {
  const { files } = summarize(INPUT);
  const r = files["report.md"];
  assert.ok(r.startsWith("# Run 2026-01-01T00-00-00-test\n"));
  assert.ok(r.includes(`| code version | ${TOOL_VERSION} |`));
  assert.ok(r.includes("| tensor backend | wasm |"));
  assert.ok(
    r.includes("| load | 1.3 | yes | k1 | wasm |") && r.includes("| distill | 600.0 | no | k2 | wasm |"),
    r,
  );
  assert.ok(r.includes("Computed in this run: 600.0 s"));
  assert.ok(r.includes('"students": 5'));
  assert.ok(r.includes("|Random selection|7.0 [7.0, 7.0] · IQM 7.0|—|—|"), "Table 1 inline");
  const links = [...r.matchAll(/\]\(([^)]+)\)/g)].map((m) => m[1]);
  assert.ok(links.length >= 16);
  for (const link of links) {
    assert.ok(link in files, `the report links ${link}, which is not a file of the summary`);
  }
  for (const name of Object.keys(files).filter((f) => f.endsWith(".md") && f !== "report.md")) {
    assert.ok(links.includes(name), `${name} is linked`);
  }
  assert.ok(links.includes("figure1_hopper-m-r.svg"));
  const summary = JSON.parse(files["summary.json"]);
  assert.equal(summary.toolVersion, TOOL_VERSION);
  assert.deepEqual(summary.files, Object.keys(files).sort());
});

Deno.test("bad input is an input error and produces no files", async () => {
  await assertFails(() => summarize({ ...INPUT, runs: [], baselines: [] }), "input", ["no runs"]);
  await assertFails(() => summarize({ ...INPUT, runs: [{ dataset: "x", seed: 0 }] }), "input", [
    "run 0 (x) has neither",
  ]);
  await assertFails(
    () =>
      summarize({
        ...INPUT,
        runs: [{ dataset: "x", seed: 0, distilled: { ...distilled("avpbc", 8, 1)!, env: "ant" as never } }],
      }),
    "input",
    ['unknown environment "ant"'],
  );
  await assertFails(() => summarize({ ...INPUT, runs: [{ ...RUNS[0], dataset: "" }] }), "input", [
    "no dataset label",
  ]);
  const dataset = {
    n: 10,
    obsDim: 2,
    observations: new Float32Array(20).map((_, i) => i % 7),
    stateMean: new Float32Array(2),
    stateStd: new Float32Array(2).fill(1),
  };
  await assertFails(
    () =>
      summarize({
        ...INPUT,
        states: { dataset, synthetic: { size: 1, obsDim: 2, states: Float32Array.of(0, NaN) } },
      }),
    "input",
    ["non-finite state value at row 0, column 1"],
  );
  await assertFails(
    () =>
      summarize({
        ...INPUT,
        states: { dataset, synthetic: { size: 1, obsDim: 3, states: Float32Array.of(0, 0, 0) } },
      }),
    "input",
    ["3-dimensional, the data's 2-dimensional"],
  );
  await assertFails(() => summarize({ ...INPUT, lastEvaluations: 0 }), "config", ["lastEvaluations = 0"]);
});

Deno.test("writeSummaryFiles writes every file whole and nothing else; stage timings come from manifests", async () => {
  const dir = await Deno.makeTempDir();
  const summary = summarize(INPUT);
  await writeSummaryFiles(`${dir}/run`, summary);
  const names = (await Array.fromAsync(Deno.readDir(`${dir}/run`))).map((e) => e.name).sort();
  assert.deepEqual(names, Object.keys(summary.files).sort());
  assert.equal(await Deno.readTextFile(`${dir}/run/table1_methods.csv`), summary.files["table1_methods.csv"]);
  await assert.rejects(writeSummaryFiles(dir, { files: { "../escape.md": "x" } }), PipelineFailure);
  const timings = stageTimings([{
    stage: "load",
    key: "k",
    fromCache: true,
    manifest: { timings: { seconds: 2.5 }, backend: "wasm" },
  }]);
  assert.deepEqual(timings, [{ stage: "load", seconds: 2.5, cached: true, key: "k", backend: "wasm" }]);
});

Deno.test("SVG building blocks: nice ticks, charts of nothing, histograms and scatter plots parse", () => {
  assert.deepEqual(niceTicks(0, 37), [0, 10, 20, 30, 40]);
  assert.deepEqual(niceTicks(0.013, 0.087), [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09]);
  assert.deepEqual(niceTicks(-3.2, 4.1), [-4, -3, -2, -1, 0, 1, 2, 3, 4, 5]);
  assert.deepEqual(niceTicks(-3.2, 4.1, 3), [-4, -2, 0, 2, 4, 6]);
  assert.deepEqual(niceTicks(5, 5), [4.4, 4.6, 4.8, 5, 5.2, 5.4, 5.6], "a single value is widened by 10%");
  const empty = lineChart({
    title: "t <&>",
    xLabel: "x",
    yLabel: "y",
    series: [{ label: "nan", points: [{ x: 1, y: NaN }] }],
  });
  parseXml(empty);
  assert.ok(empty.includes(">no data</text>") && empty.includes("t &lt;&amp;&gt;") && !empty.includes("NaN"));
  const h = histogram({
    title: "h",
    xLabel: "v",
    values: Float64Array.of(1, 1, 2, 3, 3, 3),
    bins: 3,
    log10: false,
  });
  parseXml(h);
  assert.equal(count(h, /class="bar"/g), 3);
  const s = scatterPlot({
    title: "s",
    xLabel: "a",
    yLabel: "b",
    groups: [{ label: "g", xy: [0, 0, 1, 1, NaN, 2] }],
  });
  parseXml(s);
  assert.equal(count(s, /<circle /g), 2, "the non-finite point is skipped");
});

Deno.test("PCA: Jacobi eigenpairs satisfy A v = λ v; components of known data", () => {
  const two = symmetricEigen([2, 1, 1, 2], 2);
  assert.ok(Math.abs(two.values[0] - 3) < 1e-12 && Math.abs(two.values[1] - 1) < 1e-12);
  assert.ok(
    Math.abs(two.vectors[0][0] - Math.SQRT1_2) < 1e-12 && Math.abs(two.vectors[0][1] - Math.SQRT1_2) < 1e-12,
  );
  const rng = new Rng(3), d = 6;
  const a = new Float64Array(d * d);
  for (let i = 0; i < d; i++) for (let j = i; j < d; j++) a[i * d + j] = a[j * d + i] = rng.normal();
  const { values, vectors } = symmetricEigen(a, d);
  values.forEach((lambda, k) => {
    for (let i = 0; i < d; i++) {
      let av = 0;
      for (let j = 0; j < d; j++) av += a[i * d + j] * vectors[k][j];
      assert.ok(Math.abs(av - lambda * vectors[k][i]) < 1e-9, `pair ${k}, row ${i}`);
    }
  });
  assert.ok(values.every((v, i) => i === 0 || values[i - 1] >= v), "descending");
  // Points on a line along (3, 4)/5 through (1, 1): PC1 is that direction, PC2 carries nothing.
  const rows = Float64Array.from(
    { length: 20 },
    (_, i) => (i % 2 === 0 ? 1 + 3 * (i - 10) : 1 + 4 * (i - 11)),
  );
  const pca = fitPca2(rows, 10, 2);
  assert.ok(Math.abs(pca.components[0][0] - 0.6) < 1e-9 && Math.abs(pca.components[0][1] - 0.8) < 1e-9);
  assert.ok(pca.explained[0] > 1 - 1e-12);
  // The data mean is (−2, −3) (t averages −1); a point 5 along the line from it projects to (5, 0).
  const projected = projectPca2(pca, Float64Array.of(-2 + 3, -3 + 4), 2);
  assert.ok(Math.abs(projected[0] - 5) < 1e-9 && Math.abs(projected[1]) < 1e-9, `${projected}`);
});
