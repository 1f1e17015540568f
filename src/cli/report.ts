// The --report page of switch-train: one self-contained HTML file with inline SVG charts (loss
// curves, expert load over time, dropped fraction). No scripts, no external resources.

export interface Series {
  name: string;
  points: [number, number][];
  color?: string;
}

const palette = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf',
  '#393b79', '#637939', '#8c6d31', '#843c39', '#7b4173', '#3182bd'];

function escape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A line chart as an SVG element string. */
export function lineChart(title: string, series: Series[], options: { xLabel?: string; yLabel?: string; width?: number; height?: number } = {}): string {
  const { xLabel = 'step', yLabel = '', width = 720, height = 300 } = options;
  const left = 60, right = 150, top = 30, bottom = 40;
  const all = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  if (all.length === 0) return `<p>${escape(title)}: no data</p>`;
  let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const pad = (y1 - y0) * 0.05;
  y0 -= pad; y1 += pad;
  const w = width - left - right, h = height - top - bottom;
  const sx = (x: number) => left + ((x - x0) / (x1 - x0)) * w;
  const sy = (y: number) => top + h - ((y - y0) / (y1 - y0)) * h;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`);
  parts.push(`<text x="${left}" y="18" font-size="14" font-weight="bold">${escape(title)}</text>`);
  parts.push(`<rect x="${left}" y="${top}" width="${w}" height="${h}" fill="none" stroke="#999"/>`);
  for (let i = 0; i <= 4; i++) {
    const yv = y0 + ((y1 - y0) * i) / 4, xv = x0 + ((x1 - x0) * i) / 4;
    parts.push(`<line x1="${left}" x2="${left + w}" y1="${sy(yv)}" y2="${sy(yv)}" stroke="#eee"/>`);
    parts.push(`<text x="${left - 5}" y="${sy(yv) + 4}" text-anchor="end">${yv.toPrecision(3)}</text>`);
    parts.push(`<text x="${sx(xv)}" y="${top + h + 15}" text-anchor="middle">${Math.round(xv)}</text>`);
  }
  parts.push(`<text x="${left + w / 2}" y="${height - 5}" text-anchor="middle">${escape(xLabel)}</text>`);
  if (yLabel) parts.push(`<text x="14" y="${top + h / 2}" transform="rotate(-90 14 ${top + h / 2})" text-anchor="middle">${escape(yLabel)}</text>`);
  series.forEach((s, i) => {
    const color = s.color ?? palette[i % palette.length];
    const d = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y))
      .map(([x, y], j) => `${j ? 'L' : 'M'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join('');
    parts.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.5"/>`);
    parts.push(`<line x1="${left + w + 10}" x2="${left + w + 30}" y1="${top + 10 + i * 16}" y2="${top + 10 + i * 16}" stroke="${color}" stroke-width="2"/>`);
    parts.push(`<text x="${left + w + 35}" y="${top + 14 + i * 16}">${escape(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

export function htmlPage(title: string, sections: { heading: string; body: string }[]): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>
<style>body{font-family:sans-serif;max-width:900px;margin:2em auto;color:#222}pre{background:#f6f6f6;padding:1em;overflow:auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style>
</head><body><h1>${escape(title)}</h1>
${sections.map((s) => `<h2>${escape(s.heading)}</h2>\n${s.body}`).join('\n')}
</body></html>
`;
}

export { escape as escapeHtml };
