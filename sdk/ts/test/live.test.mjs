// Two TS clients against a real `ember serve`: push, pull by seq, acks, reconnect, idempotent resend, recall,
// conversations and read marks, user info, friends, groups, and a graceful shutdown with a redirect (§8.7).
// Transports: TCP always; WebSocket too when the gateway has `server.ws_port` (EMBER_TS_TRANSPORTS overrides).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { base64urlEncode, EmberClient, encodeBody, failoverTransport, markHighlights, parseToken, Status, tcpTransport } from "../dist/node.js";
import { emberBin, freePort, Gateway, wsSupported } from "./gateway.mjs";
import { cuttable, inbox, newClient, textOf, untilStatus, waitFor, watch } from "./helpers.mjs";

const bin = emberBin();
const ws = await wsSupported(bin);
const kinds = (process.env.EMBER_TS_TRANSPORTS ?? (ws ? "tcp,ws" : "tcp")).split(",");
const skip = bin ? false : "no ember command (set EMBER_BIN or make the checkout's .venv)";
if (skip && process.env.CI === "true") throw new Error(`CI=true: ${skip}`);

describe("live gateway", { skip, timeout: 300_000 }, () => {
  let gateway;
  let redirectPort;
  let idle;
  let idlePongs = 0;
  const idleEnds = [];
  const clients = [];
  const open = async (user, device, kind, options) => {
    const client = newClient(await gateway.token(user, device), kind, gateway, options);
    clients.push(client);
    await client.connect();
    return client;
  };

  before(async () => {
    // The shutdown test's redirect target is chosen up front, so the test needs one restart, not two.
    redirectPort = await freePort();
    gateway = await Gateway.start({
      ws,
      env: { EMBER_MESSAGE__REMOTE_HISTORY: "true", EMBER_SERVER__SHUTDOWN_REDIRECT: `127.0.0.1:${redirectPort}` },
    });
    for (const user of ["alice", "bob", "carol", "dave", "erin"]) await gateway.createUser(user, user[0].toUpperCase() + user.slice(1));
    // An idle client with the smallest keepalive the server allows (10 s), left alone while the other tests run:
    // the last test checks that it PINGed, got PONGs, and was not closed as idle (1.5 × keepalive, §8.4).
    idle = await open("erin", "erin-idle", kinds[kinds.length - 1], { keepalive: 10 });
    idle.on("pong", () => idlePongs++);
    idle.on("disconnected", (info) => idleEnds.push(info));
  });

  after(async () => {
    for (const client of clients) await client.close().catch(() => undefined);
    await gateway?.stop({ removeData: true });
  });

  for (const aliceKind of kinds) {
    const bobKind = kinds[(kinds.indexOf(aliceKind) + 1) % kinds.length];
    test(`push, ack, pull by seq (alice ${aliceKind}, bob ${bobKind})`, async () => {
      const alice = await open("alice", `alice-${aliceKind}`, aliceKind);
      const bob = await open("bob", `bob-${bobKind}`, bobKind);
      assert.equal(alice.status, Status.Connected);
      const bobGot = watch(bob);
      const pushed = bobGot.until((m) => textOf(m) === `hello over ${aliceKind}`);
      const ack = await alice.sendText({ type: 0, target: "bob" }, `hello over ${aliceKind}`);
      assert.equal(typeof ack.messageId, "bigint");
      assert.ok(ack.messageId > 2n ** 53n, "a real 64-bit id, exact");
      assert.ok(ack.seq > 0);
      const message = await pushed;
      assert.equal(message.messageId, ack.messageId);
      assert.equal(message.from, "alice");
      assert.deepEqual(message.conv, { type: 0, target: "bob", line: 0 });
      assert.equal(message.seq, bob.seq);

      // bob goes away; alice sends two more; bob comes back with his seq and pulls exactly those.
      const seq = bob.seq;
      await bob.close();
      const a2 = await alice.sendText({ type: 0, target: "bob" }, "while you were away 1");
      const a3 = await alice.sendText({ type: 0, target: "bob" }, "while you were away 2");
      const bobAgain = newClient(await gateway.token("bob", `bob-${bobKind}`), bobKind, gateway, { initialSeq: seq });
      clients.push(bobAgain);
      const pulled = inbox(bobAgain);
      await bobAgain.connect(); // resolves once caught up
      assert.deepEqual(pulled.map((m) => m.messageId), [a2.messageId, a3.messageId]);
      assert.deepEqual(pulled.map((m) => m.seq), [seq + 1, seq + 2]);
      assert.equal(bobGot.messages.length, 1);
      await alice.close();
      await bobAgain.close();
    });
  }

  test("reconnect after a lost connection, and a resend that is stored once", async () => {
    const kind = kinds[kinds.length - 1];
    const cut = cuttable;
    let control;
    const alice = await open("alice", "alice-resend", kind, {
      wrap: (factory) => {
        const wrapped = cut(factory);
        control = wrapped.control;
        return wrapped.factory;
      },
    });
    const bob = await open("bob", "bob-resend", kinds[0]);
    const bobGot = watch(bob);

    // A plain drop: the client comes back by itself.
    const statuses = [];
    alice.on("status", (s) => statuses.push(s));
    alice.dropConnection();
    await waitFor(alice, "status", (s) => s === Status.Connected, 30_000, "reconnected"); // it was Connected: wait for the next
    assert.ok(statuses.includes(Status.ServerDown) || statuses.includes(Status.Connecting), JSON.stringify(statuses));

    // The send's REQUEST reaches the server, the connection dies before its RESPONSE: the SDK reconnects and
    // sends again with the same client_msg_id; the server answers the original ack and stores nothing new.
    control.armed = true;
    const ack = await alice.sendText({ type: 0, target: "bob" }, "exactly once", { clientMsgId: "resend-test-1" });
    assert.equal(control.cuts, 1, "the connection was cut after the REQUEST");
    assert.equal(ack.clientMsgId, "resend-test-1");
    // An explicit second send with the same id: the same ack (§9.3).
    const again = await alice.sendText({ type: 0, target: "bob" }, "exactly once (changed)", { clientMsgId: "resend-test-1" });
    assert.equal(again.messageId, ack.messageId);
    assert.equal(again.seq, ack.seq);
    // A marker after it: once bob has the marker he has everything before it.
    await alice.sendText({ type: 0, target: "bob" }, "marker");
    await bobGot.until((m) => textOf(m) === "marker");
    const copies = bobGot.messages.filter((m) => textOf(m)?.startsWith("exactly once"));
    assert.equal(copies.length, 1, "stored and delivered once");
    assert.equal(copies[0].messageId, ack.messageId);
    await alice.close();
    await bob.close();
  });

  test("failoverTransport: a node that cannot be reached is left for the next one of the list", async () => {
    const deadPort = await freePort(); // nothing listens there
    let deadTries = 0;
    const dead = (handlers, redirect) => {
      deadTries++;
      return tcpTransport("127.0.0.1", deadPort)(handlers, redirect);
    };
    const alice = new EmberClient({
      token: await gateway.token("alice", "alice-failover"),
      transport: failoverTransport([dead, tcpTransport("127.0.0.1", gateway.port)]),
      requestTimeoutMs: 10_000,
      backoffMs: { initial: 200, max: 2_000 },
    });
    clients.push(alice);
    const statuses = [];
    alice.on("status", (s) => statuses.push(s));
    await alice.connect();
    assert.equal(alice.status, Status.Connected);
    assert.ok(!statuses.includes(Status.ServerDown), `no failed attempt: ${JSON.stringify(statuses)}`);
    const bob = await open("bob", "bob-failover", kinds[0]);
    const bobGot = watch(bob);
    await alice.sendText({ type: 0, target: "bob" }, "through the second endpoint");
    await bobGot.until((m) => textOf(m) === "through the second endpoint");
    assert.equal(deadTries, 1);
    // Lost, it reconnects to the node that answered last: the dead one is not tried first again.
    alice.dropConnection();
    await waitFor(alice, "status", (s) => s === Status.Connected, 30_000, "reconnected");
    assert.equal(deadTries, 1);
    await alice.close();
    await bob.close();
  });

  test("recall, delete, user info, conversations and read marks", async () => {
    const alice = await open("alice", "alice-conv", kinds[0]);
    const bob = await open("bob", "bob-conv", kinds[kinds.length - 1]);
    const bobGot = watch(bob);
    const first = await alice.sendText({ type: 0, target: "bob" }, "one");
    await bobGot.until((m) => m.messageId === first.messageId);
    const recalled = waitFor(bob, "recalled", (r) => r.messageId === first.messageId);
    const notice = await alice.recallMessage(first.messageId);
    assert.equal(typeof notice.messageId, "bigint");
    assert.equal((await recalled).operator, "alice");

    const second = await alice.sendText({ type: 0, target: "bob" }, "two");
    await bobGot.until((m) => m.messageId === second.messageId);
    const { conversations } = await bob.getConversations();
    const withAlice = conversations.find((c) => c.conv.type === 0 && c.conv.target === "alice");
    assert.ok(withAlice, "bob's list has the chat with alice, named by the other user");
    assert.equal(withAlice.lastMessage.messageId, second.messageId);
    assert.ok(withAlice.unread >= 1);
    assert.equal(await bob.markRead({ type: 0, target: "alice" }, second.messageId), second.messageId);
    const after = (await bob.getConversations()).conversations.find((c) => c.conv.target === "alice");
    assert.equal(after.unread, 0);
    assert.equal(after.readTo, second.messageId);

    await bob.deleteMessage(second.messageId);
    await assert.rejects(bob.deleteMessage(second.messageId), (e) => e.code === 253);

    const [info] = await bob.getUserInfo(["alice"]);
    assert.equal(info.user_id, "alice");
    assert.equal(info.display_name, "Alice");
    assert.equal((await bob.getUserInfo(["nobody-such"])).length, 0);
    const history = await bob.loadRemoteHistory({ type: 0, target: "alice" });
    assert.ok(history.some((m) => m.messageId === first.messageId && m.content.type === 80), "the recalled message shows the notice");
    await alice.close();
    await bob.close();
  });

  test("search: Chinese and mixed keywords, highlights as UTF-16 ranges, paging, 251 for a bad keyword", async () => {
    const alice = await open("alice", "alice-search", kinds[0]);
    const bob = await open("bob", "bob-search", kinds[kinds.length - 1]);
    const texts = ["😀明天 Meeting 3点", "后天见", "明天见 lunch"];
    const sent = [];
    for (const text of texts) sent.push((await alice.sendText({ type: 0, target: "bob" }, text)).messageId);
    const page = await bob.searchMessages("明天 meet");
    assert.deepEqual(page.hits.map((h) => h.message.messageId), [sent[0]], "both parts must be in the text");
    const [hit] = page.hits;
    assert.deepEqual(hit.highlights, [[1, 3], [4, 8]], "code points, as the server sends them");
    assert.deepEqual(hit.ranges, [[2, 4], [5, 9]], "the emoji before them is two UTF-16 units");
    assert.equal(markHighlights(hit), "😀[明天] [Meet]ing 3点");
    assert.equal(page.nextCursor, undefined, "a page that is not full has no cursor");
    // One character, newest first, one per page.
    const first = await bob.searchMessages("天", { limit: 1 });
    assert.deepEqual(first.hits.map((h) => h.message.messageId), [sent[2]]);
    assert.equal(typeof first.nextCursor, "string");
    const second = await bob.searchMessages("天", { limit: 2, cursor: first.nextCursor });
    assert.deepEqual(second.hits.map((h) => h.message.messageId), [sent[1], sent[0]]);
    assert.deepEqual((await bob.searchMessages("lunch", { fromUser: "bob" })).hits, [], "bob sent none of them");
    // Another user's private messages never appear.
    const carol = await open("carol", "carol-search", kinds[0]);
    assert.deepEqual((await carol.searchMessages("明天")).hits, []);
    await assert.rejects(bob.searchMessages(""), (e) => e.code === 251 && /keyword/.test(e.message));
    await assert.rejects(bob.searchMessages("x", { limit: 0 }), (e) => e.code === 251);
    await alice.close();
    await bob.close();
    await carol.close();
  });

  test("friends by request and the synced streams; a group and its message", async () => {
    const carol = await open("carol", "carol-1", kinds[0]);
    const dave = await open("dave", "dave-1", kinds[kinds.length - 1]);
    const requestSeen = waitFor(dave, "relations", (r) => r.stream === "friend_request" && r.items.some((i) => i.from === "carol"));
    await carol.sendFriendRequest("dave", "hi, it's Carol");
    await requestSeen;
    const carolFriends = waitFor(carol, "relations", (r) => r.stream === "friend" && r.items.some((i) => i.friend_id === "dave"));
    await dave.handleFriendRequest("carol", true);
    await carolFriends;
    await dave.syncStream("friend");
    assert.deepEqual(dave.friends, ["carol"]);
    assert.deepEqual(carol.friends, ["dave"]);
    await dave.setBlacklist("alice", true);
    assert.deepEqual(await dave.getBlacklist(), ["alice"]);

    const daveGot = watch(dave);
    const groupId = await carol.createGroup({ name: "club", members: ["dave"] });
    await daveGot.until((m) => m.conv.type === 1 && m.conv.target === groupId && m.content.type === 104);
    const info = await dave.getGroupInfo(groupId);
    assert.equal(info.group.name, "club");
    assert.deepEqual((await dave.getGroupMembers(groupId)).map((m) => m.user_id).sort(), ["carol", "dave"]);
    assert.ok((await dave.getMyGroups()).some((g) => g.groupId === groupId));
    const groupMessage = daveGot.until((m) => m.conv.type === 1 && textOf(m) === "hi club");
    await carol.sendText({ type: 1, target: groupId }, "hi club");
    assert.equal((await groupMessage).from, "carol");
    await carol.close();
    await dave.close();
  });

  test("a graceful shutdown: going-away DISCONNECT, TCP clients follow the redirect, WebSocket ones keep their URL", async () => {
    const alice = await open("alice", "alice-goaway", "tcp");
    const bob = await open("bob", "bob-goaway", "tcp");
    // Over WebSocket the redirect (a TCP host:port) is ignored: the client comes back to its own URL (§2.2).
    const carol = ws ? await open("carol", "carol-goaway", "ws") : undefined;
    const carolGoaway = carol ? waitFor(carol, "goaway") : undefined;
    const ends = [];
    for (const [name, c] of [["alice", alice], ["bob", bob]]) c.on("disconnected", (info) => ends.push(`${name}: ${info.kind} ${info.detail}`));
    // SIGTERM: every connection gets a sealed DISCONNECT naming the redirect; the same database then comes up there.
    const goaway = waitFor(alice, "goaway");
    const stopping = gateway.stop();
    const notice = await goaway;
    assert.equal(notice.redirect, `127.0.0.1:${redirectPort}`);
    assert.equal(notice.reason, "shutdown");
    await stopping;
    gateway = await gateway.restart({ port: redirectPort, env: { EMBER_SERVER__SHUTDOWN_REDIRECT: "" } });
    await untilStatus(alice, Status.Connected, 40_000, "alice at the redirect");
    await untilStatus(bob, Status.Connected, 40_000, "bob at the redirect").catch((error) => {
      throw new Error(`${error.message}; connections ended: ${ends.join("; ")}`);
    });
    if (carol) {
      assert.equal((await carolGoaway).redirect, `127.0.0.1:${redirectPort}`);
      await untilStatus(carol, Status.Connected, 40_000, "carol back at her WebSocket URL");
      const carolGot = watch(carol).until((m) => textOf(m) === "to the ws client after the move");
      await alice.sendText({ type: 0, target: "carol" }, "to the ws client after the move");
      await carolGot;
      await carol.close();
    }
    const got = watch(bob).until((m) => textOf(m) === "after the move");
    await alice.sendText({ type: 0, target: "bob" }, "after the move");
    await got;
    await alice.close();
    await bob.close();
  });

  test("§7: a clear −6 is believed after four in a row; a sealed −6 at once", async () => {
    // No session for this client id: the server can only answer a clear −6 (it holds no key).
    const real = parseToken(await gateway.token("dave", "dave-real"));
    const forged = "em1." + base64urlEncode(encodeBody(["dave", "dave-never-had-a-session", real.platform, real.secret, real.credential]));
    const clear = newClient(forged, "tcp", gateway);
    const clearEnds = [];
    clear.on("disconnected", (info) => clearEnds.push(info.kind));
    await assert.rejects(clear.connect(), (e) => e.status === Status.SecretKeyMismatch);
    assert.deepEqual(clearEnds, ["clear-connack", "clear-connack", "clear-connack", "clear-connack"]);
    // A destroyed session: the proof opens, so the −6 is sealed and final on the first answer.
    const token = await gateway.token("dave", "dave-destroyed");
    await gateway.admin("/admin/session/destroy", { user_id: "dave", client_id: "dave-destroyed" });
    const sealed = newClient(token, kinds[kinds.length - 1], gateway);
    const sealedEnds = [];
    sealed.on("disconnected", (info) => sealedEnds.push(info.kind));
    await assert.rejects(sealed.connect(), (e) => e.status === Status.SecretKeyMismatch);
    assert.deepEqual(sealedEnds, ["connack"]);
    assert.equal(sealed.status, Status.SecretKeyMismatch);
  });

  test("keepalive: an idle client PINGs and is kept (it ran through the tests above)", async () => {
    assert.equal(idle.connack.keepalive, 10, "the effective keepalive of the CONNACK");
    if (idlePongs === 0) await waitFor(idle, "pong", () => true, 30_000, "a PONG");
    assert.ok(idlePongs >= 1);
    // Until the gateway's restart (going away) its connection never ended: no idle close.
    const restart = idleEnds.findIndex((info) => info.kind === "goaway");
    const beforeRestart = restart < 0 ? idleEnds : idleEnds.slice(0, restart);
    assert.deepEqual(beforeRestart.map((info) => info.detail), []);
    await untilStatus(idle, Status.Connected);
  });
});
