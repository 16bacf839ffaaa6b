// Starts a real Ember gateway (`ember serve`, the Python one) for the live tests, on free 127.0.0.1 ports and a
// fresh data folder, and talks to its signed admin API (docs/ADMIN_API.md "Signing") to make users and tokens.
import { spawn } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

/** The `ember` command: $EMBER_BIN, else the checkout's .venv. Undefined when neither exists. */
export function emberBin() {
  const candidate = process.env.EMBER_BIN ?? join(repo, ".venv", "bin", "ember");
  return existsSync(candidate) ? candidate : undefined;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Does this gateway's configuration know the WebSocket listener (`server.ws_port`, issue 25)? */
export async function wsSupported(bin = emberBin()) {
  if (!bin) return false;
  const readme = join(repo, "README.md");
  const { readFileSync } = await import("node:fs");
  return existsSync(readme) && readFileSync(readme, "utf8").includes("`server.ws_port`");
}

export class Gateway {
  constructor({ bin, data, port, adminPort, wsPort, secret, tokenKey, env }) {
    Object.assign(this, { bin, data, port, adminPort, wsPort, secret, tokenKey, env });
    this.adminUrl = `http://127.0.0.1:${adminPort}`;
    this.log = "";
  }

  /** Start `ember serve`; resolves once its admin port answers /health. */
  static async start(options = {}) {
    const bin = options.bin ?? emberBin();
    if (!bin) throw new Error("no ember command");
    const data = options.data ?? mkdtempSync(join(tmpdir(), "ember-ts-"));
    const gateway = new Gateway({
      bin,
      data,
      port: options.port ?? (await freePort()),
      adminPort: options.adminPort ?? (await freePort()),
      wsPort: options.ws ? (options.wsPort ?? (await freePort())) : 0,
      secret: options.secret ?? randomBytes(32).toString("hex"),
      tokenKey: options.tokenKey ?? randomBytes(32).toString("hex"),
      env: options.env ?? {},
    });
    gateway.ownsData = options.data === undefined;
    await gateway.spawn();
    return gateway;
  }

  /** The same database, secrets and config, possibly on other ports (a restart or a redirect target). */
  async restart(overrides = {}) {
    const next = new Gateway({ ...this, ...overrides, env: { ...this.env, ...(overrides.env ?? {}) } });
    next.ownsData = this.ownsData;
    this.ownsData = false;
    await next.spawn();
    return next;
  }

  async spawn() {
    const env = {
      ...process.env,
      EMBER_SERVER__HOST: "127.0.0.1",
      EMBER_SERVER__PORT: String(this.port),
      EMBER_ADMIN__HOST: "127.0.0.1",
      EMBER_ADMIN__PORT: String(this.adminPort),
      EMBER_ADMIN__SECRET: this.secret,
      EMBER_TOKEN__KEY: this.tokenKey,
      EMBER_LOG__LEVEL: "WARNING",
      ...this.env,
    };
    if (this.wsPort) env.EMBER_SERVER__WS_PORT = String(this.wsPort);
    this.process = spawn(this.bin, ["serve", "--data", this.data], { env, stdio: ["ignore", "pipe", "pipe"] });
    this.process.stdout.on("data", (chunk) => (this.log += chunk));
    this.process.stderr.on("data", (chunk) => (this.log += chunk));
    this.exited = new Promise((resolve) => this.process.once("exit", (code, signal) => resolve({ code, signal })));
    let gone = false;
    this.exited.then(() => (gone = true));
    const deadline = Date.now() + 90_000; // a busy shared machine can take long to import
    while (Date.now() < deadline) {
      if (gone) throw new Error(`ember serve exited at start:\n${this.log}`);
      try {
        const response = await fetch(`${this.adminUrl}/health`);
        if (response.ok) return;
      } catch {
        /* not up yet */
      }
      await sleep(100);
    }
    await this.stop();
    throw new Error(`ember serve did not answer /health in 90 s:\n${this.log}`);
  }

  /** SIGTERM (the graceful shutdown: going-away DISCONNECTs, §8.7) and wait for the exit. */
  async stop({ removeData = false } = {}) {
    if (this.process && this.process.exitCode === null && this.process.signalCode === null) {
      this.process.kill("SIGTERM");
      const timer = setTimeout(() => this.process.kill("SIGKILL"), 20_000);
      await this.exited;
      clearTimeout(timer);
    }
    if (removeData && this.ownsData) rmSync(this.data, { recursive: true, force: true });
  }

  /** One signed admin call: X-Nonce, X-Timestamp, X-Sign = hex HMAC-SHA256(secret, nonce|timestamp|body). */
  async admin(path, payload) {
    const body = JSON.stringify(payload);
    const nonce = randomBytes(16).toString("hex");
    const timestamp = String(Date.now());
    const sign = createHmac("sha256", Buffer.from(this.secret, "utf8")).update(`${nonce}|${timestamp}|${body}`).digest("hex");
    const response = await fetch(`${this.adminUrl}${path}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Nonce": nonce, "X-Timestamp": timestamp, "X-Sign": sign },
      body,
    });
    const answer = await response.json();
    if (answer.code !== 0) throw new Error(`${path} answered ${answer.code}: ${answer.msg}`);
    return answer.result;
  }

  async createUser(userId, name = userId) {
    await this.admin("/admin/user/create", { user_id: userId, name, display_name: name });
  }

  async token(userId, clientId, platform = 5) {
    return (await this.admin("/admin/user/get_token", { user_id: userId, client_id: clientId, platform })).token;
  }
}
