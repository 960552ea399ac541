/**
 * An ordered, case-preserving header list with case-insensitive lookup.
 *
 * Stored flat (`[name0, value0, name1, value1, …]`) because that is exactly the shape Node's
 * parsers hand us (`rawHeaders`), so building a flow costs no copying on the hot path.
 */
export class Headers implements Iterable<[string, string]> {
  /** Flat list: even indexes are names, odd indexes values. Mutate through the methods. */
  readonly raw: string[];

  constructor(raw: string[] | Iterable<[string, string]> | Record<string, string | string[]> = []) {
    if (Array.isArray(raw) && (raw.length === 0 || typeof raw[0] === "string")) {
      this.raw = raw as string[];
    } else if (typeof (raw as Iterable<[string, string]>)[Symbol.iterator] === "function") {
      this.raw = [];
      for (const [name, value] of raw as Iterable<[string, string]>) this.raw.push(name, value);
    } else {
      this.raw = [];
      for (const [name, value] of Object.entries(raw as Record<string, string | string[]>)) {
        if (Array.isArray(value)) for (const v of value) this.raw.push(name, v);
        else this.raw.push(name, value);
      }
    }
  }

  get length(): number {
    return this.raw.length >> 1;
  }

  /** First value of `name`, or undefined. Use `getAll` for repeated headers. */
  get(name: string): string | undefined {
    const raw = this.raw;
    const len = name.length;
    for (let i = 0; i < raw.length; i += 2) {
      const n = raw[i]!;
      if (n.length === len && (n === name || n.toLowerCase() === name.toLowerCase())) return raw[i + 1];
    }
    return undefined;
  }

  getAll(name: string): string[] {
    const lower = name.toLowerCase();
    const out: string[] = [];
    for (let i = 0; i < this.raw.length; i += 2) if (this.raw[i]!.toLowerCase() === lower) out.push(this.raw[i + 1]!);
    return out;
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  /** Replaces every `name` header by one with `value`, keeping the position of the first. */
  set(name: string, value: string): this {
    const lower = name.toLowerCase();
    let seen = false;
    for (let i = 0; i < this.raw.length; ) {
      if (this.raw[i]!.toLowerCase() === lower) {
        if (!seen) {
          this.raw[i + 1] = value;
          seen = true;
          i += 2;
        } else {
          this.raw.splice(i, 2);
        }
      } else i += 2;
    }
    if (!seen) this.raw.push(name, value);
    return this;
  }

  add(name: string, value: string): this {
    this.raw.push(name, value);
    return this;
  }

  delete(name: string): boolean {
    const lower = name.toLowerCase();
    let removed = false;
    for (let i = 0; i < this.raw.length; ) {
      if (this.raw[i]!.toLowerCase() === lower) {
        this.raw.splice(i, 2);
        removed = true;
      } else i += 2;
    }
    return removed;
  }

  *[Symbol.iterator](): Iterator<[string, string]> {
    for (let i = 0; i < this.raw.length; i += 2) yield [this.raw[i]!, this.raw[i + 1]!];
  }

  /** `name: value` lines joined by "\n", the text `~h` filters search. */
  toText(): string {
    let s = "";
    for (let i = 0; i < this.raw.length; i += 2) s += (i ? "\n" : "") + this.raw[i] + ": " + this.raw[i + 1];
    return s;
  }

  clone(): Headers {
    return new Headers(this.raw.slice());
  }

  toJSON(): [string, string][] {
    return [...this];
  }
}
