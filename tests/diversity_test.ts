/**
 * The diversity study: subset selection against hand-computed answers (return-to-go, k-center,
 * inverse-density sampling frequencies), the subsets' properties on the embedded dataset (quality has
 * the highest return-to-go, the diverse ones lower log-density and a smaller coverage radius, equal
 * sizes, one draw per seed), teacher targets equal to the teacher's own actions, the stages' caching
 * (a rerun computes nothing; more episodes recompute only the evaluations), a tiny end-to-end run with
 * its report, and the command's one-line refusals.
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { createRuntime, runStage, type Runtime } from "../core/runtime.ts";
import { initBackend } from "../numerics/backend.ts";
import { DEFAULT_DENSITY_CONFIG, densityStage } from "../stages/density.ts";
import { normalizeStates } from "../stages/load.ts";
import {
  coverage,
  returnsToGo,
  selectInverseDensity,
  selectKCenter,
  selectSubset,
  SUBSET_KINDS,
  subsetStage,
  viewEpisodes,
} from "../stages/subsets.ts";
import { teacherFromArtifact } from "../stages/teacher/model.ts";
import { diversityReport, writeDiversityReport } from "../report/diversity.ts";
import { DIVERSITY_PRESETS, type DiversityConfig, runDiversityStudy } from "../study/diversity.ts";
import { assertFails, loadEmbedded, runUnderTask } from "./helpers.ts";

await initBackend("wasm");

const tempRuntime = async (): Promise<{ rt: Runtime; dir: string }> => {
  const dir = await Deno.makeTempDir({ prefix: "obd-diversity-" });
  return { rt: createRuntime({ cacheRoot: dir, backend: "wasm" }), dir };
};

Deno.test("episodes and returns-to-go of a Q-learning view are recovered from its breaks", () => {
  // Two episodes: rows 0–2 (continuous, the last terminal) and rows 3–4 (the next state of row 4 is
  // not a row: the view's end); 1-D states.
  const observations = Float32Array.from([0, 1, 2, 10, 11]);
  const nextObservations = Float32Array.from([1, 2, 3, 11, 12]);
  const terminals = Uint8Array.from([0, 0, 1, 0, 0]);
  const rewards = Float32Array.from([1, 2, 3, 10, 20]);
  const view = { n: 5, obsDim: 1, observations, nextObservations, terminals, rewards };
  const { episode, starts, ends } = viewEpisodes(view);
  assert.deepEqual(Array.from(episode), [0, 0, 0, 1, 1]);
  assert.deepEqual([Array.from(starts), Array.from(ends)], [[0, 3], [3, 5]]);
  const { returnToGo, episodeReturn } = returnsToGo(view);
  assert.deepEqual(Array.from(returnToGo), [6, 5, 3, 30, 20]);
  assert.deepEqual(Array.from(episodeReturn), [6, 6, 6, 30, 30]);
  // A break with no terminal flag: row 1's next state is not row 2's state.
  const cut = {
    ...view,
    nextObservations: Float32Array.from([1, 7, 3, 11, 12]),
    terminals: new Uint8Array(5),
  };
  assert.deepEqual(Array.from(viewEpisodes(cut).episode), [0, 0, 1, 2, 2]);
});

Deno.test("k-center picks the farthest points and coverage measures the largest gap", () => {
  // Points 0..10 on a line: from any start, the second centre is an end point and the radius halves.
  const z = Float32Array.from({ length: 11 }, (_, i) => i);
  for (let seed = 0; seed < 5; seed++) {
    const rows = selectKCenter(z, 11, 1, 3, seed);
    assert.equal(new Set(rows).size, 3);
    const { radius } = coverage(z, 11, 1, rows);
    // Greedy k-center is a 2-approximation of the optimum radius (5/3 for 3 centres on [0, 10]).
    assert.ok(radius <= 2 * (10 / 6) + 1e-9, `radius ${radius}`);
  }
  const { radius, meanDistance } = coverage(z, 11, 1, [0, 10]);
  assert.equal(radius, 5);
  assert.ok(Math.abs(meanDistance - (0 + 1 + 2 + 3 + 4 + 5 + 4 + 3 + 2 + 1 + 0) / 11) < 1e-12);
});

Deno.test("inverse-density sampling draws states with probability ∝ p̂^(−α)", () => {
  // Densities 1 and 3: the first pick is state 0 with probability (1/1)/(1/1 + 1/3) = 0.75 at α = 1,
  // and 1/(1 + 1/9) = 0.9 at α = 2.
  const logDensity = [0, Math.log(3)];
  for (const [alpha, expected] of [[1, 0.75], [2, 0.9]]) {
    let zeros = 0;
    const trials = 4000;
    for (let s = 0; s < trials; s++) zeros += selectInverseDensity(logDensity, 1, alpha, s)[0] === 0 ? 1 : 0;
    const p = zeros / trials, se = Math.sqrt(expected * (1 - expected) / trials);
    assert.ok(Math.abs(p - expected) < 4 * se, `α ${alpha}: ${p} vs ${expected}`);
  }
  // Without replacement: all rows when asked for all.
  assert.deepEqual([...selectInverseDensity([0, 1, 2, 3], 4, 1, 0)].sort(), [0, 1, 2, 3]);
});

Deno.test("subsets of the embedded data: equal sizes, quality has the best states, diversity the rarest and widest", async () => {
  const { rt, dir } = await tempRuntime();
  try {
    const dataset = await loadEmbedded(rt);
    const density = await runStage(rt, densityStage, DEFAULT_DENSITY_CONFIG, { dataset })();
    if (density._tag === "Left") throw new Error(density.left.message);
    const z = normalizeStates(dataset.value.observations, dataset.value);
    const size = 128;
    const subsets = Object.fromEntries(SUBSET_KINDS.map((kind) => [
      kind,
      selectSubset(
        dataset.value,
        density.right.value,
        { kind, size, seed: 0, targets: "data", qualityFraction: 0.1, alpha: 1 },
        undefined,
        z,
      ),
    ]));
    for (const s of Object.values(subsets)) {
      assert.equal(s.size, size);
      assert.equal(new Set(s.indices).size, size, `${s.kind}: distinct states`);
      assert.equal(s.states.length, size * dataset.value.obsDim);
      // Pairs are the data's own: state and action of the same row.
      const row = s.indices[7], d = dataset.value.obsDim, m = dataset.value.actDim;
      assert.deepEqual(
        s.rawStates.subarray(7 * d, 8 * d),
        dataset.value.observations.subarray(row * d, (row + 1) * d),
      );
      assert.deepEqual(
        s.actions.subarray(7 * m, 8 * m),
        dataset.value.actions.subarray(row * m, (row + 1) * m),
      );
    }
    const m = (k: string) => subsets[k].measures;
    for (const other of ["random", "diverse", "kcenter"]) {
      assert.ok(m("quality").meanReturnToGo > m(other).meanReturnToGo, `quality vs ${other} return-to-go`);
    }
    assert.ok(m("diverse").meanLogDensity < m("random").meanLogDensity, "inverse density: rarer states");
    assert.ok(m("kcenter").meanLogDensity < m("random").meanLogDensity, "k-center: rarer states");
    for (const other of ["random", "quality", "diverse"]) {
      assert.ok(
        m("kcenter").coverageRadius < m(other).coverageRadius,
        `k-center covers better than ${other}`,
      );
    }
    // The measures are those of the rows: mean log-density recomputed from the density stage.
    const direct = Array.from(subsets.diverse.indices).reduce((a, r) =>
      a + density.right.value.logDensity[r], 0) /
      size;
    assert.ok(Math.abs(direct - m("diverse").meanLogDensity) < 1e-9);
    // One draw per seed: the same seed repeats it, another seed changes it (k-center only its start).
    for (const kind of SUBSET_KINDS) {
      const config = { kind, size, seed: 0, targets: "data" as const, qualityFraction: 0.1, alpha: 1 };
      const again = selectSubset(dataset.value, density.right.value, config, undefined, z);
      assert.deepEqual(again.indices, subsets[kind].indices, `${kind} is deterministic`);
      const other = selectSubset(dataset.value, density.right.value, { ...config, seed: 1 }, undefined, z);
      assert.notDeepEqual(other.indices, subsets[kind].indices, `${kind} depends on the seed`);
    }
    await assertFails(
      () =>
        selectSubset(dataset.value, density.right.value, {
          kind: "quality",
          size,
          seed: 0,
          targets: "data",
          qualityFraction: 2,
        }),
      "config",
      ["qualityFraction 2"],
    );
    await assertFails(
      () =>
        selectSubset(dataset.value, density.right.value, {
          kind: "random",
          size: dataset.value.n + 1,
          seed: 0,
          targets: "data",
        }),
      "config",
      ["a subset of", "states from a dataset of"],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A tiny study: two subsets, two cheap levels, small students, one episode. */
const TINY: DiversityConfig = {
  ...DIVERSITY_PRESETS.quick,
  size: 32,
  subsets: ["quality", "diverse"],
  targets: ["data"],
  levels: { steps: [2, 30], width: [16, 16] },
  student: { hiddenLayers: 1, learningRate: 0.1 },
  students: 2,
  episodes: 1,
};

Deno.test("a tiny study end to end: cached stages, a rerun computes nothing, more episodes only re-evaluate; the report", async () => {
  const { rt, dir } = await tempRuntime();
  try {
    const first = await runDiversityStudy(rt, "embedded", TINY)();
    if (first._tag === "Left") throw new Error(first.left.message);
    assert.deepEqual(Object.fromEntries(rt.executions), {
      load: 1,
      density: 1,
      subset: 2,
      "subset-students": 4,
      "subset-evaluation": 4,
    });
    const study = first.right;
    for (const run of study.runs) {
      assert.equal(run.levels.length, 2);
      for (const level of run.levels) {
        assert.equal(level.students.value.finalLoss.length, 2);
        assert.equal(level.evaluation!.value.normalized.length, 2);
        assert.deepEqual(level.evaluation!.value.trainLoss, level.students.value.finalLoss);
      }
      // Longer training fits the subset better.
      const loss = (i: number) => run.levels[i].students.value.finalLoss.reduce((a, b) => a + b) / 2;
      assert.ok(loss(1) < loss(0), `${run.kind}: ${loss(1)} < ${loss(0)}`);
    }
    const rerun = createRuntime({ cacheRoot: dir, backend: "wasm" });
    const second = await runDiversityStudy(rerun, "embedded", TINY)();
    assert.equal(second._tag, "Right");
    assert.deepEqual(Object.fromEntries(rerun.executions), {}, "a rerun computes nothing");
    const more = createRuntime({ cacheRoot: dir, backend: "wasm" });
    const third = await runDiversityStudy(more, "embedded", { ...TINY, episodes: 2 })();
    assert.equal(third._tag, "Right");
    assert.deepEqual(Object.fromEntries(more.executions), { "subset-evaluation": 4 });

    const report = diversityReport(study);
    assert.equal(report.points.length, 4);
    for (const p of report.points) assert.ok(p.low <= p.mean && p.mean <= p.high, JSON.stringify(p));
    assert.equal(report.crossings.length, 1);
    assert.ok(["significant", "point estimates only", "none"].includes(report.crossings[0].verdict));
    const files = await writeDiversityReport(`${dir}/report`, report);
    const svg = await Deno.readTextFile(files.find((f) => f.endsWith("diversity-data.svg"))!);
    assert.ok(
      svg.startsWith("<svg") && svg.includes("Quality (best episodes)") && svg.includes('class="band"'),
    );
    const md = await Deno.readTextFile(`${dir}/report/report.md`);
    assert.ok(md.includes("| Diversity (inverse density) |") && md.includes("diversity-data.svg"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("teacher targets are the teacher's deterministic actions on the subset's states", async () => {
  const { rt, dir } = await tempRuntime();
  try {
    const config: DiversityConfig = {
      ...TINY,
      subsets: ["random"],
      targets: ["data", "teacher"],
      levels: { steps: [2], width: [8] },
      teacher: { ...TINY.teacher, steps: 20, evalEpisodes: 1, source: "train" },
    };
    const result = await runDiversityStudy(rt, "embedded", config, "subset")();
    if (result._tag === "Left") throw new Error(result.left.message);
    const [data, teacher] = result.right.runs.map((r) => r.subset.value);
    assert.deepEqual(teacher.indices, data.indices, "the same states");
    assert.notDeepEqual(teacher.actions, data.actions);
    const t = teacherFromArtifact(result.right.teacher!.value);
    const expected = tf.tidy(() =>
      t.act(t.normalize(tf.tensor2d(data.rawStates, [data.size, data.obsDim]))).dataSync() as Float32Array
    );
    t.dispose();
    for (let i = 0; i < expected.length; i++) assert.ok(Math.abs(expected[i] - teacher.actions[i]) < 1e-6);
    // The subset stage takes the teacher only for teacher targets: data targets keep their key.
    assert.equal(result.right.runs[0].subset.manifest.inputs.teacher, undefined);
    assert.ok(result.right.runs[1].subset.manifest.inputs.teacher);
    assert.equal(subsetStage.name, "subset");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the command refuses bad options in one line before any work", async () => {
  for (
    const [args, part] of [
      [["diversity", "embedded", "--quick", "--targets", "nope"], "--targets nope"],
      [["variety", "embedded"], 'no study "variety"'],
      [["diversity", "embedded", "--quick", "--subsets", "random,best"], '"best" is unknown'],
      [["diversity", "embedded", "--quick", "--set", "levels.width=8"], "levels.width has 1 entries"],
      [["diversity", "embedded", "--quick", "--size", "0"], "--size 0"],
    ] as const
  ) {
    const out = await runUnderTask("study", "commands/study.ts", args);
    assert.equal(out.code, 2, out.stderr);
    assert.equal(out.stderr.split("\n").filter((l) => l.startsWith("error")).length, 1, out.stderr);
    assert.ok(out.stderr.includes(part), `${part} not in: ${out.stderr}`);
  }
});

Deno.test("the study as local grid tasks: one task per subset, the report read back from the cache; a Slurm dry run", async () => {
  const cache = `data/test-diversity-${crypto.randomUUID().slice(0, 8)}`;
  const runDir = `${cache}/run`;
  const tiny = [
    "diversity",
    "embedded",
    "--quick",
    "--size",
    "32",
    "--subsets",
    "quality,kcenter",
    "--students",
    "1",
    "--episodes",
    "1",
    "--set",
    "levels.steps=2,5",
    "--set",
    "levels.width=8,8",
    "--set",
    "student.hiddenLayers=1",
    "--cache-dir",
    cache,
  ];
  try {
    const out = await runUnderTask("study", "commands/study.ts", [
      ...tiny,
      "--executor",
      "local",
      "--workers",
      "2",
      "--run-dir",
      runDir,
    ]);
    assert.equal(out.code, 0, out.stderr.slice(-3000));
    const summary = JSON.parse(out.stdout.trim().split("\n").pop()!);
    assert.deepEqual(summary.stagesComputed, {}, "the tasks computed everything; the report only reads");
    assert.equal(summary.points.length, 4);
    const logs = [...Deno.readDirSync(`${runDir}/tasks`)].map((e) => e.name).filter((n) =>
      n.endsWith(".log")
    );
    assert.deepEqual(logs.sort(), ["000-quality-data-s0.log", "001-kcenter-data-s0.log"]);
    assert.ok((await Deno.readTextFile(`${runDir}/report.md`)).includes("Diversity (k-center)"));
    const dry = await runUnderTask("study", "commands/study.ts", [
      ...tiny,
      "--seeds",
      "0,1",
      "--executor",
      "slurm",
      "--dry-run",
      "--run-dir",
      `${cache}/dry`,
    ]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /#SBATCH --array=0,1,2,3|#SBATCH --array=0-3/);
    for (let i = 0; i < 4; i++) assert.ok(dry.stdout.includes(`  ${i}) exec `), `task ${i} in the script`);
    assert.ok(!dry.stdout.includes("--allow-run"), "workers start no processes");
  } finally {
    await Deno.remove(cache, { recursive: true }).catch(() => {});
  }
});
