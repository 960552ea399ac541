/**
 * Apache htpasswd files for `--proxyauth @FILE`: the hashes Apache's `htpasswd` writes today —
 * bcrypt (`-B`, `$2y$`), MD5 (`-m`, the default on Debian: `$apr1$`, and crypt's `$1$`) and SHA-1
 * (`-s`, `{SHA}`). mitmproxy reads bcrypt and SHA-1; apr1 is what most existing files hold.
 * Anything else (crypt DES, plain text, SHA-256/512 crypt) is refused when the file is read, with
 * the line, so no user is silently locked out or let in.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import bcrypt from "bcryptjs";

export type HashKind = "bcrypt" | "apr1" | "md5-crypt" | "sha1";

export class HtpasswdError extends Error {}

export class Htpasswd {
  private readonly users = new Map<string, { kind: HashKind; hash: string }>();

  constructor(content: string, where = "htpasswd") {
    const lines = content.split(/\r?\n/);
    lines.forEach((raw, i) => {
      const line = raw.trim();
      if (!line || line.startsWith("#")) return;
      const colon = line.indexOf(":");
      if (colon <= 0) throw new HtpasswdError(`${where} line ${i + 1}: expected user:hash`);
      const user = line.slice(0, colon);
      // Extra fields after the hash (as some tools write) are not part of it.
      const hash = line.slice(colon + 1).split(":", 1)[0]!;
      const kind = hashKind(hash);
      if (!kind) {
        throw new HtpasswdError(
          `${where} line ${i + 1}: user ${JSON.stringify(user)} has a password hash sluice cannot check (${describeHash(hash)}); ` +
            `sluice reads bcrypt ($2y$, htpasswd -B), MD5 ($apr1$, htpasswd -m) and SHA-1 ({SHA}, htpasswd -s): re-create it with htpasswd -B`,
        );
      }
      this.users.set(user, { kind, hash });
    });
  }

  static fromFile(path: string): Htpasswd {
    let content: string;
    try {
      content = readFileSync(path, "utf8");
    } catch (err) {
      throw new HtpasswdError(`cannot read htpasswd file ${path}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message}; make one with \`htpasswd -cB FILE USER\` or give --proxyauth USER:PASS`);
    }
    return new Htpasswd(content, path);
  }

  get size(): number {
    return this.users.size;
  }

  /** True when `password` is `user`'s; bcrypt is checked off the main thread's hot loop (async). */
  check(user: string, password: string): boolean | Promise<boolean> {
    const entry = this.users.get(user);
    if (!entry) return false;
    switch (entry.kind) {
      case "bcrypt":
        // bcryptjs compares in constant time; it hashes in slices so other traffic keeps moving.
        return bcrypt.compare(password, entry.hash).catch(() => false);
      case "apr1":
        return sameText(md5Crypt(password, saltOf(entry.hash, "$apr1$"), "$apr1$"), entry.hash);
      case "md5-crypt":
        return sameText(md5Crypt(password, saltOf(entry.hash, "$1$"), "$1$"), entry.hash);
      case "sha1":
        return sameText(`{SHA}${createHash("sha1").update(password, "utf8").digest("base64")}`, entry.hash);
    }
  }
}

function hashKind(hash: string): HashKind | null {
  if (/^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/.test(hash)) return "bcrypt";
  if (/^\$apr1\$[^$]{0,8}\$[./A-Za-z0-9]{22}$/.test(hash)) return "apr1";
  if (/^\$1\$[^$]{0,8}\$[./A-Za-z0-9]{22}$/.test(hash)) return "md5-crypt";
  if (/^\{SHA\}[A-Za-z0-9+/]{27}=$/.test(hash)) return "sha1";
  return null;
}

function describeHash(hash: string): string {
  if (/^\$5\$/.test(hash)) return "SHA-256 crypt, htpasswd -5";
  if (/^\$6\$/.test(hash)) return "SHA-512 crypt, htpasswd -2";
  if (/^\$2[aby]\$|^\$apr1\$|^\$1\$|^\{SHA\}/.test(hash)) return "a damaged hash";
  if (/^[./A-Za-z0-9]{13}$/.test(hash)) return "crypt DES, htpasswd -d";
  return "plain text or an unknown scheme";
}

function saltOf(hash: string, magic: string): string {
  return hash.slice(magic.length, hash.indexOf("$", magic.length));
}

/** Compares without revealing where two strings first differ. */
function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a, "utf8");
  const y = Buffer.from(b, "utf8");
  return x.length === y.length && timingSafeEqual(x, y);
}

const ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** Poul-Henning Kamp's MD5-crypt, which Apache's apr1 is with another magic string. */
export function md5Crypt(password: string, salt: string, magic: "$apr1$" | "$1$"): string {
  const pw = Buffer.from(password, "utf8");
  const s = Buffer.from(salt.slice(0, 8), "utf8");
  const md5 = (...parts: Buffer[]) => {
    const h = createHash("md5");
    for (const p of parts) h.update(p);
    return h.digest();
  };
  const alternate = md5(pw, s, pw);
  const ctx = createHash("md5");
  ctx.update(pw).update(magic).update(s);
  for (let left = pw.length; left > 0; left -= 16) ctx.update(alternate.subarray(0, Math.min(left, 16)));
  for (let i = pw.length; i; i >>= 1) ctx.update(i & 1 ? Buffer.from([0]) : pw.subarray(0, 1));
  let final = ctx.digest();
  // A thousand rounds, to make guessing slower (as in 1994).
  for (let i = 0; i < 1000; i++) {
    const parts: Buffer[] = [i & 1 ? pw : final];
    if (i % 3) parts.push(s);
    if (i % 7) parts.push(pw);
    parts.push(i & 1 ? final : pw);
    final = md5(...parts);
  }
  let out = "";
  const to64 = (v: number, n: number) => {
    for (let k = 0; k < n; k++, v >>= 6) out += ITOA64[v & 0x3f];
  };
  const f = final;
  to64((f[0]! << 16) | (f[6]! << 8) | f[12]!, 4);
  to64((f[1]! << 16) | (f[7]! << 8) | f[13]!, 4);
  to64((f[2]! << 16) | (f[8]! << 8) | f[14]!, 4);
  to64((f[3]! << 16) | (f[9]! << 8) | f[15]!, 4);
  to64((f[4]! << 16) | (f[10]! << 8) | f[5]!, 4);
  to64(f[11]!, 2);
  return `${magic}${salt.slice(0, 8)}$${out}`;
}
