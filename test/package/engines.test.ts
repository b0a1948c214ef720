// Every package the lockfile installs supports the oldest Node that package.json's `engines` allows, so
// `npm ci` on a supported Node installs without EBADENGINE warnings (a package wanting Node ≥ 22 is
// pinned or overridden in package.json until kvpack itself needs Node 22).
import { readFileSync } from 'node:fs';
import semver from 'semver';
import { describe, expect, it } from 'vitest';

const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { engines: { node: string } };
const lock = JSON.parse(readFileSync('package-lock.json', 'utf8')) as {
  packages: Record<string, { version?: string; engines?: { node?: string } | string[]; optional?: boolean }>;
};

describe('Node versions', () => {
  it('the running Node is one package.json supports', () => {
    expect(semver.satisfies(process.version, pkg.engines.node)).toBe(true);
  });

  it('every locked package supports the oldest Node that package.json allows', () => {
    const oldest = semver.minVersion(pkg.engines.node)!.version;
    const unsupported = Object.entries(lock.packages)
      .filter(([name]) => name !== '')
      .map(([name, p]) => ({ name, version: p.version, node: Array.isArray(p.engines) ? undefined : p.engines?.node }))
      .filter((p) => p.node !== undefined && !semver.satisfies(oldest, p.node))
      .map((p) => `${p.name.replace(/^.*node_modules\//, '')}@${p.version} wants Node ${p.node}`);
    expect(unsupported).toEqual([]);
  });
});
