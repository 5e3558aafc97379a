/**
 * Principal component analysis for the "where do the synthetic states lie" plot: the top
 * eigenvectors of the data's covariance, by the cyclic Jacobi method. State dimensions are small
 * (11–17), so an exact symmetric eigensolver in a few dozen lines beats pulling in a linear-algebra
 * package, and it is deterministic to the last bit.
 * @module
 */

import { symmetricEigen } from "../numerics/eigen.ts";
export { type Eigen, symmetricEigen } from "../numerics/eigen.ts";

/** A fitted 2-D PCA: the data mean, the two leading components and their share of the variance. */
export interface Pca2 {
  readonly mean: Float64Array;
  readonly components: readonly [Float64Array, Float64Array];
  /** Fraction of the total variance along each component. */
  readonly explained: readonly [number, number];
}

/** Fits a 2-D PCA to `n` rows of `d` values (row-major). */
export function fitPca2(rows: ArrayLike<number>, n: number, d: number): Pca2 {
  if (d < 2 || n < 2 || rows.length !== n * d) {
    throw new RangeError(
      `PCA needs at least 2 rows of at least 2 values, got ${n} × ${d} (${rows.length} values)`,
    );
  }
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j] += rows[i * d + j] / n;
  const cov = new Float64Array(d * d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      const dj = rows[i * d + j] - mean[j];
      for (let k = j; k < d; k++) cov[j * d + k] += (dj * (rows[i * d + k] - mean[k])) / (n - 1);
    }
  }
  for (let j = 0; j < d; j++) for (let k = 0; k < j; k++) cov[j * d + k] = cov[k * d + j];
  const { values, vectors } = symmetricEigen(cov, d);
  const total = values.reduce((s, x) => s + Math.max(0, x), 0) || 1;
  return {
    mean,
    components: [vectors[0], vectors[1]],
    explained: [Math.max(0, values[0]) / total, Math.max(0, values[1]) / total],
  };
}

/** Projects `rows` (row-major, `d` per row) onto the two components: [pc1, pc2] interleaved. */
export function projectPca2(pca: Pca2, rows: ArrayLike<number>, d: number): Float64Array {
  const n = Math.floor(rows.length / d);
  const out = new Float64Array(2 * n);
  for (let i = 0; i < n; i++) {
    let a = 0, b = 0;
    for (let j = 0; j < d; j++) {
      const c = rows[i * d + j] - pca.mean[j];
      a += c * pca.components[0][j];
      b += c * pca.components[1][j];
    }
    out[2 * i] = a;
    out[2 * i + 1] = b;
  }
  return out;
}
