/**
 * Range marks on a log axis: for each group and series a whisker from min to max, a box from the
 * median to the 90th percentile and a tick at the median, with a dashed threshold line. Used for
 * the distribution of LIG completeness errors, which spans many decades.
 */
import { escapeText } from './format.ts';
import { attrs, axes, fitText, r, text, textWidth, type Attrs, type Panel, type Scale } from './svg.ts';

export interface RangeDatum { group: string; series: string; min: number; median: number; p90: number; max: number; label: string; tooltip: string; data: Attrs }

const FLOOR = 1e-6; // errors below one in a million are drawn at the floor

/** log10 axis from FLOOR to the first power of ten ≥ every value (at least 1). */
function log10Scale(values: number[], top: number, plotH: number): Scale {
  const maxVal = Math.max(1, ...values.filter((v) => Number.isFinite(v)));
  const hiExp = Math.ceil(Math.log10(maxVal));
  const loExp = Math.log10(FLOOR);
  const ticks = Array.from({ length: hiExp - loExp + 1 }, (_, i) => 10 ** (loExp + i));
  const y = (v: number) => top + plotH - ((Math.log10(Math.max(FLOOR, v)) - loExp) / (hiExp - loExp)) * plotH;
  const tickText = (v: number) => (v >= 0.01 ? `${Number((v * 100).toPrecision(3))}%` : `1e${Math.round(Math.log10(v))}`);
  return { ticks, y, tickText };
}

function rangeMark(d: RangeDatum, cx: number, w: number, y: (v: number) => number, colour: string): string {
  const parts: string[] = [`<title>${escapeText(d.tooltip)}</title>`];
  const finite = [d.min, d.median, d.p90, d.max].every((v) => Number.isFinite(v));
  if (finite) {
    parts.push(`<line x1="${r(cx)}" x2="${r(cx)}" y1="${r(y(d.min))}" y2="${r(y(d.max))}" stroke="#222" stroke-width="1"/>`);
    parts.push(`<rect x="${r(cx - w / 2)}" y="${r(y(d.p90))}" width="${r(w)}" height="${r(Math.max(1, y(d.median) - y(d.p90)))}" fill="${colour}" stroke="#222" stroke-width="0.6"/>`);
    parts.push(`<line x1="${r(cx - w / 2)}" x2="${r(cx + w / 2)}" y1="${r(y(d.median))}" y2="${r(y(d.median))}" stroke="#000" stroke-width="2"/>`);
  }
  const labelY = finite ? y(d.max) - 4 : y(FLOOR) - 4;
  parts.push(text(cx + 3.5, labelY, d.label, { rotate: -90, size: 10, anchor: 'start', cls: 'value-label' }));
  return `<g class="mark"${attrs(d.data)}>${parts.join('')}</g>`;
}

export function rangePanel(o: { title: string; yLabel: string; groups: { key: string; label: string }[]; series: string[]; colours: Map<string, string>; data: RangeDatum[]; threshold: number; width: number }): Panel {
  const left = 58, plotH = 190;
  const seriesInUse = o.series.filter((s) => o.data.some((d) => d.series === s));
  const plotW = Math.max(140, o.width - left - 12);
  const groupW = plotW / Math.max(1, o.groups.length);
  const slot = Math.min(40, (groupW - 16) / Math.max(1, seriesInUse.length));
  const top = 26 + Math.max(20, ...o.data.map((d) => textWidth(d.label, 10))) + 8;
  const width = left + plotW + 12;
  const height = top + plotH + 48;
  const scale = log10Scale(o.data.flatMap((d) => [d.max, o.threshold]), top, plotH);
  const parts: string[] = [];
  parts.push(text(left + plotW / 2, 16, fitText(o.title, width - 8, 13), { anchor: 'middle', weight: '600', size: 13, full: o.title, cls: 'panel-title' }));
  parts.push(axes(scale, left, plotW, top, plotH));
  const ty = scale.y(o.threshold);
  parts.push(`<line x1="${left}" x2="${r(left + plotW)}" y1="${r(ty)}" y2="${r(ty)}" stroke="#D55E00" stroke-width="1.2" stroke-dasharray="5 3" class="threshold"/>`);
  parts.push(text(14, top + plotH / 2, o.yLabel, { anchor: 'middle', rotate: -90, size: 11, cls: 'axis-label' }));
  parts.push(text(left + plotW / 2, top + plotH + 42, 'decoder layer', { anchor: 'middle', size: 11, cls: 'axis-label' }));
  o.groups.forEach((g, gi) => {
    const gx = left + gi * groupW + (groupW - slot * seriesInUse.length) / 2;
    parts.push(text(gx + (slot * seriesInUse.length) / 2, top + plotH + 16, fitText(g.label, groupW - 4, 11), { anchor: 'middle', size: 11, full: g.label, cls: 'group-label' }));
    seriesInUse.forEach((s, si) => {
      const d = o.data.find((x) => x.group === g.key && x.series === s);
      if (d) parts.push(rangeMark(d, gx + si * slot + slot / 2, Math.max(6, slot - 8), scale.y, o.colours.get(s) ?? '#888'));
    });
  });
  return { svg: parts.join(''), width, height };
}
