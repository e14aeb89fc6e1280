/**
 * Loads a module other engineers are still writing, if it is part of this build. Used only by the composition
 * root while the doors and providers land; each use is replaced by a static import once the module exists.
 */
export async function optionalModule<T>(specifierFromDaemon: string): Promise<T | undefined> {
  try {
    return (await import(specifierFromDaemon)) as T;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const file = specifierFromDaemon.replace(/^(\.\.\/)+/, '');
    if (e.code === 'ERR_MODULE_NOT_FOUND' && String(e.message).includes(file)) return undefined;
    throw err;
  }
}
