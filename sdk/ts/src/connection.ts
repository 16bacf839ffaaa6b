// One connection to a gateway (PROTOCOL.md §5–§8): the handshake, frame sealing, and the frames the client reads
// in each state (§2.1). The reconnecting, request-matching client is built on top of it (client.ts).
import { concatBytes, randomBytes } from "./bytes.js";
import { deriveSessionKeys, FrameSealer, sealProof } from "./crypto.js";
import { asMap, binField, Body, intField, isMap, strField } from "./fields.js";
import { DEFAULT_MAX_FRAME_BYTES, encodeHeader, Frame, FrameReader, FrameType, ProtocolViolation } from "./frames.js";
import { decodeBody, encodeBody } from "./msgpack.js";
import type { Token } from "./token.js";
import type { Transport, TransportFactory } from "./transport.js";

/** SDK statuses (§7): the CONNACK codes plus the ones only the SDK reports. */
export const Status = {
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
  Receiving: 2,
} as const;
export type StatusValue = (typeof Status)[keyof typeof Status];

export interface ConnAck {
  time: number;
  keepalive: number;
  heads: Record<string, number>;
}

export interface GoAway {
  reason: string;
  retryMs: number;
  redirect: string;
}

/** Why a connection ended, and what the client should do about it. */
export interface CloseInfo {
  /** The SDK status this ending maps to (§7). */
  status: number;
  /** How it ended: a sealed or clear CONNACK failure, a `kicked` push, a going-away DISCONNECT, an ERROR frame,
   * a violation by the server, the transport going away, or our own DISCONNECT. */
  kind: "connack" | "clear-connack" | "kicked" | "goaway" | "error" | "violation" | "transport" | "logout" | "timeout";
  detail: string;
  goAway?: GoAway;
}

export interface ConnectionHandlers {
  onOpen(ack: ConnAck): void;
  onResponse(requestId: number, code: number, result: unknown): void;
  onNotify(topic: string, data: unknown): void;
  onPong(): void;
  /** Called once when the connection is over, for whatever reason. */
  onClose(info: CloseInfo): void;
  /** Every frame received (for the keepalive timer). */
  onReceived?(): void;
}

export interface ConnectionOptions {
  keepalive: number;
  maxFrameBytes?: number;
  now?: () => number;
  redirect?: string;
  /** Tests only: a fixed client nonce (a real connection must use 32 fresh random bytes). */
  clientNonce?: () => Uint8Array;
}

type State = "AWAIT_HELLO" | "AUTHENTICATING" | "OPEN" | "CLOSED";

export class Connection {
  private state: State = "AWAIT_HELLO";
  private readonly reader: FrameReader;
  private transport: Transport | undefined;
  private send: FrameSealer | undefined;
  private receive: FrameSealer | undefined;
  /** Frames are handled one after the other: opening one is async, and counters must follow arrival order. */
  private inbound: Promise<void> = Promise.resolve();
  /** Sealed frames are written in the order they were sealed (each took its counter when sealed). */
  private outbound: Promise<void> = Promise.resolve();
  private closeInfo: CloseInfo | undefined;
  private helloSeen = false;

  constructor(
    private readonly token: Token,
    private readonly handlers: ConnectionHandlers,
    private readonly options: ConnectionOptions,
  ) {
    this.reader = new FrameReader(options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES);
  }

  get isOpen(): boolean {
    return this.state === "OPEN";
  }

  async open(factory: TransportFactory): Promise<void> {
    try {
      this.transport = await factory(
        {
          onData: (chunk) => this.onData(chunk),
          // Behind the frames already received: a server that seals its last frame (a CONNACK failure, a
          // going-away DISCONNECT, an answer) and closes at once must have that frame read, not lost to the FIN.
          onClose: (error) => {
            this.inbound = this.inbound.then(() =>
              this.end({ status: -4, kind: "transport", detail: error?.message ?? "connection closed" }),
            );
          },
        },
        this.options.redirect,
      );
    } catch (error) {
      this.end({ status: -4, kind: "transport", detail: (error as Error).message });
      return;
    }
    if (this.state === "CLOSED") this.transport.close();
  }

  request(requestId: number, method: string, params: Body): void {
    this.sendSealed(FrameType.REQUEST, requestId, encodeBody({ m: method, p: params }));
  }

  ping(): void {
    this.sendSealed(FrameType.PING, 0, new Uint8Array(0));
  }

  /** §8.5: the server does not answer; the status becomes −2 Logout. */
  disconnect(clear: boolean): void {
    if (this.state === "OPEN") {
      this.sendSealed(FrameType.DISCONNECT, 0, encodeBody({ clear }));
      const transport = this.transport;
      this.outbound.then(() => transport?.close());
    }
    this.end({ status: -2, kind: "logout", detail: clear ? "logout (session cleared)" : "logout" }, false);
  }

  /** Ends the connection from this side (a lost server, a timeout) without a frame. */
  abort(info: CloseInfo): void {
    this.end(info);
  }

  private sendSealed(type: number, requestId: number, plaintext: Uint8Array): void {
    if (this.state !== "OPEN" || this.send === undefined) throw new Error("connection is not open");
    const sealed = this.send.seal(type, requestId, plaintext);
    const transport = this.transport;
    this.outbound = this.outbound.then(
      () => sealed.then((bytes) => transport?.send(bytes)),
      () => undefined,
    );
  }

  private onData(chunk: Uint8Array): void {
    if (this.state === "CLOSED") return;
    let frames: Frame[];
    try {
      frames = this.reader.feed(chunk);
      if (this.transport?.messageFramed && (frames.length !== 1 || !this.reader.empty)) {
        throw new ProtocolViolation("a WebSocket message must hold exactly one frame");
      }
    } catch (error) {
      this.violation((error as Error).message);
      return;
    }
    for (const frame of frames) {
      this.inbound = this.inbound.then(() => this.handle(frame)).catch((error: unknown) => this.violation(String((error as Error)?.message ?? error)));
    }
  }

  private violation(detail: string): void {
    this.end({ status: -4, kind: "violation", detail: `server broke the protocol: ${detail}` });
  }

  private end(info: CloseInfo, closeTransport = true): void {
    if (this.state === "CLOSED") return;
    this.state = "CLOSED";
    this.closeInfo = info;
    if (closeTransport) this.transport?.close();
    this.handlers.onClose(info);
  }

  get closed(): CloseInfo | undefined {
    return this.closeInfo;
  }

  private async openSealed(frame: Frame): Promise<unknown> {
    if (!frame.encrypted || this.receive === undefined) throw new ProtocolViolation(`clear frame of type ${frame.type} after the handshake`);
    let plaintext: Uint8Array;
    try {
      plaintext = await this.receive.open(frame.header, frame.body);
    } catch {
      throw new ProtocolViolation("a frame failed authentication");
    }
    if (frame.type === FrameType.PONG) {
      if (plaintext.length !== 0) throw new ProtocolViolation("PONG with a body");
      return undefined;
    }
    return decodeBody(plaintext);
  }

  private async handle(frame: Frame): Promise<void> {
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
        if (![FrameType.RESPONSE, FrameType.NOTIFY, FrameType.PONG, FrameType.DISCONNECT, FrameType.ERROR].includes(frame.type as 5)) {
          throw new ProtocolViolation(`unexpected frame type ${frame.type}`);
        }
        const body = await this.openSealed(frame);
        if (this.state !== "OPEN") return;
        if (frame.type === FrameType.PONG) return this.handlers.onPong();
        const map = asMap(body, "body");
        if (frame.type === FrameType.RESPONSE) {
          return this.handlers.onResponse(frame.requestId, intField(map, "c", undefined, -(2 ** 31), 2 ** 31), map.r ?? null);
        }
        if (frame.type === FrameType.NOTIFY) {
          const topic = strField(map, "t");
          const data = map.d ?? null;
          if (topic === "kicked" && isMap(data)) {
            const code = intField(data, "code", undefined, -128, 127);
            return this.end({ status: code, kind: "kicked", detail: `kicked (${code})` });
          }
          return this.handlers.onNotify(topic, data);
        }
        if (frame.type === FrameType.DISCONNECT) return this.onGoAway(map);
        return this.onError(map);
      }
    }
  }

  private async onHello(frame: Frame): Promise<void> {
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
      encodeBody({ cred: this.token.credential, time: now, platform: this.token.platform, keepalive }),
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
      proof,
    });
    this.state = "AUTHENTICATING";
    this.transport?.send(concatBytes(encodeHeader(FrameType.CONNECT, false, 0, connect.length), connect));
  }

  private async onConnAck(frame: Frame): Promise<void> {
    if (!frame.encrypted) {
      // §5.3: a clear CONNACK is believed only when it says −6, and even then only as "maybe" (§7).
      const body = asMap(decodeBody(frame.body), "CONNACK");
      const code = intField(body, "code", undefined, -128, 127);
      if (code !== -6) throw new ProtocolViolation(`clear CONNACK with code ${code}`);
      return this.end({ status: -6, kind: "clear-connack", detail: "clear CONNACK -6 (unauthenticated)" });
    }
    const body = asMap(await this.openSealed(frame), "CONNACK");
    const code = intField(body, "code", undefined, -128, 127);
    if (code !== 1) return this.end({ status: code, kind: "connack", detail: `CONNACK ${code}` });
    const keepalive = intField(body, "keepalive", undefined, 0, 3600);
    const headsValue = body.heads ?? {};
    const heads: Record<string, number> = {};
    for (const [key, value] of Object.entries(asMap(headsValue, "heads"))) heads[key] = intField({ v: value }, "v");
    this.state = "OPEN";
    this.handlers.onOpen({ time: intField(body, "time"), keepalive, heads });
  }

  private onError(value: unknown): void {
    const body = asMap(value, "ERROR");
    const code = intField(body, "code", 0);
    const reason = typeof body.reason === "string" ? body.reason : "";
    this.end({ status: -4, kind: "error", detail: `ERROR ${code}${reason ? ` (${reason})` : ""}` });
  }

  private onGoAway(body: Body): void {
    const goAway: GoAway = {
      reason: strField(body, "reason"),
      retryMs: intField(body, "retry_ms", undefined, 0, 3_600_000),
      redirect: strField(body, "redirect"),
    };
    if ([...goAway.reason].length > 200 || [...goAway.redirect].length > 261) throw new ProtocolViolation("DISCONNECT field too long");
    this.end({ status: -4, kind: "goaway", detail: `going away: ${goAway.reason}`, goAway });
  }
}
