// The web chat page: plain DOM over the TypeScript SDK's browser bundle, ember.js beside this file (built from
// sdk/ts/src by `npm run build:webchat`; the gateway serves all of this folder with server.ws_demo = true).
// Sign in with a token, see the conversation list with unread counts, open one, send and receive live,
// page back through the history, and keep read marks on the server (PROTOCOL.md §16).
import { ConversationList, EmberClient, RequestError, Status, convKey, noticeTarget, ownView, webSocketTransport } from "./ember.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
$("gateway-url").value = params.get("ws") ?? `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;

const STATUS_TEXT = {
  [Status.Connected]: "online", [Status.Receiving]: "syncing…", [Status.Connecting]: "connecting…",
  [Status.ServerDown]: "reconnecting…", [Status.Logout]: "signed out", [Status.Rejected]: "account blocked",
  [Status.TokenIncorrect]: "token incorrect", [Status.SecretKeyMismatch]: "token no longer valid",
  [Status.Kickedoff]: "signed in elsewhere", [Status.TimeInconsistent]: "device clock is wrong",
};

let client;
let conversations;
let current; // the open conversation, as this user sees it
const messagesByConv = new Map(); // conv key → Map(message id string → message)
const names = new Map();

function remember(message) {
  const key = convKey(ownView(message.conv, message.from, client.userId));
  let held = messagesByConv.get(key);
  if (!held) messagesByConv.set(key, (held = new Map()));
  held.set(String(message.messageId), message);
  return key;
}

function textFor(message) {
  const content = message.content;
  if (content.type === 80) return "message recalled";
  if (content.type >= 100 && content.type < 200) return "group updated";
  return content.searchable_content ?? content.content ?? `[type ${content.type}]`;
}

function titleFor(conv) {
  if (conv.type === 0) return names.get(conv.target) ?? conv.target;
  return `${conv.type === 1 ? "Group" : "Channel"} ${conv.target}`;
}

async function learnNames(ids) {
  const unknown = ids.filter((id) => !names.has(id));
  if (unknown.length === 0) return;
  try {
    for (const user of await client.getUserInfo(unknown)) names.set(user.user_id, user.display_name || user.name || user.user_id);
    renderConversations();
    if (current) $("pane-title").textContent = titleFor(current);
  } catch {
    /* names are a nicety */
  }
}

function renderConversations() {
  const list = $("conversations");
  list.replaceChildren();
  for (const entry of conversations.list) {
    const item = document.createElement("li");
    item.dataset.key = entry.key;
    item.dataset.testid = "conversation";
    if (current && convKey(current) === entry.key) item.classList.add("active");
    const name = Object.assign(document.createElement("span"), { className: "name", textContent: titleFor(entry.conv) });
    const last = Object.assign(document.createElement("span"), { className: "last", textContent: entry.lastMessage ? textFor(entry.lastMessage) : "" });
    item.append(name, last);
    if (entry.unread > 0) {
      const badge = Object.assign(document.createElement("span"), { className: "badge", textContent: String(entry.unread) });
      badge.dataset.testid = "unread";
      item.append(badge);
    }
    item.addEventListener("click", () => openConversation(entry.conv));
    list.append(item);
  }
}

function renderMessages() {
  const list = $("messages");
  list.replaceChildren();
  if (!current) return;
  const held = [...(messagesByConv.get(convKey(current))?.values() ?? [])].sort((a, b) => (a.messageId < b.messageId ? -1 : 1));
  const recalled = new Set(held.map((m) => noticeTarget(m.content)).filter((t) => t && true).map((t) => String(t.messageId)));
  for (const message of held) {
    if (message.content.type === 80) continue; // shown in place of the message it recalls
    const item = document.createElement("li");
    item.dataset.testid = "message";
    const isRecalled = recalled.has(String(message.messageId));
    if (isRecalled || (message.content.type >= 100 && message.content.type < 200)) item.classList.add("notice");
    else if (message.from === client.userId) item.classList.add("mine");
    // The text in a span of its own: what a test reads back must be the message's text exactly.
    const text = Object.assign(document.createElement("span"), { className: "text", textContent: isRecalled ? "message recalled" : textFor(message) });
    text.dataset.testid = "message-text";
    item.append(text);
    const meta = Object.assign(document.createElement("span"), {
      className: "meta",
      textContent: `${names.get(message.from) ?? message.from} · ${new Date(message.serverTime).toLocaleTimeString()}`,
    });
    item.append(meta);
    list.append(item);
  }
  list.scrollTop = list.scrollHeight;
}

async function openConversation(conv) {
  current = { type: conv.type, target: conv.target, line: conv.line ?? 0 };
  $("pane-title").textContent = titleFor(current);
  $("composer").hidden = false;
  $("older").hidden = false;
  $("older-note").hidden = true;
  renderMessages();
  renderConversations();
  $("text").focus();
  await markOpenRead();
}

async function markOpenRead() {
  const entry = current && conversations.get(current);
  if (entry?.unread > 0) await conversations.markRead(current).catch(() => undefined);
}

async function loadOlder() {
  if (!current) return;
  const held = [...(messagesByConv.get(convKey(current))?.values() ?? [])];
  const oldest = held.reduce((min, m) => (min === undefined || m.messageId < min ? m.messageId : min), undefined) ?? 0n;
  try {
    const page = await client.loadRemoteHistory(current, oldest, 20);
    page.forEach(remember);
    $("older-note").hidden = false;
    $("older-note").textContent = page.length < 20 ? "This is the beginning of the conversation." : "";
    renderMessages();
  } catch (error) {
    $("older-note").hidden = false;
    $("older-note").textContent = error instanceof RequestError && error.code === 220 ? "History is off on this server." : `Could not load: ${error.message}`;
  }
}

async function signIn() {
  $("signin-error").hidden = true;
  const token = $("token").value.trim();
  try {
    client = new EmberClient({ token, transport: webSocketTransport($("gateway-url").value.trim()) });
  } catch (error) {
    $("signin-error").textContent = error.message;
    $("signin-error").hidden = false;
    return;
  }
  conversations = new ConversationList(client);
  let everConnected = false;
  client.on("status", (status) => {
    $("status").textContent = STATUS_TEXT[status] ?? String(status);
    $("status").classList.toggle("online", status === Status.Connected);
    if (status === Status.Connected) everConnected = true;
    if (status === Status.ServerDown && !everConnected) {
      // A browser does not say why a WebSocket failed; the usual reasons are these (PROTOCOL.md §2.2).
      $("signin-error").textContent = `Cannot reach the gateway at ${$("gateway-url").value} (still trying). Is it running with ` +
        `server.ws_port, and is this page's origin (${location.origin}) in server.ws_allowed_origins?`;
      $("signin-error").hidden = false;
    }
  });
  client.on("message", (message) => {
    const key = remember(message);
    if (message.conv.type === 0) learnNames([message.from, ownView(message.conv, message.from, client.userId).target]);
    if (current && key === convKey(current)) {
      renderMessages();
      void markOpenRead();
    }
  });
  client.on("sent", (message) => {
    const key = remember(message);
    if (current && key === convKey(current)) renderMessages();
  });
  conversations.on("changed", renderConversations);
  try {
    await client.connect();
    await conversations.load();
  } catch (error) {
    $("signin-error").textContent = `Could not sign in: ${error.message}`;
    $("signin-error").hidden = false;
    return;
  }
  $("signin").hidden = true;
  $("chat").hidden = false;
  $("me").textContent = client.userId;
  document.body.dataset.ready = "true";
  await learnNames([client.userId, ...conversations.list.filter((c) => c.conv.type === 0).map((c) => c.conv.target)]);
  renderConversations();
}

$("signin-button").addEventListener("click", signIn);
$("new-chat").addEventListener("submit", (event) => {
  event.preventDefault();
  const user = $("new-chat-user").value.trim();
  if (!user) return;
  $("new-chat-user").value = "";
  learnNames([user]);
  openConversation({ type: 0, target: user, line: 0 });
});
$("composer").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("text").value;
  if (!text.trim() || !current) return;
  $("text").value = "";
  const conv = current;
  try {
    await client.sendText(conv, text); // the client's "sent" event files it
  } catch (error) {
    $("text").value = text;
    alert(`Not sent: ${error.message}`);
  }
});
$("older").addEventListener("click", loadOlder);
