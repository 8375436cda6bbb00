import { linkSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { StoreError } from './errors.js';

/** Name of the lock file inside a PGlite data directory. */
export const LOCK_FILE = 'portcullis.lock';

/** Directories this process holds, so a second open in the same process fails too. */
const heldHere = new Set<string>();

function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readPid(path: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
    return Number.isNaN(pid) ? undefined : pid;
  } catch {
    return undefined;
  }
}

/**
 * Takes the data directory's lock file (the pid inside) for this process: PGlite keeps
 * the database in this process's memory and flushes it to the directory, so a second
 * process writing there would corrupt it. A lock left by a dead process is reclaimed.
 * Throws StoreError `store-locked` when a live process holds it. Returns the release
 * function.
 */
export function lockDataDir(dir: string): () => void {
  const path = join(dir, LOCK_FILE);
  if (heldHere.has(path)) {
    throw new StoreError('store-locked', `the data directory ${dir} is already open in this process`);
  }
  const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}`;
  writeFileSync(tmp, `${process.pid}\n`, { mode: 0o600 });
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        // link() fails when the target exists: an atomic create-with-content.
        linkSync(tmp, path);
        heldHere.add(path);
        let released = false;
        return () => {
          if (released) return;
          released = true;
          heldHere.delete(path);
          if (readPid(path) === process.pid) {
            try {
              unlinkSync(path);
            } catch {
              // already gone
            }
          }
        };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const holder = readPid(path);
      if (holder !== undefined && holder !== process.pid && alive(holder)) {
        throw new StoreError(
          'store-locked',
          `the data directory ${dir} is in use by process ${holder} (a running gateway?); ` +
            'stop it, or send key commands through its admin API',
        );
      }
      // Stale: move it aside atomically, then make sure what we moved was the stale lock
      // and not one another process took in the meantime.
      const aside = `${path}.stale.${process.pid}.${attempt}`;
      try {
        renameSync(path, aside);
      } catch {
        continue;
      }
      const moved = readPid(aside);
      if (moved !== holder) {
        try {
          linkSync(aside, path);
        } catch {
          // someone else holds it now; the next attempt reports them
        }
      }
      try {
        unlinkSync(aside);
      } catch {
        // ignore
      }
    }
    throw new StoreError('store-locked', `could not take the lock on ${dir} (contended)`);
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      // ignore
    }
  }
}
