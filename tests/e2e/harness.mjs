// End-to-end harness: real processes on free 127.0.0.1 ports and a real headless Chromium.
// It builds nothing: `target/debug/understudy` must exist (scripts/test runs `cargo build`
// first). Every process it starts is stopped by `cleanup()` (and on exit, whatever happens).
// Screenshots and logs go to artifacts/e2e/.

import { spawn, execFileSync } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { once } from "node:events";
import { existsSync, mkdirSync, writeFileSync, readFileSync, createWriteStream, mkdtempSync } from "node:fs";
import { createServer, connect } from "node:net";
import { createServer as createTlsServer } from "node:tls";
import { tmpdir, homedir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const ARTIFACTS = join(ROOT, "artifacts", "e2e");
export const BINARY = join(ROOT, "target", "debug", "understudy");
export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
export const SOCKUDO = process.env.UNDERSTUDY_SOCKUDO ||
  join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "understudy", "sockudo-5.2.0", "bin", "sockudo");
export const PUBLISHER_KEY = "e2e-publisher-key";
export const SUBSCRIBER_SECRET = "e2e-subscriber-secret-0123456789";
export const CHANNEL = "clinic-42.waiting-room";

mkdirSync(ARTIFACTS, { recursive: true });

const children = new Set();
process.on("exit", () => {
  for (const c of children) {
    try { c.kill("SIGCONT"); c.kill("SIGKILL"); } catch (e) { /* already gone */ }
  }
});

export async function freePort() {
  const srv = createServer();
  srv.listen(0, "127.0.0.1");
  await once(srv, "listening");
  const { port } = srv.address();
  srv.close();
  await once(srv, "close");
  return port;
}

/** Waits until `check()` resolves truthy, polling every `every` ms, for at most `ms`. */
export async function until(what, check, ms = 10000, every = 50) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      if (await check()) return;
    } catch (e) { /* not yet */ }
    if (Date.now() > deadline) throw new Error("timed out after " + ms + " ms waiting for " + what);
    await new Promise((r) => setTimeout(r, every));
  }
}

function track(name, cmd, args, env) {
  const log = createWriteStream(join(ARTIFACTS, name + ".log"), { flags: "a" });
  const child = spawn(cmd, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  child.stdout.pipe(log, { end: false });
  child.stderr.pipe(log, { end: false });
  children.add(child);
  child.on("exit", () => children.delete(child));
  return child;
}

async function stopChild(child, signal = "SIGTERM", ms = 8000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const gone = once(child, "exit");
  try { child.kill("SIGCONT"); child.kill(signal); } catch (e) { /* already gone */ }
  const timer = setTimeout(() => child.kill("SIGKILL"), ms);
  await gone;
  clearTimeout(timer);
}

/**
 * understudy with the demo on. `env` adds environment (e.g. UNDERSTUDY_TRANSPORTS); `restart()`
 * stops it and starts a new process on the same ports with the same demo state file, so the demo
 * backend's list survives and only understudy's in-memory epoch changes.
 */
export class Understudy {
  /**
   * `toml`: more lines for the config file, e.g. "[vendors]\nheartbeat_ms = 800";
   * `serverToml`: more keys of its [server] table.
   */
  constructor(name, env = {}, toml = "", serverToml = "") {
    this.name = name;
    this.env = env;
    this.toml = toml;
    this.serverToml = serverToml;
    this.dir = mkdtempSync(join(tmpdir(), "understudy-e2e-"));
    this.configFile = join(this.dir, "understudy.toml");
  }

  /** The config file, once the ports are known. */
  writeConfig() {
    writeFileSync(this.configFile, [
      "[server]",
      // Clients told to reconnect by a restarting server spread over up to 2 s; the restart
      // itself takes a fraction of that.
      "reconnect_jitter_ms = 2000",
      "shutdown_timeout_ms = 3000",
      // Goodbyes are spread over 1 s, leaving the rest of the shutdown limit to reconnect.
      "drain_window_ms = 1000",
      // The demo's ops page (on the public listener) sets the mode through the admin listener.
      "admin_cors_allow_origins = [" + JSON.stringify(this.base) + "]",
      this.serverToml,
      "[demo]",
      "state_file = " + JSON.stringify(join(this.dir, "waiting-room.json")),
      this.toml,
      "",
    ].join("\n"));
  }

  get base() { return "http://127.0.0.1:" + this.port; }

  async start(extraEnv = {}) {
    assert.ok(existsSync(BINARY), BINARY + " is missing: run `cargo build` first (scripts/test does)");
    if (!this.port) {
      this.port = await freePort();
      this.adminPort = await freePort();
      this.writeConfig();
    }
    Object.assign(this.env, extraEnv);
    const env = {
      ...process.env,
      UNDERSTUDY_LISTEN: "127.0.0.1:" + this.port,
      UNDERSTUDY_ADMIN_LISTEN: "127.0.0.1:" + this.adminPort,
      UNDERSTUDY_DEMO: "true",
      UNDERSTUDY_PUBLISHER_KEYS: PUBLISHER_KEY,
      UNDERSTUDY_SUBSCRIBER_SECRET: SUBSCRIBER_SECRET,
      UNDERSTUDY_LOG: "info",
      NO_COLOR: "1",
      ...this.env,
    };
    this.child = track(this.name + "-understudy", BINARY, ["serve", "--config", this.configFile], env);
    const child = this.child;
    let exited = false;
    await until("understudy /readyz on " + this.base, async () => {
      exited = child.exitCode !== null;
      return exited || (await fetch(this.base + "/readyz")).ok;
    }, 15000);
    assert.ok(!exited, "understudy exited with " + child.exitCode + ": see artifacts/e2e/" + this.name + "-understudy.log");
    return this;
  }

  async stop() { await stopChild(this.child); }

  /** SIGTERM (connections are told to reconnect), then a new process on the same ports. */
  async restart(extraEnv = {}) {
    await this.stop();
    await this.start(extraEnv);
  }

  async route() {
    const r = await fetch(this.base + "/v1/route");
    return r.ok ? r.json() : null;
  }
}

/**
 * A CA and a server certificate for 127.0.0.1 (IP SAN) and localhost, made with `openssl` once
 * per test file in a temporary directory. `caFile` is what understudy trusts
 * (`UNDERSTUDY_VENDOR_CA_FILE`); `spki` (base64 SHA-256 of the server key's SubjectPublicKeyInfo)
 * is what Chromium trusts, and only that key (`--ignore-certificate-errors-spki-list`).
 */
export function testCertificates() {
  if (testCertificates.made) return testCertificates.made;
  const dir = mkdtempSync(join(tmpdir(), "understudy-e2e-tls-"));
  const at = (f) => join(dir, f);
  const openssl = (...args) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", at("ca.key"), "-out", at("ca.pem"),
    "-days", "2", "-subj", "/CN=understudy e2e test CA",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
  openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", at("server.key"), "-out", at("server.csr"),
    "-subj", "/CN=127.0.0.1");
  writeFileSync(at("server.ext"), [
    "basicConstraints=CA:FALSE",
    "keyUsage=critical,digitalSignature,keyEncipherment",
    "extendedKeyUsage=serverAuth",
    "subjectAltName=IP:127.0.0.1,DNS:localhost",
    "",
  ].join("\n"));
  openssl("x509", "-req", "-in", at("server.csr"), "-CA", at("ca.pem"), "-CAkey", at("ca.key"),
    "-CAcreateserial", "-out", at("server.pem"), "-days", "2", "-extfile", at("server.ext"));
  const cert = readFileSync(at("server.pem"));
  const spkiDer = new X509Certificate(cert).publicKey.export({ type: "spki", format: "der" });
  testCertificates.made = {
    caFile: at("ca.pem"),
    key: readFileSync(at("server.key")),
    cert,
    spki: createHash("sha256").update(spkiDer).digest("base64"),
  };
  return testCertificates.made;
}

/**
 * A TLS terminator on a free 127.0.0.1 port (node's `tls`), proxying bytes to a plain port, with
 * the certificate of `testCertificates()`: the vendor's TLS edge.
 */
export class TlsTerminator {
  async start(upstreamPort) {
    const { key, cert } = testCertificates();
    this.sockets = new Set();
    this.server = createTlsServer({ key, cert }, (client) => {
      const upstream = connect(upstreamPort, "127.0.0.1");
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on("close", () => this.sockets.delete(s));
        s.on("error", () => { client.destroy(); upstream.destroy(); });
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
    this.server.listen(0, "127.0.0.1");
    await once(this.server, "listening");
    this.port = this.server.address().port;
    return this;
  }

  async stop() {
    if (!this.server) return;
    for (const s of this.sockets) s.destroy();
    this.server.close();
    this.server = null;
  }
}

/**
 * sockudo, the Pusher-compatible vendor server (shared/VENDORS.md §5.2), on a free port, behind
 * a TLS terminator: `url` is over TLS (as hosted vendors are) and `caFile` is the CA understudy
 * must be given.
 */
export class Sockudo {
  static available() { return existsSync(SOCKUDO); }

  /** `app`: the app's key and secret (default app-key / app-secret), e.g. one per tenant. */
  constructor(app = {}) {
    this.key = app.key || "app-key";
    this.secret = app.secret || "app-secret";
  }

  async start(name) {
    this.port = await freePort();
    this.dir = mkdtempSync(join(tmpdir(), "sockudo-e2e-"));
    const env = {
      PATH: process.env.PATH, HOST: "127.0.0.1", PORT: String(this.port), METRICS_ENABLED: "false",
      METRICS_HOST: "127.0.0.1", METRICS_PORT: String(await freePort()),
      // A numeric app id, as Pusher's are.
      SOCKUDO_DEFAULT_APP_ID: "4242", SOCKUDO_DEFAULT_APP_KEY: this.key, SOCKUDO_DEFAULT_APP_SECRET: this.secret,
      SOCKUDO_DEFAULT_APP_MAX_EVENT_PAYLOAD_IN_KB: "10", SOCKUDO_DEFAULT_APP_MAX_EVENT_BATCH_SIZE: "10",
      SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND: "100000",
      PUSH_ALLOW_MEMORY_DRIVERS: "true", RATE_LIMITER_ENABLED: "false", NO_COLOR: "1",
      // Its Ably protocol too (the key is app-key:app-secret), for the Ably SDK tests.
      SOCKUDO_ABLY_COMPAT_ENABLED: "true",
    };
    // Run from an empty directory: sockudo reads config/ from its working directory.
    this.child = spawn(SOCKUDO, [], { cwd: this.dir, env, stdio: ["ignore", "pipe", "pipe"] });
    const log = createWriteStream(join(ARTIFACTS, name + "-sockudo.log"), { flags: "a" });
    this.child.stdout.pipe(log, { end: false });
    this.child.stderr.pipe(log, { end: false });
    children.add(this.child);
    await until("sockudo /up", async () => (await fetch("http://127.0.0.1:" + this.port + "/up")).ok, 15000);
    this.tls = await new TlsTerminator().start(this.port);
    return this;
  }

  /** The vendor URL understudy is configured with: TLS (the default) on the terminator. */
  get url() { return "pusher://" + this.key + ":" + this.secret + "@127.0.0.1:" + this.tls.port + "/4242"; }
  /** The same server as an Ably vendor, TLS on the same terminator. */
  get ablyUrl() { return "ably://" + this.key + ":" + this.secret + "@127.0.0.1:" + this.tls.port; }
  /** The PEM file of the CA that signed the terminator's certificate. */
  get caFile() { return testCertificates().caFile; }
  /** SIGSTOP: sockudo hangs behind its terminator, which keeps accepting. */
  hang() { this.child.kill("SIGSTOP"); }
  resume() { this.child.kill("SIGCONT"); }
  async stop() {
    if (this.tls) await this.tls.stop();
    await stopChild(this.child);
  }
}

/** `extraArgs`: more Chromium switches, e.g. `--ignore-certificate-errors-spki-list=<spki>`. */
export async function launchBrowser(extraArgs = []) {
  assert.ok(existsSync(CHROMIUM), CHROMIUM + " is missing: apt-get install chromium (scripts/test does)");
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", ...extraArgs],
  });
}

/**
 * A page in a browser context of its own (its own window: a page behind another tab of the
 * same window gets throttled timers and no animation frames). Its console is kept in
 * artifacts/e2e/<name>-console.log.
 */
export async function openPage(browser, name, url) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  const page = await context.newPage();
  const log = createWriteStream(join(ARTIFACTS, name + "-console.log"), { flags: "a" });
  page.on("console", (m) => log.write(new Date().toISOString() + " " + m.type() + " " + m.text() + "\n"));
  page.on("pageerror", (e) => log.write(new Date().toISOString() + " pageerror " + e.message + "\n"));
  await page.goto(url);
  return page;
}

export async function tickets(board) {
  return board.$$eval("#tickets li", (lis) => lis.map((li) => li.dataset.ticket));
}

/** Waits until the board lists exactly `expected`, in order. */
export async function waitForTickets(board, expected, timeout = 10000) {
  try {
    await board.waitForFunction(
      (want) => JSON.stringify(Array.from(document.querySelectorAll("#tickets li"), (li) => li.dataset.ticket)) === want,
      JSON.stringify(expected), { timeout, polling: 50 });
  } catch (e) {
    assert.deepEqual(await tickets(board), expected, "the board's tickets");
  }
}

export async function badge(board) {
  return board.$eval("#status", (el) => el.textContent);
}

/** Waits until the status badge reads `text` (a string or a RegExp source). */
export async function waitForBadge(board, text, timeout = 10000) {
  const pattern = text instanceof RegExp ? text.source : "^" + text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "$";
  try {
    await board.waitForFunction((p) => new RegExp(p).test(document.getElementById("status").textContent),
      pattern, { timeout, polling: 50 });
  } catch (e) {
    assert.match(await badge(board), new RegExp(pattern), "the status badge");
  }
}

/** Types `ticket` at the kiosk and waits for the kiosk's answer. */
export async function checkIn(kiosk, ticket) {
  await kiosk.fill("#ticket", ticket);
  await kiosk.click("#submit");
  await kiosk.waitForFunction((t) => document.getElementById("result").textContent.toUpperCase().includes(t.toUpperCase()), ticket, { timeout: 5000, polling: 50 });
  return kiosk.$eval("#result", (el) => el.textContent);
}

/**
 * Checks in `ticket` and asserts it is on the board within `ms` of the click, and shown within
 * `ms` of being published (the event's `ts`; same clock). Answers both times.
 */
export async function checkInSeen(kiosk, board, ticket, ms) {
  const t0 = Date.now();
  const seen = board.waitForSelector(`#tickets li[data-ticket="${ticket}"]`, { timeout: ms });
  await checkIn(kiosk, ticket);
  await seen;
  // The board may show it from a reload first; the event itself must still come.
  const ev = await board.waitForFunction((t) => window.demoBoard.events.find((e) => e.ticket === t), ticket,
    { timeout: ms, polling: 50 }).then((h) => h.jsonValue(), async () => {
    const record = await board.evaluate(() => JSON.stringify(window.demoBoard));
    assert.fail(ticket + " is on the board but never arrived as an event: " + record);
  });
  assert.ok(ev.shownAt - ev.ts < ms, ticket + " shown " + (ev.shownAt - ev.ts) + " ms after it was published");
  return { total: Date.now() - t0, published: ev.shownAt - ev.ts };
}

/** Every event the board's client delivered came once, and in seq order within its epoch. */
export async function assertDeliveredOnce(board) {
  const events = await board.evaluate(() => window.demoBoard.events);
  const ids = events.map((e) => e.id);
  assert.equal(new Set(ids).size, ids.length, "an event was delivered twice: " + JSON.stringify(events));
  const last = new Map();
  for (const e of events) {
    if (last.has(e.epoch)) assert.ok(e.seq > last.get(e.epoch), "out of order: " + JSON.stringify(events));
    last.set(e.epoch, e.seq);
  }
  return events;
}

export async function screenshot(page, scenario) {
  const path = join(ARTIFACTS, scenario + ".png");
  await page.screenshot({ path });
  return path;
}

/** Stops everything a test started: pages' browser, then processes. */
export async function cleanup(...things) {
  for (const t of things) {
    if (!t) continue;
    try { await (t.close ? t.close() : t.stop()); } catch (e) { /* best effort */ }
  }
}
