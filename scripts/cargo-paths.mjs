// Where cargo put its builds, for the Node tests and benchmarks: asked of cargo itself
// (`cargo metadata`), so CARGO_TARGET_DIR or a cargo config's build.target-dir is honoured.
// scripts/lib.sh exports the answer as EDGETUNE_TARGET_DIR, which is used when set.
import { execFileSync } from 'node:child_process';
import path from 'node:path';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

let targetDir = process.env.EDGETUNE_TARGET_DIR || '';

export function cargoTargetDir() {
  if (!targetDir) {
    try {
      const meta = execFileSync('cargo', ['metadata', '--format-version', '1', '--no-deps'], { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20 });
      targetDir = JSON.parse(meta).target_directory;
    } catch (e) {
      throw new Error(`cannot ask cargo where it builds (is cargo installed? npm start sets it up): ${e.message}`);
    }
  }
  return targetDir;
}

/** The release `edgetune` CLI (built by scripts/models.sh, which npm start and npm test run). */
export function cliPath() {
  return path.join(cargoTargetDir(), 'release', 'edgetune');
}
