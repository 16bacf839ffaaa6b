// Typed reads of decoded bodies. §3: nil is absent, unknown keys are ignored, a bool is not an integer, and an
// integer may arrive in any width (so as a JS number or, from a 64-bit width, a BigInt).

export class FieldError extends Error {
  override name = "FieldError";
}

export type Body = Record<string, unknown>;

export function isMap(value: unknown): value is Body {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

export function asMap(value: unknown, what: string): Body {
  if (!isMap(value)) throw new FieldError(`${what}: not a map`);
  return value;
}

function present(body: Body, key: string): unknown {
  const value = body[key];
  return value === null ? undefined : value;
}

/** An integer that fits a JS number (|n| ≤ 2^53 − 1): counters, codes, times, seqs, versions. */
export function intField(body: Body, key: string, fallback?: number, min = -Infinity, max = Infinity): number {
  const value = present(body, key);
  if (value === undefined) {
    if (fallback === undefined) throw new FieldError(`${key}: missing`);
    return fallback;
  }
  let n: number;
  if (typeof value === "bigint") {
    if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new FieldError(`${key}: beyond 2^53`);
    }
    n = Number(value);
  } else if (typeof value === "number" && Number.isInteger(value)) n = value;
  else throw new FieldError(`${key}: not an integer`);
  if (n < min || n > max) throw new FieldError(`${key}: out of range`);
  return n;
}

/** A 64-bit id (message ids are far above 2^53, §9.1): always a BigInt. */
export function idField(body: Body, key: string, fallback?: bigint): bigint {
  const value = present(body, key);
  if (value === undefined) {
    if (fallback === undefined) throw new FieldError(`${key}: missing`);
    return fallback;
  }
  if (typeof value === "bigint") return value;
  if (typeof value === "number" && Number.isInteger(value)) return BigInt(value);
  throw new FieldError(`${key}: not an integer`);
}

export function strField(body: Body, key: string, fallback?: string): string {
  const value = present(body, key);
  if (value === undefined) {
    if (fallback === undefined) throw new FieldError(`${key}: missing`);
    return fallback;
  }
  if (typeof value !== "string") throw new FieldError(`${key}: not a str`);
  return value;
}

export function binField(body: Body, key: string, length?: number): Uint8Array {
  const value = present(body, key);
  if (!(value instanceof Uint8Array)) throw new FieldError(`${key}: not a bin`);
  if (length !== undefined && value.length !== length) throw new FieldError(`${key}: not ${length} bytes`);
  return value;
}

export function boolField(body: Body, key: string, fallback?: boolean): boolean {
  const value = present(body, key);
  if (value === undefined) {
    if (fallback === undefined) throw new FieldError(`${key}: missing`);
    return fallback;
  }
  if (typeof value !== "boolean") throw new FieldError(`${key}: not a bool`);
  return value;
}

/** Integers anywhere in a decoded value as JS numbers where they fit, BigInt otherwise: for app-facing maps. */
export function toSafeIntegers(value: unknown): unknown {
  if (typeof value === "bigint") {
    return value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(value) : value;
  }
  if (Array.isArray(value)) return value.map(toSafeIntegers);
  if (isMap(value)) {
    const out: Body = {};
    for (const [key, item] of Object.entries(value)) out[key] = toSafeIntegers(item);
    return out;
  }
  return value;
}
