/**
 * Test-only reference: a direct float64 Llama forward pass, token by token, written from the
 * model's definition (not from the ONNX graph), to check the graph builder against.
 * Weights are [out, in] row-major, as in LlamaWeights.
 */
import type { LlamaConfig } from '../../../onnx/models/llama-config.ts';
import type { LlamaWeights } from '../../../onnx/models/llama-graph.ts';

/** y = W x (+ b), W [out, in]. */
function matvec(w: Float32Array, x: Float64Array, out: number, b?: Float32Array): Float64Array {
  const inp = x.length;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = b ? b[o] : 0;
    for (let i = 0; i < inp; i++) s += w[o * inp + i] * x[i];
    y[o] = s;
  }
  return y;
}

function rmsNorm(x: Float64Array, g: Float32Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const r = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * r * g[i]);
}

/** Rotate one head vector in place by position p. */
function rope(v: Float64Array, off: number, d: number, p: number, cfg: LlamaConfig): void {
  for (let k = 0; k < d / 2; k++) {
    const angle = p * Math.pow(cfg.ropeTheta, (-2 * k) / d);
    const c = Math.cos(angle);
    const s = Math.sin(angle);
    const [i, j] = cfg.ropeLayout === 'interleaved' ? [off + 2 * k, off + 2 * k + 1] : [off + k, off + k + d / 2];
    const a = v[i];
    const b = v[j];
    v[i] = a * c - b * s;
    v[j] = b * c + a * s;
  }
}

export interface ReferenceOutput {
  /** [S][V] per sequence. */
  logits: Float64Array[];
  /** [layer][S] act_fn outputs (silu(gate)), width intermediate. */
  act: Float64Array[][];
}

/** One sequence (ids + mask of equal length). Padded query positions are computed but meaningless. */
export function referenceForward(cfg: LlamaConfig, w: LlamaWeights, ids: number[], mask: number[]): ReferenceOutput {
  const S = ids.length;
  const H = cfg.hiddenSize;
  const D = cfg.headDim;
  const group = cfg.numHeads / cfg.numKvHeads;
  const pos: number[] = [];
  let count = 0;
  for (let t = 0; t < S; t++) {
    count += mask[t];
    pos.push(Math.max(count - 1, 0));
  }
  let xs = ids.map((id) => Float64Array.from(w.embed.subarray(id * H, (id + 1) * H)));
  const act: Float64Array[][] = [];
  for (const L of w.layers) {
    const hs = xs.map((x) => rmsNorm(x, L.inputNorm, cfg.rmsNormEps));
    const qs = hs.map((h, t) => {
      const q = matvec(L.q, h, cfg.numHeads * D, L.qBias);
      for (let hd = 0; hd < cfg.numHeads; hd++) rope(q, hd * D, D, pos[t], cfg);
      return q;
    });
    const ks = hs.map((h, t) => {
      const k = matvec(L.k, h, cfg.numKvHeads * D, L.kBias);
      for (let hd = 0; hd < cfg.numKvHeads; hd++) rope(k, hd * D, D, pos[t], cfg);
      return k;
    });
    const vs = hs.map((h) => matvec(L.v, h, cfg.numKvHeads * D, L.vBias));
    const layerAct: Float64Array[] = [];
    xs = xs.map((x, t) => {
      const ctx = new Float64Array(cfg.numHeads * D);
      for (let hd = 0; hd < cfg.numHeads; hd++) {
        const kvh = Math.floor(hd / group);
        const keys: number[] = [];
        for (let j = 0; j <= t; j++) if (mask[j] === 1 && (!cfg.slidingWindow || t - j < cfg.slidingWindow)) keys.push(j);
        if (keys.length === 0) continue; // padded query with nothing to attend to
        const scores = keys.map((j) => {
          let s = 0;
          for (let e = 0; e < D; e++) s += qs[t][hd * D + e] * ks[j][kvh * D + e];
          return s / Math.sqrt(D);
        });
        const m = Math.max(...scores);
        const ex = scores.map((s) => Math.exp(s - m));
        const z = ex.reduce((a, b) => a + b, 0);
        keys.forEach((j, n) => {
          for (let e = 0; e < D; e++) ctx[hd * D + e] += (ex[n] / z) * vs[j][kvh * D + e];
        });
      }
      const o = matvec(L.o, ctx, H);
      const x1 = x.map((v, i) => v + o[i]);
      const h2 = rmsNorm(x1, L.postNorm, cfg.rmsNormEps);
      const gate = matvec(L.gate, h2, cfg.intermediateSize);
      const up = matvec(L.up, h2, cfg.intermediateSize);
      const a = gate.map((g) => g / (1 + Math.exp(-g)));
      layerAct.push(a);
      const down = matvec(L.down, a.map((v, i) => v * up[i]), H);
      return x1.map((v, i) => v + down[i]);
    });
    act.push(layerAct);
  }
  const head = cfg.tieWordEmbeddings ? w.embed : w.lmHead!;
  const logits = xs.map((x) => matvec(head, rmsNorm(x, w.finalNorm, cfg.rmsNormEps), cfg.vocabSize));
  return { logits, act };
}
