// Drives the gateway's own web chat page (server.ws_demo) in headless Chromium for tests/test_webchat.py, where
// the other user is the Python SDK over TCP. One argument, JSON: {url, token, reply, screenshot}. It prints one
// JSON line per step on stdout, for the Python side to await: {"ready"}, then {"received": text} (the first
// message from the other user, exactly as the page shows it), then {"sent"} once the reply is on its way.
// Each step waits for an event of the page, never for time; the Python side bounds the whole run.
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";

const { url, token, reply, screenshot } = JSON.parse(process.argv[2]);
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const say = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);
const STEP_MS = 60_000;

const { chromium } = await import("playwright-core");
const browser = await chromium.launch({
  executablePath: chromiumPath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 640 } });
  const problems = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console: ${message.text()}`);
  });
  await page.goto(url); // the page's default gateway URL is ws://<its own host>/ws
  await page.fill("[data-testid=token]", token);
  await page.click("[data-testid=signin]");
  await page.waitForSelector("body[data-ready=true]", { timeout: STEP_MS });
  say({ ready: await page.textContent("[data-testid=me]") });

  // The other user's message makes a conversation; open it and read the message's text node back.
  const chat = page.locator("[data-testid=conversation]").first();
  await chat.waitFor({ timeout: STEP_MS });
  await chat.click();
  const theirs = page.locator("[data-testid=message]:not(.mine) [data-testid=message-text]").first();
  await theirs.waitFor({ timeout: STEP_MS });
  say({ received: await theirs.textContent() });

  await page.fill("[data-testid=text]", reply);
  await page.click("[data-testid=send]");
  // The page files its own message once the gateway acknowledged it (the SDK's "sent" event).
  await page.locator("[data-testid=message].mine [data-testid=message-text]").first().waitFor({ timeout: STEP_MS });
  if (screenshot) {
    mkdirSync(dirname(screenshot), { recursive: true });
    await page.screenshot({ path: screenshot });
  }
  // A favicon request answered 404 is the only console error a served page may have.
  say({ sent: true, problems: problems.filter((p) => !p.includes("404")) });
} catch (error) {
  say({ error: String(error?.stack ?? error) });
  process.exitCode = 1;
} finally {
  await browser.close();
}
