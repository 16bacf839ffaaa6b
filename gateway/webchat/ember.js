// The TypeScript SDK (sdk/ts/src) as one ES module, built by esbuild (npm run build). Do not edit: gateway/webchat/ember.js is this file, copied by npm run build:webchat.

// src/bytes.ts
function concatBytes(...parts) {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
function bytesEqual(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
function toHex(bytes) {
  let out = "";
  for (const byte of bytes) out += byte.toString(16).padStart(2, "0");
  return out;
}
function fromHex(hex) {
  const clean = hex.replace(/\s+/g, "");
  if (clean.length % 2 !== 0 || /[^0-9a-fA-F]/.test(clean)) throw new Error("not hex");
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}
var utf8 = new TextEncoder();
var strictUtf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
function randomBytes(length) {
  const out = new Uint8Array(length);
  globalThis.crypto.getRandomValues(out);
  return out;
}
var BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
function base64urlEncode(bytes) {
  let out = "";
  let i = 0;
  for (; i + 3 <= bytes.length; i += 3) {
    const n = bytes[i] << 16 | bytes[i + 1] << 8 | bytes[i + 2];
    out += BASE64URL[n >> 18] + BASE64URL[n >> 12 & 63] + BASE64URL[n >> 6 & 63] + BASE64URL[n & 63];
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i] << 16;
    out += BASE64URL[n >> 18] + BASE64URL[n >> 12 & 63];
  } else if (rest === 2) {
    const n = bytes[i] << 16 | bytes[i + 1] << 8;
    out += BASE64URL[n >> 18] + BASE64URL[n >> 12 & 63] + BASE64URL[n >> 6 & 63];
  }
  return out;
}
function base64urlDecodeStrict(text) {
  if (text.length % 4 === 1) throw new Error("base64url: impossible length");
  const values = [];
  for (const char of text) {
    const value = BASE64URL.indexOf(char);
    if (value < 0) throw new Error("base64url: character outside the alphabet");
    values.push(value);
  }
  const out = new Uint8Array(Math.floor(values.length * 6 / 8));
  let bits = 0;
  let acc = 0;
  let o = 0;
  for (const value of values) {
    acc = acc << 6 | value;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = acc >> bits & 255;
    }
    acc &= (1 << bits) - 1;
  }
  if (base64urlEncode(out) !== text) throw new Error("base64url: non-canonical spelling");
  return out;
}

// src/frames.ts
var MAGIC0 = 69;
var MAGIC1 = 77;
var VERSION = 1;
var HEADER_BYTES = 14;
var TAG_BYTES = 16;
var FLAG_ENCRYPTED = 1;
var DEFAULT_MAX_FRAME_BYTES = 262144;
var FrameType = {
  HELLO: 1,
  CONNECT: 2,
  CONNACK: 3,
  REQUEST: 4,
  RESPONSE: 5,
  NOTIFY: 6,
  PING: 7,
  PONG: 8,
  DISCONNECT: 9,
  ERROR: 10
};
var ProtocolViolation = class extends Error {
  name = "ProtocolViolation";
};
function encodeHeader(type, encrypted, requestId, length) {
  const header = new Uint8Array(HEADER_BYTES);
  const view2 = new DataView(header.buffer);
  header[0] = MAGIC0;
  header[1] = MAGIC1;
  header[2] = VERSION;
  header[3] = type;
  header[4] = encrypted ? FLAG_ENCRYPTED : 0;
  header[5] = 0;
  view2.setUint32(6, requestId >>> 0);
  view2.setUint32(10, length >>> 0);
  return header;
}
function checkHeader(header, maxFrameBytes) {
  const view2 = new DataView(header.buffer, header.byteOffset, HEADER_BYTES);
  if (header[0] !== MAGIC0 || header[1] !== MAGIC1) throw new ProtocolViolation("bad magic");
  if (header[2] !== VERSION) throw new ProtocolViolation("unsupported version");
  const type = header[3];
  if (type < FrameType.HELLO || type > FrameType.ERROR) throw new ProtocolViolation("unknown frame type");
  const flags = header[4];
  if ((flags & ~FLAG_ENCRYPTED) !== 0) throw new ProtocolViolation("unknown flag bit");
  if (header[5] !== 0) throw new ProtocolViolation("reserved byte not zero");
  const length = view2.getUint32(10);
  if (length > maxFrameBytes) throw new ProtocolViolation("frame longer than the limit");
  return { type, encrypted: (flags & FLAG_ENCRYPTED) !== 0, requestId: view2.getUint32(6), length };
}
var FrameReader = class {
  constructor(maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {
    this.maxFrameBytes = maxFrameBytes;
  }
  maxFrameBytes;
  buffer = new Uint8Array(0);
  /** True when no partial frame is held (a WebSocket message must end on a frame boundary). */
  get empty() {
    return this.buffer.length === 0;
  }
  feed(chunk) {
    if (this.buffer.length === 0) this.buffer = chunk.slice();
    else {
      const joined = new Uint8Array(this.buffer.length + chunk.length);
      joined.set(this.buffer);
      joined.set(chunk, this.buffer.length);
      this.buffer = joined;
    }
    const frames = [];
    for (; ; ) {
      if (this.buffer.length >= 1 && this.buffer[0] !== MAGIC0) throw new ProtocolViolation("bad magic");
      if (this.buffer.length >= 2 && this.buffer[1] !== MAGIC1) throw new ProtocolViolation("bad magic");
      if (this.buffer.length < HEADER_BYTES) break;
      const header = this.buffer.subarray(0, HEADER_BYTES);
      const { type, encrypted, requestId, length } = checkHeader(header, this.maxFrameBytes);
      if (this.buffer.length < HEADER_BYTES + length) break;
      const raw = this.buffer.slice(0, HEADER_BYTES + length);
      frames.push({
        type,
        encrypted,
        requestId,
        header: raw.subarray(0, HEADER_BYTES),
        body: raw.subarray(HEADER_BYTES),
        raw
      });
      this.buffer = this.buffer.slice(HEADER_BYTES + length);
    }
    return frames;
  }
};

// src/crypto.ts
var INFO_PROOF = utf8.encode("ember/1 connect proof");
var INFO_FRAME_KEYS = utf8.encode("ember/1 frame keys");
function subtle() {
  const s = globalThis.crypto?.subtle;
  if (s === void 0) {
    throw new Error("WebCrypto is not available (a browser offers crypto.subtle only on https or localhost)");
  }
  return s;
}
function view(bytes) {
  return bytes;
}
async function hkdfSha256(ikm, salt, info, length) {
  const key = await subtle().importKey("raw", view(ikm), "HKDF", false, ["deriveBits"]);
  const bits = await subtle().deriveBits({ name: "HKDF", hash: "SHA-256", salt: view(salt), info: view(info) }, key, length * 8);
  return new Uint8Array(bits);
}
async function aesKey(raw) {
  return subtle().importKey("raw", view(raw), { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);
}
async function gcmSeal(key, nonce, plaintext, aad) {
  const out = await subtle().encrypt({ name: "AES-GCM", iv: view(nonce), additionalData: view(aad), tagLength: 128 }, key, view(plaintext));
  return new Uint8Array(out);
}
async function gcmOpen(key, nonce, sealed, aad) {
  const out = await subtle().decrypt({ name: "AES-GCM", iv: view(nonce), additionalData: view(aad), tagLength: 128 }, key, view(sealed));
  return new Uint8Array(out);
}
async function deriveSessionKeys(secret, serverNonce, clientNonce) {
  const salt = concatBytes(serverNonce, clientNonce);
  const proofKey = await hkdfSha256(secret, salt, INFO_PROOF, 32);
  const okm = await hkdfSha256(secret, salt, INFO_FRAME_KEYS, 64);
  return { proofKey, c2s: okm.slice(0, 32), s2c: okm.slice(32, 64) };
}
async function sealProof(proofKey, helloFrame, plaintext) {
  return gcmSeal(await aesKey(proofKey), new Uint8Array(12), plaintext, helloFrame);
}
function frameNonce(counter) {
  const nonce = new Uint8Array(12);
  new DataView(nonce.buffer).setBigUint64(4, counter);
  return nonce;
}
var FrameSealer = class _FrameSealer {
  constructor(key) {
    this.key = key;
  }
  key;
  counter = 0n;
  static async create(rawKey) {
    return new _FrameSealer(await aesKey(rawKey));
  }
  /** Takes the next counter synchronously, so frames sealed in call order use consecutive nonces. */
  seal(type, requestId, plaintext) {
    const nonce = frameNonce(this.counter++);
    const header = encodeHeader(type, true, requestId, plaintext.length + TAG_BYTES);
    return gcmSeal(this.key, nonce, plaintext, header).then((body) => concatBytes(header, body));
  }
  /** Opens the next frame received in this direction; the counter moves only when the frame opens. */
  async open(header, body) {
    const nonce = frameNonce(this.counter);
    const plaintext = await gcmOpen(this.key, nonce, body, header);
    this.counter++;
    return plaintext;
  }
};

// src/fields.ts
var FieldError = class extends Error {
  name = "FieldError";
};
function isMap(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}
function asMap(value, what) {
  if (!isMap(value)) throw new FieldError(`${what}: not a map`);
  return value;
}
function present(body, key) {
  const value = body[key];
  return value === null ? void 0 : value;
}
function intField(body, key, fallback, min = -Infinity, max = Infinity) {
  const value = present(body, key);
  if (value === void 0) {
    if (fallback === void 0) throw new FieldError(`${key}: missing`);
    return fallback;
  }
  let n;
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
function idField(body, key, fallback) {
  const value = present(body, key);
  if (value === void 0) {
    if (fallback === void 0) throw new FieldError(`${key}: missing`);
    return fallback;
  }
  if (typeof value === "bigint") return value;
  if (typeof value === "number" && Number.isInteger(value)) return BigInt(value);
  throw new FieldError(`${key}: not an integer`);
}
function strField(body, key, fallback) {
  const value = present(body, key);
  if (value === void 0) {
    if (fallback === void 0) throw new FieldError(`${key}: missing`);
    return fallback;
  }
  if (typeof value !== "string") throw new FieldError(`${key}: not a str`);
  return value;
}
function binField(body, key, length) {
  const value = present(body, key);
  if (!(value instanceof Uint8Array)) throw new FieldError(`${key}: not a bin`);
  if (length !== void 0 && value.length !== length) throw new FieldError(`${key}: not ${length} bytes`);
  return value;
}
function boolField(body, key, fallback) {
  const value = present(body, key);
  if (value === void 0) {
    if (fallback === void 0) throw new FieldError(`${key}: missing`);
    return fallback;
  }
  if (typeof value !== "boolean") throw new FieldError(`${key}: not a bool`);
  return value;
}
function toSafeIntegers(value) {
  if (typeof value === "bigint") {
    return value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(value) : value;
  }
  if (Array.isArray(value)) return value.map(toSafeIntegers);
  if (isMap(value)) {
    const out = {};
    for (const [key, item] of Object.entries(value)) out[key] = toSafeIntegers(item);
    return out;
  }
  return value;
}

// node_modules/@msgpack/msgpack/dist.esm/utils/utf8.mjs
function utf8Count(str) {
  const strLength = str.length;
  let byteLength = 0;
  let pos = 0;
  while (pos < strLength) {
    let value = str.charCodeAt(pos++);
    if ((value & 4294967168) === 0) {
      byteLength++;
      continue;
    } else if ((value & 4294965248) === 0) {
      byteLength += 2;
    } else {
      if (value >= 55296 && value <= 56319) {
        if (pos < strLength) {
          const extra = str.charCodeAt(pos);
          if ((extra & 64512) === 56320) {
            ++pos;
            value = ((value & 1023) << 10) + (extra & 1023) + 65536;
          }
        }
      }
      if ((value & 4294901760) === 0) {
        byteLength += 3;
      } else {
        byteLength += 4;
      }
    }
  }
  return byteLength;
}
function utf8EncodeJs(str, output, outputOffset) {
  const strLength = str.length;
  let offset = outputOffset;
  let pos = 0;
  while (pos < strLength) {
    let value = str.charCodeAt(pos++);
    if ((value & 4294967168) === 0) {
      output[offset++] = value;
      continue;
    } else if ((value & 4294965248) === 0) {
      output[offset++] = value >> 6 & 31 | 192;
    } else {
      if (value >= 55296 && value <= 56319) {
        if (pos < strLength) {
          const extra = str.charCodeAt(pos);
          if ((extra & 64512) === 56320) {
            ++pos;
            value = ((value & 1023) << 10) + (extra & 1023) + 65536;
          }
        }
      }
      if ((value & 4294901760) === 0) {
        output[offset++] = value >> 12 & 15 | 224;
        output[offset++] = value >> 6 & 63 | 128;
      } else {
        output[offset++] = value >> 18 & 7 | 240;
        output[offset++] = value >> 12 & 63 | 128;
        output[offset++] = value >> 6 & 63 | 128;
      }
    }
    output[offset++] = value & 63 | 128;
  }
}
var sharedTextEncoder = new TextEncoder();
var TEXT_ENCODER_THRESHOLD = 50;
function utf8EncodeTE(str, output, outputOffset) {
  sharedTextEncoder.encodeInto(str, output.subarray(outputOffset));
}
function utf8Encode(str, output, outputOffset) {
  if (str.length > TEXT_ENCODER_THRESHOLD) {
    utf8EncodeTE(str, output, outputOffset);
  } else {
    utf8EncodeJs(str, output, outputOffset);
  }
}
var CHUNK_SIZE = 4096;
function utf8DecodeJs(bytes, inputOffset, byteLength) {
  let offset = inputOffset;
  const end = offset + byteLength;
  const units = [];
  let result = "";
  while (offset < end) {
    const byte1 = bytes[offset++];
    if ((byte1 & 128) === 0) {
      units.push(byte1);
    } else if ((byte1 & 224) === 192) {
      const byte2 = bytes[offset++] & 63;
      units.push((byte1 & 31) << 6 | byte2);
    } else if ((byte1 & 240) === 224) {
      const byte2 = bytes[offset++] & 63;
      const byte3 = bytes[offset++] & 63;
      units.push((byte1 & 31) << 12 | byte2 << 6 | byte3);
    } else if ((byte1 & 248) === 240) {
      const byte2 = bytes[offset++] & 63;
      const byte3 = bytes[offset++] & 63;
      const byte4 = bytes[offset++] & 63;
      let unit = (byte1 & 7) << 18 | byte2 << 12 | byte3 << 6 | byte4;
      if (unit > 65535) {
        unit -= 65536;
        units.push(unit >>> 10 & 1023 | 55296);
        unit = 56320 | unit & 1023;
      }
      units.push(unit);
    } else {
      units.push(byte1);
    }
    if (units.length >= CHUNK_SIZE) {
      result += String.fromCharCode(...units);
      units.length = 0;
    }
  }
  if (units.length > 0) {
    result += String.fromCharCode(...units);
  }
  return result;
}
var sharedTextDecoder = new TextDecoder();
var TEXT_DECODER_THRESHOLD = 200;
function utf8DecodeTD(bytes, inputOffset, byteLength) {
  const stringBytes = bytes.subarray(inputOffset, inputOffset + byteLength);
  return sharedTextDecoder.decode(stringBytes);
}
function utf8Decode(bytes, inputOffset, byteLength) {
  if (byteLength > TEXT_DECODER_THRESHOLD) {
    return utf8DecodeTD(bytes, inputOffset, byteLength);
  } else {
    return utf8DecodeJs(bytes, inputOffset, byteLength);
  }
}

// node_modules/@msgpack/msgpack/dist.esm/ExtData.mjs
var ExtData = class {
  type;
  data;
  constructor(type, data) {
    this.type = type;
    this.data = data;
  }
};

// node_modules/@msgpack/msgpack/dist.esm/DecodeError.mjs
var DecodeError = class _DecodeError extends Error {
  constructor(message) {
    super(message);
    const proto = Object.create(_DecodeError.prototype);
    Object.setPrototypeOf(this, proto);
    Object.defineProperty(this, "name", {
      configurable: true,
      enumerable: false,
      value: _DecodeError.name
    });
  }
};

// node_modules/@msgpack/msgpack/dist.esm/utils/int.mjs
var UINT32_MAX = 4294967295;
function setUint64(view2, offset, value) {
  const high = value / 4294967296;
  const low = value;
  view2.setUint32(offset, high);
  view2.setUint32(offset + 4, low);
}
function setInt64(view2, offset, value) {
  const high = Math.floor(value / 4294967296);
  const low = value;
  view2.setUint32(offset, high);
  view2.setUint32(offset + 4, low);
}
function getInt64(view2, offset) {
  const high = view2.getInt32(offset);
  const low = view2.getUint32(offset + 4);
  return high * 4294967296 + low;
}
function getUint64(view2, offset) {
  const high = view2.getUint32(offset);
  const low = view2.getUint32(offset + 4);
  return high * 4294967296 + low;
}

// node_modules/@msgpack/msgpack/dist.esm/timestamp.mjs
var EXT_TIMESTAMP = -1;
var TIMESTAMP32_MAX_SEC = 4294967296 - 1;
var TIMESTAMP64_MAX_SEC = 17179869184 - 1;
function encodeTimeSpecToTimestamp({ sec, nsec }) {
  if (sec >= 0 && nsec >= 0 && sec <= TIMESTAMP64_MAX_SEC) {
    if (nsec === 0 && sec <= TIMESTAMP32_MAX_SEC) {
      const rv = new Uint8Array(4);
      const view2 = new DataView(rv.buffer);
      view2.setUint32(0, sec);
      return rv;
    } else {
      const secHigh = sec / 4294967296;
      const secLow = sec & 4294967295;
      const rv = new Uint8Array(8);
      const view2 = new DataView(rv.buffer);
      view2.setUint32(0, nsec << 2 | secHigh & 3);
      view2.setUint32(4, secLow);
      return rv;
    }
  } else {
    const rv = new Uint8Array(12);
    const view2 = new DataView(rv.buffer);
    view2.setUint32(0, nsec);
    setInt64(view2, 4, sec);
    return rv;
  }
}
function encodeDateToTimeSpec(date) {
  const msec = date.getTime();
  const sec = Math.floor(msec / 1e3);
  const nsec = (msec - sec * 1e3) * 1e6;
  const nsecInSec = Math.floor(nsec / 1e9);
  return {
    sec: sec + nsecInSec,
    nsec: nsec - nsecInSec * 1e9
  };
}
function encodeTimestampExtension(object) {
  if (object instanceof Date) {
    const timeSpec = encodeDateToTimeSpec(object);
    return encodeTimeSpecToTimestamp(timeSpec);
  } else {
    return null;
  }
}
function decodeTimestampToTimeSpec(data) {
  const view2 = new DataView(data.buffer, data.byteOffset, data.byteLength);
  switch (data.byteLength) {
    case 4: {
      const sec = view2.getUint32(0);
      const nsec = 0;
      return { sec, nsec };
    }
    case 8: {
      const nsec30AndSecHigh2 = view2.getUint32(0);
      const secLow32 = view2.getUint32(4);
      const sec = (nsec30AndSecHigh2 & 3) * 4294967296 + secLow32;
      const nsec = nsec30AndSecHigh2 >>> 2;
      return { sec, nsec };
    }
    case 12: {
      const sec = getInt64(view2, 4);
      const nsec = view2.getUint32(0);
      return { sec, nsec };
    }
    default:
      throw new DecodeError(`Unrecognized data size for timestamp (expected 4, 8, or 12): ${data.length}`);
  }
}
function decodeTimestampExtension(data) {
  const timeSpec = decodeTimestampToTimeSpec(data);
  return new Date(timeSpec.sec * 1e3 + timeSpec.nsec / 1e6);
}
var timestampExtension = {
  type: EXT_TIMESTAMP,
  encode: encodeTimestampExtension,
  decode: decodeTimestampExtension
};

// node_modules/@msgpack/msgpack/dist.esm/ExtensionCodec.mjs
var ExtensionCodec = class _ExtensionCodec {
  static defaultCodec = new _ExtensionCodec();
  // ensures ExtensionCodecType<X> matches ExtensionCodec<X>
  // this will make type errors a lot more clear
  // eslint-disable-next-line @typescript-eslint/naming-convention
  __brand;
  // built-in extensions
  builtInEncoders = [];
  builtInDecoders = [];
  // custom extensions
  encoders = [];
  decoders = [];
  constructor() {
    this.register(timestampExtension);
  }
  register({ type, encode, decode }) {
    if (type >= 0) {
      this.encoders[type] = encode;
      this.decoders[type] = decode;
    } else {
      const index = -1 - type;
      this.builtInEncoders[index] = encode;
      this.builtInDecoders[index] = decode;
    }
  }
  tryToEncode(object, context) {
    for (let i = 0; i < this.builtInEncoders.length; i++) {
      const encodeExt = this.builtInEncoders[i];
      if (encodeExt != null) {
        const data = encodeExt(object, context);
        if (data != null) {
          const type = -1 - i;
          return new ExtData(type, data);
        }
      }
    }
    for (let i = 0; i < this.encoders.length; i++) {
      const encodeExt = this.encoders[i];
      if (encodeExt != null) {
        const data = encodeExt(object, context);
        if (data != null) {
          const type = i;
          return new ExtData(type, data);
        }
      }
    }
    if (object instanceof ExtData) {
      return object;
    }
    return null;
  }
  decode(data, type, context) {
    const decodeExt = type < 0 ? this.builtInDecoders[-1 - type] : this.decoders[type];
    if (decodeExt) {
      return decodeExt(data, type, context);
    } else {
      return new ExtData(type, data);
    }
  }
};

// node_modules/@msgpack/msgpack/dist.esm/utils/typedArrays.mjs
function isArrayBufferLike(buffer) {
  return buffer instanceof ArrayBuffer || typeof SharedArrayBuffer !== "undefined" && buffer instanceof SharedArrayBuffer;
}
function ensureUint8Array(buffer) {
  if (buffer instanceof Uint8Array) {
    return buffer;
  } else if (ArrayBuffer.isView(buffer)) {
    return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  } else if (isArrayBufferLike(buffer)) {
    return new Uint8Array(buffer);
  } else {
    return Uint8Array.from(buffer);
  }
}

// node_modules/@msgpack/msgpack/dist.esm/Encoder.mjs
var DEFAULT_MAX_DEPTH = 100;
var DEFAULT_INITIAL_BUFFER_SIZE = 2048;
var Encoder = class _Encoder {
  extensionCodec;
  context;
  useBigInt64;
  maxDepth;
  initialBufferSize;
  sortKeys;
  forceFloat32;
  ignoreUndefined;
  forceIntegerToFloat;
  pos;
  view;
  bytes;
  entered = false;
  constructor(options) {
    this.extensionCodec = options?.extensionCodec ?? ExtensionCodec.defaultCodec;
    this.context = options?.context;
    this.useBigInt64 = options?.useBigInt64 ?? false;
    this.maxDepth = options?.maxDepth ?? DEFAULT_MAX_DEPTH;
    this.initialBufferSize = options?.initialBufferSize ?? DEFAULT_INITIAL_BUFFER_SIZE;
    this.sortKeys = options?.sortKeys ?? false;
    this.forceFloat32 = options?.forceFloat32 ?? false;
    this.ignoreUndefined = options?.ignoreUndefined ?? false;
    this.forceIntegerToFloat = options?.forceIntegerToFloat ?? false;
    this.pos = 0;
    this.view = new DataView(new ArrayBuffer(this.initialBufferSize));
    this.bytes = new Uint8Array(this.view.buffer);
  }
  clone() {
    return new _Encoder({
      extensionCodec: this.extensionCodec,
      context: this.context,
      useBigInt64: this.useBigInt64,
      maxDepth: this.maxDepth,
      initialBufferSize: this.initialBufferSize,
      sortKeys: this.sortKeys,
      forceFloat32: this.forceFloat32,
      ignoreUndefined: this.ignoreUndefined,
      forceIntegerToFloat: this.forceIntegerToFloat
    });
  }
  reinitializeState() {
    this.pos = 0;
  }
  /**
   * This is almost equivalent to {@link Encoder#encode}, but it returns an reference of the encoder's internal buffer and thus much faster than {@link Encoder#encode}.
   *
   * @returns Encodes the object and returns a shared reference the encoder's internal buffer.
   */
  encodeSharedRef(object) {
    if (this.entered) {
      const instance = this.clone();
      return instance.encodeSharedRef(object);
    }
    try {
      this.entered = true;
      this.reinitializeState();
      this.doEncode(object, 1);
      return this.bytes.subarray(0, this.pos);
    } finally {
      this.entered = false;
    }
  }
  /**
   * @returns Encodes the object and returns a copy of the encoder's internal buffer.
   */
  encode(object) {
    if (this.entered) {
      const instance = this.clone();
      return instance.encode(object);
    }
    try {
      this.entered = true;
      this.reinitializeState();
      this.doEncode(object, 1);
      return this.bytes.slice(0, this.pos);
    } finally {
      this.entered = false;
    }
  }
  doEncode(object, depth) {
    if (depth > this.maxDepth) {
      throw new Error(`Too deep objects in depth ${depth}`);
    }
    if (object == null) {
      this.encodeNil();
    } else if (typeof object === "boolean") {
      this.encodeBoolean(object);
    } else if (typeof object === "number") {
      if (!this.forceIntegerToFloat) {
        this.encodeNumber(object);
      } else {
        this.encodeNumberAsFloat(object);
      }
    } else if (typeof object === "string") {
      this.encodeString(object);
    } else if (this.useBigInt64 && typeof object === "bigint") {
      this.encodeBigInt64(object);
    } else {
      this.encodeObject(object, depth);
    }
  }
  ensureBufferSizeToWrite(sizeToWrite) {
    const requiredSize = this.pos + sizeToWrite;
    if (this.view.byteLength < requiredSize) {
      this.resizeBuffer(requiredSize * 2);
    }
  }
  resizeBuffer(newSize) {
    const newBuffer = new ArrayBuffer(newSize);
    const newBytes = new Uint8Array(newBuffer);
    const newView = new DataView(newBuffer);
    newBytes.set(this.bytes);
    this.view = newView;
    this.bytes = newBytes;
  }
  encodeNil() {
    this.writeU8(192);
  }
  encodeBoolean(object) {
    if (object === false) {
      this.writeU8(194);
    } else {
      this.writeU8(195);
    }
  }
  encodeNumber(object) {
    if (!this.forceIntegerToFloat && Number.isSafeInteger(object)) {
      if (object >= 0) {
        if (object < 128) {
          this.writeU8(object);
        } else if (object < 256) {
          this.writeU8(204);
          this.writeU8(object);
        } else if (object < 65536) {
          this.writeU8(205);
          this.writeU16(object);
        } else if (object < 4294967296) {
          this.writeU8(206);
          this.writeU32(object);
        } else if (!this.useBigInt64) {
          this.writeU8(207);
          this.writeU64(object);
        } else {
          this.encodeNumberAsFloat(object);
        }
      } else {
        if (object >= -32) {
          this.writeU8(224 | object + 32);
        } else if (object >= -128) {
          this.writeU8(208);
          this.writeI8(object);
        } else if (object >= -32768) {
          this.writeU8(209);
          this.writeI16(object);
        } else if (object >= -2147483648) {
          this.writeU8(210);
          this.writeI32(object);
        } else if (!this.useBigInt64) {
          this.writeU8(211);
          this.writeI64(object);
        } else {
          this.encodeNumberAsFloat(object);
        }
      }
    } else {
      this.encodeNumberAsFloat(object);
    }
  }
  encodeNumberAsFloat(object) {
    if (this.forceFloat32) {
      this.writeU8(202);
      this.writeF32(object);
    } else {
      this.writeU8(203);
      this.writeF64(object);
    }
  }
  encodeBigInt64(object) {
    if (object >= BigInt(0)) {
      this.writeU8(207);
      this.writeBigUint64(object);
    } else {
      this.writeU8(211);
      this.writeBigInt64(object);
    }
  }
  writeStringHeader(byteLength) {
    if (byteLength < 32) {
      this.writeU8(160 + byteLength);
    } else if (byteLength < 256) {
      this.writeU8(217);
      this.writeU8(byteLength);
    } else if (byteLength < 65536) {
      this.writeU8(218);
      this.writeU16(byteLength);
    } else if (byteLength < 4294967296) {
      this.writeU8(219);
      this.writeU32(byteLength);
    } else {
      throw new Error(`Too long string: ${byteLength} bytes in UTF-8`);
    }
  }
  encodeString(object) {
    const maxHeaderSize = 1 + 4;
    const byteLength = utf8Count(object);
    this.ensureBufferSizeToWrite(maxHeaderSize + byteLength);
    this.writeStringHeader(byteLength);
    utf8Encode(object, this.bytes, this.pos);
    this.pos += byteLength;
  }
  encodeObject(object, depth) {
    const ext = this.extensionCodec.tryToEncode(object, this.context);
    if (ext != null) {
      this.encodeExtension(ext);
    } else if (Array.isArray(object)) {
      this.encodeArray(object, depth);
    } else if (ArrayBuffer.isView(object)) {
      this.encodeBinary(object);
    } else if (typeof object === "object") {
      this.encodeMap(object, depth);
    } else {
      throw new Error(`Unrecognized object: ${Object.prototype.toString.apply(object)}`);
    }
  }
  encodeBinary(object) {
    const size = object.byteLength;
    if (size < 256) {
      this.writeU8(196);
      this.writeU8(size);
    } else if (size < 65536) {
      this.writeU8(197);
      this.writeU16(size);
    } else if (size < 4294967296) {
      this.writeU8(198);
      this.writeU32(size);
    } else {
      throw new Error(`Too large binary: ${size}`);
    }
    const bytes = ensureUint8Array(object);
    this.writeU8a(bytes);
  }
  encodeArray(object, depth) {
    const size = object.length;
    if (size < 16) {
      this.writeU8(144 + size);
    } else if (size < 65536) {
      this.writeU8(220);
      this.writeU16(size);
    } else if (size < 4294967296) {
      this.writeU8(221);
      this.writeU32(size);
    } else {
      throw new Error(`Too large array: ${size}`);
    }
    for (const item of object) {
      this.doEncode(item, depth + 1);
    }
  }
  countWithoutUndefined(object, keys) {
    let count = 0;
    for (const key of keys) {
      if (object[key] !== void 0) {
        count++;
      }
    }
    return count;
  }
  encodeMap(object, depth) {
    const keys = Object.keys(object);
    if (this.sortKeys) {
      keys.sort();
    }
    const size = this.ignoreUndefined ? this.countWithoutUndefined(object, keys) : keys.length;
    if (size < 16) {
      this.writeU8(128 + size);
    } else if (size < 65536) {
      this.writeU8(222);
      this.writeU16(size);
    } else if (size < 4294967296) {
      this.writeU8(223);
      this.writeU32(size);
    } else {
      throw new Error(`Too large map object: ${size}`);
    }
    for (const key of keys) {
      const value = object[key];
      if (!(this.ignoreUndefined && value === void 0)) {
        this.encodeString(key);
        this.doEncode(value, depth + 1);
      }
    }
  }
  encodeExtension(ext) {
    if (typeof ext.data === "function") {
      const data = ext.data(this.pos + 6);
      const size2 = data.length;
      if (size2 >= 4294967296) {
        throw new Error(`Too large extension object: ${size2}`);
      }
      this.writeU8(201);
      this.writeU32(size2);
      this.writeI8(ext.type);
      this.writeU8a(data);
      return;
    }
    const size = ext.data.length;
    if (size === 1) {
      this.writeU8(212);
    } else if (size === 2) {
      this.writeU8(213);
    } else if (size === 4) {
      this.writeU8(214);
    } else if (size === 8) {
      this.writeU8(215);
    } else if (size === 16) {
      this.writeU8(216);
    } else if (size < 256) {
      this.writeU8(199);
      this.writeU8(size);
    } else if (size < 65536) {
      this.writeU8(200);
      this.writeU16(size);
    } else if (size < 4294967296) {
      this.writeU8(201);
      this.writeU32(size);
    } else {
      throw new Error(`Too large extension object: ${size}`);
    }
    this.writeI8(ext.type);
    this.writeU8a(ext.data);
  }
  writeU8(value) {
    this.ensureBufferSizeToWrite(1);
    this.view.setUint8(this.pos, value);
    this.pos++;
  }
  writeU8a(values) {
    const size = values.length;
    this.ensureBufferSizeToWrite(size);
    this.bytes.set(values, this.pos);
    this.pos += size;
  }
  writeI8(value) {
    this.ensureBufferSizeToWrite(1);
    this.view.setInt8(this.pos, value);
    this.pos++;
  }
  writeU16(value) {
    this.ensureBufferSizeToWrite(2);
    this.view.setUint16(this.pos, value);
    this.pos += 2;
  }
  writeI16(value) {
    this.ensureBufferSizeToWrite(2);
    this.view.setInt16(this.pos, value);
    this.pos += 2;
  }
  writeU32(value) {
    this.ensureBufferSizeToWrite(4);
    this.view.setUint32(this.pos, value);
    this.pos += 4;
  }
  writeI32(value) {
    this.ensureBufferSizeToWrite(4);
    this.view.setInt32(this.pos, value);
    this.pos += 4;
  }
  writeF32(value) {
    this.ensureBufferSizeToWrite(4);
    this.view.setFloat32(this.pos, value);
    this.pos += 4;
  }
  writeF64(value) {
    this.ensureBufferSizeToWrite(8);
    this.view.setFloat64(this.pos, value);
    this.pos += 8;
  }
  writeU64(value) {
    this.ensureBufferSizeToWrite(8);
    setUint64(this.view, this.pos, value);
    this.pos += 8;
  }
  writeI64(value) {
    this.ensureBufferSizeToWrite(8);
    setInt64(this.view, this.pos, value);
    this.pos += 8;
  }
  writeBigUint64(value) {
    this.ensureBufferSizeToWrite(8);
    this.view.setBigUint64(this.pos, value);
    this.pos += 8;
  }
  writeBigInt64(value) {
    this.ensureBufferSizeToWrite(8);
    this.view.setBigInt64(this.pos, value);
    this.pos += 8;
  }
};

// node_modules/@msgpack/msgpack/dist.esm/utils/prettyByte.mjs
function prettyByte(byte) {
  return `${byte < 0 ? "-" : ""}0x${Math.abs(byte).toString(16).padStart(2, "0")}`;
}

// node_modules/@msgpack/msgpack/dist.esm/CachedKeyDecoder.mjs
var DEFAULT_MAX_KEY_LENGTH = 16;
var DEFAULT_MAX_LENGTH_PER_KEY = 16;
var CachedKeyDecoder = class {
  hit = 0;
  miss = 0;
  caches;
  maxKeyLength;
  maxLengthPerKey;
  constructor(maxKeyLength = DEFAULT_MAX_KEY_LENGTH, maxLengthPerKey = DEFAULT_MAX_LENGTH_PER_KEY) {
    this.maxKeyLength = maxKeyLength;
    this.maxLengthPerKey = maxLengthPerKey;
    this.caches = [];
    for (let i = 0; i < this.maxKeyLength; i++) {
      this.caches.push([]);
    }
  }
  canBeCached(byteLength) {
    return byteLength > 0 && byteLength <= this.maxKeyLength;
  }
  find(bytes, inputOffset, byteLength) {
    const records = this.caches[byteLength - 1];
    FIND_CHUNK: for (const record of records) {
      const recordBytes = record.bytes;
      for (let j = 0; j < byteLength; j++) {
        if (recordBytes[j] !== bytes[inputOffset + j]) {
          continue FIND_CHUNK;
        }
      }
      return record.str;
    }
    return null;
  }
  store(bytes, value) {
    const records = this.caches[bytes.length - 1];
    const record = { bytes, str: value };
    if (records.length >= this.maxLengthPerKey) {
      records[Math.random() * records.length | 0] = record;
    } else {
      records.push(record);
    }
  }
  decode(bytes, inputOffset, byteLength) {
    const cachedValue = this.find(bytes, inputOffset, byteLength);
    if (cachedValue != null) {
      this.hit++;
      return cachedValue;
    }
    this.miss++;
    const str = utf8DecodeJs(bytes, inputOffset, byteLength);
    const slicedCopyOfBytes = Uint8Array.prototype.slice.call(bytes, inputOffset, inputOffset + byteLength);
    this.store(slicedCopyOfBytes, str);
    return str;
  }
};

// node_modules/@msgpack/msgpack/dist.esm/Decoder.mjs
var STATE_ARRAY = "array";
var STATE_MAP_KEY = "map_key";
var STATE_MAP_VALUE = "map_value";
var mapKeyConverter = (key) => {
  if (typeof key === "string" || typeof key === "number") {
    return key;
  }
  throw new DecodeError("The type of key must be string or number but " + typeof key);
};
var StackPool = class {
  stack = [];
  stackHeadPosition = -1;
  get length() {
    return this.stackHeadPosition + 1;
  }
  top() {
    return this.stack[this.stackHeadPosition];
  }
  pushArrayState(size) {
    const state = this.getUninitializedStateFromPool();
    state.type = STATE_ARRAY;
    state.position = 0;
    state.size = size;
    state.array = new Array(size);
  }
  pushMapState(size) {
    const state = this.getUninitializedStateFromPool();
    state.type = STATE_MAP_KEY;
    state.readCount = 0;
    state.size = size;
    state.map = {};
  }
  getUninitializedStateFromPool() {
    this.stackHeadPosition++;
    if (this.stackHeadPosition === this.stack.length) {
      const partialState = {
        type: void 0,
        size: 0,
        array: void 0,
        position: 0,
        readCount: 0,
        map: void 0,
        key: null
      };
      this.stack.push(partialState);
    }
    return this.stack[this.stackHeadPosition];
  }
  release(state) {
    const topStackState = this.stack[this.stackHeadPosition];
    if (topStackState !== state) {
      throw new Error("Invalid stack state. Released state is not on top of the stack.");
    }
    if (state.type === STATE_ARRAY) {
      const partialState = state;
      partialState.size = 0;
      partialState.array = void 0;
      partialState.position = 0;
      partialState.type = void 0;
    }
    if (state.type === STATE_MAP_KEY || state.type === STATE_MAP_VALUE) {
      const partialState = state;
      partialState.size = 0;
      partialState.map = void 0;
      partialState.readCount = 0;
      partialState.type = void 0;
    }
    this.stackHeadPosition--;
  }
  reset() {
    this.stack.length = 0;
    this.stackHeadPosition = -1;
  }
};
var HEAD_BYTE_REQUIRED = -1;
var EMPTY_VIEW = new DataView(new ArrayBuffer(0));
var EMPTY_BYTES = new Uint8Array(EMPTY_VIEW.buffer);
try {
  EMPTY_VIEW.getInt8(0);
} catch (e) {
  if (!(e instanceof RangeError)) {
    throw new Error("This module is not supported in the current JavaScript engine because DataView does not throw RangeError on out-of-bounds access");
  }
}
var MORE_DATA = new RangeError("Insufficient data");
var sharedCachedKeyDecoder = new CachedKeyDecoder();
var Decoder = class _Decoder {
  extensionCodec;
  context;
  useBigInt64;
  rawStrings;
  maxStrLength;
  maxBinLength;
  maxArrayLength;
  maxMapLength;
  maxExtLength;
  keyDecoder;
  mapKeyConverter;
  totalPos = 0;
  pos = 0;
  view = EMPTY_VIEW;
  bytes = EMPTY_BYTES;
  headByte = HEAD_BYTE_REQUIRED;
  stack = new StackPool();
  entered = false;
  constructor(options) {
    this.extensionCodec = options?.extensionCodec ?? ExtensionCodec.defaultCodec;
    this.context = options?.context;
    this.useBigInt64 = options?.useBigInt64 ?? false;
    this.rawStrings = options?.rawStrings ?? false;
    this.maxStrLength = options?.maxStrLength ?? UINT32_MAX;
    this.maxBinLength = options?.maxBinLength ?? UINT32_MAX;
    this.maxArrayLength = options?.maxArrayLength ?? UINT32_MAX;
    this.maxMapLength = options?.maxMapLength ?? UINT32_MAX;
    this.maxExtLength = options?.maxExtLength ?? UINT32_MAX;
    this.keyDecoder = options?.keyDecoder !== void 0 ? options.keyDecoder : sharedCachedKeyDecoder;
    this.mapKeyConverter = options?.mapKeyConverter ?? mapKeyConverter;
  }
  clone() {
    return new _Decoder({
      extensionCodec: this.extensionCodec,
      context: this.context,
      useBigInt64: this.useBigInt64,
      rawStrings: this.rawStrings,
      maxStrLength: this.maxStrLength,
      maxBinLength: this.maxBinLength,
      maxArrayLength: this.maxArrayLength,
      maxMapLength: this.maxMapLength,
      maxExtLength: this.maxExtLength,
      keyDecoder: this.keyDecoder
    });
  }
  reinitializeState() {
    this.totalPos = 0;
    this.headByte = HEAD_BYTE_REQUIRED;
    this.stack.reset();
  }
  setBuffer(buffer) {
    const bytes = ensureUint8Array(buffer);
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
  }
  appendBuffer(buffer) {
    if (this.headByte === HEAD_BYTE_REQUIRED && !this.hasRemaining(1)) {
      this.setBuffer(buffer);
    } else {
      const remainingData = this.bytes.subarray(this.pos);
      const newData = ensureUint8Array(buffer);
      const newBuffer = new Uint8Array(remainingData.length + newData.length);
      newBuffer.set(remainingData);
      newBuffer.set(newData, remainingData.length);
      this.setBuffer(newBuffer);
    }
  }
  hasRemaining(size) {
    return this.view.byteLength - this.pos >= size;
  }
  createExtraByteError(posToShow) {
    const { view: view2, pos } = this;
    return new RangeError(`Extra ${view2.byteLength - pos} of ${view2.byteLength} byte(s) found at buffer[${posToShow}]`);
  }
  /**
   * @throws {@link DecodeError}
   * @throws {@link RangeError}
   */
  decode(buffer) {
    if (this.entered) {
      const instance = this.clone();
      return instance.decode(buffer);
    }
    try {
      this.entered = true;
      this.reinitializeState();
      this.setBuffer(buffer);
      const object = this.doDecodeSync();
      if (this.hasRemaining(1)) {
        throw this.createExtraByteError(this.pos);
      }
      return object;
    } finally {
      this.entered = false;
    }
  }
  *decodeMulti(buffer) {
    if (this.entered) {
      const instance = this.clone();
      yield* instance.decodeMulti(buffer);
      return;
    }
    try {
      this.entered = true;
      this.reinitializeState();
      this.setBuffer(buffer);
      while (this.hasRemaining(1)) {
        yield this.doDecodeSync();
      }
    } finally {
      this.entered = false;
    }
  }
  async decodeAsync(stream) {
    if (this.entered) {
      const instance = this.clone();
      return instance.decodeAsync(stream);
    }
    try {
      this.entered = true;
      let decoded = false;
      let object;
      for await (const buffer of stream) {
        if (decoded) {
          this.entered = false;
          throw this.createExtraByteError(this.totalPos);
        }
        this.appendBuffer(buffer);
        try {
          object = this.doDecodeSync();
          decoded = true;
        } catch (e) {
          if (!(e instanceof RangeError)) {
            throw e;
          }
        }
        this.totalPos += this.pos;
      }
      if (decoded) {
        if (this.hasRemaining(1)) {
          throw this.createExtraByteError(this.totalPos);
        }
        return object;
      }
      const { headByte, pos, totalPos } = this;
      throw new RangeError(`Insufficient data in parsing ${prettyByte(headByte)} at ${totalPos} (${pos} in the current buffer)`);
    } finally {
      this.entered = false;
    }
  }
  decodeArrayStream(stream) {
    return this.decodeMultiAsync(stream, true);
  }
  decodeStream(stream) {
    return this.decodeMultiAsync(stream, false);
  }
  async *decodeMultiAsync(stream, isArray) {
    if (this.entered) {
      const instance = this.clone();
      yield* instance.decodeMultiAsync(stream, isArray);
      return;
    }
    try {
      this.entered = true;
      let isArrayHeaderRequired = isArray;
      let arrayItemsLeft = -1;
      for await (const buffer of stream) {
        if (isArray && arrayItemsLeft === 0) {
          throw this.createExtraByteError(this.totalPos);
        }
        this.appendBuffer(buffer);
        if (isArrayHeaderRequired) {
          arrayItemsLeft = this.readArraySize();
          isArrayHeaderRequired = false;
          this.complete();
        }
        try {
          while (true) {
            yield this.doDecodeSync();
            if (--arrayItemsLeft === 0) {
              break;
            }
          }
        } catch (e) {
          if (!(e instanceof RangeError)) {
            throw e;
          }
        }
        this.totalPos += this.pos;
      }
    } finally {
      this.entered = false;
    }
  }
  doDecodeSync() {
    DECODE: while (true) {
      const headByte = this.readHeadByte();
      let object;
      if (headByte >= 224) {
        object = headByte - 256;
      } else if (headByte < 192) {
        if (headByte < 128) {
          object = headByte;
        } else if (headByte < 144) {
          const size = headByte - 128;
          if (size !== 0) {
            this.pushMapState(size);
            this.complete();
            continue DECODE;
          } else {
            object = {};
          }
        } else if (headByte < 160) {
          const size = headByte - 144;
          if (size !== 0) {
            this.pushArrayState(size);
            this.complete();
            continue DECODE;
          } else {
            object = [];
          }
        } else {
          const byteLength = headByte - 160;
          object = this.decodeString(byteLength, 0);
        }
      } else if (headByte === 192) {
        object = null;
      } else if (headByte === 194) {
        object = false;
      } else if (headByte === 195) {
        object = true;
      } else if (headByte === 202) {
        object = this.readF32();
      } else if (headByte === 203) {
        object = this.readF64();
      } else if (headByte === 204) {
        object = this.readU8();
      } else if (headByte === 205) {
        object = this.readU16();
      } else if (headByte === 206) {
        object = this.readU32();
      } else if (headByte === 207) {
        if (this.useBigInt64) {
          object = this.readU64AsBigInt();
        } else {
          object = this.readU64();
        }
      } else if (headByte === 208) {
        object = this.readI8();
      } else if (headByte === 209) {
        object = this.readI16();
      } else if (headByte === 210) {
        object = this.readI32();
      } else if (headByte === 211) {
        if (this.useBigInt64) {
          object = this.readI64AsBigInt();
        } else {
          object = this.readI64();
        }
      } else if (headByte === 217) {
        const byteLength = this.lookU8();
        object = this.decodeString(byteLength, 1);
      } else if (headByte === 218) {
        const byteLength = this.lookU16();
        object = this.decodeString(byteLength, 2);
      } else if (headByte === 219) {
        const byteLength = this.lookU32();
        object = this.decodeString(byteLength, 4);
      } else if (headByte === 220) {
        const size = this.readU16();
        if (size !== 0) {
          this.pushArrayState(size);
          this.complete();
          continue DECODE;
        } else {
          object = [];
        }
      } else if (headByte === 221) {
        const size = this.readU32();
        if (size !== 0) {
          this.pushArrayState(size);
          this.complete();
          continue DECODE;
        } else {
          object = [];
        }
      } else if (headByte === 222) {
        const size = this.readU16();
        if (size !== 0) {
          this.pushMapState(size);
          this.complete();
          continue DECODE;
        } else {
          object = {};
        }
      } else if (headByte === 223) {
        const size = this.readU32();
        if (size !== 0) {
          this.pushMapState(size);
          this.complete();
          continue DECODE;
        } else {
          object = {};
        }
      } else if (headByte === 196) {
        const size = this.lookU8();
        object = this.decodeBinary(size, 1);
      } else if (headByte === 197) {
        const size = this.lookU16();
        object = this.decodeBinary(size, 2);
      } else if (headByte === 198) {
        const size = this.lookU32();
        object = this.decodeBinary(size, 4);
      } else if (headByte === 212) {
        object = this.decodeExtension(1, 0);
      } else if (headByte === 213) {
        object = this.decodeExtension(2, 0);
      } else if (headByte === 214) {
        object = this.decodeExtension(4, 0);
      } else if (headByte === 215) {
        object = this.decodeExtension(8, 0);
      } else if (headByte === 216) {
        object = this.decodeExtension(16, 0);
      } else if (headByte === 199) {
        const size = this.lookU8();
        object = this.decodeExtension(size, 1);
      } else if (headByte === 200) {
        const size = this.lookU16();
        object = this.decodeExtension(size, 2);
      } else if (headByte === 201) {
        const size = this.lookU32();
        object = this.decodeExtension(size, 4);
      } else {
        throw new DecodeError(`Unrecognized type byte: ${prettyByte(headByte)}`);
      }
      this.complete();
      const stack = this.stack;
      while (stack.length > 0) {
        const state = stack.top();
        if (state.type === STATE_ARRAY) {
          state.array[state.position] = object;
          state.position++;
          if (state.position === state.size) {
            object = state.array;
            stack.release(state);
          } else {
            continue DECODE;
          }
        } else if (state.type === STATE_MAP_KEY) {
          if (object === "__proto__") {
            throw new DecodeError("The key __proto__ is not allowed");
          }
          state.key = this.mapKeyConverter(object);
          state.type = STATE_MAP_VALUE;
          continue DECODE;
        } else {
          state.map[state.key] = object;
          state.readCount++;
          if (state.readCount === state.size) {
            object = state.map;
            stack.release(state);
          } else {
            state.key = null;
            state.type = STATE_MAP_KEY;
            continue DECODE;
          }
        }
      }
      return object;
    }
  }
  readHeadByte() {
    if (this.headByte === HEAD_BYTE_REQUIRED) {
      this.headByte = this.readU8();
    }
    return this.headByte;
  }
  complete() {
    this.headByte = HEAD_BYTE_REQUIRED;
  }
  readArraySize() {
    const headByte = this.readHeadByte();
    switch (headByte) {
      case 220:
        return this.readU16();
      case 221:
        return this.readU32();
      default: {
        if (headByte < 160) {
          return headByte - 144;
        } else {
          throw new DecodeError(`Unrecognized array type byte: ${prettyByte(headByte)}`);
        }
      }
    }
  }
  pushMapState(size) {
    if (size > this.maxMapLength) {
      throw new DecodeError(`Max length exceeded: map length (${size}) > maxMapLengthLength (${this.maxMapLength})`);
    }
    this.stack.pushMapState(size);
  }
  pushArrayState(size) {
    if (size > this.maxArrayLength) {
      throw new DecodeError(`Max length exceeded: array length (${size}) > maxArrayLength (${this.maxArrayLength})`);
    }
    this.stack.pushArrayState(size);
  }
  decodeString(byteLength, headerOffset) {
    if (!this.rawStrings || this.stateIsMapKey()) {
      return this.decodeUtf8String(byteLength, headerOffset);
    }
    return this.decodeBinary(byteLength, headerOffset);
  }
  /**
   * @throws {@link RangeError}
   */
  decodeUtf8String(byteLength, headerOffset) {
    if (byteLength > this.maxStrLength) {
      throw new DecodeError(`Max length exceeded: UTF-8 byte length (${byteLength}) > maxStrLength (${this.maxStrLength})`);
    }
    if (this.bytes.byteLength < this.pos + headerOffset + byteLength) {
      throw MORE_DATA;
    }
    const offset = this.pos + headerOffset;
    let object;
    if (this.stateIsMapKey() && this.keyDecoder?.canBeCached(byteLength)) {
      object = this.keyDecoder.decode(this.bytes, offset, byteLength);
    } else {
      object = utf8Decode(this.bytes, offset, byteLength);
    }
    this.pos += headerOffset + byteLength;
    return object;
  }
  stateIsMapKey() {
    if (this.stack.length > 0) {
      const state = this.stack.top();
      return state.type === STATE_MAP_KEY;
    }
    return false;
  }
  /**
   * @throws {@link RangeError}
   */
  decodeBinary(byteLength, headOffset) {
    if (byteLength > this.maxBinLength) {
      throw new DecodeError(`Max length exceeded: bin length (${byteLength}) > maxBinLength (${this.maxBinLength})`);
    }
    if (!this.hasRemaining(byteLength + headOffset)) {
      throw MORE_DATA;
    }
    const offset = this.pos + headOffset;
    const object = this.bytes.subarray(offset, offset + byteLength);
    this.pos += headOffset + byteLength;
    return object;
  }
  decodeExtension(size, headOffset) {
    if (size > this.maxExtLength) {
      throw new DecodeError(`Max length exceeded: ext length (${size}) > maxExtLength (${this.maxExtLength})`);
    }
    const extType = this.view.getInt8(this.pos + headOffset);
    const data = this.decodeBinary(
      size,
      headOffset + 1
      /* extType */
    );
    return this.extensionCodec.decode(data, extType, this.context);
  }
  lookU8() {
    return this.view.getUint8(this.pos);
  }
  lookU16() {
    return this.view.getUint16(this.pos);
  }
  lookU32() {
    return this.view.getUint32(this.pos);
  }
  readU8() {
    const value = this.view.getUint8(this.pos);
    this.pos++;
    return value;
  }
  readI8() {
    const value = this.view.getInt8(this.pos);
    this.pos++;
    return value;
  }
  readU16() {
    const value = this.view.getUint16(this.pos);
    this.pos += 2;
    return value;
  }
  readI16() {
    const value = this.view.getInt16(this.pos);
    this.pos += 2;
    return value;
  }
  readU32() {
    const value = this.view.getUint32(this.pos);
    this.pos += 4;
    return value;
  }
  readI32() {
    const value = this.view.getInt32(this.pos);
    this.pos += 4;
    return value;
  }
  readU64() {
    const value = getUint64(this.view, this.pos);
    this.pos += 8;
    return value;
  }
  readI64() {
    const value = getInt64(this.view, this.pos);
    this.pos += 8;
    return value;
  }
  readU64AsBigInt() {
    const value = this.view.getBigUint64(this.pos);
    this.pos += 8;
    return value;
  }
  readI64AsBigInt() {
    const value = this.view.getBigInt64(this.pos);
    this.pos += 8;
    return value;
  }
  readF32() {
    const value = this.view.getFloat32(this.pos);
    this.pos += 4;
    return value;
  }
  readF64() {
    const value = this.view.getFloat64(this.pos);
    this.pos += 8;
    return value;
  }
};

// src/msgpack.ts
var MAX_CONTAINER_ITEMS = 1e4;
var MAX_NESTING = 1024;
var BodyError = class extends Error {
  name = "BodyError";
};
var encoder = new Encoder({ useBigInt64: true, ignoreUndefined: true });
var decoder = new Decoder({
  useBigInt64: true,
  maxArrayLength: MAX_CONTAINER_ITEMS,
  maxMapLength: MAX_CONTAINER_ITEMS,
  mapKeyConverter: (key) => {
    if (typeof key !== "string") throw new BodyError("map key is not a str");
    return key;
  }
});
function normalizeForEncoding(value, depth = 0) {
  if (depth > MAX_NESTING) throw new BodyError("value nested too deep to encode");
  if (typeof value === "number") {
    if (!Number.isInteger(value)) throw new BodyError("no field of protocol version 1 is a float");
    if (value >= -2147483648 && value < 4294967296) return value;
    if (!Number.isSafeInteger(value)) throw new BodyError("integer beyond 2^53: pass it as a BigInt");
    return BigInt(value);
  }
  if (typeof value === "bigint") {
    if (value < -(1n << 63n) || value >= 1n << 64n) throw new BodyError("integer outside 64 bits");
    if (value >= -0x80000000n && value < 0x100000000n) return Number(value);
    return value;
  }
  if (value instanceof Uint8Array || value === null || value === void 0) return value;
  if (Array.isArray(value)) return value.map((item) => normalizeForEncoding(item, depth + 1));
  if (typeof value === "object") {
    const out = {};
    for (const [key, item] of Object.entries(value)) {
      if (item !== void 0) out[key] = normalizeForEncoding(item, depth + 1);
    }
    return out;
  }
  return value;
}
function encodeBody(value) {
  return encoder.encode(normalizeForEncoding(value));
}
function decodeBody(bytes) {
  validateBody(bytes);
  try {
    return decoder.decode(bytes);
  } catch (error) {
    throw new BodyError(`invalid MessagePack: ${error.message}`);
  }
}
function validateBody(bytes) {
  const view2 = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  const stack = [];
  const need = (count) => {
    if (pos + count > bytes.length) throw new BodyError("truncated MessagePack");
  };
  const readLength = (width) => {
    need(width);
    const n = width === 1 ? view2.getUint8(pos) : width === 2 ? view2.getUint16(pos) : view2.getUint32(pos);
    pos += width;
    return n;
  };
  const checkString = (length) => {
    need(length);
    try {
      strictUtf8Decoder.decode(bytes.subarray(pos, pos + length));
    } catch {
      throw new BodyError("invalid UTF-8 in a str");
    }
    pos += length;
  };
  const open = (items, isMap2) => {
    if (items > MAX_CONTAINER_ITEMS) throw new BodyError("container of more than 10000 items");
    if (stack.length + 1 > MAX_NESTING) throw new BodyError("nested deeper than 1024");
    if (items > 0) stack.push({ remaining: isMap2 ? items * 2 : items, isMap: isMap2, index: 0 });
  };
  let first = true;
  for (; ; ) {
    while (stack.length > 0 && stack[stack.length - 1].remaining === 0) stack.pop();
    if (!first && stack.length === 0) break;
    first = false;
    const top = stack[stack.length - 1];
    const isKey = top !== void 0 && top.isMap && top.index % 2 === 0;
    if (top !== void 0) {
      top.index++;
      top.remaining--;
    }
    need(1);
    const head = view2.getUint8(pos++);
    const isStr = head >= 160 && head <= 191 || head === 217 || head === 218 || head === 219;
    if (isKey && !isStr) throw new BodyError("map key is not a str");
    if (head <= 127 || head >= 224 || head === 192 || head === 194 || head === 195) continue;
    if (head >= 128 && head <= 143) open(head & 15, true);
    else if (head >= 144 && head <= 159) open(head & 15, false);
    else if (head >= 160 && head <= 191) checkString(head & 31);
    else if (head === 217) checkString(readLength(1));
    else if (head === 218) checkString(readLength(2));
    else if (head === 219) checkString(readLength(4));
    else if (head === 196 || head === 197 || head === 198) {
      const length = readLength(head === 196 ? 1 : head === 197 ? 2 : 4);
      need(length);
      pos += length;
    } else if (head === 202 || head === 203) {
      need(head === 202 ? 4 : 8);
      pos += head === 202 ? 4 : 8;
    } else if (head >= 204 && head <= 211) {
      const width = [1, 2, 4, 8][(head - 204) % 4];
      need(width);
      pos += width;
    } else if (head === 220) open(readLength(2), false);
    else if (head === 221) open(readLength(4), false);
    else if (head === 222) open(readLength(2), true);
    else if (head === 223) open(readLength(4), true);
    else if (head >= 199 && head <= 201 || head >= 212 && head <= 216) {
      throw new BodyError("extension types are refused");
    } else throw new BodyError(`invalid MessagePack byte 0x${head.toString(16)}`);
  }
  if (pos !== bytes.length) throw new BodyError("trailing bytes after the MessagePack value");
}

// src/connection.ts
var Status = {
  NotLicensed: -8,
  TimeInconsistent: -9,
  Kickedoff: -7,
  SecretKeyMismatch: -6,
  TokenIncorrect: -5,
  ServerDown: -4,
  Rejected: -3,
  Logout: -2,
  Unconnected: -1,
  Connecting: 0,
  Connected: 1,
  Receiving: 2
};
var Connection = class {
  constructor(token, handlers, options) {
    this.token = token;
    this.handlers = handlers;
    this.options = options;
    this.reader = new FrameReader(options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES);
  }
  token;
  handlers;
  options;
  state = "AWAIT_HELLO";
  reader;
  transport;
  send;
  receive;
  /** Frames are handled one after the other: opening one is async, and counters must follow arrival order. */
  inbound = Promise.resolve();
  /** Sealed frames are written in the order they were sealed (each took its counter when sealed). */
  outbound = Promise.resolve();
  closeInfo;
  helloSeen = false;
  get isOpen() {
    return this.state === "OPEN";
  }
  async open(factory) {
    try {
      this.transport = await factory(
        {
          onData: (chunk) => this.onData(chunk),
          // Behind the frames already received: a server that seals its last frame (a CONNACK failure, a
          // going-away DISCONNECT, an answer) and closes at once must have that frame read, not lost to the FIN.
          onClose: (error) => {
            this.inbound = this.inbound.then(
              () => this.end({ status: -4, kind: "transport", detail: error?.message ?? "connection closed" })
            );
          }
        },
        this.options.redirect
      );
    } catch (error) {
      this.end({ status: -4, kind: "transport", detail: error.message });
      return;
    }
    if (this.state === "CLOSED") this.transport.close();
  }
  request(requestId, method, params) {
    this.sendSealed(FrameType.REQUEST, requestId, encodeBody({ m: method, p: params }));
  }
  ping() {
    this.sendSealed(FrameType.PING, 0, new Uint8Array(0));
  }
  /** §8.5: the server does not answer; the status becomes −2 Logout. */
  disconnect(clear) {
    if (this.state === "OPEN") {
      this.sendSealed(FrameType.DISCONNECT, 0, encodeBody({ clear }));
      const transport = this.transport;
      this.outbound.then(() => transport?.close());
    }
    this.end({ status: -2, kind: "logout", detail: clear ? "logout (session cleared)" : "logout" }, false);
  }
  /** Ends the connection from this side (a lost server, a timeout) without a frame. */
  abort(info) {
    this.end(info);
  }
  sendSealed(type, requestId, plaintext) {
    if (this.state !== "OPEN" || this.send === void 0) throw new Error("connection is not open");
    const sealed = this.send.seal(type, requestId, plaintext);
    const transport = this.transport;
    this.outbound = this.outbound.then(
      () => sealed.then((bytes) => transport?.send(bytes)),
      () => void 0
    );
  }
  onData(chunk) {
    if (this.state === "CLOSED") return;
    let frames;
    try {
      frames = this.reader.feed(chunk);
      if (this.transport?.messageFramed && (frames.length !== 1 || !this.reader.empty)) {
        throw new ProtocolViolation("a WebSocket message must hold exactly one frame");
      }
    } catch (error) {
      this.violation(error.message);
      return;
    }
    for (const frame of frames) {
      this.inbound = this.inbound.then(() => this.handle(frame)).catch((error) => this.violation(String(error?.message ?? error)));
    }
  }
  violation(detail) {
    this.end({ status: -4, kind: "violation", detail: `server broke the protocol: ${detail}` });
  }
  end(info, closeTransport = true) {
    if (this.state === "CLOSED") return;
    this.state = "CLOSED";
    this.closeInfo = info;
    if (closeTransport) this.transport?.close();
    this.handlers.onClose(info);
  }
  get closed() {
    return this.closeInfo;
  }
  async openSealed(frame) {
    if (!frame.encrypted || this.receive === void 0) throw new ProtocolViolation(`clear frame of type ${frame.type} after the handshake`);
    let plaintext;
    try {
      plaintext = await this.receive.open(frame.header, frame.body);
    } catch {
      throw new ProtocolViolation("a frame failed authentication");
    }
    if (frame.type === FrameType.PONG) {
      if (plaintext.length !== 0) throw new ProtocolViolation("PONG with a body");
      return void 0;
    }
    return decodeBody(plaintext);
  }
  async handle(frame) {
    if (this.state === "CLOSED") return;
    this.handlers.onReceived?.();
    switch (this.state) {
      case "AWAIT_HELLO":
        if (frame.type === FrameType.HELLO && !frame.encrypted && !this.helloSeen) return this.onHello(frame);
        if (frame.type === FrameType.ERROR && !frame.encrypted) return this.onError(decodeBody(frame.body));
        throw new ProtocolViolation(`unexpected frame type ${frame.type} before the handshake`);
      case "AUTHENTICATING":
        if (frame.type === FrameType.CONNACK) return this.onConnAck(frame);
        if (frame.type === FrameType.ERROR) {
          return this.onError(frame.encrypted ? await this.openSealed(frame) : decodeBody(frame.body));
        }
        throw new ProtocolViolation(`unexpected frame type ${frame.type} during the handshake`);
      case "OPEN": {
        if (![FrameType.RESPONSE, FrameType.NOTIFY, FrameType.PONG, FrameType.DISCONNECT, FrameType.ERROR].includes(frame.type)) {
          throw new ProtocolViolation(`unexpected frame type ${frame.type}`);
        }
        const body = await this.openSealed(frame);
        if (this.state !== "OPEN") return;
        if (frame.type === FrameType.PONG) return this.handlers.onPong();
        const map = asMap(body, "body");
        if (frame.type === FrameType.RESPONSE) {
          return this.handlers.onResponse(frame.requestId, intField(map, "c", void 0, -(2 ** 31), 2 ** 31), map.r ?? null);
        }
        if (frame.type === FrameType.NOTIFY) {
          const topic = strField(map, "t");
          const data = map.d ?? null;
          if (topic === "kicked" && isMap(data)) {
            const code = intField(data, "code", void 0, -128, 127);
            return this.end({ status: code, kind: "kicked", detail: `kicked (${code})` });
          }
          return this.handlers.onNotify(topic, data);
        }
        if (frame.type === FrameType.DISCONNECT) return this.onGoAway(map);
        return this.onError(map);
      }
    }
  }
  async onHello(frame) {
    this.helloSeen = true;
    const body = asMap(decodeBody(frame.body), "HELLO");
    const serverNonce = binField(body, "nonce", 32);
    intField(body, "time");
    const clientNonce = this.options.clientNonce?.() ?? randomBytes(32);
    const keys = await deriveSessionKeys(this.token.secret, serverNonce, clientNonce);
    const keepalive = this.options.keepalive;
    const now = this.options.now?.() ?? Date.now();
    const proof = await sealProof(
      keys.proofKey,
      frame.raw,
      encodeBody({ cred: this.token.credential, time: now, platform: this.token.platform, keepalive })
    );
    this.send = await FrameSealer.create(keys.c2s);
    this.receive = await FrameSealer.create(keys.s2c);
    if (this.state === "CLOSED") return;
    const connect = encodeBody({
      user: this.token.userId,
      client: this.token.clientId,
      platform: this.token.platform,
      keepalive,
      nonce: clientNonce,
      proof
    });
    this.state = "AUTHENTICATING";
    this.transport?.send(concatBytes(encodeHeader(FrameType.CONNECT, false, 0, connect.length), connect));
  }
  async onConnAck(frame) {
    if (!frame.encrypted) {
      const body2 = asMap(decodeBody(frame.body), "CONNACK");
      const code2 = intField(body2, "code", void 0, -128, 127);
      if (code2 !== -6) throw new ProtocolViolation(`clear CONNACK with code ${code2}`);
      return this.end({ status: -6, kind: "clear-connack", detail: "clear CONNACK -6 (unauthenticated)" });
    }
    const body = asMap(await this.openSealed(frame), "CONNACK");
    const code = intField(body, "code", void 0, -128, 127);
    if (code !== 1) return this.end({ status: code, kind: "connack", detail: `CONNACK ${code}` });
    const keepalive = intField(body, "keepalive", void 0, 0, 3600);
    const headsValue = body.heads ?? {};
    const heads = {};
    for (const [key, value] of Object.entries(asMap(headsValue, "heads"))) heads[key] = intField({ v: value }, "v");
    this.state = "OPEN";
    this.handlers.onOpen({ time: intField(body, "time"), keepalive, heads });
  }
  onError(value) {
    const body = asMap(value, "ERROR");
    const code = intField(body, "code", 0);
    const reason = typeof body.reason === "string" ? body.reason : "";
    this.end({ status: -4, kind: "error", detail: `ERROR ${code}${reason ? ` (${reason})` : ""}` });
  }
  onGoAway(body) {
    const goAway = {
      reason: strField(body, "reason"),
      retryMs: intField(body, "retry_ms", void 0, 0, 36e5),
      redirect: strField(body, "redirect")
    };
    if ([...goAway.reason].length > 200 || [...goAway.redirect].length > 261) throw new ProtocolViolation("DISCONNECT field too long");
    this.end({ status: -4, kind: "goaway", detail: `going away: ${goAway.reason}`, goAway });
  }
};

// src/emitter.ts
var Emitter = class {
  listeners = {};
  /** Adds a listener; returns a function that removes it. */
  on(event, listener) {
    (this.listeners[event] ??= /* @__PURE__ */ new Set()).add(listener);
    return () => this.off(event, listener);
  }
  off(event, listener) {
    this.listeners[event]?.delete(listener);
  }
  /** Resolves with the next value of `event` for which `accept` is true. */
  once(event, accept = () => true) {
    return new Promise((resolve) => {
      const off = this.on(event, (value) => {
        if (!accept(value)) return;
        off();
        resolve(value);
      });
    });
  }
  emit(event, value) {
    for (const listener of [...this.listeners[event] ?? []]) {
      try {
        listener(value);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
};

// src/token.ts
var TokenError = class extends Error {
  name = "TokenError";
};
var PRINTABLE = /^[^\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}]*$/u;
function isPrintable(text) {
  if (!PRINTABLE.test(text)) return false;
  for (const char of text) if (/\p{Zs}/u.test(char) && char !== " ") return false;
  return true;
}
function checkId(value, what) {
  if (typeof value !== "string") throw new TokenError(`${what} is not a str`);
  const length = [...value].length;
  if (length < 1 || length > 64 || !isPrintable(value)) throw new TokenError(`${what} is not 1-64 printable characters`);
  return value;
}
function parseToken(text) {
  if (typeof text !== "string" || text.length > 1024) throw new TokenError("a token is a string of at most 1024 characters");
  if (!text.startsWith("em1.")) throw new TokenError('a token starts with "em1."');
  let items;
  try {
    items = decodeBody(base64urlDecodeStrict(text.slice(4)));
  } catch (error) {
    throw new TokenError(`malformed token: ${error.message}`);
  }
  if (!Array.isArray(items) || items.length !== 5) throw new TokenError("the token body is not an array of five items");
  const [userId, clientId, platform, secret, credential] = items;
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
    credential
  };
}

// src/types.ts
var ConversationType = { Private: 0, Group: 1, Chatroom: 2, Channel: 3 };
function utf16Ranges(text, ranges) {
  const at = [0];
  for (const char of text) at.push(at[at.length - 1] + char.length);
  const index = (offset) => at[Math.min(Math.max(offset, 0), at.length - 1)];
  return ranges.map(([start, end]) => [index(start), index(end)]);
}
function markHighlights(hit, before = "[", after = "]") {
  const text = typeof hit.message.content.searchable_content === "string" ? hit.message.content.searchable_content : "";
  let out = "";
  let done = 0;
  for (const [start, end] of hit.ranges) {
    out += text.slice(done, start) + before + text.slice(start, end) + after;
    done = end;
  }
  return out + text.slice(done);
}
var ContentType = { Text: 1, RecallNotice: 80, UpdateNotice: 81 };
var PersistFlag = { NotPersist: 0, Persist: 1, PersistAndCount: 3, Transparent: 4 };
function readConv(value) {
  const body = asMap(value, "conv");
  return { type: intField(body, "type"), target: strField(body, "target"), line: intField(body, "line", 0) };
}
function readMessage(value, seq = 0) {
  const body = asMap(value, "message");
  const content = toSafeIntegers(asMap(body.content, "content"));
  intField(content, "type");
  const message = {
    messageId: idField(body, "message_id"),
    conv: readConv(body.conv),
    from: strField(body, "from"),
    content,
    serverTime: intField(body, "server_time"),
    seq
  };
  if (Array.isArray(body.to_users)) message.toUsers = body.to_users.filter((u) => typeof u === "string");
  return message;
}
function ownView(conv, from, me) {
  if (conv.type === ConversationType.Private && conv.target === me) return { type: 0, target: from, line: conv.line };
  return conv;
}
function convKey(conv) {
  return `${conv.type}-${conv.target}-${conv.line ?? 0}`;
}
function parseConvKey(key) {
  const first = key.indexOf("-");
  const last = key.lastIndexOf("-");
  if (first <= 0 || last <= first) return void 0;
  const type = Number(key.slice(0, first));
  const line = Number(key.slice(last + 1));
  if (!Number.isInteger(type) || !Number.isInteger(line)) return void 0;
  return { type, target: key.slice(first + 1, last), line };
}
function noticeTarget(content) {
  if (content.type !== ContentType.RecallNotice && content.type !== ContentType.UpdateNotice) return void 0;
  try {
    const parsed = JSON.parse(content.content ?? "");
    if (!isMap(parsed) || typeof parsed.message_id !== "string" || !/^[0-9]+$/.test(parsed.message_id)) return void 0;
    return { operator: typeof parsed.operator === "string" ? parsed.operator : "", messageId: BigInt(parsed.message_id) };
  } catch {
    return void 0;
  }
}
function countsAsUnread(message, me) {
  const flag = message.content.persist_flag ?? 3;
  return flag === 3 && message.from !== me && message.content.type !== ContentType.RecallNotice && message.conv.type !== 2;
}
function mentions(message, me) {
  const type = message.content.mentioned_type ?? 0;
  return type === 2 || type === 1 && (message.content.mentioned_targets ?? []).includes(me);
}

// src/client.ts
var TERMINAL = /* @__PURE__ */ new Set([Status.Rejected, Status.TokenIncorrect, Status.SecretKeyMismatch, Status.Kickedoff, Status.NotLicensed]);
var RELATION_STREAMS = ["friend", "friend_request", "blacklist", "setting"];
var SYNC_METHOD = {
  friend: "sync_friends",
  friend_request: "sync_friend_requests",
  blacklist: "sync_blacklist",
  setting: "sync_settings"
};
var RequestError = class extends Error {
  constructor(method, code, result) {
    super(`${method} answered ${code}${isMap(result) && typeof result.field === "string" ? ` (${result.field}: ${String(result.problem)})` : ""}`);
    this.method = method;
    this.code = code;
    this.result = result;
  }
  method;
  code;
  result;
  name = "RequestError";
};
var ConnectionLostError = class extends Error {
  name = "ConnectionLostError";
};
var TimeoutError = class extends Error {
  name = "TimeoutError";
};
var ClientClosedError = class extends Error {
  constructor(status) {
    super(`client stopped with status ${status}`);
    this.status = status;
  }
  status;
  name = "ClientClosedError";
};
var sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
var jitter = (ms) => ms / 2 + Math.random() * (ms / 2);
function uuid() {
  const c = globalThis.crypto;
  return c.randomUUID ? c.randomUUID() : toHex(randomBytes(16));
}
var EmberClient = class extends Emitter {
  token;
  userId;
  clientId;
  status = Status.Unconnected;
  /** The last inbox seq this device has caught up to. */
  seq;
  /** The last CONNACK. */
  connack;
  /** Local copies of the relation streams (§12), keyed by each item's name. */
  relations = {
    friend: /* @__PURE__ */ new Map(),
    friend_request: /* @__PURE__ */ new Map(),
    blacklist: /* @__PURE__ */ new Map(),
    setting: /* @__PURE__ */ new Map()
  };
  relationVersions = { friend: 0, friend_request: 0, blacklist: 0, setting: 0 };
  options;
  connection;
  running = false;
  stopped = false;
  nextRequestId = 1;
  pending = /* @__PURE__ */ new Map();
  openWaiters = [];
  redirect;
  wake;
  pulling;
  pullAgain = false;
  syncing = /* @__PURE__ */ new Map();
  resync = /* @__PURE__ */ new Set();
  openedThisAttempt = false;
  lastSent = 0;
  lastReceived = 0;
  lastPing = 0;
  keepaliveTimer;
  constructor(options) {
    super();
    this.token = parseToken(options.token);
    this.userId = this.token.userId;
    this.clientId = this.token.clientId;
    this.seq = options.initialSeq ?? 0;
    this.options = {
      token: options.token,
      transport: options.transport,
      keepalive: options.keepalive ?? 0,
      requestTimeoutMs: options.requestTimeoutMs ?? 15e3,
      sendTimeoutMs: options.sendTimeoutMs ?? 6e4,
      syncRelations: options.syncRelations ?? true,
      backoffMs: options.backoffMs ?? { initial: 500, max: 3e4 },
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 15e3
    };
  }
  /** Starts the session. Resolves once connected (and caught up); rejects on a terminal status before that. */
  connect() {
    if (this.stopped) return Promise.reject(new ClientClosedError(this.status));
    const opened = new Promise((resolve, reject) => {
      const off = this.on("status", (status) => {
        if (status === Status.Connected) {
          off();
          resolve();
        } else if (TERMINAL.has(status) || status === Status.Logout) {
          off();
          reject(new ClientClosedError(status));
        }
      });
    });
    if (!this.running) {
      this.running = true;
      void this.run();
    }
    return opened;
  }
  /** Ends the session: DISCONNECT (§8.5), status −2. `clear` deletes the session: the token is dead after. */
  async close(options = {}) {
    this.stopped = true;
    const connection = this.connection;
    if (connection?.isOpen) connection.disconnect(options.clear ?? false);
    else connection?.abort({ status: Status.Logout, kind: "logout", detail: "closed" });
    this.wake?.();
    this.setStatus(Status.Logout);
    this.failWaiters(new ClientClosedError(Status.Logout));
  }
  /** Drops the current connection as if the network had failed (the client reconnects by itself). */
  dropConnection() {
    this.connection?.abort({ status: Status.ServerDown, kind: "transport", detail: "dropped by the app" });
  }
  // ---- the connection loop --------------------------------------------------------------------------------------
  async run() {
    let failures = 0;
    let clearRejects = 0;
    while (!this.stopped) {
      this.setStatus(Status.Connecting);
      this.openedThisAttempt = false;
      const info = await this.runOne();
      if (this.openedThisAttempt) failures = 0;
      this.emit("disconnected", info);
      if (this.stopped || info.kind === "logout") break;
      let delay;
      if (info.kind === "clear-connack") {
        clearRejects++;
        if (clearRejects >= 4) {
          this.terminate(Status.SecretKeyMismatch);
          break;
        }
        await this.pause(jitter(200 * 2 ** (clearRejects - 1)));
        continue;
      }
      clearRejects = 0;
      if (TERMINAL.has(info.status)) {
        this.terminate(info.status);
        break;
      }
      if (info.kind === "goaway" && info.goAway) {
        this.setStatus(Status.ServerDown);
        this.emit("goaway", info.goAway);
        if (info.goAway.redirect !== "") this.redirect = info.goAway.redirect;
        delay = info.goAway.retryMs + Math.random() * info.goAway.retryMs;
        failures = 0;
      } else {
        this.setStatus(info.status === Status.TimeInconsistent ? Status.TimeInconsistent : Status.ServerDown);
        const base = info.status === Status.TimeInconsistent ? 5e3 : this.options.backoffMs.initial;
        delay = jitter(Math.min(this.options.backoffMs.max, base * 2 ** failures));
        failures++;
      }
      await this.pause(delay);
    }
  }
  pause(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }
  terminate(status) {
    this.stopped = true;
    this.setStatus(status);
    this.failWaiters(new ClientClosedError(status));
  }
  failWaiters(error) {
    for (const waiter of this.openWaiters.splice(0)) waiter.reject(error);
    for (const [id, pending] of this.pending) {
      clearTimeout(pending.timer);
      this.pending.delete(id);
      pending.reject(error);
    }
  }
  runOne() {
    return new Promise((resolve) => {
      let handshakeTimer;
      const connection = new Connection(
        this.token,
        {
          onOpen: (ack) => {
            clearTimeout(handshakeTimer);
            this.background(this.onOpen(connection, ack));
          },
          onResponse: (id, code, result) => this.onResponse(id, code, result),
          onNotify: (topic, data) => this.onNotify(topic, data),
          onPong: () => this.emit("pong", void 0),
          onReceived: () => {
            this.lastReceived = Date.now();
          },
          onClose: (info) => {
            clearTimeout(handshakeTimer);
            this.stopKeepalive();
            if (this.connection === connection) this.connection = void 0;
            for (const [id, pending] of this.pending) {
              clearTimeout(pending.timer);
              this.pending.delete(id);
              pending.reject(new ConnectionLostError(`connection lost (${info.detail}) before ${pending.method} was answered`));
            }
            resolve(info);
          }
        },
        { keepalive: this.options.keepalive, redirect: this.redirect }
      );
      this.connection = connection;
      handshakeTimer = setTimeout(
        () => connection.abort({ status: Status.ServerDown, kind: "timeout", detail: "no CONNACK in time" }),
        this.options.handshakeTimeoutMs
      );
      void connection.open(this.options.transport);
    });
  }
  async onOpen(connection, ack) {
    this.connack = ack;
    this.openedThisAttempt = true;
    this.setStatus(Status.Receiving);
    this.startKeepalive(connection, ack.keepalive);
    this.emit("connected", ack);
    for (const waiter of this.openWaiters.splice(0)) waiter.resolve();
    const work = [];
    if ((ack.heads.msg ?? 0) > this.seq || this.seq === 0) work.push(this.syncMessages());
    if (this.options.syncRelations) {
      for (const stream of RELATION_STREAMS) {
        if ((ack.heads[stream] ?? 0) !== this.relationVersions[stream]) work.push(this.syncStream(stream));
      }
    }
    await Promise.allSettled(work);
    if (this.connection === connection && connection.isOpen) this.setStatus(Status.Connected);
  }
  setStatus(status) {
    if (this.status === status) return;
    this.status = status;
    this.emit("status", status);
  }
  // ---- keepalive (§8.4: the reference KeepaliveTimer's rules) ------------------------------------------------------
  startKeepalive(connection, keepaliveSeconds) {
    this.stopKeepalive();
    if (keepaliveSeconds <= 0) return;
    const keepaliveMs = keepaliveSeconds * 1e3;
    const now = Date.now();
    this.lastSent = now;
    this.lastReceived = now;
    this.lastPing = 0;
    this.keepaliveTimer = setInterval(() => {
      const at = Date.now();
      if (at - this.lastReceived >= keepaliveMs) {
        connection.abort({ status: Status.ServerDown, kind: "timeout", detail: "server lost (nothing received for a keepalive)" });
        return;
      }
      const idleSend = at - this.lastSent >= keepaliveMs / 2;
      const probe = at - this.lastReceived >= keepaliveMs / 2 && this.lastPing <= this.lastReceived;
      if ((idleSend || probe) && connection.isOpen) {
        connection.ping();
        this.lastSent = at;
        this.lastPing = at;
      }
    }, Math.max(250, Math.min(1e3, keepaliveMs / 8)));
  }
  stopKeepalive() {
    if (this.keepaliveTimer !== void 0) clearInterval(this.keepaliveTimer);
    this.keepaliveTimer = void 0;
  }
  // ---- requests ---------------------------------------------------------------------------------------------------
  whenOpen(timeoutMs) {
    if (this.connection?.isOpen) return Promise.resolve();
    if (this.stopped) return Promise.reject(new ClientClosedError(this.status));
    return new Promise((resolve, reject) => {
      let timer;
      const waiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        }
      };
      if (Number.isFinite(timeoutMs)) {
        timer = setTimeout(() => {
          this.openWaiters = this.openWaiters.filter((w) => w !== waiter);
          reject(new TimeoutError("not connected in time"));
        }, timeoutMs);
      }
      this.openWaiters.push(waiter);
    });
  }
  /**
   * One REQUEST (§8.1): waits for a connection, sends, resolves with the answer whatever its code. Rejects with
   * TimeoutError, ConnectionLostError (the connection ended first: the request may or may not have run) or
   * ClientClosedError.
   */
  async request(method, params = {}, options = {}) {
    const timeoutMs = options.timeoutMs ?? this.options.requestTimeoutMs;
    const started = Date.now();
    await this.whenOpen(timeoutMs);
    const connection = this.connection;
    if (connection === void 0 || !connection.isOpen) throw new ConnectionLostError("connection lost");
    const id = this.nextRequestId;
    this.nextRequestId = this.nextRequestId >= 4294967295 ? 1 : this.nextRequestId + 1;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => {
          this.pending.delete(id);
          reject(new TimeoutError(`${method}: no answer in ${timeoutMs} ms`));
        },
        Math.max(1, timeoutMs - (Date.now() - started))
      );
      this.pending.set(id, { method, resolve, reject, timer });
      connection.request(id, method, params);
      this.lastSent = Date.now();
    });
  }
  /** Like request(), but resolves with the result and throws RequestError on a non-zero code. */
  async call(method, params = {}, options = {}) {
    const answer = await this.request(method, params, options);
    if (answer.code !== 0) throw new RequestError(method, answer.code, answer.result);
    return answer.result;
  }
  onResponse(id, code, result) {
    const pending = this.pending.get(id);
    if (pending === void 0) return;
    this.pending.delete(id);
    clearTimeout(pending.timer);
    pending.resolve({ code, result });
  }
  // ---- pushes -----------------------------------------------------------------------------------------------------
  onNotify(topic, data) {
    this.emit("notify", { topic, data: toSafeIntegers(data) });
    try {
      if ((topic === "msg" || topic === "message_updated") && isMap(data)) {
        const seq = intField(data, "seq", 0);
        const message = readMessage(data.message, seq);
        if (seq === 0) this.deliver(message);
        else if (seq === this.seq + 1 && this.pulling === void 0) {
          this.seq = seq;
          this.deliver(message);
          this.emit("seq", seq);
        } else if (seq > this.seq) this.background(this.syncMessages());
      } else if (topic === "message_deleted" && isMap(data)) {
        this.emit("deleted", { messageId: idField(data, "message_id") });
      } else if (topic === "head" && isMap(data)) {
        const stream = strField(data, "stream");
        const head = intField(data, "head");
        if (this.options.syncRelations && stream in this.relationVersions && head > this.relationVersions[stream]) this.background(this.syncStream(stream));
      } else if (topic === "chatroom_quit" && isMap(data)) {
        this.emit("chatroomQuit", { chatroomId: strField(data, "chatroom_id"), reason: strField(data, "reason", "") });
      }
    } catch {
    }
  }
  /**
   * A sync started by a push runs on its own; when it fails (the connection went, a 4) nothing is lost: the
   * next CONNACK's heads start it again. It must not become an unhandled rejection (Node ends the process).
   */
  background(work) {
    work.catch(() => void 0);
  }
  deliver(message) {
    this.emit("message", message);
    const target = noticeTarget(message.content);
    if (target === void 0) return;
    if (message.content.type === ContentType.RecallNotice) {
      this.emit("recalled", { messageId: target.messageId, operator: target.operator, notice: message });
    } else {
      let content;
      try {
        const data = message.content.data;
        content = data instanceof Uint8Array ? toSafeIntegers(decodeBody(data)) : void 0;
      } catch {
        content = void 0;
      }
      this.emit("updated", { messageId: target.messageId, operator: target.operator, content, notice: message });
    }
  }
  // ---- pull sync (§9.4) -------------------------------------------------------------------------------------------
  /** Pulls the inbox from the device's seq until caught up; concurrent calls share one loop. */
  syncMessages() {
    if (this.pulling !== void 0) {
      this.pullAgain = true;
      return this.pulling;
    }
    this.pulling = (async () => {
      try {
        do {
          this.pullAgain = false;
          await this.pullLoop();
        } while (this.pullAgain);
      } finally {
        this.pulling = void 0;
      }
    })();
    return this.pulling;
  }
  async pullLoop() {
    for (; ; ) {
      const answer = await this.request("pull", { after_seq: this.seq, limit: 100 });
      if (answer.code === 250) {
        await sleep(1e3);
        continue;
      }
      if (answer.code !== 0) throw new RequestError("pull", answer.code, answer.result);
      const result = asMap(answer.result, "pull");
      const head = intField(result, "head");
      const entries = Array.isArray(result.messages) ? result.messages : [];
      let last = this.seq;
      for (const entry of entries) {
        const map = asMap(entry, "entry");
        const seq = intField(map, "seq");
        if (seq <= this.seq) continue;
        this.seq = seq;
        last = seq;
        this.deliver(readMessage(map.message, seq));
      }
      if (entries.length === 0 || last >= head) {
        if (head > this.seq) this.seq = head;
        this.emit("seq", this.seq);
        return;
      }
      this.emit("seq", this.seq);
    }
  }
  // ---- relation streams (§12.1) -----------------------------------------------------------------------------------
  /** Syncs one stream to its head (tombstones, `reset` pages and `full_sync_head` included). */
  syncStream(stream) {
    const running = this.syncing.get(stream);
    if (running !== void 0) {
      this.resync.add(stream);
      return running;
    }
    const work = (async () => {
      try {
        do {
          this.resync.delete(stream);
          await this.syncStreamOnce(stream);
        } while (this.resync.has(stream));
      } finally {
        this.syncing.delete(stream);
      }
    })();
    this.syncing.set(stream, work);
    return work;
  }
  async syncStreamOnce(stream) {
    let fullSyncHead = 0;
    let fromZero = this.relationVersions[stream] === 0;
    for (; ; ) {
      const after = this.relationVersions[stream];
      const params = { after, limit: 500 };
      if (fromZero && after > 0) params.full_sync_head = fullSyncHead;
      const answer = await this.request(SYNC_METHOD[stream], params);
      if (answer.code === 220) return;
      if (answer.code === 250) {
        await sleep(1e3);
        continue;
      }
      if (answer.code !== 0) throw new RequestError(SYNC_METHOD[stream], answer.code, answer.result);
      const result = asMap(answer.result, SYNC_METHOD[stream]);
      const head = intField(result, "head");
      const reset = result.reset === true;
      if (reset || head < after) {
        this.relations[stream].clear();
        this.relationVersions[stream] = 0;
        fromZero = true;
        fullSyncHead = 0;
        if (!reset) continue;
      }
      if (fromZero && fullSyncHead === 0) fullSyncHead = head;
      const items = (Array.isArray(result.items) ? result.items : []).map((item) => toSafeIntegers(asMap(item, "item")));
      for (const item of items) {
        const key = relationKey(stream, item);
        if (boolField(item, "deleted", false)) this.relations[stream].delete(key);
        else this.relations[stream].set(key, item);
        this.relationVersions[stream] = Math.max(this.relationVersions[stream], intField(item, "version"));
      }
      if (items.length > 0 || reset) this.emit("relations", { stream, items, reset });
      if (items.length === 0 || this.relationVersions[stream] >= head) {
        this.relationVersions[stream] = head;
        return;
      }
    }
  }
  // ---- messages (§9) ----------------------------------------------------------------------------------------------
  /**
   * send_message (§9.3). Answered once committed. Survives reconnects: an unanswered send is sent again with
   * the same client_msg_id, so it is stored once; a 250 (busy) is retried four times with backoff.
   */
  async sendMessage(conv, content, options = {}) {
    const clientMsgId = options.clientMsgId ?? uuid();
    const params = { conv: { type: conv.type, target: conv.target, line: conv.line ?? 0 }, content, client_msg_id: clientMsgId };
    if (options.toUsers !== void 0) params.to_users = options.toUsers;
    const deadline = Date.now() + this.options.sendTimeoutMs;
    let busy = 0;
    for (; ; ) {
      const left = deadline - Date.now();
      if (left <= 0) throw new TimeoutError("send_message: not acknowledged in time");
      let answer;
      try {
        answer = await this.request("send_message", params, { timeoutMs: Math.min(left, this.options.requestTimeoutMs) });
      } catch (error) {
        if (error instanceof ConnectionLostError) continue;
        if (error instanceof TimeoutError && Date.now() < deadline && this.connection?.isOpen) continue;
        throw error;
      }
      if (answer.code === 250 && busy < 4) {
        await sleep(jitter(1e3 * 2 ** busy++));
        continue;
      }
      if (answer.code !== 0) throw new RequestError("send_message", answer.code, answer.result);
      const result = asMap(answer.result, "send_message");
      const sent = {
        messageId: idField(result, "message_id"),
        serverTime: intField(result, "server_time"),
        seq: intField(result, "seq"),
        clientMsgId
      };
      if (sent.seq === this.seq + 1 && this.pulling === void 0) {
        this.seq = sent.seq;
        this.emit("seq", this.seq);
      }
      const message = {
        messageId: sent.messageId,
        conv: { type: conv.type, target: conv.target, line: conv.line ?? 0 },
        from: this.userId,
        content: { persist_flag: 3, ...content },
        serverTime: sent.serverTime,
        seq: sent.seq
      };
      if (options.toUsers !== void 0 && options.toUsers.length > 0) message.toUsers = options.toUsers;
      this.emit("sent", message);
      return sent;
    }
  }
  /** A text message: content type 1 with the text in searchable_content. */
  sendText(conv, text, options = {}) {
    return this.sendMessage(conv, { type: ContentType.Text, searchable_content: text }, options);
  }
  /** pull (§9.4), one page, raw. The client pulls by itself; this is for apps that manage seqs themselves. */
  async pull(afterSeq, limit = 100) {
    const result = asMap(await this.call("pull", { after_seq: afterSeq, limit }), "pull");
    const messages = (Array.isArray(result.messages) ? result.messages : []).map((entry) => {
      const map = asMap(entry, "entry");
      return readMessage(map.message, intField(map, "seq"));
    });
    return { messages, head: intField(result, "head") };
  }
  async recallMessage(messageId) {
    const result = asMap(await this.call("recall_message", { message_id: messageId }), "recall_message");
    return { messageId: idField(result, "message_id"), seq: intField(result, "seq") };
  }
  async deleteMessage(messageId) {
    await this.call("delete_message", { message_id: messageId });
  }
  async updateMessage(messageId, content) {
    const result = asMap(await this.call("update_message", { message_id: messageId, content }), "update_message");
    return { messageId: idField(result, "message_id"), seq: intField(result, "seq") };
  }
  /** load_remote_history (§9.7): newest first; 220 when the server has it off. */
  async loadRemoteHistory(conv, beforeId = 0n, count = 20) {
    const result = asMap(
      await this.call("load_remote_history", { conv: { type: conv.type, target: conv.target, line: conv.line ?? 0 }, before_id: beforeId, count }),
      "load_remote_history"
    );
    return (Array.isArray(result.messages) ? result.messages : []).map((m) => readMessage(m));
  }
  /**
   * search_messages (§9.12): this user's messages on the server that hold `keyword`, newest first: every word
   * (by prefix) and every CJK run must be in `searchable_content`. For the next page pass `nextCursor` as
   * `cursor`. A bad keyword or filter rejects with code 251 and the reason.
   */
  async searchMessages(keyword, options = {}) {
    const params = { keyword, limit: options.limit ?? 20 };
    if (options.conv) params.conv = { type: options.conv.type, target: options.conv.target, line: options.conv.line ?? 0 };
    if (options.fromUser !== void 0) params.from_user = options.fromUser;
    if (options.contentTypes && options.contentTypes.length) params.content_types = options.contentTypes;
    if (options.before !== void 0) params.before = options.before;
    if (options.after !== void 0) params.after = options.after;
    if (options.cursor !== void 0) params.cursor = options.cursor;
    const result = asMap(await this.call("search_messages", params), "search_messages");
    const hits = (Array.isArray(result.results) ? result.results : []).map((value) => {
      const entry = asMap(value, "result");
      const message = readMessage(entry.message);
      const highlights = (Array.isArray(entry.highlights) ? entry.highlights : []).map((pair) => {
        if (!Array.isArray(pair) || pair.length !== 2) throw new TypeError("search_messages: a highlight is not a [start, end] pair");
        return [Number(pair[0]), Number(pair[1])];
      });
      const text = typeof message.content.searchable_content === "string" ? message.content.searchable_content : "";
      return { message, highlights, ranges: utf16Ranges(text, highlights) };
    });
    const page = { hits };
    if (typeof result.next_cursor === "string") page.nextCursor = result.next_cursor;
    return page;
  }
  // ---- conversations (§16) ----------------------------------------------------------------------------------------
  async getConversations(options = {}) {
    const params = { before: options.before ?? 0n, limit: options.limit ?? 50 };
    if (options.types) params.types = options.types;
    if (options.lines) params.lines = options.lines;
    const result = asMap(await this.call("get_conversations", params), "get_conversations");
    const conversations = (Array.isArray(result.conversations) ? result.conversations : []).map((value) => {
      const entry = asMap(value, "entry");
      const conv = asMap(entry.conv, "conv");
      return {
        conv: { type: intField(conv, "type"), target: strField(conv, "target"), line: intField(conv, "line", 0) },
        lastMessage: readMessage(entry.last_message),
        readTo: idField(entry, "read_to", 0n),
        unread: intField(entry, "unread", 0),
        unreadMentions: intField(entry, "unread_mentions", 0)
      };
    });
    return { conversations, more: result.more === true };
  }
  async markRead(conv, messageId) {
    const result = asMap(await this.call("mark_read", { conv: { type: conv.type, target: conv.target, line: conv.line ?? 0 }, message_id: messageId }), "mark_read");
    return idField(result, "read_to");
  }
  async clearConversation(conv, messageId) {
    const result = asMap(await this.call("clear_conversation", { conv: { type: conv.type, target: conv.target, line: conv.line ?? 0 }, message_id: messageId }), "clear_conversation");
    return intField(result, "deleted");
  }
  // ---- users (§9.2, §12.8) ----------------------------------------------------------------------------------------
  userCache = /* @__PURE__ */ new Map();
  /** User info, from the cache unless `refresh`; asks the server for what it lacks (at most 100 ids a call). */
  async getUserInfo(userIds, options = {}) {
    const wanted = [...new Set(userIds)];
    const ask = options.refresh ? wanted : wanted.filter((id) => !this.userCache.has(id));
    for (let i = 0; i < ask.length; i += 100) {
      const chunk = ask.slice(i, i + 100);
      const known = {};
      for (const id of chunk) {
        const cached = this.userCache.get(id);
        if (cached && typeof cached.updated_at === "number") known[id] = cached.updated_at;
      }
      const params = { user_ids: chunk, refresh: options.refresh ?? false };
      if (Object.keys(known).length > 0) params.known = known;
      const result = asMap(await this.call("get_user_info", params), "get_user_info");
      for (const user of Array.isArray(result.users) ? result.users : []) {
        const map = toSafeIntegers(asMap(user, "user"));
        this.userCache.set(strField(map, "user_id"), map);
      }
    }
    return wanted.map((id) => this.userCache.get(id)).filter((u) => u !== void 0);
  }
  // ---- friends and blacklist (§12) --------------------------------------------------------------------------------
  async sendFriendRequest(userId, reason = "", extra = "") {
    await this.call("send_friend_request", { user_id: userId, reason, extra });
  }
  async handleFriendRequest(userId, accept) {
    await this.call("handle_friend_request", { user_id: userId, accept });
  }
  async deleteFriend(userId) {
    await this.call("delete_friend", { user_id: userId });
  }
  async setFriendAlias(userId, alias) {
    await this.call("set_friend_alias", { user_id: userId, alias });
  }
  async setBlacklist(userId, blocked) {
    await this.call("set_blacklist", { user_id: userId, blocked });
  }
  async getBlacklist() {
    const result = asMap(await this.call("get_blacklist"), "get_blacklist");
    return (Array.isArray(result.user_ids) ? result.user_ids : []).filter((u) => typeof u === "string");
  }
  /** The synced friend list (§12.4): friend ids. */
  get friends() {
    return [...this.relations.friend.keys()];
  }
  // ---- groups basics (§13) ----------------------------------------------------------------------------------------
  async createGroup(options = {}) {
    const params = { name: options.name ?? "", members: options.members ?? [] };
    if (options.groupId !== void 0) params.group_id = options.groupId;
    if (options.type !== void 0) params.type = options.type;
    if (options.joinType !== void 0) params.join_type = options.joinType;
    return strField(asMap(await this.call("create_group", params), "create_group"), "group_id");
  }
  async addGroupMembers(groupId, userIds) {
    await this.call("add_group_members", { group_id: groupId, user_ids: userIds });
  }
  async kickGroupMembers(groupId, userIds) {
    await this.call("kick_group_members", { group_id: groupId, user_ids: userIds });
  }
  async quitGroup(groupId) {
    await this.call("quit_group", { group_id: groupId });
  }
  async dismissGroup(groupId) {
    await this.call("dismiss_group", { group_id: groupId });
  }
  async getGroupInfo(groupId, infoVersion = 0) {
    const result = asMap(await this.call("get_group_info", { group_id: groupId, info_version: infoVersion }), "get_group_info");
    return {
      infoVersion: intField(result, "info_version"),
      memberVersion: intField(result, "member_version"),
      group: isMap(result.group) ? toSafeIntegers(result.group) : void 0
    };
  }
  /** Every current member (pages through get_group_members from 0). */
  async getGroupMembers(groupId) {
    const members = [];
    let afterVersion = 0;
    let afterUser = "";
    for (; ; ) {
      const result = asMap(
        await this.call("get_group_members", { group_id: groupId, since_version: 0, after_version: afterVersion, after_user: afterUser, limit: 500 }),
        "get_group_members"
      );
      const page = (Array.isArray(result.members) ? result.members : []).map((m) => toSafeIntegers(asMap(m, "member")));
      members.push(...page);
      if (page.length < 500) return members;
      const last = page[page.length - 1];
      afterVersion = intField(last, "version");
      afterUser = strField(last, "user_id");
    }
  }
  async getMyGroups() {
    const result = asMap(await this.call("get_my_groups"), "get_my_groups");
    return (Array.isArray(result.groups) ? result.groups : []).map((g) => {
      const map = asMap(g, "group");
      return { groupId: strField(map, "group_id"), infoVersion: intField(map, "info_version"), memberVersion: intField(map, "member_version") };
    });
  }
  /** set_push_token (§9.10). */
  async setPushToken(pushType, token) {
    await this.call("set_push_token", { push_type: pushType, token });
  }
};
function relationKey(stream, item) {
  switch (stream) {
    case "friend":
      return String(item.friend_id);
    case "friend_request":
      return `${String(item.from)}>${String(item.to)}`;
    case "blacklist":
      return String(item.user_id);
    case "setting":
      return `${String(item.scope)}:${String(item.key)}`;
  }
}

// src/conversations.ts
var READ_SCOPE = 11;
var CLEAR_SCOPE = 18;
var ConversationList = class extends Emitter {
  constructor(client) {
    super();
    this.client = client;
    client.on("message", (message) => this.onMessage(message));
    client.on("sent", (message) => this.onMessage(message));
    client.on("relations", ({ stream, items }) => {
      if (stream === "setting") this.onSettings(items);
    });
  }
  client;
  states = /* @__PURE__ */ new Map();
  /** Newest last message first. */
  get list() {
    return [...this.states.values()].sort((a, b) => {
      const x = a.lastMessage?.messageId ?? 0n;
      const y = b.lastMessage?.messageId ?? 0n;
      return x === y ? 0 : x > y ? -1 : 1;
    }).map(({ key, conv, lastMessage, readTo, unread, unreadMentions }) => ({ key, conv, lastMessage, readTo, unread, unreadMentions }));
  }
  get(conv) {
    return this.states.get(convKey(conv));
  }
  /** Rebuild from the server (§16.3): every page of get_conversations. */
  async load() {
    let before = 0n;
    for (let page = 0; page < 20; page++) {
      const { conversations, more } = await this.client.getConversations({ before, limit: 200 });
      for (const entry of conversations) this.take(entry);
      if (!more || conversations.length === 0) break;
      before = conversations[conversations.length - 1].lastMessage.messageId;
    }
    this.changed();
  }
  /** Mark a conversation read up to its last message (or `messageId`); the server keeps the mark (§16.2). */
  async markRead(conv, messageId) {
    const state = this.states.get(convKey(conv));
    const upTo = messageId ?? state?.lastMessage?.messageId;
    if (upTo === void 0) return;
    const readTo = await this.client.markRead(conv, upTo);
    this.applyReadMark(convKey(conv), readTo);
    this.changed();
  }
  take(entry) {
    const key = convKey(entry.conv);
    this.states.set(key, {
      key,
      conv: entry.conv,
      lastMessage: entry.lastMessage,
      readTo: entry.readTo,
      unread: entry.unread,
      unreadMentions: entry.unreadMentions,
      baseUnread: entry.unread,
      baseMentions: entry.unreadMentions,
      baseUpTo: entry.lastMessage.messageId,
      liveUnread: /* @__PURE__ */ new Map()
    });
  }
  stateFor(conv) {
    const key = convKey(conv);
    let state = this.states.get(key);
    if (state === void 0) {
      state = { key, conv, lastMessage: void 0, readTo: 0n, unread: 0, unreadMentions: 0, baseUnread: 0, baseMentions: 0, baseUpTo: 0n, liveUnread: /* @__PURE__ */ new Map() };
      this.states.set(key, state);
    }
    return state;
  }
  onMessage(message) {
    const flag = message.content.persist_flag ?? 3;
    if (flag === 0 || flag === 4 || message.conv.type === 2) return;
    const me = this.client.userId;
    const state = this.stateFor(ownView(message.conv, message.from, me));
    if (state.lastMessage === void 0 || message.messageId > state.lastMessage.messageId) state.lastMessage = message;
    if (message.messageId > state.baseUpTo && message.messageId > state.readTo && countsAsUnread(message, me)) {
      state.liveUnread.set(message.messageId, mentions(message, me));
    }
    this.recount(state);
    this.changed();
  }
  onSettings(items) {
    for (const item of items) {
      if (item.deleted || item.scope !== READ_SCOPE && item.scope !== CLEAR_SCOPE) continue;
      const conv = parseConvKey(String(item.key));
      if (conv === void 0 || typeof item.value !== "string" || !/^[0-9]+$/.test(item.value)) continue;
      const key = convKey(conv);
      if (item.scope === READ_SCOPE) this.applyReadMark(key, BigInt(item.value));
      else if (this.states.get(key)?.lastMessage && this.states.get(key).lastMessage.messageId <= BigInt(item.value)) {
        this.states.delete(key);
      }
    }
    this.changed();
  }
  applyReadMark(key, readTo) {
    const state = this.states.get(key);
    if (state === void 0 || readTo <= state.readTo) return;
    state.readTo = readTo;
    if (readTo >= state.baseUpTo) {
      state.baseUnread = 0;
      state.baseMentions = 0;
    }
    for (const id of [...state.liveUnread.keys()]) if (id <= readTo) state.liveUnread.delete(id);
    this.recount(state);
  }
  recount(state) {
    state.unread = state.baseUnread + state.liveUnread.size;
    state.unreadMentions = state.baseMentions + [...state.liveUnread.values()].filter(Boolean).length;
  }
  changed() {
    this.emit("changed", this.list);
  }
};

// src/transport.ts
function failoverTransport(factories) {
  if (factories.length === 0) throw new Error("failoverTransport needs at least one transport");
  let current = 0;
  return async (handlers, redirect) => {
    let lastError;
    for (let tried = 0; tried < factories.length; tried++) {
      const index = (current + tried) % factories.length;
      try {
        const transport = await factories[index](handlers, tried === 0 ? redirect : void 0);
        current = index;
        return transport;
      } catch (error) {
        lastError = error;
      }
    }
    throw lastError;
  };
}
function webSocketTransport(url, options = {}) {
  return (handlers) => new Promise((resolve, reject) => {
    const Ctor = options.WebSocket ?? globalThis.WebSocket;
    if (Ctor === void 0) {
      reject(new Error("no WebSocket: pass options.WebSocket (e.g. the ws package) on Node 20"));
      return;
    }
    const socket = new Ctor(url);
    socket.binaryType = "arraybuffer";
    let opened = false;
    let closed = false;
    const finish = (error) => {
      if (closed) return;
      closed = true;
      if (!opened) reject(error ?? new Error("WebSocket closed before it opened"));
      else handlers.onClose(error);
    };
    socket.onopen = () => {
      opened = true;
      resolve({
        messageFramed: true,
        send: (bytes) => {
          if (socket.readyState === 1) socket.send(bytes);
        },
        close: () => {
          try {
            socket.close(1e3);
          } catch {
          }
        }
      });
    };
    socket.onmessage = (event) => {
      const data = event.data;
      if (data instanceof ArrayBuffer) handlers.onData(new Uint8Array(data));
      else if (ArrayBuffer.isView(data)) handlers.onData(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      else {
        socket.close(1003);
        finish(new Error("text WebSocket message"));
      }
    };
    socket.onerror = () => finish(new Error("WebSocket error"));
    socket.onclose = (event) => finish(event.code === 1e3 || event.code === void 0 ? void 0 : new Error(`WebSocket closed (${event.code}${event.reason ? ` ${event.reason}` : ""})`));
  });
}
export {
  BodyError,
  ClientClosedError,
  Connection,
  ConnectionLostError,
  ContentType,
  ConversationList,
  ConversationType,
  DEFAULT_MAX_FRAME_BYTES,
  EmberClient,
  FLAG_ENCRYPTED,
  FieldError,
  FrameReader,
  FrameSealer,
  FrameType,
  HEADER_BYTES,
  MAGIC0,
  MAGIC1,
  MAX_CONTAINER_ITEMS,
  MAX_NESTING,
  PersistFlag,
  ProtocolViolation,
  RELATION_STREAMS,
  RequestError,
  Status,
  TAG_BYTES,
  TimeoutError,
  TokenError,
  VERSION,
  aesKey,
  asMap,
  base64urlDecodeStrict,
  base64urlEncode,
  binField,
  boolField,
  bytesEqual,
  checkHeader,
  concatBytes,
  convKey,
  countsAsUnread,
  decodeBody,
  deriveSessionKeys,
  encodeBody,
  encodeHeader,
  failoverTransport,
  frameNonce,
  fromHex,
  gcmOpen,
  gcmSeal,
  hkdfSha256,
  idField,
  intField,
  isMap,
  isPrintable,
  markHighlights,
  mentions,
  noticeTarget,
  ownView,
  parseConvKey,
  parseToken,
  randomBytes,
  readConv,
  readMessage,
  sealProof,
  strField,
  strictUtf8Decoder,
  toHex,
  toSafeIntegers,
  utf16Ranges,
  utf8,
  validateBody,
  webSocketTransport
};
