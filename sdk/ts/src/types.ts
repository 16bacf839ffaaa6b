// The shapes of PROTOCOL.md §9.1, as the SDK hands them to the app. Map keys keep the protocol's names.
import { asMap, Body, idField, intField, isMap, strField, toSafeIntegers } from "./fields.js";

export const ConversationType = { Private: 0, Group: 1, Chatroom: 2, Channel: 3 } as const;

export interface Conv {
  type: number;
  target: string;
  line?: number;
}

/** A message's content (§9.1). A field that is absent means its empty value. */
export interface Content {
  type: number;
  searchable_content?: string;
  push_content?: string;
  content?: string;
  data?: Uint8Array;
  media_type?: number;
  remote_media_url?: string;
  /** 0 not persisted locally, 1 persisted, 3 persisted and counted (default), 4 transparent. */
  persist_flag?: number;
  expire_duration?: number;
  mentioned_type?: number;
  mentioned_targets?: string[];
  extra?: string;
  [key: string]: unknown;
}

export interface Message {
  /** 64-bit, opaque: compare it, never do arithmetic on it (§9.1). */
  messageId: bigint;
  conv: Required<Conv>;
  from: string;
  content: Content;
  serverTime: number;
  toUsers?: string[];
  /** Its seq in this user's inbox; 0 for a transparent or chatroom message (§9.9). */
  seq: number;
}

/** One search_messages result (§9.12): the message and where the keyword's parts are in its searchable_content. */
export interface SearchHit {
  message: Message;
  /** `[start, end)` code point offsets into `message.content.searchable_content`, as the server sends them. */
  highlights: [number, number][];
  /** The same ranges as UTF-16 indexes: what `String.prototype.slice` takes. */
  ranges: [number, number][];
}

export interface SearchPage {
  hits: SearchHit[];
  /** Pass it as `cursor` for the older results; undefined when there are no more. */
  nextCursor?: string;
}

export interface SearchOptions {
  conv?: Conv;
  fromUser?: string;
  contentTypes?: number[];
  /** Server times in ms: `after <= server_time < before`. */
  before?: number;
  after?: number;
  /** 1-100; default 20. */
  limit?: number;
  cursor?: string;
}

/** Code point offsets into `text` as UTF-16 indexes (a character outside the BMP is two UTF-16 units). */
export function utf16Ranges(text: string, ranges: [number, number][]): [number, number][] {
  const at: number[] = [0];
  for (const char of text) at.push(at[at.length - 1] + char.length);
  const index = (offset: number): number => at[Math.min(Math.max(offset, 0), at.length - 1)];
  return ranges.map(([start, end]) => [index(start), index(end)]);
}

/** The hit's text with each highlighted stretch between `before` and `after` (for a snippet). */
export function markHighlights(hit: SearchHit, before = "[", after = "]"): string {
  const text = typeof hit.message.content.searchable_content === "string" ? hit.message.content.searchable_content : "";
  let out = "";
  let done = 0;
  for (const [start, end] of hit.ranges) {
    out += text.slice(done, start) + before + text.slice(start, end) + after;
    done = end;
  }
  return out + text.slice(done);
}

export const ContentType = { Text: 1, RecallNotice: 80, UpdateNotice: 81 } as const;
export const PersistFlag = { NotPersist: 0, Persist: 1, PersistAndCount: 3, Transparent: 4 } as const;

export function readConv(value: unknown): Required<Conv> {
  const body = asMap(value, "conv");
  return { type: intField(body, "type"), target: strField(body, "target"), line: intField(body, "line", 0) };
}

export function readMessage(value: unknown, seq = 0): Message {
  const body = asMap(value, "message");
  const content = toSafeIntegers(asMap(body.content, "content")) as Content;
  intField(content as Body, "type");
  const message: Message = {
    messageId: idField(body, "message_id"),
    conv: readConv(body.conv),
    from: strField(body, "from"),
    content,
    serverTime: intField(body, "server_time"),
    seq,
  };
  if (Array.isArray(body.to_users)) message.toUsers = body.to_users.filter((u): u is string => typeof u === "string");
  return message;
}

/** The conversation as this user sees it (§9.1, §16.1): a private message to me is filed under its sender. */
export function ownView(conv: Required<Conv>, from: string, me: string): Required<Conv> {
  if (conv.type === ConversationType.Private && conv.target === me) return { type: 0, target: from, line: conv.line };
  return conv;
}

/** The settings key of a conversation (§16.1): "<type>-<target>-<line>". */
export function convKey(conv: Conv): string {
  return `${conv.type}-${conv.target}-${conv.line ?? 0}`;
}

export function parseConvKey(key: string): Required<Conv> | undefined {
  const first = key.indexOf("-");
  const last = key.lastIndexOf("-");
  if (first <= 0 || last <= first) return undefined;
  const type = Number(key.slice(0, first));
  const line = Number(key.slice(last + 1));
  if (!Number.isInteger(type) || !Number.isInteger(line)) return undefined;
  return { type, target: key.slice(first + 1, last), line };
}

/** The message a recall (80) or update (81) notice names, from its JSON `content` (§9.6, §9.11). */
export function noticeTarget(content: Content): { operator: string; messageId: bigint } | undefined {
  if (content.type !== ContentType.RecallNotice && content.type !== ContentType.UpdateNotice) return undefined;
  try {
    const parsed = JSON.parse(content.content ?? "") as unknown;
    if (!isMap(parsed) || typeof parsed.message_id !== "string" || !/^[0-9]+$/.test(parsed.message_id)) return undefined;
    return { operator: typeof parsed.operator === "string" ? parsed.operator : "", messageId: BigInt(parsed.message_id) };
  } catch {
    return undefined;
  }
}

/** Does this message count toward unread for `me` (§16.1)? */
export function countsAsUnread(message: Message, me: string): boolean {
  const flag = message.content.persist_flag ?? 3;
  return flag === 3 && message.from !== me && message.content.type !== ContentType.RecallNotice && message.conv.type !== 2;
}

export function mentions(message: Message, me: string): boolean {
  const type = message.content.mentioned_type ?? 0;
  return type === 2 || (type === 1 && (message.content.mentioned_targets ?? []).includes(me));
}
