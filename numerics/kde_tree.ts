/**
 * The pruned Gaussian KDE: a KD-tree over the reference points, and for each block of nearby query
 * states a best-first traversal that evaluates exactly every leaf that can matter and bounds the rest.
 * The per-leaf work is the kernel of `kde_wasm.ts`; the public entry point is `treeKdeLogDensity` in
 * `kde.ts`, which runs evaluators on several workers over one shared memory.
 *
 * For a query q with u_j = c2·‖q − x_j‖², c2 = 1/(2h²), the kernel sum is S(q) = Σ_j exp(−u_j)
 * and log p̂(q) = log S(q) − log M − (d/2) log(2π h²). It is accumulated as exp(−m)·S′ with m the
 * smallest u seen so far (log-sum-exp), so nothing underflows. The error bound is proved at
 * {@link BlockEvaluator}.
 * @module
 */

import { KERNEL_REL_ERROR, type LeafKernel } from "./kde_wasm.ts";

/** A KD-tree over points stored in tree order. */
export interface KdTree {
  readonly dim: number;
  /** Number of nodes; node 0 is the root. */
  readonly nodes: number;
  /** Points rows `[start, end)` of each node, in tree order. */
  readonly start: Int32Array;
  readonly end: Int32Array;
  /** Children (−1 for a leaf). */
  readonly left: Int32Array;
  readonly right: Int32Array;
  /** Bounding boxes, `[nodes, dim]`. */
  readonly lo: Float64Array;
  readonly hi: Float64Array;
  /** `order[k]` is the original row of the k-th point in tree order. */
  readonly order: Int32Array;
  /** Leaves in tree order (for query blocks). */
  readonly leaves: Int32Array;
}

/**
 * Builds a KD-tree over `points` (`[n, dim]`, row-major): each node is split across its widest box
 * dimension at the midpoint of the points' range (sliding-midpoint rule), until it holds at most
 * `leafSize` points or all its points coincide.
 */
export function buildKdTree(points: Float64Array, dim: number, leafSize: number): KdTree {
  const n = points.length / dim;
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  let cap = Math.max(16, 4 * Math.ceil(n / Math.max(1, leafSize)));
  let start = new Int32Array(cap),
    end = new Int32Array(cap),
    left = new Int32Array(cap),
    right = new Int32Array(cap);
  let lo = new Float64Array(cap * dim), hi = new Float64Array(cap * dim);
  let count = 0;
  const grow = () => {
    cap *= 2;
    const g32 = (a: Int32Array) => {
      const b = new Int32Array(cap);
      b.set(a);
      return b;
    };
    const g64 = (a: Float64Array) => {
      const b = new Float64Array(cap * dim);
      b.set(a);
      return b;
    };
    [start, end, left, right] = [g32(start), g32(end), g32(left), g32(right)];
    [lo, hi] = [g64(lo), g64(hi)];
  };
  const newNode = (s: number, e: number): number => {
    if (count === cap) grow();
    const id = count++;
    start[id] = s;
    end[id] = e;
    left[id] = right[id] = -1;
    const o = id * dim;
    for (let k = 0; k < dim; k++) {
      lo[o + k] = Infinity;
      hi[o + k] = -Infinity;
    }
    for (let i = s; i < e; i++) {
      const p = order[i] * dim;
      for (let k = 0; k < dim; k++) {
        const v = points[p + k];
        if (v < lo[o + k]) lo[o + k] = v;
        if (v > hi[o + k]) hi[o + k] = v;
      }
    }
    return id;
  };
  const stack = [newNode(0, n)];
  while (stack.length > 0) {
    const id = stack.pop()!;
    const s = start[id], e = end[id];
    if (e - s <= leafSize) continue;
    const o = id * dim;
    let axis = 0, width = -1;
    for (let k = 0; k < dim; k++) {
      const w = hi[o + k] - lo[o + k];
      if (w > width) [axis, width] = [k, w];
    }
    if (!(width > 0)) continue; // all points coincide: a leaf, whatever its size
    const cut = lo[o + axis] + width / 2;
    // Partition order[s, e) into coordinate < cut | ≥ cut; both sides are non-empty since min < cut ≤ max.
    let i = s, j = e - 1;
    while (i <= j) {
      if (points[order[i] * dim + axis] < cut) i++;
      else {
        const t = order[i];
        order[i] = order[j];
        order[j] = t;
        j--;
      }
    }
    let mid = i;
    if (mid === s || mid === e) mid = (s + e) >> 1; // only when width is tiny and rounding bites
    const l = newNode(s, mid), r = newNode(mid, e);
    left[id] = l;
    right[id] = r;
    stack.push(r, l);
  }
  const leaves: number[] = [];
  const walk = [0];
  while (walk.length > 0) {
    const id = walk.pop()!;
    if (left[id] < 0) leaves.push(id);
    else walk.push(right[id], left[id]);
  }
  return {
    dim,
    nodes: count,
    start: start.slice(0, count),
    end: end.slice(0, count),
    left: left.slice(0, count),
    right: right.slice(0, count),
    lo: lo.slice(0, count * dim),
    hi: hi.slice(0, count * dim),
    order,
    leaves: Int32Array.from(leaves),
  };
}

/** Copies rows of `points` into the order `order` (`out[k] = points[order[k]]`). */
/** Copies rows of `points` into the order `order` (`out[k] = points[order[k]]`). */
export function permuteRows(
  points: Float64Array,
  dim: number,
  order: Int32Array,
  out?: Float64Array,
): Float64Array {
  const result = out ?? new Float64Array(order.length * dim);
  for (let k = 0; k < order.length; k++) {
    const src = order[k] * dim, dst = k * dim;
    for (let j = 0; j < dim; j++) result[dst + j] = points[src + j];
  }
  return result;
}

/** Where the reference leaves and each evaluator's scratch lie in the kernel's memory. */
export interface KdeLayout {
  /** Coordinates per point (≥ 1). */
  readonly width: number;
  /** Per tree node: byte offset of its leaf record (−1 for internal nodes). */
  readonly recordOffset: Int32Array;
  /** Per tree node: packets (pairs of points, an even number) in its leaf record. */
  readonly packets: Int32Array;
  /** Largest block of queries an evaluator handles. */
  readonly maxBlock: number;
  /** Byte offset and size of evaluator i's scratch region: `scratchBase + i·scratchBytes`. */
  readonly scratchBase: number;
  readonly scratchBytes: number;
}

/** Bytes of memory that `layout` needs with `evaluators` scratch regions. */
export function layoutBytes(layout: KdeLayout, evaluators: number): number {
  return layout.scratchBase + evaluators * layout.scratchBytes;
}

/**
 * Plans the memory of the kernel: one record per leaf — its box (lo[W], hi[W]) then its points two
 * at a time ("packets": coordinate k of both side by side), padded with NaN points (which the kernel
 * ignores) to an even number of packets — followed by one scratch region per evaluator (query
 * coordinates, per-query state, active list, squared distances).
 */
export function planLayout(tree: Omit<KdTree, "order">, maxBlock: number, stateBytes: number): KdeLayout {
  const W = tree.dim;
  const recordOffset = new Int32Array(tree.nodes).fill(-1);
  const packets = new Int32Array(tree.nodes);
  let offset = 0, maxPackets = 1;
  for (const leaf of tree.leaves) {
    const npk = 2 * Math.ceil((tree.end[leaf] - tree.start[leaf]) / 4); // pairs of packets
    recordOffset[leaf] = offset;
    packets[leaf] = npk;
    maxPackets = Math.max(maxPackets, npk);
    offset += 16 * W + npk * 16 * W;
  }
  if (offset > 2 ** 31 - 2 ** 26) {
    throw new RangeError(`the reference points need ${offset} bytes, more than the kernel addresses`);
  }
  const align = (n: number) => Math.ceil(n / 16) * 16;
  const scratchBytes = align(maxBlock * W * 8) + align(maxBlock * stateBytes) + align(maxBlock * 4) +
    maxPackets * 16;
  return {
    width: W,
    recordOffset,
    packets,
    maxBlock,
    scratchBase: offset,
    scratchBytes,
  };
}

/** Writes the leaf records of `layout` for reference points `points` (`[M, W]`, tree order). */
export function writeLeafRecords(
  memory: ArrayBufferLike,
  layout: KdeLayout,
  tree: Omit<KdTree, "order">,
  points: Float64Array,
): void {
  const F = new Float64Array(memory);
  const W = layout.width;
  for (const leaf of tree.leaves) {
    const r8 = layout.recordOffset[leaf] / 8;
    for (let k = 0; k < W; k++) {
      F[r8 + k] = tree.lo[leaf * W + k];
      F[r8 + W + k] = tree.hi[leaf * W + k];
    }
    const p8 = r8 + 2 * W, s = tree.start[leaf], n = tree.end[leaf] - s;
    for (let i = 0; i < 2 * layout.packets[leaf]; i++) {
      const pk = i >> 1, lane = i & 1;
      for (let k = 0; k < W; k++) F[p8 + pk * 2 * W + 2 * k + lane] = i < n ? points[(s + i) * W + k] : NaN;
    }
  }
}

/** What every evaluator reads: the reference tree, the query blocks, and where outputs go. */
export interface KdeProblem {
  readonly width: number;
  /** 1 / (2h²). */
  readonly c2: number;
  /** Bound ε on the error of every log-density (see {@link BlockEvaluator}). */
  readonly tolerance: number;
  /** Share of the pruning budget ε′ given to pairs skipped beyond the threshold (ρ = share·ε′). */
  readonly skipShare: number;
  /** Reference points (M). */
  readonly referenceSize: number;
  readonly refTree: Omit<KdTree, "order" | "leaves">;
  /** Query points `[n, width]`, grouped by block. */
  readonly queryPoints: Float64Array;
  /** Rows `[blockStart[b], blockEnd[b])` of `queryPoints` form block b; its box is `blockLo/Hi`. */
  readonly blockStart: Int32Array;
  readonly blockEnd: Int32Array;
  readonly blockLo: Float64Array;
  readonly blockHi: Float64Array;
  /** Outputs per query row: log S_c (the log kernel sum) and the error bound reached. */
  readonly logSum: Float64Array;
  readonly bound: Float64Array;
}

/** Work counters (for benchmarks and tests). */
export interface BlockStats {
  /** Pairs whose distance was computed. */
  pairs: number;
  /** Pairs whose kernel value was computed. */
  kernels: number;
  /** Pairs skipped beyond the threshold (in skipped leaves or not). */
  skipped: number;
  /** Leaves visited by block traversals. */
  leaves: number;
}

/** u offsets beyond this underflow exp(): such queue entries are bounded by exp(−UNDERFLOW) each. */
const UNDERFLOW = 700;
/** When the frontier is this far (in u) above the base, the queue bounds are rebased. */
const REBASE = 300;
/** Leaves between two retirement checks (each costs a logarithm per active query). */
const CHECK_EVERY = 4;

/**
 * Evaluates query blocks: a best-first traversal of the reference tree per block, handing each
 * leaf to the kernel (`kde_wasm.ts`) for the block's active queries.
 *
 * Error bound. Let ε = tolerance, δ = KERNEL_REL_ERROR (each computed kernel value is exact to a
 * relative δ), ε′ = ε − 2δ and ρ = skipShare·ε′. For a query q with computed sum S_c:
 * - skipped pairs: every pair the kernel skips (a whole leaf farther than the threshold, or a group
 *   of four points beyond it) has a kernel value below ρ·S_c/M (see `kde_wasm.ts`); there are fewer
 *   than M of them, so their mass is below ρ·S_c;
 * - unvisited nodes: nodes are taken in increasing order of δ(B, N), the distance between the
 *   block's box and the node's box, so every point x of a node N still queued satisfies
 *   exp(−c2‖q − x‖²) ≤ exp(−c2·δ(B, N)²) for every q in the block. Their mass is at most
 *   R = Σ_{N queued} |N|·exp(−c2·δ(B, N)²); q is retired (takes no more leaves) once R ≤ (ε′ − ρ)·S_c.
 * S_c only grows, so the exact sum S satisfies S ≤ S_c/(1 − δ) + ε′·S_c and S ≥ S_c/(1 + δ):
 * log S − log S_c lies in [−δ, log(1 + R/S_c + ρ·skipped/M) + 2δ] ⊂ [−δ, ε]. The upper end, each
 * query's own bound, is written to `bound`.
 */
export class BlockEvaluator {
  readonly #p: KdeProblem;
  readonly #layout: KdeLayout;
  readonly #kernel: LeafKernel;
  readonly #F: Float64Array;
  readonly #I: Int32Array;
  readonly #qbase: number;
  readonly #state: number;
  readonly #act: number;
  readonly #scratch: number;
  readonly #heapKey: Float64Array;
  readonly #heapNode: Int32Array;
  readonly #heapVal: Float64Array;
  readonly #far: Float64Array;

  /** An evaluator using scratch region `index` of `memory`, laid out by `layout`. */
  constructor(
    problem: KdeProblem,
    layout: KdeLayout,
    memory: ArrayBufferLike,
    kernel: LeafKernel,
    index: number,
  ) {
    this.#p = problem;
    this.#layout = layout;
    this.#kernel = kernel;
    this.#F = new Float64Array(memory);
    this.#I = new Int32Array(memory);
    const align = (n: number) => Math.ceil(n / 16) * 16;
    const W = layout.width, B = layout.maxBlock;
    this.#qbase = layout.scratchBase + index * layout.scratchBytes;
    this.#state = this.#qbase + align(B * W * 8);
    this.#act = this.#state + align(B * STATE_FLOATS * 8);
    this.#scratch = this.#act + align(B * 4);
    const nodes = problem.refTree.nodes;
    this.#heapKey = new Float64Array(nodes);
    this.#heapNode = new Int32Array(nodes);
    this.#heapVal = new Float64Array(nodes);
    this.#far = new Float64Array(B);
  }

  /** Evaluates block `b`, writing `logSum` and `bound` for its queries; adds to `stats`. */
  evaluate(b: number, stats: BlockStats): void {
    const p = this.#p, layout = this.#layout, F = this.#F, I = this.#I;
    const { width: W, c2, tolerance: eps } = p;
    const { lo, hi, start, end, left, right } = p.refTree;
    const q0 = p.blockStart[b], nq = p.blockEnd[b] - q0;
    if (nq > layout.maxBlock) throw new RangeError(`block of ${nq} queries exceeds ${layout.maxBlock}`);
    // The kernel values carry a relative error ≤ δ = KERNEL_REL_ERROR: pruning gets ε − 2δ.
    const epsP = eps - 2 * KERNEL_REL_ERROR;
    const M = p.referenceSize, rho = p.skipShare * epsP, logFar = Math.log((1 - p.skipShare) * epsP);
    const logC = Math.log(M / rho);
    const qb8 = this.#qbase / 8, st8 = this.#state / 8, act4 = this.#act / 4;
    F.set(p.queryPoints.subarray(q0 * W, (q0 + nq) * W), qb8);
    for (let i = 0; i < nq; i++) {
      const s = st8 + i * STATE_FLOATS;
      F[s] = Infinity;
      F[s + 2] = Infinity;
      F[s + 1] =
        F[s + 3] =
        F[s + 4] =
        F[s + 5] =
          0;
      I[act4 + i] = i;
      this.#far[i] = -Infinity;
    }
    let nActive = nq;
    const bLo = p.blockLo, bHi = p.blockHi, bo = b * W;

    // Box-to-box squared distance between the block and node `id`.
    const boxDist = (id: number): number => {
      const o = id * W;
      let d2 = 0;
      for (let k = 0; k < W; k++) {
        const g = Math.max(lo[o + k] - bHi[bo + k], bLo[bo + k] - hi[o + k], 0);
        d2 += g * g;
      }
      return d2;
    };

    // Min-heap of (key = δ(B, N)², node, val = |N|·exp(−(c2·key − base)), or −1 when that underflows).
    const hKey = this.#heapKey, hNode = this.#heapNode, hVal = this.#heapVal;
    let size = 0;
    let base = 0; // in units of u
    let sumVal = 0; // running Σ val (drifts; resynchronized by exactLogRemaining)
    let farCount = 0; // points in entries whose val underflowed
    const valueOf = (key: number, id: number): number => {
      const t = c2 * key - base;
      return t > UNDERFLOW ? -1 : (end[id] - start[id]) * Math.exp(-t);
    };
    const push = (key: number, id: number) => {
      const val = valueOf(key, id);
      if (val < 0) farCount += end[id] - start[id];
      else sumVal += val;
      let i = size++;
      while (i > 0) {
        const parent = (i - 1) >> 1;
        if (hKey[parent] <= key) break;
        hKey[i] = hKey[parent];
        hNode[i] = hNode[parent];
        hVal[i] = hVal[parent];
        i = parent;
      }
      hKey[i] = key;
      hNode[i] = id;
      hVal[i] = val;
    };
    const pop = (): number => {
      const id = hNode[0];
      const val = hVal[0];
      if (val < 0) farCount -= end[id] - start[id];
      else sumVal -= val;
      size--;
      if (size > 0) {
        const key = hKey[size], node = hNode[size], v = hVal[size];
        let i = 0;
        for (;;) {
          let c = 2 * i + 1;
          if (c >= size) break;
          if (c + 1 < size && hKey[c + 1] < hKey[c]) c++;
          if (hKey[c] >= key) break;
          hKey[i] = hKey[c];
          hNode[i] = hNode[c];
          hVal[i] = hVal[c];
          i = c;
        }
        hKey[i] = key;
        hNode[i] = node;
        hVal[i] = v;
      }
      return id;
    };
    // ln R from the queue (exact; the running sum is resynchronized).
    const exactLogRemaining = (): number => {
      let sum = 0, fc = 0;
      for (let i = 0; i < size; i++) {
        if (hVal[i] < 0) fc += end[hNode[i]] - start[hNode[i]];
        else sum += hVal[i];
      }
      sumVal = sum;
      farCount = fc;
      // (1 + 1e-12) covers the rounding of the sum of positive terms.
      return size === 0 ? -Infinity : -base + Math.log((sum + fc * Math.exp(-UNDERFLOW)) * (1 + 1e-12));
    };
    const rebase = (newBase: number) => {
      base = newBase;
      let sum = 0, fc = 0;
      for (let i = 0; i < size; i++) {
        const v = valueOf(hKey[i], hNode[i]);
        hVal[i] = v;
        if (v < 0) fc += end[hNode[i]] - start[hNode[i]];
        else sum += v;
      }
      sumVal = sum;
      farCount = fc;
    };
    // Retires the active queries with ln R ≤ ln((ε − ρ)·S_c), compacting the active list.
    const retire = (logR: number) => {
      let kept = 0;
      for (let a = 0; a < nActive; a++) {
        const i = I[act4 + a], s = st8 + i * STATE_FLOATS;
        if (logR <= logFar + Math.log(F[s + 1]) - F[s]) this.#far[i] = logR;
        else I[act4 + kept++] = i;
      }
      nActive = kept;
    };

    const root = 0;
    base = c2 * boxDist(root);
    push(boxDist(root), root);
    let sinceCheck = 0;
    while (nActive > 0 && size > 0) {
      const key = hKey[0];
      if (c2 * key - base > REBASE) rebase(c2 * key);
      const id = pop();
      if (left[id] >= 0) {
        push(boxDist(left[id]), left[id]);
        push(boxDist(right[id]), right[id]);
        continue;
      }
      stats.leaves++;
      this.#kernel(
        layout.recordOffset[id],
        layout.packets[id],
        end[id] - start[id],
        nActive,
        this.#act,
        this.#qbase,
        this.#state,
        c2,
        logC,
        this.#scratch,
      );
      if (++sinceCheck < CHECK_EVERY || size === 0) continue;
      sinceCheck = 0;
      // Cheap test first: is R below the allowance of the most advanced query?
      let best = -Infinity;
      for (let a = 0; a < nActive; a++) {
        const s = st8 + I[act4 + a] * STATE_FLOATS;
        const allowed = Math.log(F[s + 1]) - F[s];
        if (allowed > best) best = allowed;
      }
      const quick = -base + Math.log(Math.max(sumVal, 0) + farCount * Math.exp(-UNDERFLOW));
      if (quick > logFar + best + 1e-9) continue;
      retire(exactLogRemaining());
    }
    // Queries still active here saw every reference point (R = 0).
    for (let i = 0; i < nq; i++) {
      const s = st8 + i * STATE_FLOATS;
      const logS = Math.log(F[s + 1]) - F[s];
      p.logSum[q0 + i] = logS;
      // log(1 + R/S_c + ρ·skipped/M) + 2δ
      p.bound[q0 + i] = Math.log1p(Math.exp(this.#far[i] - logS) + (rho * F[s + 4]) / M) +
        2 * KERNEL_REL_ERROR;
      stats.kernels += F[s + 3];
      stats.skipped += F[s + 4];
      stats.pairs += F[s + 5];
    }
  }
}

/** Floats of per-query kernel state (see `kde_wasm.ts`). */
export const STATE_FLOATS = 6;
