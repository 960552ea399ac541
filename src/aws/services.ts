/**
 * Service names as users write them: the SigV4 signing name (`monitoring`) and the names they know
 * the service by (`cloudwatch`, boto3's client name; `CloudWatch`, its service id). `~svc` matches
 * either, and refuses a name no AWS service has, listing the close ones.
 */
import { operatorRegex } from "../core/filter.js";
import { SERVICE_ALIASES, SIGNING_NAMES } from "./service-names.js";
import { editDistance } from "../core/edit-distance.js";

const SIGNING = new Set(SIGNING_NAMES);

/** The signing name a service name or alias stands for ("cloudwatch" → "monitoring"), or null. */
export function signingNameOf(name: string): string | null {
  const lower = name.toLowerCase();
  if (SIGNING.has(lower)) return lower;
  return SERVICE_ALIASES[lower] ?? null;
}

let aliasesBySigning: Map<string, string[]> | null = null;

/** Every name a service is known by, its signing name first. */
export function namesOfService(signing: string): string[] {
  if (!aliasesBySigning) {
    aliasesBySigning = new Map();
    for (const [alias, sign] of Object.entries(SERVICE_ALIASES)) {
      const list = aliasesBySigning.get(sign);
      if (list) list.push(alias);
      else aliasesBySigning.set(sign, [alias]);
    }
  }
  return [signing, ...(aliasesBySigning.get(signing) ?? [])];
}

/** Known names closest to `name` (edit distance, then shared prefix), best first. */
export function closeServiceNames(name: string, limit = 5): string[] {
  const lower = name.toLowerCase();
  const scored: [string, number][] = [];
  for (const candidate of [...SIGNING_NAMES, ...Object.keys(SERVICE_ALIASES)]) {
    const d = nameDistance(lower, candidate);
    const related = candidate.startsWith(lower) || lower.startsWith(candidate);
    if (d <= Math.max(2, Math.floor(lower.length / 3)) || related) scored.push([candidate, related ? Math.min(d, 1.5) : d]);
  }
  return scored.sort((a, b) => a[1] - b[1] || a[0].localeCompare(b[0])).slice(0, limit).map(([n]) => n);
}

/** Names far apart in length are never close: skip the full distance for them. */
function nameDistance(a: string, b: string): number {
  return Math.abs(a.length - b.length) > 8 ? 99 : editDistance(a, b);
}

const PLAIN_NAME = /^[A-Za-z0-9-]+$/;

/**
 * The `~svc` test for a pattern. A plain name (letters, digits, dashes) that names a service, by
 * its signing name or another name, matches exactly that service; a plain name that names none
 * but is part of some (`dynamo`) searches as a regex; any other plain name is an error listing
 * the close ones. Patterns with regex syntax search the signing name and the other names.
 */
export function serviceNameMatcher(pattern: string): (service: string) => boolean {
  if (PLAIN_NAME.test(pattern)) {
    const signing = signingNameOf(pattern);
    if (signing) return (service) => service.toLowerCase() === signing;
    const re = operatorRegex(pattern);
    const partOfSome = SIGNING_NAMES.some((n) => re.test(n)) || Object.keys(SERVICE_ALIASES).some((n) => re.test(n));
    if (!partOfSome) {
      const close = closeServiceNames(pattern);
      throw new Error(`~svc ${pattern}: no AWS service is called that${close.length ? `; did you mean ${close.join(", ")}?` : ""} (services go by their SigV4 signing name or boto3 client name; for one newer than sluice's list, write a regex: ~svc '^${pattern}$')`);
    }
    return (service) => namesOfService(service.toLowerCase()).some((n) => re.test(n));
  }
  const re = operatorRegex(pattern);
  return (service) => namesOfService(service.toLowerCase()).some((n) => re.test(n));
}
