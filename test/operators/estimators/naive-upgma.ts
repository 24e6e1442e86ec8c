/**
 * The tests' reference average-linkage clustering (UPGMA), O(m³): merge the closest pair of groups
 * (smallest average distance; ties to the first pair in index order) while that distance is ≤
 * `threshold`. Returns the groups of item indices.
 */
export function naiveUpgma(dist: number[][], threshold: number): number[][] {
  let groups = dist.map((_, i) => [i]);
  for (;;) {
    let best = Infinity, bi = -1, bj = -1;
    for (let a = 0; a < groups.length; a++) {
      for (let b = a + 1; b < groups.length; b++) {
        let s = 0;
        for (const i of groups[a]) for (const j of groups[b]) s += dist[i][j];
        const avg = s / (groups[a].length * groups[b].length);
        if (avg < best) (best = avg), (bi = a), (bj = b);
      }
    }
    if (bi < 0 || best > threshold) return groups;
    groups[bi] = groups[bi].concat(groups[bj]);
    groups = groups.filter((_, k) => k !== bj);
  }
}
