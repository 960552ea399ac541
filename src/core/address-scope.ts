/**
 * Where an IP address belongs — loopback, private, global — judged exactly as Python's `ipaddress`
 * module (CPython 3.13, IANA's special-purpose registries) judges it, because mitmproxy's
 * block_global / block_private use `is_loopback`, `is_private` and `is_global` from it. Pure
 * string arithmetic: no sockets, no DNS.
 */

export interface AddressScope {
  /** 127.0.0.0/8 or ::1. */
  loopback: boolean;
  /** In one of IANA's "not globally reachable" ranges (Python's is_private). */
  private: boolean;
  /** Globally reachable (Python's is_global): neither private nor 100.64.0.0/10 (shared, carrier-grade NAT). */
  global: boolean;
}

type Range = readonly [network: bigint, prefix: number];

/** Python's IPv4 _private_networks. */
const V4_PRIVATE = v4Ranges(["0.0.0.0/8", "10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24", "192.0.0.170/31", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4", "255.255.255.255/32"]);
/** Inside 192.0.0.0/24 but globally reachable (PCP and TURN anycast). */
const V4_PRIVATE_EXCEPTIONS = v4Ranges(["192.0.0.9/32", "192.0.0.10/32"]);
/** Shared address space (RFC 6598): neither private nor global. */
const V4_SHARED = v4Ranges(["100.64.0.0/10"]);
const V4_LOOPBACK = v4Ranges(["127.0.0.0/8"]);

/** Python's IPv6 _private_networks. */
const V6_PRIVATE = v6Ranges(["::1/128", "::/128", "::ffff:0:0/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32", "2002::/16", "3fff::/20", "fc00::/7", "fe80::/10"]);
const V6_PRIVATE_EXCEPTIONS = v6Ranges(["2001:1::1/128", "2001:1::2/128", "2001:3::/32", "2001:4:112::/48", "2001:20::/28", "2001:30::/28"]);

/**
 * The scope of `address` (a peer address as Node reports it: IPv4, IPv6, IPv4-mapped IPv6, or an
 * IPv6 address with a %zone); null when it is not an IP address. An IPv4-mapped IPv6 address is
 * judged as the IPv4 address it carries, as mitmproxy's block addon does.
 */
export function addressScope(address: string): AddressScope | null {
  const bare = address.replace(/^\[|\]$/g, "").split("%", 1)[0]!;
  const v4 = parseIPv4(bare);
  if (v4 !== null) return v4Scope(v4);
  const v6 = parseIPv6(bare);
  if (v6 === null) return null;
  if (v6 >> 32n === 0xffffn) return v4Scope(v6 & 0xffffffffn);
  const isPrivate = inAny(v6, 128, V6_PRIVATE) && !inAny(v6, 128, V6_PRIVATE_EXCEPTIONS);
  return { loopback: v6 === 1n, private: isPrivate, global: !isPrivate };
}

/** True for 127.0.0.0/8, ::1 and "localhost": a listener there can be reached from this machine only. */
export function isLoopbackHost(host: string): boolean {
  if (host.toLowerCase() === "localhost") return true;
  return addressScope(host)?.loopback ?? false;
}

/** The address's bytes in network order (4 for IPv4, 16 for IPv6), as an X.509 iPAddress holds them; null when not an IP address. */
export function ipAddressBytes(address: string): Buffer | null {
  const v4 = parseIPv4(address);
  const v6 = v4 === null ? parseIPv6(address) : null;
  const [n, size] = v4 !== null ? [v4, 4] : v6 !== null ? [v6, 16] : [null, 0];
  if (n === null) return null;
  const bytes = Buffer.alloc(size);
  for (let i = size - 1, rest = n; i >= 0; i--, rest >>= 8n) bytes[i] = Number(rest & 0xffn);
  return bytes;
}

function v4Scope(n: bigint): AddressScope {
  const isPrivate = inAny(n, 32, V4_PRIVATE) && !inAny(n, 32, V4_PRIVATE_EXCEPTIONS);
  return { loopback: inAny(n, 32, V4_LOOPBACK), private: isPrivate, global: !isPrivate && !inAny(n, 32, V4_SHARED) };
}

function inAny(n: bigint, bits: number, ranges: readonly Range[]): boolean {
  for (const [network, prefix] of ranges) {
    const shift = BigInt(bits - prefix);
    if (n >> shift === network >> shift) return true;
  }
  return false;
}

function parseIPv4(s: string): bigint | null {
  const parts = s.split(".");
  if (parts.length !== 4) return null;
  let n = 0n;
  for (const p of parts) {
    // Python refuses leading zeros (ambiguous octal); so does this.
    if (!/^(0|[1-9]\d{0,2})$/.test(p) || Number(p) > 255) return null;
    n = (n << 8n) | BigInt(p);
  }
  return n;
}

function parseIPv6(s: string): bigint | null {
  if (!s.includes(":")) return null;
  let text = s;
  // An IPv4 tail (::ffff:1.2.3.4) is two groups.
  const lastColon = text.lastIndexOf(":");
  const tail = text.slice(lastColon + 1);
  if (tail.includes(".")) {
    const v4 = parseIPv4(tail);
    if (v4 === null) return null;
    text = `${text.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const groupsOf = (h: string) => (h === "" ? [] : h.split(":"));
  const head = groupsOf(halves[0]!);
  const rest = halves.length === 2 ? groupsOf(halves[1]!) : [];
  const missing = 8 - head.length - rest.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...rest];
  let n = 0n;
  for (const g of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
    n = (n << 16n) | BigInt(parseInt(g, 16));
  }
  return n;
}

function v4Ranges(list: string[]): Range[] {
  return list.map((cidr) => {
    const [ip, prefix] = cidr.split("/");
    return [parseIPv4(ip!)!, Number(prefix)] as const;
  });
}

function v6Ranges(list: string[]): Range[] {
  return list.map((cidr) => {
    const [ip, prefix] = cidr.split("/");
    return [parseIPv6(ip!)!, Number(prefix)] as const;
  });
}
