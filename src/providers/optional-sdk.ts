/**
 * Cloud SDKs are optional peer dependencies: a library user installs only the one their
 * configuration needs. These name the package to install instead of Node's
 * ERR_MODULE_NOT_FOUND from deep inside a provider or a minter.
 */

/** The package of `packages` whose import failed with `err`, if that is what failed. */
export function missingSdk(err: unknown, packages: readonly string[]): string | undefined {
  const e = err as NodeJS.ErrnoException | undefined
  return e?.code === 'ERR_MODULE_NOT_FOUND' ? packages.find((p) => e.message.includes(`'${p}'`)) : undefined
}

/** The message's tail: what to run. */
export function installHint(pkg: string): string {
  return `needs the package ${pkg}, which is not installed: npm install ${pkg}`
}
