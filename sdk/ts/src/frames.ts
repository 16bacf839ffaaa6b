// Frames (PROTOCOL.md §2): a 14-byte header ‖ body. Sans-I/O: FrameReader takes bytes as they arrive (a TCP
// stream, or one WebSocket message = one frame) and hands out whole frames after checking each header.

export const MAGIC0 = 0x45; // "E"
export const MAGIC1 = 0x4d; // "M"
export const VERSION = 1;
export const HEADER_BYTES = 14;
export const TAG_BYTES = 16;
export const FLAG_ENCRYPTED = 0x01;
export const DEFAULT_MAX_FRAME_BYTES = 262_144;

export const FrameType = {
  HELLO: 1,
  CONNECT: 2,
  CONNACK: 3,
  REQUEST: 4,
  RESPONSE: 5,
  NOTIFY: 6,
  PING: 7,
  PONG: 8,
  DISCONNECT: 9,
  ERROR: 10,
} as const;
export type FrameTypeValue = (typeof FrameType)[keyof typeof FrameType];

export interface Frame {
  type: number;
  encrypted: boolean;
  requestId: number;
  /** The 14 header bytes exactly as received (the AAD of a sealed frame, §6). */
  header: Uint8Array;
  /** The body bytes: ciphertext ‖ tag when encrypted. */
  body: Uint8Array;
  /** header ‖ body, as received (HELLO's bytes are the proof's associated data, §5.1). */
  raw: Uint8Array;
}

export class ProtocolViolation extends Error {
  override name = "ProtocolViolation";
}

export function encodeHeader(type: number, encrypted: boolean, requestId: number, length: number): Uint8Array {
  const header = new Uint8Array(HEADER_BYTES);
  const view = new DataView(header.buffer);
  header[0] = MAGIC0;
  header[1] = MAGIC1;
  header[2] = VERSION;
  header[3] = type;
  header[4] = encrypted ? FLAG_ENCRYPTED : 0;
  header[5] = 0;
  view.setUint32(6, requestId >>> 0);
  view.setUint32(10, length >>> 0);
  return header;
}

export function checkHeader(header: Uint8Array, maxFrameBytes: number): { type: number; encrypted: boolean; requestId: number; length: number } {
  const view = new DataView(header.buffer, header.byteOffset, HEADER_BYTES);
  if (header[0] !== MAGIC0 || header[1] !== MAGIC1) throw new ProtocolViolation("bad magic");
  if (header[2] !== VERSION) throw new ProtocolViolation("unsupported version");
  const type = header[3]!;
  if (type < FrameType.HELLO || type > FrameType.ERROR) throw new ProtocolViolation("unknown frame type");
  const flags = header[4]!;
  if ((flags & ~FLAG_ENCRYPTED) !== 0) throw new ProtocolViolation("unknown flag bit");
  if (header[5] !== 0) throw new ProtocolViolation("reserved byte not zero");
  const length = view.getUint32(10);
  if (length > maxFrameBytes) throw new ProtocolViolation("frame longer than the limit");
  return { type, encrypted: (flags & FLAG_ENCRYPTED) !== 0, requestId: view.getUint32(6), length };
}

/** Reassembles frames from a byte stream; checks each header (the magic at its first byte) before its body. */
export class FrameReader {
  private buffer = new Uint8Array(0);

  constructor(private readonly maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {}

  /** True when no partial frame is held (a WebSocket message must end on a frame boundary). */
  get empty(): boolean {
    return this.buffer.length === 0;
  }

  feed(chunk: Uint8Array): Frame[] {
    if (this.buffer.length === 0) this.buffer = chunk.slice();
    else {
      const joined = new Uint8Array(this.buffer.length + chunk.length);
      joined.set(this.buffer);
      joined.set(chunk, this.buffer.length);
      this.buffer = joined;
    }
    const frames: Frame[] = [];
    for (;;) {
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
        raw,
      });
      this.buffer = this.buffer.slice(HEADER_BYTES + length);
    }
    return frames;
  }
}
