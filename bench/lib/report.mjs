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
export function renderMarkdown({ meta, targets, shapes, summary, skipped }) {
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
