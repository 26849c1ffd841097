// The package's version, read from package.json (dist/ → ../package.json; the compiled tests
// live one folder deeper, so walk up until the right package.json is found).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export function packageVersion(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'resp-tls-proxy' && pkg.version) return pkg.version;
    } catch {
      // no package.json here; keep looking
    }
    const parent = path.dirname(dir);
    if (parent === dir) return 'unknown';
    dir = parent;
  }
}
