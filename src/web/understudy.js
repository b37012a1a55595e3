/*! understudy client: realtime events through a vendor, falling back to WebSocket, SSE and polling. */
// One file for two uses: a classic <script> gets the global `Understudy`; ES modules import
// understudy.mjs (or `import "/v1/client.js"` and read globalThis.Understudy). There is no
// `export` here because a classic script cannot parse it; the code is strict-mode clean so the
// same text also loads as a module. Syntax stays at ES2017 (no `?.`, no `??`) for old kiosks.
(function (root) {
  "use strict";

  const STEPS = ["vendor", "ws", "sse", "poll"];
  const VENDOR = 0, WS = 1, SSE = 2, POLL = 3;
  const STABLE_MS = 10000; // a path up this long has proven itself: back-off starts over
  const MAX_BUFFER = 1000;

  function parse(s) {
    try { return typeof s === "string" ? JSON.parse(s) : s; } catch (e) { return null; }
  }

  // A wait the server named (retry_after_ms, Retry-After, a reconnect message), or null. It is
  // already jittered by the server; capped so that a bad value cannot park a page for ever.
  function laterMs(ms) {
    return typeof ms === "number" && ms >= 0 && isFinite(ms) ? Math.min(ms, 300000) : null;
  }

  // Capped exponential back-off with full jitter. The 100 ms floor keeps a run of tiny random
  // draws from turning into a tight loop when every attempt fails at once.
  function backoff(n, random) {
    return Math.max(100, random() * Math.min(20000, 500 * Math.pow(2, n)));
  }

  // Position, ordering and de-duplication for one channel. Pure: no I/O, no clock.
  // Every method answers { events: [...to deliver, in order], reset: info|null }.
  class ChannelCursor {
    constructor(pos) {
      this.epoch = pos ? pos.epoch : null;
      this.seq = pos ? pos.seq : 0;
      this.buf = new Map(); // seq -> event that arrived ahead of a gap
      this.old = []; // epochs left behind: late events from them are noise, not news
    }
    get pos() { return this.epoch == null ? null : { epoch: this.epoch, seq: this.seq }; }
    get gap() { return this.buf.size > 0; }
    // Only a cursor with no position takes one from `subscribed` or a poll's `next`.
    init(epoch, seq) {
      if (this.epoch == null && epoch) { this.epoch = epoch; this.seq = seq; }
    }
    offer(ev) {
      let reset = null;
      if (this.old.indexOf(ev.epoch) >= 0) return { events: [], reset };
      if (this.epoch == null) this.init(ev.epoch, ev.seq - 1);
      else if (ev.epoch !== this.epoch) reset = this._move(ev.epoch, ev.seq - 1, "epoch_changed");
      if (ev.seq > this.seq) this.buf.set(ev.seq, ev);
      return { events: this._drain(), reset };
    }
    // `basis` is the position the path resumed with. A reset within our epoch that answers a
    // position we no longer hold (another path moved us on meanwhile) is stale: the gap logic
    // covers whatever that path skips. A reset to exactly where we are carries no news.
    reset(m, basis) {
      let reset = null;
      const same = m.epoch === this.epoch;
      if (this.old.indexOf(m.epoch) < 0 &&
          !(same && (m.seq === this.seq || (basis && (basis.epoch !== this.epoch || basis.seq !== this.seq))))) {
        reset = this._move(m.epoch, m.seq, m.reason || "reset");
      }
      return { events: this._drain(), reset };
    }
    // A signal (a vendor event of a signal-only channel: position and id, no body). Answers
    // whether its body is still to be fetched, and a reset when it moves to a new epoch, the
    // same as `offer` would for the event itself.
    signal(m) {
      let reset = null;
      if (this.old.indexOf(m.epoch) >= 0) return { fetch: false, reset };
      if (this.epoch == null) this.init(m.epoch, m.seq - 1);
      else if (m.epoch !== this.epoch) reset = this._move(m.epoch, m.seq - 1, "epoch_changed");
      return { fetch: m.seq > this.seq && !this.buf.has(m.seq), reset };
    }
    // The gap could not be filled: jump to the first buffered event; the page reloads.
    skip() {
      const min = Math.min.apply(null, Array.from(this.buf.keys()));
      if (min === Infinity) return { events: [], reset: null };
      this.seq = min - 1;
      return { events: this._drain(), reset: { epoch: this.epoch, seq: min - 1, reason: "gap" } };
    }
    _move(epoch, seq, reason) {
      if (this.epoch == null) { this.init(epoch, seq); return null; }
      if (epoch !== this.epoch) {
        this.old.push(this.epoch);
        if (this.old.length > 8) this.old.shift();
      }
      this.epoch = epoch;
      this.seq = seq;
      for (const [k, e] of this.buf) if (e.epoch !== epoch || k <= seq) this.buf.delete(k);
      return { epoch, seq, reason };
    }
    _drain() {
      const out = [];
      let e;
      while ((e = this.buf.get(this.seq + 1))) {
        this.buf.delete(++this.seq);
        out.push(e);
      }
      return out;
    }
  }

  // Which path to use. Pure: callers feed it what happened, it answers what to open next.
  // Steps 0..3 are vendor, ws, sse, poll; `top` is the best step the route allows.
  class Ladder {
    constructor(random, avail) {
      this.random = random || Math.random;
      this.avail = avail || [true, true, true, true];
      this.top = this.pt = this.usable(WS);
      this.cur = -1; this.up = false; this.probe = -1; this.n = 0;
    }
    usable(i) {
      while (i < POLL && !this.avail[i]) i++;
      return i;
    }
    // Answers cur - top: > 0 means climb (probe), < 0 means move down to top.
    setTop(route, hasVendor) {
      this.avail[VENDOR] = !!hasVendor;
      const top = this.usable(route === "poll" ? POLL : route === "vendor" ? VENDOR : WS);
      if (top !== this.top) this.top = this.pt = top;
      return this.cur < 0 ? 0 : this.cur - this.top;
    }
    begin() {
      this.cur = this.top; this.up = false; this.probe = -1;
      return this.cur;
    }
    delay() { return backoff(this.n++, this.random); }
    stable() { this.n = 0; }
    // Answers the step that the opened one replaces (to close), or -1.
    opened(i) {
      if (i === this.probe) {
        const old = this.cur;
        this.cur = i; this.probe = -1; this.pt = this.top; this.up = true;
        return old;
      }
      if (i === this.cur) this.up = true;
      return -1;
    }
    // kind: "retry" (the server asked us to come back), "drop" (lost after it was up),
    // anything else moves down: "connect" (never came up in time), "silent" (heartbeats
    // stopped), "unavailable" (the vendor SDK gave up).
    // Answers { step, delay } to open next, or null when nothing changes.
    failed(i, kind) {
      if (i === this.probe) {
        this.probe = -1;
        this.pt = i + 1;
        return null;
      }
      if (i !== this.cur) return null;
      // A path that had been stable gets one more try; one that keeps dropping is left.
      const same = kind === "retry" || (kind === "drop" && this.up && this.n === 0);
      this.cur = same ? i : this.usable(Math.min(i + 1, POLL));
      this.up = false;
      return { step: this.cur, delay: this.delay() };
    }
    // Answers the step to try alongside the current one, or -1.
    startProbe() {
      if (!this.up || this.probe >= 0 || this.cur <= this.top) return -1;
      if (this.pt < this.top || this.pt >= this.cur) this.pt = this.top;
      const i = this.usable(this.pt);
      return i < this.cur ? (this.probe = i) : -1;
    }
  }

  // Vendor adapters: adapter(info, sdk, h) -> { sub(ch), unsub(ch), close() }, where info is the
  // route's `vendor`, sdk the page's `vendor` option and h = { event(obj), heartbeat(),
  // ready(ch), fail(reason), auth(params) }. `ready` fires whenever the vendor (re)subscribed a
  // channel, so the client can catch up what the vendor cannot replay. `auth` answers the
  // vendor credential from POST /v1/vendor/auth (a promise), made with the page's token.
  function pusher(info, sdk, h) {
    const opts = {
      wsHost: info.host, wsPort: info.port, wssPort: info.port, forceTLS: !!info.tls,
      enabledTransports: ["ws"], cluster: info.cluster || "mt1", disableStats: true,
    };
    // Private channels: pusher-js asks for each subscription's signature; understudy checks
    // the page's token and signs only its channels.
    if (info.private) {
      opts.channelAuthorization = {
        customHandler: (q, cb) => h.auth({ socket_id: q.socketId, channel_name: q.channelName })
          .then((a) => cb(null, a), (e) => cb(e, null)),
      };
    }
    const p = new sdk.Pusher(info.key, opts);
    const name = (ch) => (info.private ? "private-" : "") + ch.replace(/:/g, ";");
    p.connection.bind("state_change", (s) => {
      if (s.current === "unavailable" || s.current === "failed") h.fail(s.current);
    });
    p.subscribe(name("understudy.heartbeat")).bind("understudy.heartbeat", () => h.heartbeat());
    return {
      sub(ch) {
        const s = p.subscribe(name(ch));
        // pusher-js already parses a `data` string that holds JSON; accept both.
        s.bind("understudy.event", (d) => { const m = parse(d); if (m) h.event(m); });
        s.bind("pusher:subscription_succeeded", () => h.ready(ch));
        s.bind("pusher:subscription_error", () => h.fail("subscription_error"));
      },
      unsub(ch) { p.unsubscribe(name(ch)); },
      close() { p.disconnect(); },
    };
  }

  // Ably without its SDK: a subscribe-only client of the JSON realtime protocol (no ACKs, no
  // msgSerial), so pages need no ably-js (docs/client.md says why). The TokenRequest from
  // POST /v1/vendor/auth is exchanged at the vendor's REST endpoint, which Ably serves on the
  // realtime host, for a token that opens the WebSocket. Reconnecting is left to the ladder: a
  // dropped connection (token expiry included) reopens the path with a fresh token.
  const HB = "understudy.heartbeat";
  function ably(info, sdk, h) {
    const host = info.host + ":" + info.port, held = new Set();
    let ws = null, live = false, dead = false;
    const send = (m) => { if (live) ws.send(JSON.stringify(m)); };
    const close = () => {
      dead = true;
      live = false;
      if (ws) { ws.onclose = ws.onmessage = null; try { ws.close(); } catch (e) { /* already gone */ } }
    };
    const fail = (why) => { if (!dead) { close(); h.fail(why); } };
    const token = () => h.auth({})
      .then((tr) => h.fetch((info.tls ? "https://" : "http://") + host + "/keys/" + encodeURIComponent(tr.keyName) + "/requestToken", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(tr),
      }))
      .then((td) => td.token);
    const on = (m) => {
      const ch = m.channel, ours = ch === HB || held.has(ch);
      if (m.action === 4) { live = true; [HB].concat(Array.from(held)).forEach((c) => send({ action: 10, channel: c })); }
      else if (m.action === 11 && ch !== HB && held.has(ch)) h.ready(ch);
      else if (m.action === 15 && ours) {
        (m.messages || []).forEach((x) => {
          if (ch === HB) h.heartbeat();
          else { const e = parse(x.data); if (e) h.event(e); }
        });
      }
      // A refused attach comes as a channel ERROR or a DETACHED with an error (40160 and kin).
      else if ((m.action === 9 && ch) || (m.action === 13 && m.error)) { if (ours) fail("subscription_error"); }
      else if (m.action === 13 && ours) send({ action: 10, channel: ch });
      else if (m.action === 9) fail("failed");
      // The vendor asks for a fresh token before this one expires: renew in-band, no reconnect.
      // If that fails, the expiry's DISCONNECTED reopens the path instead.
      else if (m.action === 17) token().then((t) => send({ action: 17, auth: { accessToken: t } }), () => {});
      else if (m.action === 6 || m.action === 8) fail("drop");
    };
    token()
      .then((t) => {
        if (dead) return;
        ws = new h.WebSocket((info.tls ? "wss://" : "ws://") + host + "/?access_token=" + encodeURIComponent(t) +
          "&format=json&v=6&heartbeats=true&echo=false");
        ws.onmessage = (e) => { const m = parse(e.data); if (m) on(m); };
        ws.onclose = () => fail("drop");
      })
      .catch(() => fail("failed"));
    return {
      sub(ch) { held.add(ch); send({ action: 10, channel: ch }); },
      unsub(ch) { held.delete(ch); send({ action: 12, channel: ch }); },
      close,
    };
  }
  // Built-in adapters speak the protocol themselves: they need no SDK from the page.
  ably.builtin = true;
  const adapters = { pusher, ably };

  // Subscribe what is wanted and not held, unsubscribe what is held and no longer wanted.
  function diff(held, want, add, del) {
    for (const ch of want) if (!held.has(ch)) { held.add(ch); add(ch); }
    for (const ch of held) if (want.indexOf(ch) < 0) { held.delete(ch); del(ch); }
  }

  // Paths. Each gets a context `c` bound to it (callbacks from a closed path are ignored) and
  // answers { sync() (the channel set changed), close() }.
  function vendorPath(c) {
    const held = new Set();
    const v = c.route().vendor, tenant = c.route().tenant;
    const a = adapters[v.kind](v, c.o.vendor, {
      event: (m) => c.msg(m),
      heartbeat: () => { c.opened(); c.heard(); },
      ready: (ch) => c.fill(ch),
      // An SDK has done its own retrying by the time it gives up: move down. A built-in
      // adapter's dropped connection is a drop, which the ladder retries once it had been stable.
      fail: (why) => c.fail(why === "drop" ? "drop" : "unavailable"),
      // The tenant's vendor signs (its own credentials, when it has some).
      auth: (q) => c.request("/v1/vendor/auth", tenant ? Object.assign({ tenant }, q) : q),
      fetch: (u, init) => c.fetchJson(u, init),
      WebSocket: c.WebSocket,
    });
    const sync = () => diff(held, c.chans(), (ch) => a.sub(ch), (ch) => a.unsub(ch));
    sync();
    return { sync, close: () => a.close() };
  }

  function wsPath(c) {
    let ws, retry = null, dead = false;
    const held = new Set(), basis = new Map();
    const send = (m) => ws.send(JSON.stringify(m));
    const sync = () => {
      if (ws && ws.readyState === 1) {
        diff(held, c.chans(), (channel) => {
          const since = c.pos(channel);
          basis.set(channel, since);
          send(since ? { type: "subscribe", channel, since } : { type: "subscribe", channel });
        }, (channel) => send({ type: "unsubscribe", channel }));
      }
    };
    c.token().then((tk) => {
      if (dead) return;
      ws = new c.WebSocket(c.url("/v1/ws", [], tk).replace(/^http/, "ws"));
      ws.onopen = sync;
      ws.onmessage = (e) => {
        const m = parse(e.data);
        if (!m) return;
        if (m.type === "welcome") { c.hb(m.heartbeat_ms); c.opened(); }
        if (m.type === "reconnect") retry = m.retry_ms;
        c.msg(m, basis.get(m.channel));
      };
      ws.onclose = (e) => {
        // 1013: the server admits new connections at a bounded rate and named a wait (a
        // reconnect storm); come back then, on this same step.
        const later = e.code === 1013 ? laterMs((parse(e.reason) || {}).retry_after_ms) : null;
        if (later != null) retry = later;
        c.fail(retry != null || e.code === 1012 || e.code === 4008 ? "retry" : "drop", retry);
      };
    }).catch(() => c.fail("connect"));
    return {
      sync,
      close() {
        dead = true;
        if (ws) { ws.onclose = ws.onmessage = null; try { ws.close(); } catch (e) { /* already gone */ } }
      },
    };
  }

  function ssePath(c) {
    let es = null, key = null, gen = 0, retry = null;
    const basis = new Map();
    const stop = () => { if (es) { es.onerror = es.onmessage = null; es.close(); es = null; } };
    // EventSource's own reconnect would resume from its last id, which lags positions learnt on
    // other paths; reopening with a fresh `cursor=` keeps one source of truth.
    const start = async () => {
      const my = ++gen, chs = c.chans(), q = [], cur = [];
      key = chs.join();
      for (const ch of chs) {
        const p = c.pos(ch);
        basis.set(ch, p);
        q.push("channel=" + ch);
        if (p) cur.push(ch + "~" + p.epoch + "~" + p.seq);
      }
      if (cur.length) q.push("cursor=" + encodeURIComponent(cur.join()));
      const tk = await c.token();
      if (my !== gen) return;
      stop();
      es = new c.EventSource(c.url("/v1/sse", q, tk));
      es.onopen = () => c.opened();
      es.onmessage = (e) => {
        const m = parse(e.data);
        if (!m) return;
        // Also how a refused stream is told to come back later (reason "reconnect_later").
        if (m.type === "reconnect") retry = m.retry_ms || 0;
        c.msg(m, basis.get(m.channel));
      };
      es.addEventListener("heartbeat", () => c.heard());
      es.onerror = () => { stop(); c.fail(retry != null ? "retry" : "drop", retry); };
    };
    start().catch(() => c.fail("connect"));
    return {
      sync() { if (key !== c.chans().join() && c.chans().length) start().catch(() => c.fail("connect")); },
      close() { gen++; stop(); },
    };
  }

  // Long polls first; after two failed long polls in a row it polls at the announced interval
  // (some proxies cut long requests). The first request never waits: it proves the path and
  // catches up at once.
  function pollPath(c) {
    let dead = false, mode = 0, errs = 0, ctl = null, resync = false;
    (async () => {
      while (!dead) {
        if (!c.chans().length) { await c.sleep(c.route().poll_interval_ms); continue; }
        const basis = new Map();
        const items = c.chans().map((channel) => {
          const p = c.pos(channel);
          basis.set(channel, p);
          return p ? { channel, epoch: p.epoch, since: p.seq } : { channel };
        });
        const wait = mode === 1 && items.every((i) => i.epoch) ? c.o.waitMs : 0;
        const t0 = c.now();
        let pause = c.route().poll_interval_ms;
        ctl = {};
        try {
          const r = await c.request("/v1/poll", { channels: items, limit: 1000, wait_ms: wait }, wait + c.o.connectTimeoutMs, ctl);
          if (dead) return;
          errs = 0;
          c.opened();
          c.heard();
          if (r.poll_interval_ms) c.route().poll_interval_ms = pause = r.poll_interval_ms;
          const got = (r.results || []).some((x) => x.reset || (x.events && x.events.length));
          (r.results || []).forEach((x) => c.poll(x, basis.get(x.channel)));
          if (mode === 0) mode = 1;
          // An early empty answer to a long poll means something cut it short: do not spin.
          if (mode === 1 && (!wait || got || c.now() - t0 >= 1000)) pause = 0;
          if (r.reconnect_ms != null) pause = r.reconnect_ms;
        } catch (e) {
          if (dead) return;
          if (resync) pause = 0;
          else {
            if (++errs >= 2 && mode === 1) mode = 2;
            pause = e.retryMs != null ? Math.max(e.retryMs, 100) : backoff(errs, c.random);
          }
        }
        resync = false;
        if (pause) await c.sleep(pause);
      }
    })();
    return {
      // A new channel joins at the next request; cut the current long poll short for it.
      sync() { resync = true; if (ctl.abort) ctl.abort(); },
      close() { dead = true; if (ctl && ctl.abort) ctl.abort(); },
    };
  }

  const PATHS = [vendorPath, wsPath, ssePath, pollPath];
  const NAME = /^[A-Za-z0-9_.:@-]{1,200}$/;

  function connect(opts) {
    const o = Object.assign({
      url: "", staleAfterMs: 60000, connectTimeoutMs: 10000, gapWaitMs: 1000, probeMs: 60000,
      waitMs: 25000, tickMs: 1000, resetOnStale: true,
    }, opts);
    const g = root;
    const st = o.setTimeout || ((f, ms) => setTimeout(f, ms));
    const ct = o.clearTimeout || ((t) => clearTimeout(t));
    const now = o.now || (() => Date.now());
    const random = o.random || Math.random;
    const fetchF = o.fetch || (g.fetch && g.fetch.bind(g));
    const WebSocketC = o.WebSocket || g.WebSocket, EventSourceC = o.EventSource || g.EventSource;
    const win = "window" in o ? o.window : g.addEventListener ? g : null;
    const doc = "document" in o ? o.document : g.document;
    let base = String(o.url).replace(/\/+$/, "");
    if (!/^https?:/.test(base) && g.location) base = new URL(base || "/", g.location.href).href.replace(/\/+$/, "");

    const subs = new Map(); // channel -> { cur, fns, gapT, filling, quiet, want, again, sigT, sigTries }
    const pinned = new Set(o.channels || []);
    const paths = [];
    const ladder = new Ladder(random, [!!o.vendor, !!WebSocketC, !!EventSourceC, true]);
    const on = {};
    const route = { route: "self", vendor: null, heartbeat_ms: 15000, vendor_heartbeat_ms: 5000, poll_interval_ms: 2000, jitter_ms: 5000 };
    let lastHeard = now(), heardEver = false, lastEventAt = null, stale = false, netDown = false;
    let closed = false, started = false, routed = false, last = {};
    let tickT, checkT, routeT, stableT, nextT;

    function safe(f, x, self) {
      try { if (f) f.call(self, x); } catch (e) { st(() => { throw e; }, 0); }
    }
    function emit(type, x) { Array.from(on[type] || []).forEach((f) => safe(f, x)); }
    const chans = () => Array.from(subs.keys());
    const pos = (ch) => subs.get(ch).cur.pos;
    const sync = () => paths.forEach((p) => p && p.sync && p.sync());
    const token = async () => (typeof o.token === "function" ? o.token() : o.token);

    function url(path, q, tk) {
      q = q.slice();
      if (tk) q.push("token=" + encodeURIComponent(tk));
      return base + path + (q.length ? "?" + q.join("&") : "");
    }

    // fetch with a deadline, answering the JSON body. `init` may be a function answering the
    // init (or a promise of it) inside the deadline; `ctl` (optional) receives an abort().
    function fetchJson(u, init, ms, ctl) {
      return new Promise((resolve, reject) => {
        const ac = g.AbortController ? new AbortController() : null;
        const fail = (e) => { ct(t); if (ac) ac.abort(); reject(e); };
        const t = st(() => fail(new Error("timeout")), ms || o.connectTimeoutMs);
        if (ctl) ctl.abort = () => fail(new Error("aborted"));
        Promise.resolve(typeof init === "function" ? init() : init).then((i) => fetchF(u, Object.assign({
          signal: ac ? ac.signal : undefined, cache: "no-store",
        }, i))).then((res) => res.json().catch(() => ({})).then((j) => {
          if (res.ok) return j;
          const err = j.error || {};
          // The server's wait: retry_after_ms in the body, else Retry-After in seconds.
          const ra = res.headers && res.headers.get ? parseFloat(res.headers.get("retry-after")) : NaN;
          const retryMs = laterMs(err.retry_after_ms != null ? err.retry_after_ms : ra * 1000);
          throw Object.assign(new Error(err.message || "HTTP " + res.status), { status: res.status, code: err.code, info: err.message, retryMs });
        })).then((j) => { ct(t); resolve(j); }, fail);
      });
    }

    // A request to understudy, with the page's token as the bearer.
    function request(path, body, ms, ctl) {
      return fetchJson(base + path, () => (/^\/v1\/route(\?|$)/.test(path) ? Promise.resolve() : token()).then((tk) => {
        const headers = {};
        if (body) headers["Content-Type"] = "application/json";
        if (tk) headers.Authorization = "Bearer " + tk;
        return { method: body ? "POST" : "GET", headers, body: body ? JSON.stringify(body) : undefined };
      }), ms, ctl).catch((e) => {
        if (e.status === 401 || e.status === 403) emit("error", { status: e.status, code: e.code, message: e.info });
        throw e;
      });
    }

    function apply(ch, r) {
      const s = subs.get(ch);
      if (!s) return;
      if (r.reset && s.quiet) s.quiet = false;
      else if (r.reset) {
        const info = Object.assign({ channel: ch }, r.reset);
        s.fns.forEach((h) => safe(h.onReset, info, h));
        emit("reset", info);
      }
      for (const ev of r.events) {
        s.quiet = false;
        lastEventAt = now();
        s.fns.forEach((h) => safe(h.onEvent, ev, h));
        emit("event", ev);
      }
      if (!s.cur.gap) { ct(s.gapT); s.gapT = null; }
      else if (s.cur.buf.size > MAX_BUFFER) apply(ch, s.cur.skip());
      // Overlapping paths often fill a gap by themselves; wait a little before asking.
      else if (!s.gapT) s.gapT = st(() => fill(ch), o.gapWaitMs);
    }

    function pollResult(r, basis) {
      const s = subs.get(r.channel);
      if (!s) return;
      if (r.reset) return r.next && apply(r.channel, s.cur.reset({ epoch: r.next.epoch, seq: r.next.seq, reason: r.reason || "reset" }, basis));
      s.quiet = false;
      (r.events || []).forEach((ev) => apply(r.channel, s.cur.offer(ev)));
      if (r.next) s.cur.init(r.next.epoch, r.next.seq);
    }

    // Whether a signal's event is still to be delivered on this subscription.
    const owed = (s) => !!s.want && s.want.epoch === s.cur.epoch && s.want.seq > s.cur.seq;

    // Fetch what the live paths missed (a gap, a vendor that cannot replay, or the bodies of
    // signals). Signals that arrive while a fetch is out are covered by one more round after it.
    async function fill(ch) {
      const s = subs.get(ch);
      if (!s || s.filling) return;
      s.filling = true;
      ct(s.gapT);
      s.gapT = null;
      ct(s.sigT);
      s.sigT = null;
      let failed = false;
      try {
        do {
          s.again = false;
          for (let i = 0; i < 10 && subs.get(ch) === s; i++) {
            const p = s.cur.pos;
            const r = await request("/v1/channels/" + ch + "/events" + (p ? "?epoch=" + p.epoch + "&since=" + p.seq + "&limit=1000" : ""));
            pollResult(Object.assign({ channel: ch }, r), p);
            if (!(s.cur.gap || owed(s)) || !(r.events && r.events.length)) break;
          }
        } while (s.again && owed(s) && subs.get(ch) === s);
      } catch (e) { failed = true; /* what is still missing is skipped below */ }
      s.filling = false;
      if (subs.get(ch) !== s) return;
      if (s.cur.gap) apply(ch, s.cur.skip());
      // A signalled body history did not answer (the request failed): ask again a little later,
      // a few times; a later signal or gap fetches from the same position anyway.
      if (owed(s) && failed && (s.sigTries = (s.sigTries || 0) + 1) <= 5) s.sigT = st(() => fill(ch), o.gapWaitMs);
      else if (!owed(s)) { s.want = null; s.sigTries = 0; }
    }

    // A signal-only channel's event from the vendor: only its position came, the body is in
    // understudy's history. Coalesced: one fetch from the delivered position covers every
    // signal that arrived before it answers.
    function signalled(ch, s, m) {
      const r = s.cur.signal(m);
      if (r.reset) apply(ch, { events: [], reset: r.reset });
      if (!r.fetch) return;
      if (!owed(s) || m.seq > s.want.seq) s.want = { epoch: m.epoch, seq: m.seq };
      s.sigTries = 0; // a new signal is news: failed fetches may be retried again
      if (s.filling) s.again = true;
      else fill(ch);
    }

    function msg(step, m, basis) {
      heard(step);
      const s = subs.get(m.channel);
      if (m.type === "route") onRoute(m);
      else if (m.type === "error") {
        emit("error", m);
        if (s) s.fns.forEach((h) => safe(h.onError, m, h));
      } else if (s) {
        if (m.type === "event") apply(m.channel, s.cur.offer(m));
        else if (m.type === "signal") signalled(m.channel, s, m);
        else if (m.type === "subscribed") { s.quiet = false; s.cur.init(m.epoch, m.seq); }
        else if (m.type === "reset") apply(m.channel, s.cur.reset(m, basis));
      }
    }

    function heard(step) {
      const p = paths[step];
      if (p) p.heard = now();
      lastHeard = now();
      heardEver = true;
      if (stale) {
        // Back after a silence: say so once per channel, then carry on from the held position.
        // If the first answer about the channel is a server reset, it is the same news: quiet.
        stale = false;
        status();
        if (o.resetOnStale) {
          subs.forEach((s, ch) => {
            const q = s.cur.pos;
            if (q) apply(ch, { events: [], reset: { epoch: q.epoch, seq: q.seq, reason: "stale" } });
            s.quiet = !!q;
          });
        }
      }
      status();
    }

    function silentMs(step) {
      const p = paths[step];
      if (step === VENDOR) return 3 * route.vendor_heartbeat_ms;
      if (step === POLL) return o.waitMs + 2 * o.connectTimeoutMs;
      return 2.5 * ((p && p.hb) || route.heartbeat_ms);
    }

    function open(step) {
      if (closed || step < 0 || paths[step]) return;
      const p = { step, heard: now(), up: false };
      const alive = () => paths[step] === p;
      const guard = (f) => function () { if (alive()) return f.apply(null, arguments); };
      paths[step] = p;
      const c = {
        o, now, random, request, fetchJson, url, token, chans, pos, WebSocket: WebSocketC, EventSource: EventSourceC,
        route: () => route,
        sleep: (ms) => new Promise((r) => st(r, ms)),
        hb: (ms) => { if (ms > 0) p.hb = ms; },
        msg: guard((m, basis) => msg(step, m, basis)),
        heard: guard(() => heard(step)),
        opened: guard(() => opened(step)),
        fail: guard((kind, ms) => fail(step, kind, ms)),
        poll: guard(pollResult),
        fill: guard(fill),
      };
      // Poll retries by itself and is the last step; the others must come up in time.
      if (step !== POLL) p.t = st(() => c.fail("connect"), o.connectTimeoutMs + (step === VENDOR ? route.vendor_heartbeat_ms : 0));
      try {
        Object.assign(p, PATHS[step](c));
      } catch (e) {
        c.fail("connect");
      }
      if (!alive() && p.close) p.close();
      status();
    }

    function drop(step) {
      const p = paths[step];
      if (!p) return;
      paths[step] = null;
      ct(p.t);
      try { if (p.close) p.close(); } catch (e) { /* closing a broken path */ }
    }

    function opened(step) {
      const p = paths[step];
      if (p.up) return;
      p.up = true;
      ct(p.t);
      const old = ladder.opened(step);
      if (old >= 0 && old !== step) drop(old);
      if (step === ladder.cur) { ct(stableT); stableT = st(() => ladder.stable(), STABLE_MS); }
      heard(step);
    }

    function fail(step, kind, ms) {
      drop(step);
      if (step === ladder.cur) ct(stableT);
      const d = ladder.failed(step, kind);
      if (d) {
        ct(nextT);
        nextT = st(() => open(ladder.cur), ms != null ? ms : d.delay);
      } else if (ladder.pt < ladder.cur) later(); // a failed probe: try the next rung down
      status();
    }

    // `vendor: false` keeps a page off every vendor, built-in adapters included.
    function hasVendor() {
      const a = route.vendor && adapters[route.vendor.kind];
      return !!a && o.vendor !== false && (a.builtin ? !!(WebSocketC && fetchF) : !!o.vendor);
    }

    // Spread route-driven changes over [0, jitter_ms) so clients do not move all at once.
    function later() {
      if (routeT || closed) return;
      routeT = st(() => {
        routeT = null;
        const d = ladder.cur - ladder.top;
        if (d > 0) { const i = ladder.startProbe(); if (i >= 0) open(i); } else if (d < 0) switchTop();
      }, random() * route.jitter_ms);
    }

    function onRoute(r) {
      routed = true;
      Object.assign(route, r);
      if (ladder.setTop(route.route, hasVendor())) later();
    }

    function switchTop() {
      paths.forEach((p, i) => drop(i));
      ct(nextT);
      open(ladder.begin());
    }

    // The route of this page's tenant: the owner of its first channel (tenants may have vendors
    // and modes of their own).
    const routePath = () => {
      const ch = chans()[0] || Array.from(pinned)[0];
      return "/v1/route" + (ch ? "?channel=" + encodeURIComponent(ch) : "");
    };
    const getRoute = () => request(routePath()).then(onRoute, () => {});

    // Vendor and poll clients get no pushed `route` messages, and a client below its top
    // must look upward now and then.
    function check() {
      checkT = st(check, o.probeMs * (0.5 + random()));
      const i = ladder.cur;
      if (i === VENDOR || i === POLL || i > ladder.top || !ladder.up || !routed) getRoute().then(() => { if (ladder.cur > ladder.top) later(); });
    }

    function tick() {
      tickT = st(tick, o.tickMs);
      paths.forEach((p) => { if (p && p.up && now() - p.heard > silentMs(p.step)) fail(p.step, "silent"); });
      if (!stale && now() - lastHeard > o.staleAfterMs) stale = true;
      status();
    }

    function restart() {
      if (closed || !started) return;
      ladder.stable();
      getRoute().then(() => { if (!closed) switchTop(); });
    }

    function status() {
      const i = ladder.cur, p = paths[i];
      const state = stale || netDown || !heardEver || i < 0 ? "offline"
        : !(p && p.up) ? "degraded" : i === POLL ? "polling" : i <= ladder.top ? "live" : "degraded";
      const s = { state, via: STEPS[i] || null, connected: !!(p && p.up), lastEventAt, staleForMs: now() - lastHeard };
      if (state !== last.state || s.via !== last.via || s.connected !== last.connected) { last = s; emit("status", s); }
      return s;
    }

    function start() {
      if (started || closed || !subs.size) return;
      started = true;
      // Deferred so that subscribe() calls made right after connect() share the first connection.
      Promise.resolve().then(getRoute).then(() => {
        if (closed) return;
        open(ladder.begin());
        tick();
        checkT = st(check, o.probeMs * (0.5 + random()));
      });
    }

    const onVisible = () => {
      if (doc.visibilityState === "visible" && (stale || now() - lastHeard > Math.min(silentMs(ladder.cur), o.staleAfterMs))) restart();
    };
    const onOnline = () => { netDown = false; st(restart, random() * 1000); };
    const onOffline = () => { netDown = true; status(); };
    if (doc && doc.addEventListener) doc.addEventListener("visibilitychange", onVisible);
    if (win && win.addEventListener) { win.addEventListener("online", onOnline); win.addEventListener("offline", onOffline); }

    function subscribe(ch, h) {
      if (!NAME.test(ch)) throw new TypeError("understudy: invalid channel name " + ch);
      h = h || {};
      let s = subs.get(ch);
      if (!s) {
        s = { cur: new ChannelCursor(h.since), fns: new Set() };
        subs.set(ch, s);
        sync();
      }
      s.fns.add(h);
      start();
      return {
        get position() { return s.cur.pos; },
        unsubscribe() {
          s.fns.delete(h);
          if (!s.fns.size && !pinned.has(ch) && subs.get(ch) === s) {
            subs.delete(ch);
            ct(s.gapT);
            ct(s.sigT);
            sync();
          }
        },
      };
    }

    pinned.forEach((ch) => subscribe(ch));

    return {
      subscribe,
      status,
      on(type, f) { (on[type] = on[type] || new Set()).add(f); return this; },
      off(type, f) { if (on[type]) on[type].delete(f); return this; },
      close() {
        closed = true;
        [tickT, checkT, routeT, stableT, nextT].forEach((t) => ct(t));
        paths.forEach((p, i) => drop(i));
        subs.forEach((s) => { ct(s.gapT); ct(s.sigT); });
        if (doc && doc.removeEventListener) doc.removeEventListener("visibilitychange", onVisible);
        if (win && win.removeEventListener) { win.removeEventListener("online", onOnline); win.removeEventListener("offline", onOffline); }
      },
    };
  }

  const Understudy = { connect, adapters, _internal: { ChannelCursor, Ladder, backoff, STEPS } };
  root.Understudy = Understudy;
  if (typeof module === "object" && module && module.exports) module.exports = Understudy;
})(typeof globalThis !== "undefined" ? globalThis : typeof self !== "undefined" ? self : this);
