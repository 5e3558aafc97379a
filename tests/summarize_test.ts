/**
 * Summaries from hand-made runs whose numbers are known: the paper's tables (mean over seeds of the
 * last 5 evaluations, baselines counted once, missing cells), their Markdown/CSV/JSON, SVG plots as
 * well-formed XML with the expected elements, PCA, the run report's links, and bad input.
 */
import assert from "node:assert/strict";
import { PipelineFailure } from "../core/errors.ts";
import { TOOL_VERSION } from "../core/version.ts";
import type { CurvePoint } from "../stages/distill.ts";
import {
  type EvaluationReport,
  lastEvaluations,
  meanStd,
  type MethodScore,
  namedArchitecture,
  PAPER_STUDENT,
  QUICK_EVALUATE,
  seedSummary,
  type VariantScore,
} from "../stages/evaluate.ts";
import {
  type RunRecord,
  stageTimings,
  summarize,
  type SummaryInput,
  writeSummaryFiles,
} from "../report/summarize.ts";
import { fitPca2, projectPca2, symmetricEigen } from "../report/pca.ts";
import { histogram, lineChart, niceTicks, scatterPlot } from "../report/svg.ts";
import { assertFails } from "./helpers.ts";
import { Rng } from "../numerics/random.ts";

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

/** A score whose unit u had two episodes, u − 1 and u + 1 (so the episode std is 1 for one unit). */
function score(method: string, perUnit: number[]): MethodScore {
  const normalizedScores = perUnit.flatMap((u) => [u - 1, u + 1]);
  const returns = normalizedScores.map((s) => s * 32.5);
  const s = meanStd(normalizedScores), r = meanStd(returns);
  return {
    method,
    units: perUnit.length,
    episodesPerUnit: 2,
    meanNormalizedScore: s.mean,
    stdNormalizedScore: s.std,
    meanReturn: r.mean,
    stdReturn: r.std,
    perUnit,
    normalizedScores,
    returns,
    seconds: 1,
  };
}

function variant(name: "2-layer" | "residual", value: number): VariantScore {
  return {
    name,
    architecture: namedArchitecture(name, 256),
    optimizer: { kind: "sgd", learningRate: 0.1 },
    steps: 500,
    initialLoss: 1,
    finalLoss: 0.1,
    score: score(name, [value]),
  };
}

function report(options: {
  env?: "hopper" | "walker2d";
  objective: string;
  size: number;
  plain?: number;
  ensemble?: number;
  random?: number[];
  bc?: number[];
  teacher?: number;
  variants?: VariantScore[];
}): EvaluationReport {
  return {
    env: options.env ?? "hopper",
    dataset: { file: "x.hdf5", sha256: "0", n: 1000 },
    objective: options.objective,
    synsetSize: options.size,
    config: QUICK_EVALUATE,
    protocol: PAPER_STUDENT,
    curve: lastEvaluations([], 5),
    ...(options.plain !== undefined ? { plain: score("distilled", [options.plain]) } : {}),
    ...(options.ensemble !== undefined
      ? { ensemble: { ...score("ensemble", [options.ensemble]), members: 10 } }
      : {}),
    ...(options.variants ? { architectures: options.variants } : {}),
    baselines: {
      ...(options.random ? { randomSelection: score("random selection", options.random) } : {}),
      ...(options.bc ? { bc: { ...score("bc", options.bc), steps: 100, finalLoss: 0.1 } } : {}),
      ...(options.teacher !== undefined ? { teacher: score("teacher", [options.teacher]) } : {}),
    },
    throughput: { envSteps: 1000, seconds: 2, stepsPerSecond: 500 },
    seconds: 10,
  };
}

const ev = (s: number) => ({
  students: 1,
  episodesPerStudent: 10,
  meanNormalizedScore: s,
  stdNormalizedScore: 0,
  meanReturn: 0,
  perStudent: [s],
});

/** A distillation log: evaluations every 1000 steps, the last one as the final evaluation. */
function distilled(objective: string, size: number, scores: number[], env: "hopper" | "walker2d" = "hopper") {
  const steps = scores.length * 1000;
  const curve: CurvePoint[] = Array.from({ length: steps / 1000 }, (_, i) => ({
    step: (i + 1) * 1000,
    outerLoss: 1,
    innerLoss: 1,
    gradNorm: 1,
    ...(i + 1 < scores.length ? { evaluation: ev(scores[i]) } : {}),
  }));
  return {
    env,
    objective,
    size,
    curve,
    finalEvaluation: ev(scores[scores.length - 1]),
  } as RunRecord["distilled"];
}

const shared = { random: [5, 7, 9], bc: [45], teacher: 80 };
const RUNS: RunRecord[] = [
  {
    dataset: "hopper-m-r",
    seed: 0,
    distilled: distilled("avpbc", 256, [10, 20, 30, 40, 50, 60]),
    report: report({
      objective: "avpbc",
      size: 256,
      plain: 35,
      ensemble: 42,
      ...shared,
      variants: [variant("2-layer", 20), variant("residual", 30)],
    }),
  },
  {
    dataset: "hopper-m-r",
    seed: 1,
    distilled: distilled("avpbc", 256, [30, 30, 30, 30, 30, 30]),
    report: report({
      objective: "avpbc",
      size: 256,
      plain: 33,
      ensemble: 38,
      ...shared,
      variants: [variant("2-layer", 22), variant("residual", 34)],
    }),
  },
  { dataset: "hopper-m-r", seed: 0, distilled: distilled("dbc", 256, [12]) },
  { dataset: "hopper-m-r", seed: 0, distilled: distilled("avpbc", 64, [25]) },
  {
    dataset: "walker2d-m",
    seed: 0,
    report: report({ env: "walker2d", objective: "avpbc", size: 256, plain: 50 }),
  },
];

const INPUT: SummaryInput = {
  runName: "2026-01-01T00-00-00-test",
  runs: RUNS,
  backend: "wasm",
  config: { evaluate: { students: 5 } },
  timings: [
    { stage: "load", seconds: 1.25, cached: true, key: "k1", backend: "wasm" },
    { stage: "distill", seconds: 600, cached: false, key: "k2", backend: "wasm" },
  ],
  createdAt: "2026-01-01T00:00:00.000Z",
};

// ---------------------------------------------------------------------------------------------

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

Deno.test("Table 1: mean over seeds of the last 5 evaluations; baselines once; Markdown, CSV and JSON", () => {
  const { files } = summarize(INPUT);
  assert.equal(
    files["table1_methods.csv"],
    [
      "row,column,mean,std,n,std_over",
      "Random selection,hopper-m-r,7,1.633,3,repeats",
      "DBC,hopper-m-r,12,0,1,evaluations",
      "Av-PBC,hopper-m-r,35,5,2,seeds",
      "Av-PBC,walker2d-m,50,1,1,episodes",
      "BC (whole data),hopper-m-r,45,1,1,episodes",
      "Teacher (offline RL),hopper-m-r,80,1,1,episodes",
      "",
    ].join("\n"),
  );
  // The same numbers as the evaluate module's own summary over the two Av-PBC seeds.
  const logs = [[10, 20, 30, 40, 50, 60], [30, 30, 30, 30, 30, 30]].map((s) =>
    s.map((score, i) => ({ step: (i + 1) * 1000, score }))
  );
  assert.deepEqual(seedSummary(logs, 5), { mean: 35, std: 5, seeds: 2, perSeed: [40, 30], lastK: 5 });
  const md = files["table1_methods.md"];
  assert.match(md, /^# Table 1 — /);
  assert.ok(md.includes("|method|hopper-m-r|walker2d-m|avg|"), md);
  assert.ok(md.includes("|Random selection|7.0 ± 1.6 (3)|—|7.0 (1 of 2)|"), md);
  assert.ok(md.includes("|DBC|12.0 ± 0.0 (1)|—|12.0 (1 of 2)|"), md);
  assert.ok(md.includes("|Av-PBC|35.0 ± 5.0 (2)|50.0 ± 1.0 (1)|42.5|"), md);
  assert.ok(md.includes("|Teacher (offline RL)|80.0 ± 1.0 (1)|—|80.0 (1 of 2)|"), md);
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
  const json = JSON.parse(files["table1_methods.json"]);
  assert.deepEqual(json.columns, ["hopper-m-r", "walker2d-m"]);
  assert.equal(json.cells.length, 6);
  assert.deepEqual(json.cells[2], {
    row: "Av-PBC",
    column: "hopper-m-r",
    mean: 35,
    std: 5,
    n: 2,
    std_over: "seeds",
  });
});

Deno.test("Tables 2, 3 and 5 and the run-by-run table", () => {
  const { files } = summarize(INPUT);
  assert.equal(
    files["table2_students.csv"],
    "row,column,mean,std,n,std_over\n2-layer MLP,hopper-m-r,21,1,2,seeds\nResidual 4-layer MLP,hopper-m-r,32,2,2,seeds\n",
  );
  assert.ok(
    files["table3_ensemble.md"].includes("|Av-PBC · 1 student|34.0 ± 1.0 (2)|34.0|"),
    files["table3_ensemble.md"],
  );
  assert.ok(files["table3_ensemble.md"].includes("|Av-PBC · ensemble of 10|40.0 ± 2.0 (2)|40.0|"));
  const t5 = files["table5_size.md"];
  assert.ok(t5.includes("|dataset · method|N=64|N=256|"), t5);
  assert.ok(t5.includes("|hopper-m-r · Av-PBC|25.0 ± 0.0 (1)|35.0 ± 5.0 (2)|"), t5);
  assert.ok(t5.includes("|hopper-m-r · DBC|—|12.0 ± 0.0 (1)|"), t5);
  assert.ok(t5.includes("|walker2d-m · Av-PBC|—|50.0 ± 1.0 (1)|"), t5);
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
    { lastK: 40, normalized: 35, return: 35 * 32.5, ensemble: 42 },
  );
  assert.ok(
    files["evaluations.md"].includes("|hopper-m-r|Av-PBC|0|256|40.0 (5)|35.0 ± 1.0|1138 ± 33|42.0 ± 1.0|"),
    files["evaluations.md"],
  );
});

Deno.test("Figure 1: one line per method with seed bands, baselines dashed, only where a log exists", () => {
  const { files } = summarize(INPUT);
  assert.equal(files["figure1_walker2d-m.svg"], undefined, "the walker run logged no evaluation");
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
  // Ticks of the step axis: 1000 … 6000 as 1k … 6k.
  for (const tick of ["1k", "2k", "6k"]) assert.ok(svg.includes(`>${tick}</text>`), tick);
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
  assert.ok(r.includes("|Av-PBC|35.0 ± 5.0 (2)|50.0 ± 1.0 (1)|42.5|"), "Table 1 inline");
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
  await assertFails(() => summarize({ ...INPUT, runs: [] }), "input", ["no runs"]);
  await assertFails(() => summarize({ ...INPUT, runs: [{ dataset: "x" }] }), "input", [
    "run 0 (x) has neither",
  ]);
  await assertFails(
    () =>
      summarize({
        ...INPUT,
        runs: [{ dataset: "x", distilled: { ...distilled("avpbc", 8, [1])!, env: "ant" as never } }],
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
