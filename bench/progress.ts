/** Progress lines for long benchmarks, on stderr so the tables on stdout stay clean. */
export function progress(message: string): void {
  process.stderr.write(`  … ${message}\n`);
}
