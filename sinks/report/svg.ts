/**
 * Hand-written SVG primitives: grouped bar panels (linear or log axis), reliability-diagram panels,
 * a legend, and a flow layout that places panels side by side into one standalone figure.
 * Text widths are estimated (no font metrics offline), so labels that could collide are truncated
 * or rotated with generous room.
 */
import { escapeText } from './format.ts';

/** Okabe–Ito: distinguishable with the common colour-vision deficiencies. Yellow comes last (weak on white). */
export const OKABE_ITO = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#D55E00', '#56B4E9', '#000000', '#F0E442'];

export function coloursFor(precisions: string[]): Map<string, string> {
  return new Map(precisions.map((p, i) => [p, OKABE_ITO[i % OKABE_ITO.length]]));
}

/** Widest figure: the page's 1160 px less its padding. Panels are sized from it (panelWidth). */
export const FIGURE_WIDTH = 1120;
const FIGURE_PAD = 10;
const PANEL_GAP = 10;

/** Width of each of `columns` panels side by side filling one figure row. */
export function panelWidth(columns: number): number {
  const c = Math.max(1, columns);
  return Math.floor((FIGURE_WIDTH - 2 * FIGURE_PAD - PANEL_GAP * (c - 1)) / c);
}

export type Attrs = Record<string, string | number | undefined>;

export function attrs(a: Attrs): string {
  return Object.entries(a)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => ` ${k}="${escapeText(v)}"`)
    .join('');
}

const FONT = 'system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif';
const CHAR_WIDTH = 0.6; // average glyph width as a fraction of the font size (safe upper estimate)

export function textWidth(s: string, size: number): number {
  return s.length * size * CHAR_WIDTH;
}

/** Cut a label to fit `width` px, with an ellipsis. */
export function fitText(s: string, width: number, size: number): string {
  const max = Math.max(1, Math.floor(width / (size * CHAR_WIDTH)));
  return s.length <= max ? s : s.slice(0, Math.max(1, max - 1)) + '…';
}

export function text(x: number, y: number, s: string, o: { size?: number; anchor?: 'start' | 'middle' | 'end'; rotate?: number; weight?: string; fill?: string; cls?: string; baseline?: string; full?: string } = {}): string {
  const size = o.size ?? 12;
  const transform = o.rotate ? ` transform="rotate(${o.rotate} ${r(x)} ${r(y)})"` : '';
  const tip = o.full && o.full !== s ? `<title>${escapeText(o.full)}</title>` : '';
  return `<text x="${r(x)}" y="${r(y)}" font-size="${size}"${o.anchor ? ` text-anchor="${o.anchor}"` : ''}${o.weight ? ` font-weight="${o.weight}"` : ''}${o.baseline ? ` dominant-baseline="${o.baseline}"` : ''} fill="${o.fill ?? '#222'}"${o.cls ? ` class="${o.cls}"` : ''}${transform}>${tip}${escapeText(s)}</text>`;
}

/** Round coordinates so the files stay small and diff-able. */
export function r(v: number): string {
  return String(Math.round(v * 10) / 10);
}

/** Evenly spaced "nice" ticks from 0 up to at least max. */
export function niceTicks(max: number, count = 5): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks: number[] = [];
  for (let i = 0; i * step < max + step * 0.999; i++) ticks.push(Number((i * step).toPrecision(12)));
  return ticks;
}

function tickLabel(v: number): string {
  if (v === 0) return '0';
  if (Math.abs(v) >= 1000) return String(v).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return String(Number(v.toPrecision(4)));
}

export interface Panel { svg: string; width: number; height: number; /** Start a new row (e.g. one row per run). */ newRow?: boolean }

export interface BarDatum {
  group: string;
  series: string;
  value: number;
  /** Confidence interval drawn as a whisker when both ends are given. */
  lo?: number;
  hi?: number;
  label: string;
  tooltip: string;
  /** data-* attributes for the mark, so tests can compare what is drawn with the files. */
  data: Attrs;
}

export interface BarPanelOptions {
  title: string;
  yLabel: string;
  groups: { key: string; label: string }[];
  series: string[];
  colours: Map<string, string>;
  bars: BarDatum[];
  /** Fixed top of the axis (e.g. 1 for accuracy); otherwise from the data. */
  yMax?: number;
  log?: boolean;
  xLabel?: string;
  /** Panel width to fill (px); the plot widens to it, bars grow up to MAX_BAR_W. */
  width?: number;
}

const MIN_BAR_W = 16;
const MAX_BAR_W = 40;
const GROUP_GAP = 16;
const LABEL_SIZE = 10;
const PLOT_LEFT = 58;

export interface Scale { ticks: number[]; y: (v: number) => number; tickText: (v: number) => string }

/**
 * Zero-safe log axis: height ∝ log10(1 + v), so 0 has no bar and 1 a visible one (a plain log axis
 * cannot draw 0 and had to clip 0 and 1 to the same empty bar). Ticks at 0, 1, 10, 100, …
 */
export function log1pScale(values: number[], top: number, plotH: number): Scale {
  const maxVal = Math.max(1, ...values.filter((v) => Number.isFinite(v)));
  const decades = Math.max(1, Math.ceil(Math.log10(maxVal)));
  const ticks = [0, ...Array.from({ length: decades + 1 }, (_, i) => 10 ** i)];
  const span = Math.log10(1 + 10 ** decades);
  return { ticks, y: (v) => top + plotH - (Math.log10(1 + Math.max(0, v)) / span) * plotH, tickText: compactTick };
}

function linearScale(values: number[], yMax: number | undefined, top: number, plotH: number): Scale {
  const dataMax = Math.max(0, ...values.filter((v) => Number.isFinite(v)));
  const ticks = niceTicks(yMax ?? dataMax);
  const top0 = ticks[ticks.length - 1];
  return { ticks, y: (v) => top + plotH - (Math.max(0, Math.min(v, top0)) / top0) * plotH, tickText: tickLabel };
}

/** Grid lines, tick labels (skipping any closer than a label's height to the last one drawn) and axes. */
export function axes(scale: Scale, left: number, plotW: number, top: number, plotH: number): string {
  const parts: string[] = [];
  let lastLabelY = Infinity;
  for (const t of scale.ticks) {
    const ty = scale.y(t);
    parts.push(`<line x1="${left}" x2="${r(left + plotW)}" y1="${r(ty)}" y2="${r(ty)}" stroke="#e3e3e3"/>`);
    if (lastLabelY - ty < 12) continue;
    parts.push(text(left - 6, ty + 4, scale.tickText(t), { anchor: 'end', size: 10, fill: '#444' }));
    lastLabelY = ty;
  }
  parts.push(`<line x1="${left}" x2="${left}" y1="${r(top)}" y2="${r(top + plotH)}" stroke="#666"/>`);
  parts.push(`<line x1="${left}" x2="${r(left + plotW)}" y1="${r(top + plotH)}" y2="${r(top + plotH)}" stroke="#666"/>`);
  return parts.join('');
}

/** One bar with its whisker and rotated value label, as a <g class="mark"> carrying the data attributes. */
function barMark(b: BarDatum, x: number, barW: number, base: number, y: (v: number) => number, colour: string): string {
  const yTop = Number.isFinite(b.value) ? y(b.value) : base;
  const mark: string[] = [`<title>${escapeText(b.tooltip)}</title>`];
  if (base - yTop > 0) mark.push(`<rect x="${r(x + 1)}" y="${r(yTop)}" width="${r(barW - 2)}" height="${r(base - yTop)}" fill="${colour}" stroke="#222" stroke-width="0.6"/>`);
  let labelY = yTop;
  if (b.lo !== undefined && b.hi !== undefined && Number.isFinite(b.lo) && Number.isFinite(b.hi)) {
    const cx = x + barW / 2;
    const y1 = y(b.lo), y2 = y(b.hi);
    mark.push(`<path d="M${r(cx)} ${r(y1)}V${r(y2)}M${r(cx - 4)} ${r(y1)}H${r(cx + 4)}M${r(cx - 4)} ${r(y2)}H${r(cx + 4)}" stroke="#222" stroke-width="1" fill="none" class="ci"/>`);
    labelY = Math.min(labelY, y2);
  }
  mark.push(text(x + barW / 2 + 3.5, labelY - 4, b.label, { rotate: -90, size: LABEL_SIZE, anchor: 'start', cls: 'value-label' }));
  return `<g class="mark"${attrs(b.data)}>${mark.join('')}</g>`;
}

/** Grouped bars: one group per `groups` entry, one bar per series within it, value labels above. */
export function barPanel(o: BarPanelOptions): Panel {
  const seriesInUse = o.series.filter((s) => o.bars.some((b) => b.series === s));
  const n = Math.max(1, seriesInUse.length);
  // Each group gets an equal slot wide enough for its bars and (up to a cap) its label.
  const longestGroup = Math.max(0, ...o.groups.map((g) => textWidth(g.label, 11)));
  const naturalGroup = Math.max(n * MIN_BAR_W + GROUP_GAP, Math.min(longestGroup + 10, 170));
  const plotW = Math.max(140, o.groups.length * naturalGroup, (o.width ?? 0) - PLOT_LEFT - 12);
  const groupWidth = plotW / Math.max(1, o.groups.length);
  const barW = Math.max(MIN_BAR_W, Math.min(MAX_BAR_W, (groupWidth - GROUP_GAP) / n));
  const barsWidth = n * barW;
  const longestLabel = Math.max(...o.bars.map((b) => textWidth(b.label, LABEL_SIZE)), 20);
  const plotH = 190;
  const top = 26 + longestLabel + 8; // rotated value labels sit above the tallest bar
  const width = PLOT_LEFT + plotW + 12;
  const height = top + plotH + (o.xLabel ? 48 : 32);
  const values = o.bars.flatMap((b) => [b.value, b.hi ?? 0]);
  const scale = o.log ? log1pScale(values, top, plotH) : linearScale(values, o.yMax, top, plotH);

  const parts: string[] = [];
  parts.push(text(PLOT_LEFT + plotW / 2, 16, fitText(o.title, width - 8, 13), { anchor: 'middle', weight: '600', size: 13, full: o.title, cls: 'panel-title' }));
  parts.push(axes(scale, PLOT_LEFT, plotW, top, plotH));
  parts.push(text(14, top + plotH / 2, o.yLabel, { anchor: 'middle', rotate: -90, size: 11, cls: 'axis-label' }));
  if (o.xLabel) parts.push(text(PLOT_LEFT + plotW / 2, top + plotH + 42, o.xLabel, { anchor: 'middle', size: 11, cls: 'axis-label' }));
  o.groups.forEach((g, gi) => {
    const gx = PLOT_LEFT + gi * groupWidth + (groupWidth - barsWidth) / 2;
    parts.push(text(gx + barsWidth / 2, top + plotH + 16, fitText(g.label, groupWidth - 4, 11), { anchor: 'middle', size: 11, full: g.label, cls: 'group-label' }));
    seriesInUse.forEach((s, si) => {
      const b = o.bars.find((x) => x.group === g.key && x.series === s);
      if (b) parts.push(barMark(b, gx + si * barW, barW, top + plotH, scale.y, o.colours.get(b.series) ?? '#888'));
    });
  });
  return { svg: parts.join(''), width, height };
}

export function compactTick(v: number): string {
  if (v >= 1e9) return `${v / 1e9}B`;
  if (v >= 1e6) return `${v / 1e6}M`;
  if (v >= 1e3) return `${v / 1e3}K`;
  return String(v);
}

export interface ReliabilityBin { lo: number; hi: number; accuracy: number; confidence: number; count: number; data: Attrs }

/** Reliability diagram: accuracy per confidence bin against the diagonal of perfect calibration. */
export function reliabilityPanel(o: { title: string; subtitle?: string; colour: string; bins: ReliabilityBin[]; note?: string; width?: number }): Panel {
  const left = 48, bottom = 40;
  const size = Math.max(170, Math.min(320, (o.width ?? 0) - left - 14));
  const top = o.subtitle ? 44 : 30;
  const width = left + size + 14;
  const height = top + size + bottom;
  const x = (v: number) => left + Math.max(0, Math.min(1, v)) * size;
  const y = (v: number) => top + size - Math.max(0, Math.min(1, v)) * size;
  const parts: string[] = [];
  parts.push(text(left + size / 2, 14, fitText(o.title, width - 6, 12), { anchor: 'middle', weight: '600', size: 12, full: o.title, cls: 'panel-title' }));
  // The run name may be long: it gets its own line and is cut to fit; the precision never is.
  if (o.subtitle) parts.push(text(left + size / 2, 27, fitText(o.subtitle, width - 6, 10), { anchor: 'middle', size: 10, full: o.subtitle, cls: 'panel-subtitle' }));
  if (o.note) parts.push(text(left + size / 2, o.subtitle ? 40 : 26, o.note, { anchor: 'middle', size: 10, fill: '#444' }));
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    parts.push(`<line x1="${left}" x2="${left + size}" y1="${r(y(t))}" y2="${r(y(t))}" stroke="#eee"/>`);
    parts.push(text(left - 5, y(t) + 3.5, tickLabel(t), { anchor: 'end', size: 9, fill: '#444' }));
    parts.push(text(x(t), top + size + 12, tickLabel(t), { anchor: 'middle', size: 9, fill: '#444' }));
  }
  for (const b of o.bins) {
    const x0 = x(b.lo), x1 = x(b.hi);
    const tip = `bin ${b.lo}–${b.hi}: accuracy ${b.accuracy}, mean confidence ${b.confidence}, n=${b.count}`;
    parts.push(`<g class="mark"${attrs(b.data)}><title>${escapeText(tip)}</title>` +
      `<rect x="${r(x0)}" y="${r(y(b.accuracy))}" width="${r(Math.max(0.5, x1 - x0))}" height="${r(top + size - y(b.accuracy))}" fill="${o.colour}" fill-opacity="0.75" stroke="#222" stroke-width="0.5"/>` +
      `<line x1="${r(x0)}" x2="${r(x1)}" y1="${r(y(b.confidence))}" y2="${r(y(b.confidence))}" stroke="#222" stroke-width="2" stroke-dasharray="3 2"/></g>`);
  }
  parts.push(`<line x1="${r(x(0))}" y1="${r(y(0))}" x2="${r(x(1))}" y2="${r(y(1))}" stroke="#555" stroke-dasharray="4 3"/>`);
  parts.push(`<rect x="${left}" y="${top}" width="${size}" height="${size}" fill="none" stroke="#666"/>`);
  parts.push(text(left + size / 2, top + size + 28, 'confidence', { anchor: 'middle', size: 10, cls: 'axis-label' }));
  parts.push(text(12, top + size / 2, 'accuracy', { anchor: 'middle', rotate: -90, size: 10, cls: 'axis-label' }));
  return { svg: parts.join(''), width, height };
}

export interface LegendItem { label: string; colour?: string; dashed?: string }

/** Legend in one or more rows within maxWidth. */
export function legend(items: LegendItem[], maxWidth: number): Panel {
  let cx = 0, cy = 0;
  const parts: string[] = [];
  let width = 0;
  for (const it of items) {
    const w = 22 + textWidth(it.label, 12) + 18;
    if (cx > 0 && cx + w > maxWidth) { cx = 0; cy += 20; }
    const sw = it.dashed
      ? `<line x1="${r(cx)}" x2="${r(cx + 16)}" y1="${cy + 8}" y2="${cy + 8}" stroke="${it.dashed}" stroke-width="1.5" stroke-dasharray="3 2"/>`
      : `<rect x="${r(cx)}" y="${cy + 2}" width="14" height="12" fill="${it.colour}" stroke="#222" stroke-width="0.6"/>`;
    parts.push(`<g class="legend-item">${sw}${text(cx + 20, cy + 12, it.label, { size: 12 })}</g>`);
    cx += w;
    width = Math.max(width, cx);
  }
  return { svg: parts.join(''), width, height: cy + 18 };
}

/**
 * One standalone SVG: title, legend, then panels flowed left to right and wrapped at maxWidth.
 * The same string is written to figures/<id>.svg and inlined in the HTML.
 */
export function figure(o: { id: string; title: string; legend?: LegendItem[]; panels: Panel[]; maxWidth?: number }): string {
  const maxWidth = o.maxWidth ?? FIGURE_WIDTH;
  const pad = 10;
  const parts: string[] = [];
  parts.push(text(pad, 22, o.title, { size: 15, weight: '700', cls: 'figure-title' }));
  let y = 34;
  let width = Math.min(maxWidth, textWidth(o.title, 15) + 2 * pad);
  if (o.legend?.length) {
    const lg = legend(o.legend, maxWidth - 2 * pad);
    parts.push(`<g class="legend" transform="translate(${pad} ${y})">${lg.svg}</g>`);
    y += lg.height + 8;
    // A legend wider than the title and panels must widen the figure, or its end is clipped.
    width = Math.max(width, Math.min(maxWidth, lg.width + 2 * pad));
  }
  let x = pad, rowH = 0;
  for (const p of o.panels) {
    if (x > pad && (p.newRow || x + p.width > maxWidth - pad)) { x = pad; y += rowH + 10; rowH = 0; }
    parts.push(`<g class="panel" transform="translate(${r(x)} ${r(y)})">${p.svg}</g>`);
    x += p.width + 10;
    rowH = Math.max(rowH, p.height);
    width = Math.max(width, x - 10 + pad);
  }
  const height = Math.ceil(y + rowH + pad);
  width = Math.ceil(width);
  return `<svg xmlns="http://www.w3.org/2000/svg" class="figure" data-figure="${escapeText(o.id)}" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-labelledby="${escapeText(o.id)}-title" font-family='${FONT}'>` +
    `<title id="${escapeText(o.id)}-title">${escapeText(o.title)}</title><rect width="100%" height="100%" fill="#fff"/>${parts.join('')}</svg>`;
}
