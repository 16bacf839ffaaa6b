// The protocol's cryptography (PROTOCOL.md §5.2, §6) on WebCrypto, present in browsers (secure contexts:
// https, or http on localhost/127.0.0.1) and in Node 20+ as globalThis.crypto.
import { concatBytes, utf8 } from "./bytes.js";
import { encodeHeader, TAG_BYTES } from "./frames.js";

const INFO_PROOF = utf8.encode("ember/1 connect proof");
const INFO_FRAME_KEYS = utf8.encode("ember/1 frame keys");

function subtle(): SubtleCrypto {
  const s = globalThis.crypto?.subtle;
  if (s === undefined) {
    throw new Error("WebCrypto is not available (a browser offers crypto.subtle only on https or localhost)");
  }
  return s;
}

/** WebCrypto wants ArrayBuffer-backed views. */
function view(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes as Uint8Array<ArrayBuffer>;
}

export async function hkdfSha256(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Promise<Uint8Array> {
  const key = await subtle().importKey("raw", view(ikm), "HKDF", false, ["deriveBits"]);
  const bits = await subtle().deriveBits({ name: "HKDF", hash: "SHA-256", salt: view(salt), info: view(info) }, key, length * 8);
  return new Uint8Array(bits);
}

export async function aesKey(raw: Uint8Array): Promise<CryptoKey> {
  return subtle().importKey("raw", view(raw), { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);
}

export async function gcmSeal(key: CryptoKey, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
  const out = await subtle().encrypt({ name: "AES-GCM", iv: view(nonce), additionalData: view(aad), tagLength: 128 }, key, view(plaintext));
  return new Uint8Array(out);
}

/** Throws when the tag does not verify. */
export async function gcmOpen(key: CryptoKey, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
  const out = await subtle().decrypt({ name: "AES-GCM", iv: view(nonce), additionalData: view(aad), tagLength: 128 }, key, view(sealed));
  return new Uint8Array(out);
}

export interface SessionKeys {
  proofKey: Uint8Array;
  c2s: Uint8Array;
  s2c: Uint8Array;
}

export async function deriveSessionKeys(secret: Uint8Array, serverNonce: Uint8Array, clientNonce: Uint8Array): Promise<SessionKeys> {
  const salt = concatBytes(serverNonce, clientNonce);
  const proofKey = await hkdfSha256(secret, salt, INFO_PROOF, 32);
  const okm = await hkdfSha256(secret, salt, INFO_FRAME_KEYS, 64);
  return { proofKey, c2s: okm.slice(0, 32), s2c: okm.slice(32, 64) };
}

/** The proof: AES-256-GCM under proof_key, nonce 12 zero bytes, aad = the HELLO frame as received (§5.2). */
export async function sealProof(proofKey: Uint8Array, helloFrame: Uint8Array, plaintext: Uint8Array): Promise<Uint8Array> {
  return gcmSeal(await aesKey(proofKey), new Uint8Array(12), plaintext, helloFrame);
}

export function frameNonce(counter: bigint): Uint8Array {
  const nonce = new Uint8Array(12);
  new DataView(nonce.buffer).setBigUint64(4, counter);
  return nonce;
}

/** One direction's frame sealing (§6): its key and its counter. */
export class FrameSealer {
  private counter = 0n;
  private constructor(private readonly key: CryptoKey) {}

  static async create(rawKey: Uint8Array): Promise<FrameSealer> {
    return new FrameSealer(await aesKey(rawKey));
  }

  /** Takes the next counter synchronously, so frames sealed in call order use consecutive nonces. */
  seal(type: number, requestId: number, plaintext: Uint8Array): Promise<Uint8Array> {
    const nonce = frameNonce(this.counter++);
    const header = encodeHeader(type, true, requestId, plaintext.length + TAG_BYTES);
    return gcmSeal(this.key, nonce, plaintext, header).then((body) => concatBytes(header, body));
  }

  /** Opens the next frame received in this direction; the counter moves only when the frame opens. */
  async open(header: Uint8Array, body: Uint8Array): Promise<Uint8Array> {
    const nonce = frameNonce(this.counter);
    const plaintext = await gcmOpen(this.key, nonce, body, header);
    this.counter++;
    return plaintext;
  }
}
