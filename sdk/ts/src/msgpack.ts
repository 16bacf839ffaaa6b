// MessagePack bodies (PROTOCOL.md §3) on top of @msgpack/msgpack, with the strictness the library does not
// have on its own:
// - validateBody() walks the raw bytes first and refuses what §3 refuses: non-str map keys at any depth,
//   extension types (the library would turn the timestamp extension into a Date), invalid UTF-8 (the library
//   would substitute U+FFFD), containers over 10 000 items, nesting over 1024, the never-used byte 0xc1, and
//   trailing bytes;
// - encodeBody() hands the library integers the way it must see them: with useBigInt64 it writes a JS number
//   outside the 32-bit ranges as a float64 (which the server refuses as "not an int"), so such numbers are
//   turned into BigInt first, and small BigInts back into numbers so the widths match the reference encoder's.
import { Decoder, Encoder } from "@msgpack/msgpack";
import { strictUtf8Decoder } from "./bytes.js";

export const MAX_CONTAINER_ITEMS = 10_000;
export const MAX_NESTING = 1024;

export class BodyError extends Error {
  override name = "BodyError";
}

const encoder = new Encoder({ useBigInt64: true, ignoreUndefined: true });
const decoder = new Decoder({
  useBigInt64: true,
  maxArrayLength: MAX_CONTAINER_ITEMS,
  maxMapLength: MAX_CONTAINER_ITEMS,
  mapKeyConverter: (key: unknown) => {
    if (typeof key !== "string") throw new BodyError("map key is not a str");
    return key;
  },
});

function normalizeForEncoding(value: unknown, depth = 0): unknown {
  if (depth > MAX_NESTING) throw new BodyError("value nested too deep to encode");
  if (typeof value === "number") {
    if (!Number.isInteger(value)) throw new BodyError("no field of protocol version 1 is a float");
    if (value >= -0x80000000 && value < 0x100000000) return value;
    if (!Number.isSafeInteger(value)) throw new BodyError("integer beyond 2^53: pass it as a BigInt");
    return BigInt(value);
  }
  if (typeof value === "bigint") {
    if (value < -(1n << 63n) || value >= 1n << 64n) throw new BodyError("integer outside 64 bits");
    if (value >= -0x80000000n && value < 0x100000000n) return Number(value);
    return value;
  }
  if (value instanceof Uint8Array || value === null || value === undefined) return value;
  if (Array.isArray(value)) return value.map((item) => normalizeForEncoding(item, depth + 1));
  if (typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
      if (item !== undefined) out[key] = normalizeForEncoding(item, depth + 1);
    }
    return out;
  }
  return value;
}

export function encodeBody(value: unknown): Uint8Array {
  return encoder.encode(normalizeForEncoding(value));
}

/** Decode exactly one strict MessagePack value (§3), or throw BodyError. */
export function decodeBody(bytes: Uint8Array): unknown {
  validateBody(bytes);
  try {
    return decoder.decode(bytes);
  } catch (error) {
    throw new BodyError(`invalid MessagePack: ${(error as Error).message}`);
  }
}

/** Walk one MessagePack value in `bytes` without building it; throw BodyError on anything §3 refuses. */
export function validateBody(bytes: Uint8Array): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  // Each open container: how many items (map: keys and values counted separately) are still to come, and
  // whether it is a map (so that every even item is a key).
  const stack: { remaining: number; isMap: boolean; index: number }[] = [];
  const need = (count: number) => {
    if (pos + count > bytes.length) throw new BodyError("truncated MessagePack");
  };
  const readLength = (width: number): number => {
    need(width);
    const n = width === 1 ? view.getUint8(pos) : width === 2 ? view.getUint16(pos) : view.getUint32(pos);
    pos += width;
    return n;
  };
  const checkString = (length: number) => {
    need(length);
    try {
      strictUtf8Decoder.decode(bytes.subarray(pos, pos + length));
    } catch {
      throw new BodyError("invalid UTF-8 in a str");
    }
    pos += length;
  };
  const open = (items: number, isMap: boolean) => {
    if (items > MAX_CONTAINER_ITEMS) throw new BodyError("container of more than 10000 items");
    if (stack.length + 1 > MAX_NESTING) throw new BodyError("nested deeper than 1024");
    if (items > 0) stack.push({ remaining: isMap ? items * 2 : items, isMap, index: 0 });
  };
  // A finished container is popped lazily, just before the next item is read, so that while an item is being
  // read every container on the stack is one of its ancestors and stack.length is its depth.
  let first = true;
  for (;;) {
    while (stack.length > 0 && stack[stack.length - 1]!.remaining === 0) stack.pop();
    if (!first && stack.length === 0) break;
    first = false;
    const top = stack[stack.length - 1];
    const isKey = top !== undefined && top.isMap && top.index % 2 === 0;
    if (top !== undefined) {
      top.index++;
      top.remaining--;
    }
    need(1);
    const head = view.getUint8(pos++);
    const isStr = (head >= 0xa0 && head <= 0xbf) || head === 0xd9 || head === 0xda || head === 0xdb;
    if (isKey && !isStr) throw new BodyError("map key is not a str");
    if (head <= 0x7f || head >= 0xe0 || head === 0xc0 || head === 0xc2 || head === 0xc3) continue;
    if (head >= 0x80 && head <= 0x8f) open(head & 0x0f, true);
    else if (head >= 0x90 && head <= 0x9f) open(head & 0x0f, false);
    else if (head >= 0xa0 && head <= 0xbf) checkString(head & 0x1f);
    else if (head === 0xd9) checkString(readLength(1));
    else if (head === 0xda) checkString(readLength(2));
    else if (head === 0xdb) checkString(readLength(4));
    else if (head === 0xc4 || head === 0xc5 || head === 0xc6) {
      const length = readLength(head === 0xc4 ? 1 : head === 0xc5 ? 2 : 4);
      need(length);
      pos += length;
    } else if (head === 0xca || head === 0xcb) {
      need(head === 0xca ? 4 : 8);
      pos += head === 0xca ? 4 : 8;
    } else if (head >= 0xcc && head <= 0xd3) {
      const width = [1, 2, 4, 8][(head - 0xcc) % 4]!;
      need(width);
      pos += width;
    } else if (head === 0xdc) open(readLength(2), false);
    else if (head === 0xdd) open(readLength(4), false);
    else if (head === 0xde) open(readLength(2), true);
    else if (head === 0xdf) open(readLength(4), true);
    else if ((head >= 0xc7 && head <= 0xc9) || (head >= 0xd4 && head <= 0xd8)) {
      throw new BodyError("extension types are refused");
    } else throw new BodyError(`invalid MessagePack byte 0x${head.toString(16)}`);
  }
  if (pos !== bytes.length) throw new BodyError("trailing bytes after the MessagePack value");
}
