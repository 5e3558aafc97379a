/**
 * The evaluation protocol under test: how much of a learning-curve point is the synthetic set, and
 * how much the student's initialization and the episodes' start states. Distils the quick preset's
 * methods through the real cache, then scores each snapshot of each set
 *
 *   - as the toolkit did before common random numbers: one student seeded by the step and shared
 *     by every method, `--episodes` episodes ("oneStudent");
 *   - with `--students` fresh students × `--episodes` episodes each (student u the same for every
 *     method), reporting the mean, the spread of the students' means and a 95% interval;
 *   - with students trained `--long-steps` steps instead of the protocol's T, to see what the
 *     students' training length does to the same set;
 *
 * and describes the set: its actions' range (how many leave the policy's [−1, 1]), the students'
 * BC loss on it at T and at `--long-steps`. One JSON line per (method, step), then one summary line:
 * how far apart the methods are under each protocol, and the correlation of their curves.
 *
 * Usage: deno task bench protocol [--methods dbc,avpbc,sdw] [--students 10] [--episodes 10]
 *                                 [--long-steps 100] [--set section.name=value]… [--cache-dir d]
 * @module
 */

import { createRuntime } from "../core/runtime.ts";
import { initBackend, requestedBackend } from "../numerics/backend.ts";
import { deriveSeed } from "../numerics/random.ts";
import { bootstrapInterval, mean, meanStd } from "../numerics/statistics.ts";
import { meanScore, RolloutTally, scoreSet } from "../stages/scores.ts";
import { studentProtocol } from "../stages/student.ts";
import type { SyntheticSet } from "../stages/synset.ts";
import { type Method, presetConfig, runStudy } from "../study/obd.ts";
import { intArg, stringArg } from "./args.ts";

const METHODS = stringArg("--methods", "dbc,avpbc,sdw").split(",") as Method[];
const STUDENTS = intArg("--students", 10, 1);
const EPISODES = intArg("--episodes", 10, 1);
const LONG_STEPS = intArg("--long-steps", 100, 1);
const CACHE = stringArg("--cache-dir", "data/bench/cache");
const sets = Deno.args.flatMap((a, i) => (a === "--set" ? [Deno.args[i + 1]] : []));

const backendName = requestedBackend(undefined, Deno.env.get("OBD_BACKEND"));
if (typeof backendName !== "string") throw new Error(backendName.message);
const backend = await initBackend(backendName);
if ("kind" in backend) throw new Error(backend.message);
const config = presetConfig("quick", sets);
if ("kind" in config) throw new Error(config.message);
const rt = createRuntime({
  cacheRoot: CACHE,
  backend: backend.label,
  report: (l) => console.error(`  ${l}`),
});
const result = await runStudy(rt, "embedded", { methods: METHODS, until: "distill" }, {
  ...config,
  seeds: [config.seeds[0]],
})();
if (result._tag === "Left") throw new Error(result.left.message);
const study = result.right;
const env = study.dataset.value.env;
const protocol = studentProtocol(config.student, env);
const long = { ...protocol, steps: LONG_STEPS };
const size = { students: STUDENTS, episodes: EPISODES };

const report = (record: Record<string, unknown>) =>
  console.log(JSON.stringify({ bench: "protocol", ...record }));
const round = (x: number, d = 2) => +x.toFixed(d);

/** The curve of every method under each protocol, for the summary. */
const curves = new Map<string, { oneStudent: number[]; students: number[]; long: number[] }>();
for (const run of study.runs) {
  const set = run.distilled?.value;
  if (!set) continue;
  const points = [...set.snapshots, { step: set.curve.length, states: set.states, actions: set.actions }];
  const curve = { oneStudent: [] as number[], students: [] as number[], long: [] as number[] };
  for (const snapshot of points) {
    const at: SyntheticSet = { ...set, states: snapshot.states, actions: snapshot.actions };
    const tally = new RolloutTally();
    // Before common random numbers: one student whose seed depended on the step only.
    const one = await scoreSet(
      at,
      protocol,
      { students: 1, episodes: EPISODES },
      deriveSeed(run.seed, "old protocol", snapshot.step),
      tally,
    );
    const many = await scoreSet(at, protocol, size, run.seed, tally);
    const longer = await scoreSet(at, long, size, run.seed, tally);
    const unitMeans = many.normalized.map(mean);
    const ci = bootstrapInterval([[many.normalized]], mean, { resamples: 1000 });
    const actions = Array.from(snapshot.actions);
    curve.oneStudent.push(meanScore(one));
    curve.students.push(meanScore(many));
    curve.long.push(meanScore(longer));
    report({
      method: run.method,
      step: snapshot.step,
      oneStudent: round(meanScore(one)),
      students: round(meanScore(many)),
      studentsLow: round(ci.low),
      studentsHigh: round(ci.high),
      studentSpread: round(meanStd(unitMeans).std),
      episodeSpread: round(mean(many.normalized.map((u) => meanStd(u).std))),
      [`students${LONG_STEPS}`]: round(meanScore(longer)),
      trainLoss: round(mean(many.trainLoss ?? []), 4),
      [`trainLoss${LONG_STEPS}`]: round(mean(longer.trainLoss ?? []), 4),
      actionsOutside: round(
        actions.filter((a) => Math.abs(a) > protocol.maxAction).length / actions.length,
        3,
      ),
      maxAbsAction: round(Math.max(...actions.map(Math.abs)), 3),
      seconds: round(tally.seconds, 1),
    });
  }
  curves.set(run.method, curve);
}

/** Pearson correlation of two curves. */
function correlation(a: readonly number[], b: readonly number[]): number {
  const [ma, mb] = [mean(a), mean(b)];
  let sab = 0, saa = 0, sbb = 0;
  for (let i = 0; i < a.length; i++) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) ** 2;
    sbb += (b[i] - mb) ** 2;
  }
  return sab / Math.sqrt(saa * sbb);
}
const names = [...curves.keys()];
const summary: Record<string, unknown> = {
  summary: true,
  methods: names,
  students: STUDENTS,
  episodes: EPISODES,
};
for (const protocolName of ["oneStudent", "students", "long"] as const) {
  const rows = names.map((n) => curves.get(n)![protocolName]);
  const pairs: number[] = [];
  const gaps: number[] = [];
  for (let i = 0; i < rows.length; i++) {
    for (let j = i + 1; j < rows.length; j++) {
      pairs.push(correlation(rows[i], rows[j]));
      gaps.push(mean(rows[i].map((v, k) => Math.abs(v - rows[j][k]))));
    }
  }
  summary[`${protocolName}CurveCorrelation`] = round(mean(pairs), 3);
  summary[`${protocolName}MeanGapBetweenMethods`] = round(mean(gaps));
  summary[`${protocolName}Curves`] = Object.fromEntries(
    names.map((n, i) => [n, rows[i].map((v) => round(v, 1))]),
  );
}
report(summary);
