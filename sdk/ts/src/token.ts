// Tokens (PROTOCOL.md §4): "em1." ‖ base64url_nopad(msgpack([user_id, client_id, platform, secret, credential])).
import { base64urlDecodeStrict } from "./bytes.js";
import { decodeBody } from "./msgpack.js";

export interface Token {
  userId: string;
  clientId: string;
  platform: number;
  /** The session secret. Never sent, never logged. */
  secret: Uint8Array;
  /** Opaque to the client: copied byte for byte into the proof. */
  credential: Uint8Array;
}

export class TokenError extends Error {
  override name = "TokenError";
}

const PRINTABLE = /^[^\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}]*$/u;

/** Printable per §1 (Python's str.isprintable(): no Cc, Cf, Cs, Co, Cn, Zl, Zp, and no Zs but U+0020). */
export function isPrintable(text: string): boolean {
  if (!PRINTABLE.test(text)) return false;
  for (const char of text) if (/\p{Zs}/u.test(char) && char !== " ") return false;
  return true;
}

function checkId(value: unknown, what: string): string {
  if (typeof value !== "string") throw new TokenError(`${what} is not a str`);
  const length = [...value].length;
  if (length < 1 || length > 64 || !isPrintable(value)) throw new TokenError(`${what} is not 1-64 printable characters`);
  return value;
}

export function parseToken(text: string): Token {
  if (typeof text !== "string" || text.length > 1024) throw new TokenError("a token is a string of at most 1024 characters");
  if (!text.startsWith("em1.")) throw new TokenError('a token starts with "em1."');
  let items: unknown;
  try {
    items = decodeBody(base64urlDecodeStrict(text.slice(4)));
  } catch (error) {
    throw new TokenError(`malformed token: ${(error as Error).message}`);
  }
  if (!Array.isArray(items) || items.length !== 5) throw new TokenError("the token body is not an array of five items");
  const [userId, clientId, platform, secret, credential] = items as unknown[];
  const platformNumber = typeof platform === "bigint" ? Number(platform) : platform;
  if (typeof platformNumber !== "number" || !Number.isInteger(platformNumber) || platformNumber < 0 || platformNumber > 255) {
    throw new TokenError("platform is not an integer 0-255");
  }
  if (!(secret instanceof Uint8Array) || secret.length !== 32) throw new TokenError("secret is not 32 bytes of bin");
  if (!(credential instanceof Uint8Array) || credential.length < 28 || credential.length > 512) {
    throw new TokenError("credential is not 28-512 bytes of bin");
  }
  return {
    userId: checkId(userId, "user_id"),
    clientId: checkId(clientId, "client_id"),
    platform: platformNumber,
    secret,
    credential,
  };
}
