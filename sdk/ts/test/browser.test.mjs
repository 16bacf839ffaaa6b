// The web chat page in a real headless Chromium (Debian's /usr/bin/chromium, driven over the DevTools protocol
// by playwright-core, which downloads nothing): the gateway serves the page itself (server.ws_demo, from
// gateway/webchat/, with its committed ember.js bundle); a user signs in with a token over the gateway's
// WebSocket listener and talks with a user of the TS SDK over TCP, both ways. A screenshot is written as an
// artifact. The same files served by another origin are refused (server.ws_allowed_origins).
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, extname, join, normalize } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { emberBin, freePort, Gateway, wsSupported } from "./gateway.mjs";
import { newClient, watch } from "./helpers.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const webchat = join(root, "..", "..", "gateway", "webchat");
export const artifacts = process.env.EMBER_TS_ARTIFACTS ?? join(root, "test-artifacts");
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";

let playwright;
try {
  playwright = await import("playwright-core");
} catch {
  playwright = undefined;
}
const bin = emberBin();
const missing = !bin
  ? "no ember command"
  : !existsSync(chromiumPath)
    ? `no Chromium at ${chromiumPath} (apt-get install chromium chromium-driver)`
    : !playwright
      ? "playwright-core is not installed (npm ci)"
      : !(await wsSupported(bin))
        ? "the gateway has no WebSocket listener (server.ws_port)"
        : false;
if (missing && process.env.CI === "true") throw new Error(`CI=true: ${missing}`);

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".map": "application/json" };

/** Serves the page's files (gateway/webchat) from another origin than the gateway's: a foreign site. */
function staticServer(port) {
  const server = createServer((request, response) => {
    const path = normalize(decodeURIComponent(new URL(request.url, "http://x").pathname)).replace(/^(\.\.[/\\])+/, "");
    const file = join(webchat, path === "/" ? "index.html" : path);
    if (!file.startsWith(webchat) || !existsSync(file)) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { "Content-Type": TYPES[extname(file)] ?? "application/octet-stream", "Cache-Control": "no-store" });
    response.end(readFileSync(file));
  });
  return new Promise((resolve) => server.listen(port, "127.0.0.1", () => resolve(server)));
}

describe("web chat page in headless Chromium", { skip: missing, timeout: 300_000 }, () => {
  let gateway;
  let web;
  let context;
  let profile;
  let bob;

  before(async () => {
    const webPort = await freePort();
    const origin = `http://127.0.0.1:${webPort}`;
    gateway = await Gateway.start({ ws: true, env: { EMBER_SERVER__WS_DEMO: "true" } });
    gateway.page = `http://127.0.0.1:${gateway.wsPort}/`; // the page's own origin may open /ws
    web = await staticServer(webPort);
    web.origin = origin;
    await gateway.createUser("web-alice", "Alice (web)");
    await gateway.createUser("tcp-bob", "Bob (tcp)");
    await gateway.createUser("web-carol", "Carol (web)");
    profile = mkdtempSync(join(tmpdir(), "ember-chromium-"));
    context = await playwright.chromium.launchPersistentContext(profile, {
      executablePath: chromiumPath,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
      viewport: { width: 1000, height: 640 },
    });
  });

  after(async () => {
    await bob?.close().catch(() => undefined);
    await context?.close().catch(() => undefined);
    web?.close();
    await gateway?.stop({ removeData: true });
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  test("a message typed in the page arrives over TCP, and one sent to the page shows up", async () => {
    bob = newClient(await gateway.token("tcp-bob", "bob-desktop", 7), "tcp", gateway);
    await bob.connect();
    const bobGot = watch(bob);
    const first = await bob.sendText({ type: 0, target: "web-alice" }, "hello from tcp");

    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (error) => errors.push(error.message));
    await page.goto(gateway.page);
    await page.fill("[data-testid=token]", await gateway.token("web-alice", "alice-browser", 5));
    await page.click("[data-testid=signin]");
    await page.waitForSelector("body[data-ready=true]", { timeout: 40_000 });
    assert.equal(await page.textContent("[data-testid=me]"), "web-alice");

    // The conversation list: bob's chat with one unread message, named by his display name.
    const chat = page.locator("[data-testid=conversation]", { hasText: "Bob (tcp)" });
    await chat.waitFor({ timeout: 40_000 });
    assert.equal(await chat.locator("[data-testid=unread]").textContent(), "1");
    await chat.click();
    await page.locator("[data-testid=message]", { hasText: "hello from tcp" }).waitFor({ timeout: 40_000 });
    // Opening it marks it read on the server (§16.2): the badge goes and bob's chat is read up to his message.
    await chat.locator("[data-testid=unread]").waitFor({ state: "detached", timeout: 40_000 });

    // Typed in the page → arrives at the TCP client.
    await page.fill("[data-testid=text]", "hi from the browser");
    await page.click("[data-testid=send]");
    const arrived = await bobGot.until((m) => m.content.searchable_content === "hi from the browser", 15_000);
    assert.equal(arrived.from, "web-alice");
    assert.deepEqual(arrived.conv, { type: 0, target: "tcp-bob", line: 0 });
    await page.locator("[data-testid=message].mine", { hasText: "hi from the browser" }).waitFor();

    // Sent to the page live, while it is open.
    await bob.sendText({ type: 0, target: "web-alice" }, "and a live reply");
    await page.locator("[data-testid=message]", { hasText: "and a live reply" }).waitFor({ timeout: 40_000 });
    assert.equal(await page.locator("[data-testid=status]").textContent(), "online");
    assert.ok(first.messageId > 0n);

    mkdirSync(artifacts, { recursive: true });
    await page.screenshot({ path: join(artifacts, "web-chat.png") });
    assert.deepEqual(errors, []);
  });

  test("a page of an origin the gateway does not list cannot connect (server.ws_allowed_origins)", async () => {
    // Same files, another origin (a static server of its own, not the gateway): not the gateway's own origin,
    // and server.ws_allowed_origins lists none.
    const page = await context.newPage();
    await page.goto(`${web.origin}/index.html?ws=ws://127.0.0.1:${gateway.wsPort}/ws`);
    await page.fill("[data-testid=token]", await gateway.token("web-carol", "carol-foreign", 5));
    await page.click("[data-testid=signin]");
    const error = page.locator("[data-testid=signin-error]", { hasText: "Cannot reach the gateway" });
    await error.waitFor({ timeout: 30_000 });
    assert.match(await error.textContent(), /server\.ws_allowed_origins/);
    assert.equal(await page.locator("body[data-ready=true]").count(), 0);
    await page.close();
  });

  test("two browser users talk live, page to page", async () => {
    const signIn = async (user, device) => {
      const page = await context.newPage();
      await page.goto(gateway.page);
      await page.fill("[data-testid=token]", await gateway.token(user, device, 5));
      await page.click("[data-testid=signin]");
      await page.waitForSelector("body[data-ready=true]", { timeout: 40_000 });
      return page;
    };
    const alice = await signIn("web-alice", "alice-browser-2");
    const carol = await signIn("web-carol", "carol-browser");
    // alice starts a chat with carol by id and writes; carol's list shows it live, unread, and opens it.
    await alice.fill("[data-testid=new-chat-user]", "web-carol");
    await alice.click("[data-testid=new-chat-open]");
    await alice.fill("[data-testid=text]", "hello carol, from one page to another");
    await alice.click("[data-testid=send]");
    const chat = carol.locator("[data-testid=conversation]", { hasText: "Alice (web)" });
    await chat.waitFor({ timeout: 40_000 });
    assert.equal(await chat.locator("[data-testid=unread]").textContent(), "1");
    await chat.click();
    await carol.locator("[data-testid=message]", { hasText: "hello carol, from one page to another" }).waitFor({ timeout: 40_000 });
    await carol.fill("[data-testid=text]", "hi alice!");
    await carol.click("[data-testid=send]");
    await alice.locator("[data-testid=message]", { hasText: "hi alice!" }).waitFor({ timeout: 40_000 });
    await alice.screenshot({ path: join(artifacts, "web-chat-two-pages.png") });
  });
});
