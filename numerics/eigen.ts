/**
 * Eigen-decomposition of small symmetric matrices (state covariances, 11–17 dimensions) by the
 * cyclic Jacobi method: exact, deterministic to the last bit, and a few dozen lines instead of a
 * linear-algebra dependency. Used by the KDE's principal-axis rotation and the PCA plot.
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
