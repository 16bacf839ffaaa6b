// The client: one logical session that reconnects by itself (PROTOCOL.md §7, §8.7), matches requests to answers
// by id with timeouts (§8.1), keeps the connection alive (§8.4), keeps the inbox in step by seq (§9.4, §9.9),
// resends unacknowledged sends with the same client_msg_id (§9.3), and syncs the relation streams (§12).
import { randomBytes, toHex } from "./bytes.js";
import { CloseInfo, ConnAck, Connection, GoAway, Status } from "./connection.js";
import { Emitter } from "./emitter.js";
import { asMap, Body, boolField, idField, intField, isMap, strField, toSafeIntegers } from "./fields.js";
import { decodeBody } from "./msgpack.js";
import { parseToken, Token } from "./token.js";
import type { TransportFactory } from "./transport.js";
import { Content, ContentType, Conv, Message, noticeTarget, readMessage, SearchHit, SearchOptions, SearchPage, utf16Ranges } from "./types.js";

/** Statuses after which retrying with the same token cannot succeed (§7). */
const TERMINAL = new Set<number>([Status.Rejected, Status.TokenIncorrect, Status.SecretKeyMismatch, Status.Kickedoff, Status.NotLicensed]);

export const RELATION_STREAMS = ["friend", "friend_request", "blacklist", "setting"] as const;
export type RelationStream = (typeof RELATION_STREAMS)[number];
const SYNC_METHOD: Record<RelationStream, string> = {
  friend: "sync_friends",
  friend_request: "sync_friend_requests",
  blacklist: "sync_blacklist",
  setting: "sync_settings",
};

export interface ClientOptions {
  token: string;
  transport: TransportFactory;
  /** Seconds announced in the proof; 0 asks for the server's default (§8.4). */
  keepalive?: number;
  /** Per request (§8.1 says keep it above 5 s). */
  requestTimeoutMs?: number;
  /** How long a send may keep retrying across reconnects before it fails. */
  sendTimeoutMs?: number;
  /** The last inbox seq this device holds (persist it from the `seq` event); 0 for a fresh install. */
  initialSeq?: number;
  /** Sync the friend, friend_request, blacklist and setting streams (§12). Default true. */
  syncRelations?: boolean;
  /** Reconnect backoff: first wait and cap, in ms (equal jitter, doubling). */
  backoffMs?: { initial: number; max: number };
  /** Wait for a CONNACK at most this long after the transport is up. */
  handshakeTimeoutMs?: number;
}

export interface Answer {
  code: number;
  result: unknown;
}

export interface SendResult {
  messageId: bigint;
  serverTime: number;
  seq: number;
  clientMsgId: string;
}

export class RequestError extends Error {
  override name = "RequestError";
  constructor(
    readonly method: string,
    readonly code: number,
    readonly result: unknown,
  ) {
    super(`${method} answered ${code}${isMap(result) && typeof result.field === "string" ? ` (${result.field}: ${String(result.problem)})` : ""}`);
  }
}

export class ConnectionLostError extends Error {
  override name = "ConnectionLostError";
}

export class TimeoutError extends Error {
  override name = "TimeoutError";
}

export class ClientClosedError extends Error {
  override name = "ClientClosedError";
  constructor(readonly status: number) {
    super(`client stopped with status ${status}`);
  }
}

export interface RecalledEvent {
  messageId: bigint;
  operator: string;
  notice: Message;
}

export interface UpdatedEvent {
  messageId: bigint;
  operator: string;
  content: Content | undefined;
  notice: Message;
}

export interface RelationItem extends Body {
  version: number;
  deleted: boolean;
}

export interface ClientEvents extends Record<string, unknown> {
  status: number;
  /** Every new message, once: pushed or pulled, in seq order (seq 0: transparent or chatroom). */
  message: Message;
  /** A message this device sent, once acknowledged (the sending device gets the ack, not a push: §9.3). */
  sent: Message;
  recalled: RecalledEvent;
  updated: UpdatedEvent;
  deleted: { messageId: bigint };
  /** Every NOTIFY, raw (integers as numbers where they fit). */
  notify: { topic: string; data: unknown };
  /** The inbox seq moved: persist it and pass it back as `initialSeq`. */
  seq: number;
  goaway: GoAway;
  /** A relation stream changed (its items are in client.relations). */
  relations: { stream: RelationStream; items: RelationItem[]; reset: boolean };
  chatroomQuit: { chatroomId: string; reason: string };
  connected: ConnAck;
  /** A PONG came back for the keepalive's PING (§8.3). */
  pong: undefined;
  /** Why the last connection ended (for logs and tests). */
  disconnected: CloseInfo;
}

interface Pending {
  method: string;
  resolve(answer: Answer): void;
  reject(error: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
/** Equal jitter: half the wait fixed, half random, so a node's devices do not all come back at once. */
const jitter = (ms: number) => ms / 2 + Math.random() * (ms / 2);

function uuid(): string {
  const c = globalThis.crypto as Crypto & { randomUUID?: () => string };
  return c.randomUUID ? c.randomUUID() : toHex(randomBytes(16));
}

export class EmberClient extends Emitter<ClientEvents> {
  readonly token: Token;
  readonly userId: string;
  readonly clientId: string;
  status: number = Status.Unconnected;
  /** The last inbox seq this device has caught up to. */
  seq: number;
  /** The last CONNACK. */
  connack: ConnAck | undefined;
  /** Local copies of the relation streams (§12), keyed by each item's name. */
  readonly relations: Record<RelationStream, Map<string, RelationItem>> = {
    friend: new Map(),
    friend_request: new Map(),
    blacklist: new Map(),
    setting: new Map(),
  };
  readonly relationVersions: Record<RelationStream, number> = { friend: 0, friend_request: 0, blacklist: 0, setting: 0 };

  private readonly options: Required<Omit<ClientOptions, "initialSeq">>;
  private connection: Connection | undefined;
  private running = false;
  private stopped = false;
  private nextRequestId = 1;
  private readonly pending = new Map<number, Pending>();
  private openWaiters: { resolve(): void; reject(error: Error): void }[] = [];
  private redirect: string | undefined;
  private wake: (() => void) | undefined;
  private pulling: Promise<void> | undefined;
  private pullAgain = false;
  private readonly syncing = new Map<RelationStream, Promise<void>>();
  private readonly resync = new Set<RelationStream>();
  private openedThisAttempt = false;
  private lastSent = 0;
  private lastReceived = 0;
  private lastPing = 0;
  private keepaliveTimer: ReturnType<typeof setInterval> | undefined;

  constructor(options: ClientOptions) {
    super();
    this.token = parseToken(options.token);
    this.userId = this.token.userId;
    this.clientId = this.token.clientId;
    this.seq = options.initialSeq ?? 0;
    this.options = {
      token: options.token,
      transport: options.transport,
      keepalive: options.keepalive ?? 0,
      requestTimeoutMs: options.requestTimeoutMs ?? 15_000,
      sendTimeoutMs: options.sendTimeoutMs ?? 60_000,
      syncRelations: options.syncRelations ?? true,
      backoffMs: options.backoffMs ?? { initial: 500, max: 30_000 },
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 15_000,
    };
  }

  /** Starts the session. Resolves once connected (and caught up); rejects on a terminal status before that. */
  connect(): Promise<void> {
    if (this.stopped) return Promise.reject(new ClientClosedError(this.status));
    const opened = new Promise<void>((resolve, reject) => {
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
  async close(options: { clear?: boolean } = {}): Promise<void> {
    this.stopped = true;
    const connection = this.connection;
    if (connection?.isOpen) connection.disconnect(options.clear ?? false);
    else connection?.abort({ status: Status.Logout, kind: "logout", detail: "closed" });
    this.wake?.();
    this.setStatus(Status.Logout);
    this.failWaiters(new ClientClosedError(Status.Logout));
  }

  /** Drops the current connection as if the network had failed (the client reconnects by itself). */
  dropConnection(): void {
    this.connection?.abort({ status: Status.ServerDown, kind: "transport", detail: "dropped by the app" });
  }

  // ---- the connection loop --------------------------------------------------------------------------------------

  private async run(): Promise<void> {
    let failures = 0;
    let clearRejects = 0;
    while (!this.stopped) {
      this.setStatus(Status.Connecting);
      this.openedThisAttempt = false;
      const info = await this.runOne();
      if (this.openedThisAttempt) failures = 0;
      this.emit("disconnected", info);
      if (this.stopped || info.kind === "logout") break;
      let delay: number;
      if (info.kind === "clear-connack") {
        // §7: a clear −6 may be forged by anyone on the path; believe it only after 4 in a row.
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
        const base = info.status === Status.TimeInconsistent ? 5_000 : this.options.backoffMs.initial;
        delay = jitter(Math.min(this.options.backoffMs.max, base * 2 ** failures));
        failures++;
      }
      await this.pause(delay);
    }
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }

  private terminate(status: number): void {
    this.stopped = true;
    this.setStatus(status);
    this.failWaiters(new ClientClosedError(status));
  }

  private failWaiters(error: Error): void {
    for (const waiter of this.openWaiters.splice(0)) waiter.reject(error);
    for (const [id, pending] of this.pending) {
      clearTimeout(pending.timer);
      this.pending.delete(id);
      pending.reject(error);
    }
  }

  private runOne(): Promise<CloseInfo> {
    return new Promise<CloseInfo>((resolve) => {
      let handshakeTimer: ReturnType<typeof setTimeout> | undefined;
      const connection: Connection = new Connection(
        this.token,
        {
          onOpen: (ack) => {
            clearTimeout(handshakeTimer);
            this.background(this.onOpen(connection, ack));
          },
          onResponse: (id, code, result) => this.onResponse(id, code, result),
          onNotify: (topic, data) => this.onNotify(topic, data),
          onPong: () => this.emit("pong", undefined),
          onReceived: () => {
            this.lastReceived = Date.now();
          },
          onClose: (info) => {
            clearTimeout(handshakeTimer);
            this.stopKeepalive();
            if (this.connection === connection) this.connection = undefined;
            for (const [id, pending] of this.pending) {
              clearTimeout(pending.timer);
              this.pending.delete(id);
              pending.reject(new ConnectionLostError(`connection lost (${info.detail}) before ${pending.method} was answered`));
            }
            resolve(info);
          },
        },
        { keepalive: this.options.keepalive, redirect: this.redirect },
      );
      this.connection = connection;
      handshakeTimer = setTimeout(
        () => connection.abort({ status: Status.ServerDown, kind: "timeout", detail: "no CONNACK in time" }),
        this.options.handshakeTimeoutMs,
      );
      void connection.open(this.options.transport);
    });
  }

  private async onOpen(connection: Connection, ack: ConnAck): Promise<void> {
    this.connack = ack;
    this.openedThisAttempt = true;
    this.setStatus(Status.Receiving);
    this.startKeepalive(connection, ack.keepalive);
    this.emit("connected", ack);
    for (const waiter of this.openWaiters.splice(0)) waiter.resolve();
    // Catch up (§11 items 7, 9): the inbox from our seq, the relation streams whose heads moved.
    const work: Promise<unknown>[] = [];
    if ((ack.heads.msg ?? 0) > this.seq || this.seq === 0) work.push(this.syncMessages());
    if (this.options.syncRelations) {
      for (const stream of RELATION_STREAMS) {
        if ((ack.heads[stream] ?? 0) !== this.relationVersions[stream]) work.push(this.syncStream(stream));
      }
    }
    await Promise.allSettled(work);
    if (this.connection === connection && connection.isOpen) this.setStatus(Status.Connected);
  }

  private setStatus(status: number): void {
    if (this.status === status) return;
    this.status = status;
    this.emit("status", status);
  }

  // ---- keepalive (§8.4: the reference KeepaliveTimer's rules) ------------------------------------------------------

  private startKeepalive(connection: Connection, keepaliveSeconds: number): void {
    this.stopKeepalive();
    if (keepaliveSeconds <= 0) return;
    const keepaliveMs = keepaliveSeconds * 1000;
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
    }, Math.max(250, Math.min(1000, keepaliveMs / 8)));
  }

  private stopKeepalive(): void {
    if (this.keepaliveTimer !== undefined) clearInterval(this.keepaliveTimer);
    this.keepaliveTimer = undefined;
  }

  // ---- requests ---------------------------------------------------------------------------------------------------

  private whenOpen(timeoutMs: number): Promise<void> {
    if (this.connection?.isOpen) return Promise.resolve();
    if (this.stopped) return Promise.reject(new ClientClosedError(this.status));
    return new Promise<void>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const waiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (error: Error) => {
          clearTimeout(timer);
          reject(error);
        },
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
  async request(method: string, params: Body = {}, options: { timeoutMs?: number } = {}): Promise<Answer> {
    const timeoutMs = options.timeoutMs ?? this.options.requestTimeoutMs;
    const started = Date.now();
    await this.whenOpen(timeoutMs);
    const connection = this.connection;
    if (connection === undefined || !connection.isOpen) throw new ConnectionLostError("connection lost");
    const id = this.nextRequestId;
    this.nextRequestId = this.nextRequestId >= 0xffffffff ? 1 : this.nextRequestId + 1;
    return new Promise<Answer>((resolve, reject) => {
      const timer = setTimeout(
        () => {
          this.pending.delete(id);
          reject(new TimeoutError(`${method}: no answer in ${timeoutMs} ms`));
        },
        Math.max(1, timeoutMs - (Date.now() - started)),
      );
      this.pending.set(id, { method, resolve, reject, timer });
      connection.request(id, method, params);
      this.lastSent = Date.now();
    });
  }

  /** Like request(), but resolves with the result and throws RequestError on a non-zero code. */
  async call<T = unknown>(method: string, params: Body = {}, options: { timeoutMs?: number } = {}): Promise<T> {
    const answer = await this.request(method, params, options);
    if (answer.code !== 0) throw new RequestError(method, answer.code, answer.result);
    return answer.result as T;
  }

  private onResponse(id: number, code: number, result: unknown): void {
    const pending = this.pending.get(id);
    if (pending === undefined) return; // timed out already
    this.pending.delete(id);
    clearTimeout(pending.timer);
    pending.resolve({ code, result });
  }

  // ---- pushes -----------------------------------------------------------------------------------------------------

  private onNotify(topic: string, data: unknown): void {
    this.emit("notify", { topic, data: toSafeIntegers(data) });
    try {
      if ((topic === "msg" || topic === "message_updated") && isMap(data)) {
        const seq = intField(data, "seq", 0);
        const message = readMessage(data.message, seq);
        if (seq === 0) this.deliver(message);
        else if (seq === this.seq + 1 && this.pulling === undefined) {
          this.seq = seq;
          this.deliver(message);
          this.emit("seq", seq);
        } else if (seq > this.seq) this.background(this.syncMessages()); // a gap (or a pull under way): pull from our seq
      } else if (topic === "message_deleted" && isMap(data)) {
        this.emit("deleted", { messageId: idField(data, "message_id") });
      } else if (topic === "head" && isMap(data)) {
        const stream = strField(data, "stream") as RelationStream;
        const head = intField(data, "head");
        if (this.options.syncRelations && stream in this.relationVersions && head > this.relationVersions[stream]) this.background(this.syncStream(stream));
      } else if (topic === "chatroom_quit" && isMap(data)) {
        this.emit("chatroomQuit", { chatroomId: strField(data, "chatroom_id"), reason: strField(data, "reason", "") });
      }
    } catch {
      // A push whose data does not have the documented shape is ignored (unknown shapes may be newer servers').
    }
  }

  /**
   * A sync started by a push runs on its own; when it fails (the connection went, a 4) nothing is lost: the
   * next CONNACK's heads start it again. It must not become an unhandled rejection (Node ends the process).
   */
  private background(work: Promise<void>): void {
    work.catch(() => undefined);
  }

  private deliver(message: Message): void {
    this.emit("message", message);
    const target = noticeTarget(message.content);
    if (target === undefined) return;
    if (message.content.type === ContentType.RecallNotice) {
      this.emit("recalled", { messageId: target.messageId, operator: target.operator, notice: message });
    } else {
      let content: Content | undefined;
      try {
        const data = message.content.data;
        content = data instanceof Uint8Array ? (toSafeIntegers(decodeBody(data)) as Content) : undefined;
      } catch {
        content = undefined;
      }
      this.emit("updated", { messageId: target.messageId, operator: target.operator, content, notice: message });
    }
  }

  // ---- pull sync (§9.4) -------------------------------------------------------------------------------------------

  /** Pulls the inbox from the device's seq until caught up; concurrent calls share one loop. */
  syncMessages(): Promise<void> {
    if (this.pulling !== undefined) {
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
        this.pulling = undefined;
      }
    })();
    return this.pulling;
  }

  private async pullLoop(): Promise<void> {
    for (;;) {
      const answer = await this.request("pull", { after_seq: this.seq, limit: 100 });
      if (answer.code === 250) {
        await sleep(1000); // §8.1: the window is 5 s; nothing is lost
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
  syncStream(stream: RelationStream): Promise<void> {
    const running = this.syncing.get(stream);
    if (running !== undefined) {
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

  private async syncStreamOnce(stream: RelationStream): Promise<void> {
    let fullSyncHead = 0;
    let fromZero = this.relationVersions[stream] === 0;
    for (;;) {
      const after = this.relationVersions[stream];
      const params: Body = { after, limit: 500 };
      if (fromZero && after > 0) params.full_sync_head = fullSyncHead;
      const answer = await this.request(SYNC_METHOD[stream], params);
      if (answer.code === 220) return; // friend.hosting off
      if (answer.code === 250) {
        await sleep(1000);
        continue;
      }
      if (answer.code !== 0) throw new RequestError(SYNC_METHOD[stream], answer.code, answer.result);
      const result = asMap(answer.result, SYNC_METHOD[stream]);
      const head = intField(result, "head");
      const reset = result.reset === true;
      if (reset || head < after) {
        // Retention passed our version, or the server was restored from an older copy: start again from 0.
        this.relations[stream].clear();
        this.relationVersions[stream] = 0;
        fromZero = true;
        fullSyncHead = 0; // a reset page is the first page of a new sync from 0: its head is the one to send
        if (!reset) continue;
      }
      if (fromZero && fullSyncHead === 0) fullSyncHead = head;
      const items = (Array.isArray(result.items) ? result.items : []).map((item) => toSafeIntegers(asMap(item, "item")) as RelationItem);
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
  async sendMessage(conv: Conv, content: Content, options: { clientMsgId?: string; toUsers?: string[] } = {}): Promise<SendResult> {
    const clientMsgId = options.clientMsgId ?? uuid();
    const params: Body = { conv: { type: conv.type, target: conv.target, line: conv.line ?? 0 }, content, client_msg_id: clientMsgId };
    if (options.toUsers !== undefined) params.to_users = options.toUsers;
    const deadline = Date.now() + this.options.sendTimeoutMs;
    let busy = 0;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) throw new TimeoutError("send_message: not acknowledged in time");
      let answer: Answer;
      try {
        answer = await this.request("send_message", params, { timeoutMs: Math.min(left, this.options.requestTimeoutMs) });
      } catch (error) {
        if (error instanceof ConnectionLostError) continue; // resend after the reconnect, same client_msg_id
        if (error instanceof TimeoutError && Date.now() < deadline && this.connection?.isOpen) continue;
        throw error;
      }
      if (answer.code === 250 && busy < 4) {
        await sleep(jitter(1000 * 2 ** busy++));
        continue;
      }
      if (answer.code !== 0) throw new RequestError("send_message", answer.code, answer.result);
      const result = asMap(answer.result, "send_message");
      const sent: SendResult = {
        messageId: idField(result, "message_id"),
        serverTime: intField(result, "server_time"),
        seq: intField(result, "seq"),
        clientMsgId,
      };
      // Our own message is the next entry of our inbox: move the seq so the next push is not taken for a gap.
      if (sent.seq === this.seq + 1 && this.pulling === undefined) {
        this.seq = sent.seq;
        this.emit("seq", this.seq);
      }
      const message: Message = {
        messageId: sent.messageId,
        conv: { type: conv.type, target: conv.target, line: conv.line ?? 0 },
        from: this.userId,
        content: { persist_flag: 3, ...content },
        serverTime: sent.serverTime,
        seq: sent.seq,
      };
      if (options.toUsers !== undefined && options.toUsers.length > 0) message.toUsers = options.toUsers;
      this.emit("sent", message);
      return sent;
    }
  }

  /** A text message: content type 1 with the text in searchable_content. */
  sendText(conv: Conv, text: string, options: { clientMsgId?: string; toUsers?: string[] } = {}): Promise<SendResult> {
    return this.sendMessage(conv, { type: ContentType.Text, searchable_content: text }, options);
  }

  /** pull (§9.4), one page, raw. The client pulls by itself; this is for apps that manage seqs themselves. */
  async pull(afterSeq: number, limit = 100): Promise<{ messages: Message[]; head: number }> {
    const result = asMap(await this.call("pull", { after_seq: afterSeq, limit }), "pull");
    const messages = (Array.isArray(result.messages) ? result.messages : []).map((entry) => {
      const map = asMap(entry, "entry");
      return readMessage(map.message, intField(map, "seq"));
    });
    return { messages, head: intField(result, "head") };
  }

  async recallMessage(messageId: bigint): Promise<{ messageId: bigint; seq: number }> {
    const result = asMap(await this.call("recall_message", { message_id: messageId }), "recall_message");
    return { messageId: idField(result, "message_id"), seq: intField(result, "seq") };
  }

  async deleteMessage(messageId: bigint): Promise<void> {
    await this.call("delete_message", { message_id: messageId });
  }

  async updateMessage(messageId: bigint, content: Content): Promise<{ messageId: bigint; seq: number }> {
    const result = asMap(await this.call("update_message", { message_id: messageId, content }), "update_message");
    return { messageId: idField(result, "message_id"), seq: intField(result, "seq") };
  }

  /** load_remote_history (§9.7): newest first; 220 when the server has it off. */
  async loadRemoteHistory(conv: Conv, beforeId: bigint = 0n, count = 20): Promise<Message[]> {
    const result = asMap(
      await this.call("load_remote_history", { conv: { type: conv.type, target: conv.target, line: conv.line ?? 0 }, before_id: beforeId, count }),
      "load_remote_history",
    );
    return (Array.isArray(result.messages) ? result.messages : []).map((m) => readMessage(m));
  }

  /**
   * search_messages (§9.12): this user's messages on the server that hold `keyword`, newest first: every word
   * (by prefix) and every CJK run must be in `searchable_content`. For the next page pass `nextCursor` as
   * `cursor`. A bad keyword or filter rejects with code 251 and the reason.
   */
  async searchMessages(keyword: string, options: SearchOptions = {}): Promise<SearchPage> {
    const params: Body = { keyword, limit: options.limit ?? 20 };
    if (options.conv) params.conv = { type: options.conv.type, target: options.conv.target, line: options.conv.line ?? 0 };
    if (options.fromUser !== undefined) params.from_user = options.fromUser;
    if (options.contentTypes && options.contentTypes.length) params.content_types = options.contentTypes;
    if (options.before !== undefined) params.before = options.before;
    if (options.after !== undefined) params.after = options.after;
    if (options.cursor !== undefined) params.cursor = options.cursor;
    const result = asMap(await this.call("search_messages", params), "search_messages");
    const hits = (Array.isArray(result.results) ? result.results : []).map((value): SearchHit => {
      const entry = asMap(value, "result");
      const message = readMessage(entry.message);
      const highlights = (Array.isArray(entry.highlights) ? entry.highlights : []).map((pair): [number, number] => {
        if (!Array.isArray(pair) || pair.length !== 2) throw new TypeError("search_messages: a highlight is not a [start, end] pair");
        return [Number(pair[0]), Number(pair[1])];
      });
      const text = typeof message.content.searchable_content === "string" ? message.content.searchable_content : "";
      return { message, highlights, ranges: utf16Ranges(text, highlights) };
    });
    const page: SearchPage = { hits };
    if (typeof result.next_cursor === "string") page.nextCursor = result.next_cursor;
    return page;
  }

  // ---- conversations (§16) ----------------------------------------------------------------------------------------

  async getConversations(options: { before?: bigint; limit?: number; types?: number[]; lines?: number[] } = {}): Promise<{ conversations: ConversationEntry[]; more: boolean }> {
    const params: Body = { before: options.before ?? 0n, limit: options.limit ?? 50 };
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
        unreadMentions: intField(entry, "unread_mentions", 0),
      };
    });
    return { conversations, more: result.more === true };
  }

  async markRead(conv: Conv, messageId: bigint): Promise<bigint> {
    const result = asMap(await this.call("mark_read", { conv: { type: conv.type, target: conv.target, line: conv.line ?? 0 }, message_id: messageId }), "mark_read");
    return idField(result, "read_to");
  }

  async clearConversation(conv: Conv, messageId: bigint): Promise<number> {
    const result = asMap(await this.call("clear_conversation", { conv: { type: conv.type, target: conv.target, line: conv.line ?? 0 }, message_id: messageId }), "clear_conversation");
    return intField(result, "deleted");
  }

  // ---- users (§9.2, §12.8) ----------------------------------------------------------------------------------------

  private readonly userCache = new Map<string, Body>();

  /** User info, from the cache unless `refresh`; asks the server for what it lacks (at most 100 ids a call). */
  async getUserInfo(userIds: string[], options: { refresh?: boolean } = {}): Promise<Body[]> {
    const wanted = [...new Set(userIds)];
    const ask = options.refresh ? wanted : wanted.filter((id) => !this.userCache.has(id));
    for (let i = 0; i < ask.length; i += 100) {
      const chunk = ask.slice(i, i + 100);
      const known: Record<string, number> = {};
      for (const id of chunk) {
        const cached = this.userCache.get(id);
        if (cached && typeof cached.updated_at === "number") known[id] = cached.updated_at;
      }
      const params: Body = { user_ids: chunk, refresh: options.refresh ?? false };
      if (Object.keys(known).length > 0) params.known = known;
      const result = asMap(await this.call("get_user_info", params), "get_user_info");
      for (const user of Array.isArray(result.users) ? result.users : []) {
        const map = toSafeIntegers(asMap(user, "user")) as Body;
        this.userCache.set(strField(map, "user_id"), map);
      }
    }
    return wanted.map((id) => this.userCache.get(id)).filter((u): u is Body => u !== undefined);
  }

  // ---- friends and blacklist (§12) --------------------------------------------------------------------------------

  async sendFriendRequest(userId: string, reason = "", extra = ""): Promise<void> {
    await this.call("send_friend_request", { user_id: userId, reason, extra });
  }

  async handleFriendRequest(userId: string, accept: boolean): Promise<void> {
    await this.call("handle_friend_request", { user_id: userId, accept });
  }

  async deleteFriend(userId: string): Promise<void> {
    await this.call("delete_friend", { user_id: userId });
  }

  async setFriendAlias(userId: string, alias: string): Promise<void> {
    await this.call("set_friend_alias", { user_id: userId, alias });
  }

  async setBlacklist(userId: string, blocked: boolean): Promise<void> {
    await this.call("set_blacklist", { user_id: userId, blocked });
  }

  async getBlacklist(): Promise<string[]> {
    const result = asMap(await this.call("get_blacklist"), "get_blacklist");
    return (Array.isArray(result.user_ids) ? result.user_ids : []).filter((u): u is string => typeof u === "string");
  }

  /** The synced friend list (§12.4): friend ids. */
  get friends(): string[] {
    return [...this.relations.friend.keys()];
  }

  // ---- groups basics (§13) ----------------------------------------------------------------------------------------

  async createGroup(options: { groupId?: string; name?: string; members?: string[]; type?: number; joinType?: number } = {}): Promise<string> {
    const params: Body = { name: options.name ?? "", members: options.members ?? [] };
    if (options.groupId !== undefined) params.group_id = options.groupId;
    if (options.type !== undefined) params.type = options.type;
    if (options.joinType !== undefined) params.join_type = options.joinType;
    return strField(asMap(await this.call("create_group", params), "create_group"), "group_id");
  }

  async addGroupMembers(groupId: string, userIds: string[]): Promise<void> {
    await this.call("add_group_members", { group_id: groupId, user_ids: userIds });
  }

  async kickGroupMembers(groupId: string, userIds: string[]): Promise<void> {
    await this.call("kick_group_members", { group_id: groupId, user_ids: userIds });
  }

  async quitGroup(groupId: string): Promise<void> {
    await this.call("quit_group", { group_id: groupId });
  }

  async dismissGroup(groupId: string): Promise<void> {
    await this.call("dismiss_group", { group_id: groupId });
  }

  async getGroupInfo(groupId: string, infoVersion = 0): Promise<{ infoVersion: number; memberVersion: number; group: Body | undefined }> {
    const result = asMap(await this.call("get_group_info", { group_id: groupId, info_version: infoVersion }), "get_group_info");
    return {
      infoVersion: intField(result, "info_version"),
      memberVersion: intField(result, "member_version"),
      group: isMap(result.group) ? (toSafeIntegers(result.group) as Body) : undefined,
    };
  }

  /** Every current member (pages through get_group_members from 0). */
  async getGroupMembers(groupId: string): Promise<Body[]> {
    const members: Body[] = [];
    let afterVersion = 0;
    let afterUser = "";
    for (;;) {
      const result = asMap(
        await this.call("get_group_members", { group_id: groupId, since_version: 0, after_version: afterVersion, after_user: afterUser, limit: 500 }),
        "get_group_members",
      );
      const page = (Array.isArray(result.members) ? result.members : []).map((m) => toSafeIntegers(asMap(m, "member")) as Body);
      members.push(...page);
      if (page.length < 500) return members;
      const last = page[page.length - 1]!;
      afterVersion = intField(last, "version");
      afterUser = strField(last, "user_id");
    }
  }

  async getMyGroups(): Promise<{ groupId: string; infoVersion: number; memberVersion: number }[]> {
    const result = asMap(await this.call("get_my_groups"), "get_my_groups");
    return (Array.isArray(result.groups) ? result.groups : []).map((g) => {
      const map = asMap(g, "group");
      return { groupId: strField(map, "group_id"), infoVersion: intField(map, "info_version"), memberVersion: intField(map, "member_version") };
    });
  }

  /** set_push_token (§9.10). */
  async setPushToken(pushType: number, token: string): Promise<void> {
    await this.call("set_push_token", { push_type: pushType, token });
  }
}

export interface ConversationEntry {
  conv: Required<Conv>;
  lastMessage: Message;
  readTo: bigint;
  unread: number;
  unreadMentions: number;
}

function relationKey(stream: RelationStream, item: Body): string {
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
