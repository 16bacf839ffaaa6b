// A conversation list kept from what the client syncs (PROTOCOL.md §16.3 "SDK"): get_conversations once for a
// fresh install, then every message, read mark and clear mark moves it. The web chat page shows this list.
import type { ConversationEntry, EmberClient, RelationItem } from "./client.js";
import { Emitter } from "./emitter.js";
import { Conv, convKey, countsAsUnread, mentions, Message, ownView, parseConvKey } from "./types.js";

export interface ConversationView {
  key: string;
  conv: Required<Conv>;
  lastMessage: Message | undefined;
  readTo: bigint;
  unread: number;
  unreadMentions: number;
}

interface State extends ConversationView {
  /** Unread counts the server gave for messages up to `baseUpTo`; live messages after it are counted by id. */
  baseUnread: number;
  baseMentions: number;
  baseUpTo: bigint;
  liveUnread: Map<bigint, boolean>;
}

const READ_SCOPE = 11;
const CLEAR_SCOPE = 18;

export class ConversationList extends Emitter<{ changed: ConversationView[] }> {
  private readonly states = new Map<string, State>();

  constructor(private readonly client: EmberClient) {
    super();
    client.on("message", (message) => this.onMessage(message));
    client.on("sent", (message) => this.onMessage(message));
    client.on("relations", ({ stream, items }) => {
      if (stream === "setting") this.onSettings(items);
    });
  }

  /** Newest last message first. */
  get list(): ConversationView[] {
    return [...this.states.values()]
      .sort((a, b) => {
        const x = a.lastMessage?.messageId ?? 0n;
        const y = b.lastMessage?.messageId ?? 0n;
        return x === y ? 0 : x > y ? -1 : 1;
      })
      .map(({ key, conv, lastMessage, readTo, unread, unreadMentions }) => ({ key, conv, lastMessage, readTo, unread, unreadMentions }));
  }

  get(conv: Conv): ConversationView | undefined {
    return this.states.get(convKey(conv));
  }

  /** Rebuild from the server (§16.3): every page of get_conversations. */
  async load(): Promise<void> {
    let before = 0n;
    for (let page = 0; page < 20; page++) {
      const { conversations, more } = await this.client.getConversations({ before, limit: 200 });
      for (const entry of conversations) this.take(entry);
      if (!more || conversations.length === 0) break;
      before = conversations[conversations.length - 1]!.lastMessage.messageId;
    }
    this.changed();
  }

  /** Mark a conversation read up to its last message (or `messageId`); the server keeps the mark (§16.2). */
  async markRead(conv: Conv, messageId?: bigint): Promise<void> {
    const state = this.states.get(convKey(conv));
    const upTo = messageId ?? state?.lastMessage?.messageId;
    if (upTo === undefined) return;
    const readTo = await this.client.markRead(conv, upTo);
    this.applyReadMark(convKey(conv), readTo);
    this.changed();
  }

  private take(entry: ConversationEntry): void {
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
      liveUnread: new Map(),
    });
  }

  private stateFor(conv: Required<Conv>): State {
    const key = convKey(conv);
    let state = this.states.get(key);
    if (state === undefined) {
      state = { key, conv, lastMessage: undefined, readTo: 0n, unread: 0, unreadMentions: 0, baseUnread: 0, baseMentions: 0, baseUpTo: 0n, liveUnread: new Map() };
      this.states.set(key, state);
    }
    return state;
  }

  private onMessage(message: Message): void {
    const flag = message.content.persist_flag ?? 3;
    if (flag === 0 || flag === 4 || message.conv.type === 2) return; // not part of the list (§16.1)
    const me = this.client.userId;
    const state = this.stateFor(ownView(message.conv, message.from, me));
    if (state.lastMessage === undefined || message.messageId > state.lastMessage.messageId) state.lastMessage = message;
    if (message.messageId > state.baseUpTo && message.messageId > state.readTo && countsAsUnread(message, me)) {
      state.liveUnread.set(message.messageId, mentions(message, me));
    }
    this.recount(state);
    this.changed();
  }

  private onSettings(items: RelationItem[]): void {
    for (const item of items) {
      if (item.deleted || (item.scope !== READ_SCOPE && item.scope !== CLEAR_SCOPE)) continue;
      const conv = parseConvKey(String(item.key));
      if (conv === undefined || typeof item.value !== "string" || !/^[0-9]+$/.test(item.value)) continue;
      const key = convKey(conv);
      if (item.scope === READ_SCOPE) this.applyReadMark(key, BigInt(item.value));
      else if (this.states.get(key)?.lastMessage && this.states.get(key)!.lastMessage!.messageId <= BigInt(item.value)) {
        this.states.delete(key);
      }
    }
    this.changed();
  }

  private applyReadMark(key: string, readTo: bigint): void {
    const state = this.states.get(key);
    if (state === undefined || readTo <= state.readTo) return;
    state.readTo = readTo;
    if (readTo >= state.baseUpTo) {
      state.baseUnread = 0;
      state.baseMentions = 0;
    }
    for (const id of [...state.liveUnread.keys()]) if (id <= readTo) state.liveUnread.delete(id);
    this.recount(state);
  }

  private recount(state: State): void {
    state.unread = state.baseUnread + state.liveUnread.size;
    state.unreadMentions = state.baseMentions + [...state.liveUnread.values()].filter(Boolean).length;
  }

  private changed(): void {
    this.emit("changed", this.list);
  }
}
