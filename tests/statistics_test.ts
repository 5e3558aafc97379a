/**
 * The statistics behind every table: the interquartile mean against hand computations and SciPy,
 * bootstrap intervals on cases whose resampling distribution is known by hand, stratification,
 * the nesting of resamples, and paired against unpaired differences.
 */
import assert from "node:assert/strict";
import { deriveSeed } from "../numerics/random.ts";
import {
  bootstrapInterval,
  interquartileMean,
  leaves,
  mean,
  meanStd,
  pairedDifference,
  quantile,
  sameShape,
} from "../numerics/statistics.ts";
import { python } from "./helpers.ts";

const close = (a: number, b: number, tol: number, what: string) =>
  assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

Deno.test("the interquartile mean drops ⌊n/4⌋ values from each end, as scipy.stats.trim_mean(x, 0.25)", async () => {
  assert.equal(interquartileMean([1, 2, 3, 4, 5, 6, 7, 8]), 4.5); // mean of 3, 4, 5, 6
  assert.equal(interquartileMean([8, 1, 7, 2, 6, 3, 5, 4]), 4.5, "order does not matter");
  assert.equal(interquartileMean([1, 2, 3]), 2, "n < 4 cuts nothing");
  assert.equal(
    interquartileMean([0, 0, 0, 0, 100]),
    0,
    "n = 5 cuts one value from each end: the mean of 0, 0, 0",
  );
  assert.ok(Number.isNaN(interquartileMean([])));
  assert.equal(
    interquartileMean([1, 2, 3, 4, 5, 6, 7, 8, 9, 1000]),
    (3 + 4 + 5 + 6 + 7 + 8) / 6,
    "an outlier does not move it",
  );
  const values = Array.from({ length: 37 }, (_, i) => Math.sin(i * 1.7) * 40 + i);
  const scipy = await python(
    "import json, sys\nfrom scipy import stats\nx = json.loads(sys.argv[1])\nprint(json.dumps([float(stats.trim_mean(x[:n], 0.25)) for n in (4, 5, 7, 10, 37)]))",
    JSON.stringify(values),
  );
  [4, 5, 7, 10, 37].forEach((n, i) =>
    close(interquartileMean(values.slice(0, n)), scipy[i], 1e-12, `n = ${n}`)
  );
});

Deno.test("mean, population std and numpy's linear quantile", () => {
  assert.equal(mean([1, 2, 3, 6]), 3);
  assert.deepEqual(meanStd([2, 4, 4, 4, 5, 5, 7, 9]), { mean: 5, std: 2 });
  assert.equal(quantile([0, 10], 0.25), 2.5);
  assert.equal(quantile([1, 2, 3, 4, 5], 0.5), 3);
  assert.equal(quantile([1, 2, 3, 4], 1), 4);
});

Deno.test("a constant tree has a point interval; the tree's leaves are pooled", () => {
  const tree = [[[[3, 3], [3, 3]], [[3, 3]]]];
  assert.deepEqual(leaves(tree), [3, 3, 3, 3, 3, 3]);
  const i = bootstrapInterval(tree, mean, { resamples: 200 });
  assert.deepEqual([i.estimate, i.low, i.high], [3, 3, 3]);
});

Deno.test("two leaves {0, 1}: the resampled mean is 0, 1/2 or 1 with probabilities 1/4, 1/2, 1/4", () => {
  // One stratum holding one level of two leaves: every resample draws two of them with replacement.
  const tree = [[0, 1]];
  const wide = bootstrapInterval(tree, mean, { resamples: 20_000, level: 0.95 });
  assert.equal(wide.estimate, 0.5);
  assert.deepEqual([wide.low, wide.high], [0, 1], "2.5% and 97.5% quantiles of {0: ¼, ½: ½, 1: ¼}");
  // The 40% interval has its ends at the 30% and 70% quantiles: both ½.
  const narrow = bootstrapInterval(tree, mean, { resamples: 20_000, level: 0.4 });
  assert.deepEqual([narrow.low, narrow.high], [0.5, 0.5]);
  // The 60% interval's ends (20%, 80%) fall in the outer atoms: 0 and 1 with these probabilities.
  const sixty = bootstrapInterval(tree, mean, { resamples: 20_000, level: 0.6 });
  assert.deepEqual([sixty.low, sixty.high], [0, 1]);
});

Deno.test("strata are kept: two constant strata give a point interval that resampling them would widen", () => {
  const tree = [[0, 0], [1, 1]];
  const stratified = bootstrapInterval(tree, mean, { resamples: 2000 });
  assert.deepEqual([stratified.low, stratified.high], [0.5, 0.5]);
  const pooled = bootstrapInterval(tree, mean, { resamples: 2000, stratified: false });
  assert.deepEqual(
    [pooled.low, pooled.high],
    [0, 1],
    "drawing the strata themselves: both can be [0,0] or [1,1]",
  );
});

Deno.test("every level is resampled: seeds, then students, then episodes", () => {
  // Two students with constant episodes (1 and 3): only the student draw varies the mean,
  // which is 1, 2 or 3 with probabilities ¼, ½, ¼.
  const students = [[[1, 1], [3, 3]]];
  const i = bootstrapInterval([students[0]], mean, { resamples: 20_000, level: 0.95 });
  assert.deepEqual([i.low, i.high], [1, 3]);
  assert.deepEqual([bootstrapInterval([students[0]], mean, { resamples: 20_000, level: 0.4 }).low], [2]);
  // Nested: seeds [[1,1],[1,1]] and [[3,3],[3,3]] behave the same one level up.
  const seeds = [[[[1, 1], [1, 1]], [[3, 3], [3, 3]]]];
  const s = bootstrapInterval(seeds, mean, { resamples: 20_000 });
  assert.deepEqual([s.low, s.high], [1, 3]);
  // And episodes vary within a student: one student, episodes {0, 1}.
  const e = bootstrapInterval([[[0, 1]]], mean, { resamples: 20_000 });
  assert.deepEqual([e.low, e.high], [0, 1]);
});

Deno.test("the same seed gives the same interval; another seed a close one", () => {
  const tree = [[
    [...Array(10).keys()].map((k) => Math.sin(k) * 10),
    [...Array(10).keys()].map((k) => Math.cos(k) * 10),
  ]];
  const a = bootstrapInterval(tree, mean, { seed: 3 });
  assert.deepEqual(bootstrapInterval(tree, mean, { seed: 3 }), a);
  const b = bootstrapInterval(tree, mean, { seed: 4 });
  assert.notDeepEqual(a, b);
  close(a.low, b.low, 0.5, "low");
  close(a.high, b.high, 0.5, "high");
});

Deno.test("paired differences cancel the shared noise; unpaired ones do not", () => {
  // B = A + 1 episode for episode: the paired difference is exactly −1 in every resample.
  const noise = (s: number, u: number, e: number) => 20 * Math.sin(deriveSeed(s, u, e) / 1e8);
  const a = [[0, 1, 2].map((s) => [0, 1, 2].map((u) => [0, 1, 2, 3].map((e) => noise(s, u, e))))];
  const b = [a[0].map((seed) => seed.map((student) => student.map((v) => v + 1)))];
  assert.ok(sameShape(a, b));
  const paired = pairedDifference(a, b, mean, true, { resamples: 1000 });
  close(paired.estimate, -1, 1e-12, "estimate");
  close(paired.low, -1, 1e-9, "low");
  close(paired.high, -1, 1e-9, "high");
  assert.ok(paired.significant && paired.paired);
  const unpaired = pairedDifference(a, b, mean, false, { resamples: 1000 });
  close(unpaired.estimate, -1, 1e-12, "estimate");
  assert.ok(
    unpaired.low < -3 && unpaired.high > 1,
    `the noise swamps a 1-point difference unpaired: [${unpaired.low}, ${unpaired.high}]`,
  );
  assert.equal(unpaired.significant, false);
  assert.throws(() => pairedDifference(a, [[[1]]], mean, true), /same shape/);
});

Deno.test("a clear difference is significant with or without pairing; equal methods are not", () => {
  const make = (
    offset: number,
    salt: number,
  ) => [
    [0, 1, 2].map((s) =>
      [0, 1].map((u) => [0, 1, 2, 3, 4].map((e) => offset + 5 * Math.sin(deriveSeed(salt, s, u, e))))
    ),
  ];
  const strong = pairedDifference(make(30, 1), make(10, 2), mean, false);
  assert.ok(strong.significant && strong.low > 10, JSON.stringify(strong));
  const none = pairedDifference(make(10, 1), make(10, 2), mean, false);
  assert.equal(none.significant, false, JSON.stringify(none));
  const iqm = pairedDifference(make(30, 1), make(10, 2), interquartileMean, false);
  assert.ok(iqm.significant);
});
