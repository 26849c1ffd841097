/**
 * How many CPUs this process may use: what `workers: 0` forks and what the "more workers than
 * CPUs" warning compares with.
 *
 * `os.availableParallelism()` counts the CPUs the process may be scheduled on. From libuv 1.49
 * (Node.js 22) it also honours a cgroup CPU quota; Node.js 20's libuv does not, so in a pod
 * limited to one CPU on a 16-core node it answers 16, and `workers: 0` would fork 16 processes
 * that share one CPU's time. The quota is therefore read here as well, on every Node.js version.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Where the kernel's files are: the real ones, or a copy laid out alike (tests). */
export interface CgroupFiles {
  /** /proc/self/cgroup */
  procSelfCgroup: string;
  /** /sys/fs/cgroup */
  cgroupRoot: string;
}

const SYSTEM: CgroupFiles = { procSelfCgroup: '/proc/self/cgroup', cgroupRoot: '/sys/fs/cgroup' };

function readOrNull(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** quota ÷ period in CPUs, or null for no limit (`max`, -1) or a file that is not there. */
function ratio(quota: string | undefined, period: string | undefined): number | null {
  const q = Number(quota);
  const p = Number(period);
  return Number.isFinite(q) && Number.isFinite(p) && q > 0 && p > 0 ? q / p : null;
}

/** The smallest limit on `dir` and every folder above it up to `root` (a parent's quota binds its children). */
function tightest(root: string, dir: string, limitIn: (folder: string) => number | null): number | null {
  let best: number | null = null;
  for (let rel = dir; ; rel = path.posix.dirname(rel)) {
    const limit = limitIn(path.join(root, rel));
    if (limit !== null && (best === null || limit < best)) best = limit;
    if (rel === '/' || rel === '.' || rel === '') return best;
  }
}

/**
 * The process's cgroup CPU quota in CPUs (1.5 for `cpu.max` "150000 100000"), or null when there is
 * none or it cannot be read. cgroup v2 (`cpu.max`) and v1 (`cpu.cfs_quota_us` / `cpu.cfs_period_us`).
 */
export function cgroupCpuQuota(files: CgroupFiles = SYSTEM): number | null {
  const membership = readOrNull(files.procSelfCgroup);
  if (membership === null) return null;
  let best: number | null = null;
  const consider = (limit: number | null): void => {
    if (limit !== null && (best === null || limit < best)) best = limit;
  };
  for (const line of membership.split('\n')) {
    // "hierarchy-id:controllers:path"; the path may itself contain ':'
    const first = line.indexOf(':');
    const second = line.indexOf(':', first + 1);
    if (first < 0 || second < 0) continue;
    const controllers = line.slice(first + 1, second);
    const dir = line.slice(second + 1) || '/';
    if (line.slice(0, first) === '0' && controllers === '') {
      consider(
        tightest(files.cgroupRoot, dir, (folder) => {
          const [quota, period] = (readOrNull(path.join(folder, 'cpu.max')) ?? '').trim().split(/\s+/);
          return ratio(quota, period);
        }),
      );
    } else if (controllers.split(',').includes('cpu')) {
      for (const mount of ['cpu,cpuacct', 'cpu']) {
        const base = path.join(files.cgroupRoot, mount);
        if (!fs.existsSync(base)) continue;
        consider(
          tightest(base, dir, (folder) =>
            ratio(
              readOrNull(path.join(folder, 'cpu.cfs_quota_us'))?.trim(),
              readOrNull(path.join(folder, 'cpu.cfs_period_us'))?.trim(),
            ),
          ),
        );
        break;
      }
    }
  }
  return best;
}

/**
 * The CPUs this process may use: `os.availableParallelism()`, lowered to the cgroup CPU quota
 * rounded to the nearest whole CPU (at least 1).
 */
export function usableCpus(files: CgroupFiles = SYSTEM): number {
  const cpus = os.availableParallelism();
  const quota = cgroupCpuQuota(files);
  return quota === null ? cpus : Math.max(1, Math.min(cpus, Math.round(quota)));
}
