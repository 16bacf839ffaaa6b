// Reads the test vectors out of docs/PROTOCOL.md: every fenced block "```<kind> name=<name>" (hex or JSON).
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const protocolPath = join(here, "..", "..", "..", "docs", "PROTOCOL.md");

/** JSON with integers beyond 2^53 kept exact as BigInt (message ids in the inputs blocks). */
export function parseJsonExact(text) {
  const marked = text.replace(/([:\[,]\s*)(-?\d{16,})(?=\s*[,\]\}])/g, '$1"__bigint__$2"');
  return JSON.parse(marked, (_key, value) =>
    typeof value === "string" && value.startsWith("__bigint__") ? BigInt(value.slice(10)) : value,
  );
}

export function loadVectors() {
  const text = readFileSync(protocolPath, "utf8");
  const blocks = new Map();
  for (const match of text.matchAll(/```([\w-]+) name=(\w+)\n([\s\S]*?)```/g)) {
    const [, kind, name, body] = match;
    const key = `${kind}:${name}`;
    if (blocks.has(key)) throw new Error(`duplicate vector ${key}`);
    const trimmed = body.trim();
    blocks.set(key, { kind, name, text: trimmed, json: trimmed.startsWith("{") });
  }
  return blocks;
}
