// Byte-exact checks of the SDK against every test vector of docs/PROTOCOL.md (§10, and §8.7, §9.10, §9.11,
// §12.9, §13.7, §14.8, §15.8, §16.4), plus the strictness rules of §3 and §4.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  BodyError, Connection, FrameReader, FrameSealer, ProtocolViolation, base64urlDecodeStrict, base64urlEncode,
  decodeBody, deriveSessionKeys, encodeBody, fromHex, gcmSeal, aesKey, parseToken, sealProof, toHex, utf8,
  encodeHeader, FrameType, concatBytes, readMessage, noticeTarget, convKey, parseConvKey, isPrintable, TokenError,
} from "../dist/index.js";
import { loadVectors, parseJsonExact } from "./vectors.mjs";

const blocks = loadVectors();
const hex = (kind, name) => {
  const block = blocks.get(`${kind}:${name}`);
  assert.ok(block, `vector ${kind}:${name} is in PROTOCOL.md`);
  return fromHex(block.text);
};
const v = (name) => hex("vector", name);
const inputs = parseJsonExact(blocks.get("vector:inputs").text);
const b = (h) => fromHex(h);
const eqHex = (actual, expected, what) => assert.equal(toHex(actual), toHex(expected), what);

test("every MessagePack vector decodes strictly and re-encodes to the same bytes", () => {
  let count = 0;
  for (const block of blocks.values()) {
    if (block.json || block.kind === "wsvector" || block.name.endsWith("_frame") || block.name === "credential" || block.name === "proof") continue;
    if (["proof_key", "frame_key_c2s", "frame_key_s2c", "token"].includes(block.name)) continue;
    const bytes = fromHex(block.text);
    const value = decodeBody(bytes);
    eqHex(encodeBody(value), bytes, `${block.kind}:${block.name}`);
    count++;
  }
  assert.ok(count >= 50, `checked ${count} MessagePack vectors`);
});

test("§10.1 token: parse, body, credential", async () => {
  const token = parseToken(blocks.get("vector:token").text);
  assert.equal(token.userId, inputs.user_id);
  assert.equal(token.clientId, inputs.client_id);
  assert.equal(token.platform, inputs.platform);
  eqHex(token.secret, b(inputs.secret));
  eqHex(token.credential, v("credential"));
  const body = encodeBody([inputs.user_id, inputs.client_id, inputs.platform, b(inputs.secret), v("credential")]);
  eqHex(body, v("token_body"));
  assert.equal("em1." + base64urlEncode(body), blocks.get("vector:token").text);
  const credentialPlaintext = encodeBody([inputs.user_id, inputs.client_id, inputs.platform, inputs.issued_at_ms, inputs.expires_at_ms]);
  eqHex(credentialPlaintext, v("credential_plaintext"));
  const nonce = b(inputs.credential_nonce);
  const sealed = await gcmSeal(await aesKey(b(inputs.token_key)), nonce, credentialPlaintext, utf8.encode("ember/1 credential"));
  eqHex(concatBytes(nonce, sealed), v("credential"));
});

test("§4 tokens are strict: one spelling, five items, typed", () => {
  const good = blocks.get("vector:token").text;
  for (const bad of [good + "=", good.replace("-", "+"), good.slice(0, -1) + "z", good + "A", "em2." + good.slice(4), good + " "]) {
    assert.throws(() => parseToken(bad), TokenError, bad.slice(-8));
  }
  assert.throws(() => base64urlDecodeStrict("QR"), /non-canonical/); // unused low bits set (RFC 4648 §3.5)
  assert.deepEqual([...base64urlDecodeStrict("QQ")], [0x41]);
  const four = "em1." + base64urlEncode(encodeBody([inputs.user_id, inputs.client_id, inputs.platform, b(inputs.secret)]));
  assert.throws(() => parseToken(four), /five items/);
  const shortSecret = "em1." + base64urlEncode(encodeBody([inputs.user_id, inputs.client_id, inputs.platform, new Uint8Array(31), v("credential")]));
  assert.throws(() => parseToken(shortSecret), /secret/);
  const strSecret = "em1." + base64urlEncode(encodeBody([inputs.user_id, inputs.client_id, inputs.platform, "x".repeat(32), v("credential")]));
  assert.throws(() => parseToken(strSecret), /secret/);
  assert.ok(isPrintable("dev 7f3c"));
  assert.ok(!isPrintable("dev\u00a07f3c") && !isPrintable("a\u200bb") && !isPrintable("a\nb"));
});

test("§10.2 handshake: HELLO, keys, proof, CONNECT, CONNACK", async () => {
  const helloBody = encodeBody({ nonce: b(inputs.server_nonce), time: inputs.hello_time_ms });
  eqHex(concatBytes(encodeHeader(FrameType.HELLO, false, 0, helloBody.length), helloBody), v("hello_frame"));
  const keys = await deriveSessionKeys(b(inputs.secret), b(inputs.server_nonce), b(inputs.client_nonce));
  eqHex(keys.proofKey, v("proof_key"));
  eqHex(keys.c2s, v("frame_key_c2s"));
  eqHex(keys.s2c, v("frame_key_s2c"));
  const proofPlaintext = encodeBody({ cred: v("credential"), time: inputs.client_time_ms, platform: inputs.platform, keepalive: inputs.announced_keepalive });
  eqHex(proofPlaintext, v("proof_plaintext"));
  eqHex(await sealProof(keys.proofKey, v("hello_frame"), proofPlaintext), v("proof"));
  const connackPlaintext = encodeBody({ code: 1, time: inputs.connack_time_ms, keepalive: inputs.connack_keepalive, heads: inputs.heads });
  eqHex(connackPlaintext, v("connack_plaintext"));
  const s2c = await FrameSealer.create(keys.s2c);
  eqHex(await s2c.seal(FrameType.CONNACK, 0, connackPlaintext), v("connack_frame"));
});

test("§10.3 and §10.4: every sealed frame of the connection, both directions, at its counter", async () => {
  const keys = await deriveSessionKeys(b(inputs.secret), b(inputs.server_nonce), b(inputs.client_nonce));
  const c2s = await FrameSealer.create(keys.c2s);
  const s2c = await FrameSealer.create(keys.s2c);
  const plain = {
    connack: v("connack_plaintext"),
    request: encodeBody({ m: inputs.request_method, p: inputs.request_params }),
    response: encodeBody({ c: inputs.response_code, r: inputs.response_result }),
    send_request: encodeBody({ m: "send_message", p: inputs.send_params }),
    send_response: encodeBody({ c: 0, r: inputs.send_result }),
    notify: encodeBody({ t: inputs.notify_topic, d: inputs.notify_data }),
    disconnect: encodeBody({ clear: inputs.disconnect_clear }),
  };
  for (const name of ["request", "response", "send_request", "send_response", "notify", "disconnect"]) eqHex(plain[name], v(`${name}_plaintext`), name);
  eqHex(encodeBody({ t: "msg", d: inputs.msg_notify_data }), v("msg_notify_plaintext"));
  // In the order of the §10.3 table.
  eqHex(await s2c.seal(FrameType.CONNACK, 0, plain.connack), v("connack_frame"));
  eqHex(await c2s.seal(FrameType.REQUEST, 1, plain.request), v("request_frame"));
  eqHex(await s2c.seal(FrameType.RESPONSE, 1, plain.response), v("response_frame"));
  eqHex(await c2s.seal(FrameType.PING, 0, new Uint8Array(0)), v("ping_frame"));
  eqHex(await s2c.seal(FrameType.PONG, 0, new Uint8Array(0)), v("pong_frame"));
  eqHex(await c2s.seal(FrameType.REQUEST, 2, plain.send_request), v("send_request_frame"));
  eqHex(await s2c.seal(FrameType.RESPONSE, 2, plain.send_response), v("send_response_frame"));
  eqHex(await s2c.seal(FrameType.NOTIFY, 0, plain.notify), v("notify_frame"));
  eqHex(await c2s.seal(FrameType.DISCONNECT, 0, plain.disconnect), v("disconnect_frame"));
  // §10.4: the sealed −5 on another connection (s→c counter 0), the clear −6, the clear ERRORs.
  const other = await FrameSealer.create(keys.s2c);
  eqHex(encodeBody({ code: inputs.sealed_reject_code }), v("sealed_reject_plaintext"));
  eqHex(await other.seal(FrameType.CONNACK, 0, v("sealed_reject_plaintext")), v("sealed_reject_frame"));
  const clear = (type, body) => concatBytes(encodeHeader(type, false, 0, body.length), body);
  eqHex(clear(FrameType.CONNACK, encodeBody({ code: inputs.reject_code })), v("reject_frame"));
  eqHex(clear(FrameType.ERROR, encodeBody({ code: inputs.error_code, reason: inputs.error_reason })), v("error_frame"));
  eqHex(clear(FrameType.ERROR, encodeBody({ code: 4, reason: "server busy" })), v("busy_error_frame"));
});

test("§8.7 going away and §9.10 set_push_token, on the §10 handshake", async () => {
  const keys = await deriveSessionKeys(b(inputs.secret), b(inputs.server_nonce), b(inputs.client_nonce));
  const s2c = await FrameSealer.create(keys.s2c);
  await s2c.seal(FrameType.CONNACK, 0, v("connack_plaintext"));
  const goaway = encodeBody({ reason: "shutdown", retry_ms: 1000, redirect: "gw2.example.com:7600" });
  eqHex(goaway, hex("vector-ops", "goaway_plaintext"));
  eqHex(await s2c.seal(FrameType.DISCONNECT, 0, goaway), hex("vector-ops", "goaway_frame"));
  const c2s = await FrameSealer.create(keys.c2s);
  const push = encodeBody({ m: "set_push_token", p: { push_type: 1, token: "9f3c...e1" } });
  eqHex(push, hex("vector-ops", "set_push_token_plaintext"));
  eqHex(await c2s.seal(FrameType.REQUEST, 1, push), hex("vector-ops", "set_push_token_frame"));
});

/** An async queue: push() from callbacks, `await next()` in the test (no sleeping until it "probably" happened). */
function queue() {
  const items = [];
  const waiters = [];
  return {
    push(item) {
      const waiter = waiters.shift();
      if (waiter) waiter(item);
      else items.push(item);
    },
    next() {
      return items.length > 0 ? Promise.resolve(items.shift()) : new Promise((resolve) => waiters.push(resolve));
    },
  };
}

/** A Connection over a scripted transport: what the SDK writes is compared with the vectors byte for byte. */
test("the SDK's Connection plays the §10 session byte for byte", async () => {
  const written = queue();
  const events = queue();
  let transportHandlers;
  const connection = new Connection(
    parseToken(blocks.get("vector:token").text),
    {
      onOpen: (ack) => events.push(["open", ack]),
      onResponse: (id, code, result) => events.push(["response", id, code, result]),
      onNotify: (topic, data) => events.push(["notify", topic, data]),
      onPong: () => events.push(["pong"]),
      onClose: (info) => events.push(["close", info]),
    },
    { keepalive: inputs.announced_keepalive, now: () => inputs.client_time_ms, clientNonce: () => b(inputs.client_nonce) },
  );
  await connection.open(async (handlers) => {
    transportHandlers = handlers;
    return { messageFramed: false, send: (bytes) => written.push(bytes), close: () => undefined };
  });
  // TCP may cut the stream anywhere: feed the HELLO in two pieces.
  const hello = v("hello_frame");
  transportHandlers.onData(hello.subarray(0, 5));
  transportHandlers.onData(hello.subarray(5));
  eqHex(await written.next(), v("connect_frame"), "CONNECT");
  transportHandlers.onData(v("connack_frame"));
  assert.deepEqual(await events.next(), ["open", { time: inputs.connack_time_ms, keepalive: 60, heads: inputs.heads }]);
  connection.request(1, inputs.request_method, inputs.request_params);
  eqHex(await written.next(), v("request_frame"), "REQUEST");
  transportHandlers.onData(v("response_frame"));
  const [kind, id, code, result] = await events.next();
  assert.deepEqual([kind, id, code], ["response", 1, 0]);
  assert.equal(result.users[0].display_name, "Bob 鲍勃");
  connection.ping();
  eqHex(await written.next(), v("ping_frame"), "PING");
  connection.request(2, "send_message", inputs.send_params);
  eqHex(await written.next(), v("send_request_frame"), "send REQUEST");
  // PONG and the send's RESPONSE arrive joined in one read.
  transportHandlers.onData(concatBytes(v("pong_frame"), v("send_response_frame")));
  assert.deepEqual(await events.next(), ["pong"]);
  const [, sendId, sendCode, sendResult] = await events.next();
  assert.deepEqual([sendId, sendCode], [2, 0]);
  assert.equal(sendResult.message_id, 264905950861721600n, "a BigInt, exact");
  // The NOTIFY is `kicked` −7: the connection ends with that status.
  transportHandlers.onData(v("notify_frame"));
  const [closed, info] = await events.next();
  assert.equal(closed, "close");
  assert.deepEqual([info.status, info.kind], [-7, "kicked"]);
});

test("§5.3: a clear CONNACK other than −6 is a violation; a clear −6 is only a maybe", async () => {
  for (const [body, status, kind] of [
    [{ code: -6 }, -6, "clear-connack"],
    [{ code: 1 }, -4, "violation"],
    [{ code: -5 }, -4, "violation"],
  ]) {
    const written = queue();
    const closed = queue();
    let feed;
    const connection = new Connection(parseToken(blocks.get("vector:token").text), {
      onOpen: () => assert.fail("must not open"), onResponse() {}, onNotify() {}, onPong() {},
      onClose: (info) => closed.push(info),
    }, { keepalive: 30 });
    await connection.open(async (handlers) => {
      feed = handlers.onData;
      return { messageFramed: true, send: (bytes) => written.push(bytes), close() {} };
    });
    feed(v("hello_frame"));
    await written.next(); // CONNECT
    const clear = encodeBody(body);
    feed(concatBytes(encodeHeader(FrameType.CONNACK, false, 0, clear.length), clear));
    const info = await closed.next();
    assert.deepEqual([info.status, info.kind], [status, kind], JSON.stringify(body));
  }
});

test("§9.9 and §9.11: pushes decode with BigInt ids; notices name their message", () => {
  const msg = decodeBody(v("msg_notify_plaintext"));
  const message = readMessage(msg.d.message, Number(msg.d.seq));
  assert.equal(message.messageId, 264905950861721600n);
  assert.deepEqual(message.conv, { type: 0, target: "bob", line: 0 });
  assert.equal(message.content.searchable_content, "Hi Bob 👋");
  const updated = decodeBody(hex("updatevector", "message_updated_plaintext"));
  const notice = readMessage(updated.d.message, 2);
  assert.deepEqual(noticeTarget(notice.content), { operator: "alice", messageId: 7000000000000001n });
  assert.deepEqual(decodeBody(notice.content.data), { type: 1, searchable_content: "fixed", persist_flag: 3 });
  const update = encodeBody({ m: "update_message", p: { message_id: 7000000000000001n, content: { type: 1, searchable_content: "fixed" } } });
  eqHex(update, hex("updatevector", "update_message_plaintext"));
});

test("§12.9 relation requests and answers", () => {
  const rel = (name) => hex("relvector", name);
  eqHex(encodeBody({ m: "send_friend_request", p: { user_id: "bob", reason: "Hi, it's Alice", extra: "" } }), rel("send_friend_request_plaintext"));
  eqHex(encodeBody({ m: "handle_friend_request", p: { user_id: "alice", accept: true } }), rel("handle_friend_request_plaintext"));
  eqHex(encodeBody({ m: "sync_friends", p: { after: 0, limit: 500 } }), rel("sync_friends_plaintext"));
  eqHex(encodeBody({ m: "sync_friends", p: { after: 2, limit: 500, full_sync_head: 4 } }), rel("sync_friends_full_plaintext"));
  eqHex(encodeBody({ m: "put_setting", p: { scope: 3, key: "0-bob-0", value: "1" } }), rel("put_setting_plaintext"));
  assert.deepEqual(decodeBody(rel("head_notify_plaintext")), { t: "head", d: { stream: "friend", head: 4 } });
  const reset = decodeBody(rel("sync_friends_reset_response_plaintext"));
  assert.equal(reset.r.reset, true);
  assert.equal(reset.r.items[0].friend_id, "bob");
});

test("§13.7 groups, §15.8 channels, §16.4 conversations", () => {
  const g = (name) => hex("group-vector", name);
  eqHex(encodeBody({ m: "create_group", p: { group_id: "g1", name: "club", members: ["bob", "carol"] } }), g("create_request_plaintext"));
  const add = decodeBody(g("add_notify_plaintext"));
  assert.equal(add.d.message.message_id, 264905950861721601n);
  assert.equal(new TextDecoder().decode(add.d.message.content.data), '{"g":"g1","o":"alice","ms":["dan"]}');
  const c = (name) => hex("channel-vector", name);
  eqHex(encodeBody({ m: "create_channel", p: { channel_id: "news", name: "News", desc: "daily news", private: true } }), c("create_request_plaintext"));
  const cv = (name) => hex("convvector", name);
  eqHex(encodeBody({ m: "mark_read", p: { conv: { type: 0, target: "alice", line: 0 }, message_id: 7000000000000001n } }), cv("mark_read_plaintext"));
  eqHex(encodeBody({ m: "clear_conversation", p: { conv: { type: 0, target: "alice", line: 0 }, message_id: 7000000000000002n } }), cv("clear_conversation_plaintext"));
  eqHex(encodeBody({ m: "get_conversations", p: { before: 0, limit: 50 } }), cv("get_conversations_plaintext"));
  eqHex(encodeBody({ m: "get_conversations", p: { before: 0, limit: 50, types: [0, 1], lines: [0] } }), cv("get_conversations_filtered_plaintext"));
  const answer = decodeBody(cv("get_conversations_response_plaintext"));
  const entry = answer.r.conversations[0];
  assert.equal(entry.read_to, 7000000000000001n);
  assert.equal(convKey(entry.conv), "0-alice-0");
  assert.deepEqual(parseConvKey("1-team-a-b-7"), { type: 1, target: "team-a-b", line: 7 });
});

test("§14.8 chatroom vectors from their JSON inputs", () => {
  const chat = parseJsonExact(blocks.get("chatroom-vector:inputs").text);
  let count = 0;
  for (const [name, value] of Object.entries(chat)) {
    eqHex(encodeBody(value), hex("chatroom-vector", name), name);
    count++;
  }
  assert.equal(count, 12);
});

test("§3 strict bodies: what decoders must refuse", () => {
  const refuse = (hexText, why) => assert.throws(() => decodeBody(b(hexText)), BodyError, why);
  refuse("81 01 01".replace(/ /g, ""), "an integer map key");
  refuse("81a16181c40161 01".replace(/ /g, ""), "a bin key at depth 2");
  refuse("d6ff00000000", "the timestamp extension");
  refuse("c70101 00", "ext8".replace(/ /g, ""));
  refuse("a2c328", "invalid UTF-8");
  refuse("c0c0", "trailing bytes");
  refuse("c1", "the never-used byte");
  refuse("dc2711" + "c0".repeat(10001), "10 001 items");
  refuse("91".repeat(1025) + "c0", "nesting 1025");
  assert.equal(decodeBody(b("91".repeat(1023) + "c0")).length, 1);
  assert.equal(decodeBody(b("cf0000000000000005")), 5n, "any width is accepted");
  assert.deepEqual(decodeBody(b("df00000001a161d200000007")), { a: 7 });
  assert.deepEqual(decodeBody(b("81a3666f6fc0")), { foo: null });
});

test("§2 frame headers: checked as soon as they arrive", () => {
  const reader = new FrameReader(1000);
  assert.throws(() => reader.feed(b("46")), ProtocolViolation, "magic at the first byte");
  assert.throws(() => new FrameReader().feed(b("454d020500000000000000000000")), /version/);
  const header = (type, flags, reserved, length) => b(`454d01${type}${flags}${reserved}00000000${length}`);
  assert.throws(() => new FrameReader().feed(header("0b", "00", "00", "00000000")), /unknown frame type/);
  assert.throws(() => new FrameReader().feed(header("05", "02", "00", "00000000")), /flag/);
  assert.throws(() => new FrameReader().feed(header("05", "01", "01", "00000000")), /reserved/);
  assert.throws(() => new FrameReader(1000).feed(header("05", "01", "00", "000003e9")), /limit/, "before the body");
  const frames = new FrameReader().feed(concatBytes(v("ping_frame"), v("pong_frame").subarray(0, 3)));
  assert.equal(frames.length, 1);
});

test("BigInt discipline: numbers above 2^32 are written as integers, never floats", () => {
  eqHex(encodeBody(1767225700250), b("cf0000019b76dc2f9a"));
  eqHex(encodeBody(5n), b("05"));
  assert.throws(() => encodeBody(1.5), BodyError);
  assert.throws(() => encodeBody(2 ** 60), BodyError);
});

test("frames that arrived before the socket closed are still read: a sealed −5 then FIN is −5, not −4", async () => {
  const written = queue();
  const closed = queue();
  let handlers;
  const connection = new Connection(parseToken(blocks.get("vector:token").text), {
    onOpen: () => assert.fail("must not open"), onResponse() {}, onNotify() {}, onPong() {},
    onClose: (info) => closed.push(info),
  }, { keepalive: inputs.announced_keepalive, now: () => inputs.client_time_ms, clientNonce: () => b(inputs.client_nonce) });
  await connection.open(async (h) => {
    handlers = h;
    return { messageFramed: false, send: (bytes) => written.push(bytes), close() {} };
  });
  handlers.onData(v("hello_frame"));
  await written.next();
  // The server seals its answer and closes at once: both reach the client in the same turn (§5.3).
  handlers.onData(v("sealed_reject_frame"));
  handlers.onClose();
  const info = await closed.next();
  assert.deepEqual([info.status, info.kind], [-5, "connack"]);
});

test("§2.2 WebSocket messages: each payload is exactly one §10 frame", () => {
  /** The payload of one unfragmented RFC 6455 frame (7-bit length; masked or not). */
  const payload = (message) => {
    assert.equal(message[0], 0x82, "FIN + binary");
    const masked = (message[1] & 0x80) !== 0;
    const length = message[1] & 0x7f;
    assert.ok(length < 126);
    const start = masked ? 6 : 2;
    const key = message.subarray(2, 6);
    const data = message.slice(start, start + length);
    if (masked) for (let i = 0; i < data.length; i++) data[i] ^= key[i % 4];
    assert.equal(start + length, message.length);
    return data;
  };
  eqHex(payload(hex("wsvector", "hello_message")), v("hello_frame"));
  eqHex(payload(hex("wsvector", "ping_message")), v("ping_frame"));
  eqHex(hex("wsvector", "close_going_away"), b("880203e9"));
  const reader = new FrameReader();
  assert.equal(reader.feed(payload(hex("wsvector", "hello_message"))).length, 1);
  assert.ok(reader.empty, "nothing before or after the frame");
});

test("§12.1 relation sync: a reset page drops the copy, then full_sync_head carries its head (the §12.9 story)", async () => {
  const { EmberClient } = await import("../dist/index.js");
  const rel = (name) => hex("relvector", name);
  // The server's side is the §12.9 answers, decoded; what the client asks is compared with the vectors.
  const answers = [decodeBody(rel("sync_friends_reset_response_plaintext")), { c: 0, r: { items: [], head: 4 } }];
  const asked = [];
  class Scripted extends EmberClient {
    async request(method, params) {
      asked.push(encodeBody({ m: method, p: params }));
      return { code: answers[0].c, result: answers.shift().r };
    }
  }
  const client = new Scripted({ token: blocks.get("vector:token").text, transport: async () => assert.fail("no transport") });
  // The device holds version 1 (before carol's deletion at 4, whose tombstone the retention removed).
  client.relations.friend.set("carol", { friend_id: "carol", version: 1, deleted: false });
  client.relationVersions.friend = 1;
  const seen = [];
  client.on("relations", (event) => seen.push(event));
  await client.syncStream("friend");
  eqHex(asked[0], encodeBody({ m: "sync_friends", p: { after: 1, limit: 500 } }));
  eqHex(asked[1], rel("sync_friends_full_plaintext"), "after 2, full_sync_head 4");
  assert.deepEqual([...client.relations.friend.keys()], ["bob"]);
  assert.equal(client.relations.friend.get("bob").alias, "Bobby");
  assert.equal(client.relationVersions.friend, 4);
  assert.equal(seen[0].reset, true);
});

test("§12.1: a reset in the middle of a sync from 0 restarts it, with the reset page's head as full_sync_head", async () => {
  const { EmberClient } = await import("../dist/index.js");
  const item = (id, version) => ({ friend_id: id, alias: "", extra: "", created_at: 1, updated_at: 1, version, deleted: false });
  const answers = [
    { items: [item("a", 1), item("b", 2)], head: 4 }, // page 1 of a sync from 0 (limit reached, say)
    { items: [item("b", 2), item("c", 5)], head: 6, reset: true }, // the horizon passed meanwhile: from 0 again
    { items: [item("d", 6)], head: 6 },
  ];
  const asked = [];
  class Scripted extends EmberClient {
    async request(method, params) {
      asked.push(params);
      return { code: 0, result: answers.shift() };
    }
  }
  const client = new Scripted({ token: blocks.get("vector:token").text, transport: async () => assert.fail("no transport") });
  await client.syncStream("friend");
  assert.deepEqual(asked, [
    { after: 0, limit: 500 },
    { after: 2, limit: 500, full_sync_head: 4 },
    { after: 5, limit: 500, full_sync_head: 6 },
  ]);
  assert.deepEqual([...client.relations.friend.keys()].sort(), ["b", "c", "d"]);
  assert.equal(client.relationVersions.friend, 6);
});
