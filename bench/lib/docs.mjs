// Copies a results table into docs/performance.md between two HTML-comment markers.
import fs from 'node:fs';
import path from 'node:path';

/** Replace the text between <!-- NAME:start --> and <!-- NAME:end --> in docs/performance.md. */
export function updateDocs(root, name, markdown) {
  const file = path.join(root, 'docs', 'performance.md');
  const text = fs.readFileSync(file, 'utf8');
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  const a = text.indexOf(start);
  const b = text.indexOf(end);
  if (a < 0 || b < a) throw new Error(`docs/performance.md has no ${start} … ${end} markers`);
  // demote headings so they sit under the doc's "## Results" section; fix relative links
  const body = markdown
    .replace(/^(#{1,5}) /gm, '$1## ')
    .replace(/\]\((latest\.svg)\)/g, '](../bench/results/$1)')
    .trim();
  fs.writeFileSync(file, `${text.slice(0, a + start.length)}\n\n${body}\n\n${text.slice(b)}`);
  return file;
}
