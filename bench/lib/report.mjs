// Statistics and Markdown rendering for bench/run.mjs.

export function median(xs) {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

export function summarize(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x));
  if (!v.length) return { median: null, min: null, max: null, n: 0 };
  return { median: median(v), min: Math.min(...v), max: Math.max(...v), n: v.length };
}

export function fmtRate(x) {
  if (x == null) return '—';
  if (x >= 1e6) return `${(x / 1e6).toFixed(2)}M/s`;
  if (x >= 1e4) return `${(x / 1e3).toFixed(1)}k/s`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(2)}k/s`;
  return `${x.toFixed(0)}/s`;
}

export function fmtKiB(x) {
  if (x == null) return '—';
  return `${x.toFixed(1)} KiB`;
}

export function fmtValue(shape, x) {
  return shape.unit === 'KiB' ? fmtKiB(x) : fmtRate(x);
}

export function fmtRatio(r) {
  if (r == null || !Number.isFinite(r)) return '—';
  return `${r.toFixed(2)}×`;
}

/** Half the min–max range as a percentage of the median: a rough spread indicator. */
export function spreadPct(s) {
  if (s.median == null || s.n < 2 || s.median === 0) return null;
  return ((s.max - s.min) / 2 / Math.abs(s.median)) * 100;
}

/**
 * summary[targetId][shapeId] = { median, min, max, n }
 * Returns a Markdown string with three tables: medians, ratio vs HAProxy, ratio vs native TLS.
 */
export function renderMarkdown({ meta, targets, shapes, summary, cpuSummary = {}, skipped }) {
  const L = [];
  const hasH = targets.some((t) => t.id === 'haproxy');
  const hasN = targets.some((t) => t.id === 'native');
  L.push(`# resp-tls-proxy benchmark${meta.quick ? ' (quick run)' : ''}`);
  L.push('');
  L.push(
    `${meta.date} · ${meta.cpu} × ${meta.cores} · Linux ${meta.kernel} · ${meta.rounds} round(s), medians, ` +
      `targets interleaved · redis-benchmark --tls -c 50 · git ${meta.git}`,
  );
  L.push('');
  L.push('Versions: ' + Object.entries(meta.versions).map(([k, v]) => `${k} ${v}`).join(' · '));
  L.push('');
  L.push(`Command: \`${meta.command}\``);
  L.push('');
  L.push('## Medians');
  L.push('');
  L.push(`| shape | ${targets.map((t) => t.label).join(' | ')} |`);
  L.push(`|---|${targets.map(() => '---:').join('|')}|`);
  for (const s of shapes) {
    const cells = targets.map((t) => {
      const sm = summary[t.id]?.[s.id];
      if (!sm || sm.median == null) return '—';
      const sp = spreadPct(sm);
      return fmtValue(s, sm.median) + (sp != null ? ` ±${sp.toFixed(0)}%` : '');
    });
    L.push(`| ${s.label} | ${cells.join(' | ')} |`);
  }
  L.push('');
  L.push('± is half the min–max range over the rounds, relative to the median.');
  const cpuShapes = shapes.filter((s) => targets.some((t) => cpuSummary[t.id]?.[s.id]?.median != null));
  if (cpuShapes.length) {
    L.push('');
    L.push('## CPU per request');
    L.push('');
    L.push(
      "The target's own CPU time (user + system, its whole process tree) per request, in µs, medians: " +
        'below 1 in the ratio column costs less than HAProxy. The native target is redis-server itself, so its figure ' +
        'includes executing the commands; for the others it excludes the redis-server behind them.',
    );
    L.push('');
    const ref = targets.some((t) => t.id === 'haproxy') ? 'haproxy' : null;
    const cols = targets.flatMap((t) => (ref && t.id !== ref ? [t.label, '× HAProxy'] : [t.label]));
    L.push(`| shape | ${cols.join(' | ')} |`);
    L.push(`|---|${cols.map(() => '---:').join('|')}|`);
    for (const s of cpuShapes) {
      const base = ref ? cpuSummary[ref]?.[s.id]?.median : null;
      const cells = targets.flatMap((t) => {
        const v = cpuSummary[t.id]?.[s.id]?.median;
        const cell = v == null ? '—' : `${v.toFixed(v < 10 ? 2 : 1)} µs`;
        if (!ref || t.id === ref) return [cell];
        return [cell, v == null || !base ? '—' : fmtRatio(v / base)];
      });
      L.push(`| ${s.label} | ${cells.join(' | ')} |`);
    }
  }
  for (const [refId, title] of [
    ['haproxy', 'Ratio vs HAProxy'],
    ['native', 'Ratio vs native Redis TLS'],
  ]) {
    if (refId === 'haproxy' && !hasH) continue;
    if (refId === 'native' && !hasN) continue;
    const others = targets.filter((t) => t.id !== refId);
    if (!others.length) continue;
    L.push('');
    L.push(`## ${title}`);
    L.push('');
    L.push('Throughput: above 1 is faster. RSS: above 1 uses more memory per connection.');
    L.push('');
    L.push(`| shape | ${others.map((t) => t.label).join(' | ')} |`);
    L.push(`|---|${others.map(() => '---:').join('|')}|`);
    for (const s of shapes) {
      const ref = summary[refId]?.[s.id]?.median;
      const cells = others.map((t) => {
        const v = summary[t.id]?.[s.id]?.median;
        return v == null || !ref ? '—' : fmtRatio(v / ref);
      });
      L.push(`| ${s.label} | ${cells.join(' | ')} |`);
    }
  }
  if (skipped.length) {
    L.push('');
    L.push('## Skipped or failed');
    L.push('');
    for (const s of skipped) L.push(`- ${s.target}: ${s.reason}`);
  }
  if (meta.notes?.length) {
    L.push('');
    L.push('## Notes');
    L.push('');
    for (const n of meta.notes) L.push(`- ${n}`);
  }
  L.push('');
  return L.join('\n');
}

const COLORS = { native: '#4e79a7', haproxy: '#f28e2b', stunnel: '#76b7b2', proxy: '#e15759' };
const EXTRA = ['#e15759', '#b07aa1', '#59a14f', '#edc948'];
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A small SVG bar chart of every target's median relative to HAProxy (or native TLS without it). */
export function renderSvg({ targets, shapes, summary, title }) {
  const refId = targets.some((t) => t.id === 'haproxy') ? 'haproxy' : targets.some((t) => t.id === 'native') ? 'native' : null;
  if (!refId) return null;
  const others = targets.filter((t) => t.id !== refId);
  if (!others.length) return null;
  const refLabel = targets.find((t) => t.id === refId).label;
  const rows = shapes.map((s) => ({
    s,
    bars: others.map((t) => {
      const v = summary[t.id]?.[s.id]?.median;
      const r = summary[refId]?.[s.id]?.median;
      return { t, ratio: v != null && r ? v / r : null };
    }),
  }));
  const maxRatio = Math.max(1.25, ...rows.flatMap((r) => r.bars.map((b) => b.ratio ?? 0)));
  const scaleMax = Math.ceil(maxRatio * 4) / 4;
  const left = 300;
  const plotW = 420;
  const barH = 12;
  const groupGap = 12;
  const top = 62 + 16 * Math.ceil(others.length / 2);
  const groupH = others.length * (barH + 2) + groupGap;
  const height = top + rows.length * groupH + 30;
  const width = left + plotW + 60;
  const x = (v) => left + (Math.min(v, scaleMax) / scaleMax) * plotW;
  let extra = 0;
  const color = new Map(others.map((t) => [t.id, COLORS[t.id] ?? EXTRA[extra++ % EXTRA.length]]));
  const o = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`);
  o.push(`<rect width="100%" height="100%" fill="white"/>`);
  o.push(`<text x="10" y="20" font-size="14" font-weight="bold">${esc(title ?? '')}</text>`);
  o.push(`<text x="10" y="38">median ÷ ${esc(refLabel)} (throughput: right is faster; RSS: right is more memory)</text>`);
  others.forEach((t, i) => {
    const lx = 10 + (i % 2) * 330;
    const ly = 60 + Math.floor(i / 2) * 16;
    o.push(`<rect x="${lx}" y="${ly - 10}" width="10" height="10" fill="${color.get(t.id)}"/><text x="${lx + 14}" y="${ly}">${esc(t.label)}</text>`);
  });
  for (let g = 0; g <= scaleMax + 1e-9; g += 0.25) {
    const gx = x(g);
    o.push(`<line x1="${gx}" y1="${top - 4}" x2="${gx}" y2="${height - 24}" stroke="${Math.abs(g - 1) < 1e-9 ? '#333' : '#ddd'}"/>`);
    if (Math.abs(g * 2 - Math.round(g * 2)) < 1e-9) o.push(`<text x="${gx}" y="${height - 10}" text-anchor="middle">${g.toFixed(1)}×</text>`);
  }
  rows.forEach((row, gi) => {
    const gy = top + gi * groupH;
    o.push(`<text x="${left - 8}" y="${gy + (others.length * (barH + 2)) / 2 + 4}" text-anchor="end">${esc(row.s.label)}</text>`);
    row.bars.forEach((b, bi) => {
      const by = gy + bi * (barH + 2);
      if (b.ratio == null) {
        o.push(`<text x="${left + 4}" y="${by + barH - 2}" fill="#999">—</text>`);
        return;
      }
      o.push(`<rect x="${left}" y="${by}" width="${Math.max(1, x(b.ratio) - left)}" height="${barH}" fill="${color.get(b.t.id)}"/>`);
      o.push(`<text x="${x(b.ratio) + 4}" y="${by + barH - 2}" font-size="10">${b.ratio.toFixed(2)}</text>`);
    });
  });
  o.push('</svg>');
  return o.join('\n') + '\n';
}
