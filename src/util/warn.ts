const given = new Set<string>();

/**
 * A warning on stderr, once per process for each `topic`: a library caller running many sequences
 * hears about a problem once, not per sequence.
 */
export function warnOnce(topic: string, message: string): void {
  if (given.has(topic)) return;
  given.add(topic);
  process.stderr.write(`kvpack: warning: ${message}\n`);
}
