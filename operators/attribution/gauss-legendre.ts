/**
 * Gauss–Legendre quadrature on [0, 1]: n nodes integrate polynomials of degree 2n−1 exactly, so a
 * smooth integrand (the gradient along the LIG path) needs far fewer evaluations than a Riemann
 * sum. Nodes are the roots of P_n found by Newton's method from the Tricomi initial guesses.
 */
export interface Quadrature {
  /** Ascending nodes in (0, 1). */
  nodes: Float64Array;
  /** Weights summing to 1. */
  weights: Float64Array;
}

const cache = new Map<number, Quadrature>();

export function gaussLegendre(n: number): Quadrature {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`Gauss–Legendre needs a positive integer node count, got ${n}`);
  const hit = cache.get(n);
  if (hit) return hit;
  const nodes = new Float64Array(n);
  const weights = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let x = Math.cos((Math.PI * (i + 0.75)) / (n + 0.5));
    let dp = 0;
    for (let iter = 0; iter < 100; iter++) {
      let p0 = 1;
      let p1 = x;
      for (let k = 2; k <= n; k++) {
        const p2 = ((2 * k - 1) * x * p1 - (k - 1) * p0) / k;
        p0 = p1;
        p1 = p2;
      }
      const pn = n === 1 ? x : p1;
      const pPrev = n === 1 ? 1 : p0;
      dp = (n * (x * pn - pPrev)) / (x * x - 1);
      const dx = pn / dp;
      x -= dx;
      if (Math.abs(dx) < 1e-15) break;
    }
    // x descends from near 1, so t = (1 − x)/2 ascends from near 0.
    nodes[i] = (1 - x) / 2;
    weights[i] = 1 / ((1 - x * x) * dp * dp);
  }
  const q = { nodes, weights };
  cache.set(n, q);
  return q;
}
