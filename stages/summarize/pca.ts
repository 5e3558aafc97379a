/**
 * Principal component analysis for the "where do the synthetic states lie" plot: the top
 * eigenvectors of the data's covariance, by the cyclic Jacobi method. State dimensions are small
 * (11–17), so an exact symmetric eigensolver in a few dozen lines beats pulling in a linear-algebra
 * package, and it is deterministic to the last bit.
 * @module
 */

/** Eigenvalues (descending) and unit eigenvectors (`vectors[k]` belongs to `values[k]`) of a symmetric matrix. */
export interface Eigen {
  readonly values: number[];
  readonly vectors: Float64Array[];
}

/**
 * Eigen-decomposition of the symmetric `d × d` row-major matrix `a` by cyclic Jacobi rotations
 * (Golub and Van Loan, §8.5): each rotation zeroes one off-diagonal pair; sweeps repeat until the
 * off-diagonal mass is negligible. Converges quadratically; ≤ 50 sweeps is far more than needed.
 */
export function symmetricEigen(a: ArrayLike<number>, d: number): Eigen {
  if (a.length !== d * d) throw new RangeError(`expected a ${d}×${d} matrix, got ${a.length} values`);
  const m = Float64Array.from(a);
  const v = new Float64Array(d * d);
  for (let i = 0; i < d; i++) v[i * d + i] = 1;
  const scale = m.reduce((s, x) => s + x * x, 0) || 1;
  for (let sweep = 0; sweep < 50; sweep++) {
    let off = 0;
    for (let p = 0; p < d; p++) for (let q = p + 1; q < d; q++) off += m[p * d + q] ** 2;
    if (off <= 1e-30 * scale) break;
    for (let p = 0; p < d; p++) {
      for (let q = p + 1; q < d; q++) {
        const apq = m[p * d + q];
        if (apq === 0) continue;
        // The rotation angle that zeroes m[p][q]: tan(2θ) = 2 a_pq / (a_qq − a_pp), smaller root for stability.
        const theta = (m[q * d + q] - m[p * d + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1), s = t * c;
        for (let k = 0; k < d; k++) {
          const mkp = m[k * d + p], mkq = m[k * d + q];
          m[k * d + p] = c * mkp - s * mkq;
          m[k * d + q] = s * mkp + c * mkq;
        }
        for (let k = 0; k < d; k++) {
          const mpk = m[p * d + k], mqk = m[q * d + k];
          m[p * d + k] = c * mpk - s * mqk;
          m[q * d + k] = s * mpk + c * mqk;
        }
        for (let k = 0; k < d; k++) {
          const vkp = v[k * d + p], vkq = v[k * d + q];
          v[k * d + p] = c * vkp - s * vkq;
          v[k * d + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: d }, (_, i) => i).sort((i, j) => m[j * d + j] - m[i * d + i]);
  return {
    values: order.map((i) => m[i * d + i]),
    vectors: order.map((i) => {
      const vec = Float64Array.from({ length: d }, (_, k) => v[k * d + i]);
      // Fix the sign (largest component positive) so the plot does not flip between runs or platforms.
      let big = 0;
      for (let k = 1; k < d; k++) if (Math.abs(vec[k]) > Math.abs(vec[big])) big = k;
      if (vec[big] < 0) vec.forEach((x, k) => (vec[k] = -x));
      return vec;
    }),
  };
}

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
