/* The on-call dashboard, served at /admin/ by understudy's admin listener. No library and nothing
 * fetched from anywhere else. It reads the live feed GET /admin/stream with fetch() (EventSource
 * cannot send the Authorization header, and a token in a URL ends up in logs), reads
 * GET /admin/audit, and changes the mode with PUT /admin/mode after a confirmation step. The admin
 * token is asked for once and kept in this tab's sessionStorage. */
(function () {
  "use strict";

  const TOKEN_KEY = "understudy.admin-token";
  const SPAN_MS = 15 * 60 * 1000;
  const MIN_SPAN_MS = 60 * 1000;
  const STALE_MS = 5000;
  const RECONNECT_MS = 2000;
  const $ = (id) => document.getElementById(id);
  const COLORS = {
    published: "#a78bfa", ws: "#38bdf8", sse: "#22c55e", poll: "#f59e0b", vendor: "#f472b6",
    canary: "#38bdf8", errors: "#f59e0b", queue: "#f472b6", slow: "#f59e0b", resets: "#a78bfa",
  };

  const S = {
    token: sessionStorage.getItem(TOKEN_KEY) || "",
    snap: null,
    series: null,
    lastAt: 0,
    abort: null,
    retryTimer: null,
    offlineSince: null,
    goodbye: false,
    pendingMode: null,
    signature: "",
  };
  // For tests and the curious: what the page last received.
  window.dashboard = { snapshots: 0, get last() { return S.snap; }, get series() { return S.series; } };

  /* ---------- small helpers ---------- */

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") el.textContent = v;
      else if (k.startsWith("data-") || k === "class" || k === "title" || k === "id") el.setAttribute(k, v);
      else el[k] = v;
    }
    for (const c of children) if (c !== null && c !== undefined) el.append(c);
    return el;
  }
  const SVGNS = "http://www.w3.org/2000/svg";
  function s(tag, attrs) {
    const el = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    return el;
  }
  const pad = (n) => String(n).padStart(2, "0");
  function clock(ms) {
    const d = new Date(ms);
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }
  function span(ms) {
    const sec = Math.max(0, Math.round(ms / 1000));
    if (sec < 60) return sec + " s";
    const m = Math.floor(sec / 60);
    if (m < 60) return m + " min";
    const hr = Math.floor(m / 60);
    if (hr < 48) return hr + " h" + (m % 60 ? " " + (m % 60) + " min" : "");
    return Math.floor(hr / 24) + " d " + (hr % 24) + " h";
  }
  const ago = (ms) => span(Date.now() - ms) + " ago";
  /** "Tue 3 Dec 14:00 – 15:00": the end's day only when it differs. */
  function dayRange(start, end) {
    const same = new Date(start).toDateString() === new Date(end).toDateString();
    const e = new Date(end);
    return day(start) + " – " + (same ? pad(e.getHours()) + ":" + pad(e.getMinutes()) : day(end));
  }
  /** "14:00", or "Tue 3 Dec 14:00" when not today. */
  function day(ms) {
    const d = new Date(ms);
    const hm = pad(d.getHours()) + ":" + pad(d.getMinutes());
    if (d.toDateString() === new Date().toDateString()) return hm;
    return d.toLocaleDateString(undefined, { weekday: "short", day: "numeric", month: "short" }) + " " + hm;
  }
  function num(x) {
    if (x === null || x === undefined || Number.isNaN(x)) return "–";
    if (Math.abs(x) >= 100) return String(Math.round(x));
    if (Math.abs(x) >= 10) return x.toFixed(1).replace(/\.0$/, "");
    return String(Math.round(x * 100) / 100);
  }
  const pct = (r) => (r === null || r === undefined ? "–" : num(r * 100) + " %");
  /** "LostCanaries { count: 1, last: NotDelivered }" -> "lost canaries (count: 1, last: not delivered)" */
  function human(text) {
    if (!text) return "";
    return String(text)
      .replace(/\b[A-Z][A-Za-z0-9]*\b/g, (w) => w.replace(/([a-z0-9])([A-Z])/g, "$1 $2").toLowerCase())
      .replace(/\s*\{\s*/g, " (").replace(/\s*\}/g, ")").replace(/_/g, " ");
  }
  function time(ms) {
    return h("time", { dateTime: new Date(ms).toISOString(), title: new Date(ms).toLocaleString(), text: clock(ms) });
  }

  /* ---------- auth ---------- */

  function authHeaders(extra) {
    return Object.assign({ Authorization: "Bearer " + S.token }, extra || {});
  }

  function askToken(message) {
    if (S.abort) S.abort.abort();
    clearTimeout(S.retryTimer);
    $("login-error").textContent = message || "";
    $("login-error").hidden = !message;
    $("token-input").value = "";
    if (!$("login").open) $("login").showModal();
    $("token-input").focus();
    setFeed("offline", "signed out");
  }

  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("token-input").value.trim();
    if (!token) return;
    S.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("login").close();
    connect();
  });
  $("login").addEventListener("cancel", (e) => e.preventDefault());
  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    S.token = "";
    $("viewer").hidden = true;
    $("sign-out").hidden = true;
    askToken("");
  });

  /* ---------- the live feed ---------- */

  function setFeed(state, text) {
    $("feed").dataset.state = state;
    $("feed").textContent = text;
  }

  function offline(why) {
    if (S.offlineSince === null) S.offlineSince = Date.now();
    setFeed("offline", "offline since " + clock(S.offlineSince) + (why ? " · " + why : ""));
    document.body.dataset.level = "down";
    $("verdict").textContent = "NO DATA";
    $("verdict-why").textContent = "The dashboard cannot reach this node's admin listener; retrying every 2 s.";
  }

  function retry() {
    clearTimeout(S.retryTimer);
    S.retryTimer = setTimeout(connect, RECONNECT_MS);
  }

  async function connect() {
    if (!S.token) return askToken("");
    if (S.abort) S.abort.abort();
    clearTimeout(S.retryTimer);
    const ctrl = new AbortController();
    S.abort = ctrl;
    if (S.offlineSince === null) setFeed("connecting", "connecting…");
    let r;
    try {
      r = await fetch("/admin/stream", { headers: authHeaders(), cache: "no-store", signal: ctrl.signal });
    } catch (e) {
      if (!ctrl.signal.aborted) { offline(""); retry(); }
      return;
    }
    if (r.status === 401) return askToken("That admin token was refused (HTTP 401). Paste a valid one.");
    if (!r.ok) { offline("HTTP " + r.status); retry(); return; }
    S.offlineSince = null;
    S.goodbye = false;
    S.lastAt = Date.now();
    loadAudit();
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          onMessage(buf.slice(0, i));
          buf = buf.slice(i + 2);
        }
      }
    } catch (e) { /* aborted or cut: handled below */ }
    if (ctrl.signal.aborted) return;
    offline(S.goodbye ? "the node shut down" : "the feed ended");
    retry();
  }

  function onMessage(block) {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    if (event === "goodbye") { S.goodbye = true; return; }
    if (event !== "snapshot" || !data.length) return;
    let snap;
    try { snap = JSON.parse(data.join("\n")); } catch (e) { return; }
    S.lastAt = Date.now();
    S.snap = snap;
    if (snap.series) S.series = snap.series;
    window.dashboard.snapshots += 1;
    render(snap);
  }

  // Freshness: a feed that says nothing for 5 s is stale; after 10 s, reconnect.
  setInterval(() => {
    if (!S.snap || S.offlineSince !== null || !S.token || $("login").open) return;
    const quiet = Date.now() - S.lastAt;
    if (quiet > 2 * STALE_MS) { offline("no data for " + span(quiet)); connect(); }
    else if (quiet > STALE_MS) setFeed("stale", "stale · last data " + span(quiet) + " ago");
    else setFeed("live", "live · " + clock(S.snap.at));
  }, 1000);

  /* ---------- rendering ---------- */

  const ROUTE_WORDS = {
    vendor: "Screens get events through the realtime vendor.",
    self: "Screens use understudy's own WebSocket, then SSE.",
    poll: "Screens poll understudy every few seconds (last resort).",
  };

  /** healthy / degraded / down, with the one-line why. */
  function verdict(st) {
    const route = st.route.route;
    const forced = st.mode.mode !== "auto" && st.route.mode !== "auto";
    const vendors = st.vendors || [];
    const bad = vendors.filter((v) => v.state !== "healthy");
    if (st.draining) return ["down", "DRAINING", "This node is leaving: clients are being told to reconnect elsewhere."];
    if (route === "poll" && !forced) return ["down", "LAST RESORT", "Screens are polling: WebSocket and SSE are not available."];
    if (forced) return ["degraded", "OVERRIDDEN", "An operator forced the route to " + route + "; it returns to auto by itself."];
    if (vendors.length && route !== "vendor") {
      return ["degraded", "ON FALLBACK", "No healthy vendor: screens are on understudy's own transports, nothing is lost."];
    }
    if (bad.length) return ["degraded", "DEGRADED", bad.map((v) => v.name + " is " + v.state).join(", ") + "."];
    return ["healthy", "HEALTHY", vendors.length ? "Vendor healthy and routed to." : "No vendor configured; own transports serving."];
  }

  function render(snap) {
    const st = snap.status;
    $("viewer").textContent = "signed in as " + snap.viewer;
    $("viewer").hidden = false;
    $("sign-out").hidden = false;

    const [level, word, why] = verdict(st);
    document.body.dataset.level = level;
    $("verdict").textContent = word;
    $("verdict-why").textContent = why;

    const route = st.route;
    $("route-name").textContent = route.route.toUpperCase();
    $("route-name").dataset.route = route.route;
    $("route-name").dataset.level = level;
    const vendorName = route.vendor ? " (" + (route.vendor.kind || "vendor") + " at " + route.vendor.host + ")" : "";
    $("route-what").textContent = (ROUTE_WORDS[route.route] || "") + vendorName;
    $("route-why").textContent = "Because: " + route.reason + " · since " + clock(route.since) + " (" + ago(route.since) + ")";

    const mode = st.mode;
    const forced = mode.mode !== "auto";
    $("mode-name").textContent = forced ? "FORCED " + mode.mode.toUpperCase() : "AUTO";
    $("mode-name").dataset.forced = String(forced);
    $("mode-who").textContent = mode.set_by === "config"
      ? "From the configuration: follows vendor health."
      : "Set by " + mode.set_by + ": “" + mode.reason + "”";
    $("mode-expiry").textContent = mode.expires_at
      ? "Returns to auto at " + clock(mode.expires_at) + " (in " + span(mode.expires_at - Date.now()) + ")"
      : forced ? "" : "Follows vendor health.";
    for (const b of document.querySelectorAll(".mode")) b.dataset.current = String(b.dataset.mode === mode.mode);

    renderBanner(st);
    renderTransitions(st);
    renderVendors(st, snap.now);
    renderTenants(st);
    renderTraffic(st, snap.now);

    // A route, mode or state change is in the audit trail too.
    const sig = [route.version, mode.mode, mode.set_by, (st.vendors || []).map((v) => v.state).join()].join("|");
    if (S.signature && sig !== S.signature) loadAudit();
    S.signature = sig;
  }

  function renderBanner(st) {
    const b = $("banner");
    if (st.draining) {
      const open = st.open_connections;
      b.textContent = "This node is draining" + (open !== undefined ? ": " + open + " connection" + (open === 1 ? "" : "s") + " still open" : "") +
        ". It exits when they are gone.";
      b.dataset.kind = "down";
      b.hidden = false;
    } else if (S.goodbye) {
      b.textContent = "The node is shutting down.";
      b.dataset.kind = "down";
      b.hidden = false;
    } else {
      b.hidden = true;
    }
  }

  function renderTransitions(st) {
    const all = [];
    for (const v of st.vendors || []) for (const t of v.transitions || []) all.push(Object.assign({ vendor: v.name }, t));
    const changes = all.map((t) => ({ at: t.at, item: h("li", {}, time(t.at),
      h("span", {}, h("span", { class: "what" }, t.vendor + ": ", pill(t.from), " → ", pill(t.to)),
        h("span", { class: "reason", text: human(t.reason) }))) }));
    changes.push({ at: st.route.since, item: h("li", {}, time(st.route.since),
      h("span", {}, h("span", { class: "what", text: "route → " + st.route.route }),
        h("span", { class: "reason", text: st.route.reason + (st.route.mode !== "auto" ? " (mode " + st.route.mode + ")" : "") }))) });
    changes.sort((a, b) => b.at - a.at);
    const list = $("transitions");
    const items = [];
    const windows = Array.isArray(st.maintenance) ? st.maintenance : [];
    for (const w of windows) {
      items.push(h("li", {}, h("span", { class: w.started ? "what" : "muted", text: w.started ? "now" : "planned" }),
        h("span", {}, h("span", { class: "what", text: "maintenance " + dayRange(w.start, w.end) + " → " + w.mode }),
          h("span", { class: "reason", text: (w.reason || "") + (w.set_by ? " (" + w.set_by + ")" : "") }))));
    }
    for (const c of changes.slice(0, 9)) items.push(c.item);
    if (!all.length && (st.vendors || []).length) {
      items.push(h("li", {}, h("span", { class: "muted", text: "—" }),
        h("span", { class: "muted", text: "No vendor has changed state since this node started." })));
    }
    list.replaceChildren(...items);
  }

  function pill(state) {
    return h("span", { class: "pill", "data-state": state, text: state });
  }

  function canaryText(c) {
    if (!c) return "no round yet";
    const r = c.result || {};
    if (r.outcome === "arrived") return r.latency + " ms, " + ago(c.at);
    const f = r.failure || {};
    return "LOST (" + human(f.reason || "unknown") + (f.class ? ", " + f.class : "") + "), " + ago(c.at);
  }

  function renderVendors(st, now) {
    const box = $("vendors");
    const vendors = st.vendors || [];
    if (!vendors.length) {
      box.replaceChildren(h("p", { class: "muted", text: "No vendor configured: clients use understudy's own WebSocket, SSE and polling." }));
      return;
    }
    const series = (S.series && S.series.vendors) || [];
    const t = (S.series && S.series.t) || [];
    box.replaceChildren(...vendors.map((v) => {
      const w = v.window || {};
      const live = (now.vendors || []).find((x) => x.name === v.name) || {};
      const sv = series.find((x) => x.name === v.name) || {};
      const lanes = v.lanes || {};
      const dropped = dropTotal(lanes);
      const canaryBox = h("div", { class: "chart" });
      const errorBox = h("div", { class: "chart" });
      const laneBox = h("div", { class: "chart" });
      const last = v.last_canary && v.last_canary.result;
      chart(canaryBox, {
        title: "canary latency", t, unit: "ms", floor: 50,
        value: last ? (last.outcome === "arrived" ? last.latency + " ms" : "lost") : "–",
        lines: [{ values: sv.canary_ms, color: COLORS.canary, label: "slowest per 5 s" }],
        markers: sv.canary_lost, markerLabel: "lost",
      });
      chart(errorBox, {
        title: "error rate (passive window)", t, unit: "%", max: 100,
        value: pct(live.error_rate),
        lines: [{ values: (sv.error_rate || []).map((r) => (r === null ? null : r * 100)), color: COLORS.errors }],
      });
      chart(laneBox, {
        title: "lane queue (red: drops)", t, unit: "", floor: 5,
        value: queued(lanes) + " queued",
        lines: [{ values: sv.queued, color: COLORS.queue, label: "queued events" }],
        markers: sv.dropped, markerLabel: "dropped",
      });
      return h("article", { class: "vendor", "data-state": v.state },
        h("div", { class: "vendor-head" },
          h("span", { class: "name", text: v.name }), h("span", { class: "kind", text: v.kind }), pill(v.state),
          h("span", { class: "since", text: "since " + clock(v.since) + " (" + ago(v.since) + ")" })),
        h("div", { class: "vendor-facts" },
          fact("canary", canaryText(v.last_canary)),
          fact("window", (w.requests || 0) + " req, " + (w.failures || 0) + " failed" +
            (w.p50_ms != null ? ", p50 " + w.p50_ms + " ms" : "") + (w.p99_ms != null ? ", p99 " + w.p99_ms + " ms" : "")),
          fact("verdict", human(v.verdict)),
          fact("lanes", queued(lanes) + " queued, " + inFlight(lanes) + " in flight"),
          fact("dropped", String(dropped), dropped > 0),
          fact("delivered", num(live.delivered_per_s) + "/s")),
        h("div", { class: "vendor-charts" }, canaryBox, errorBox, laneBox));
    }));
  }

  // One row per tenant (the first 32; `more` counts the rest): its route, its own mode with
  // reason and expiry (or the node-wide one), and its own vendors' states (or "shared").
  function renderTenants(st) {
    const t = st.tenants || { tenants: [] };
    const list = t.tenants || [];
    $("tenants-panel").hidden = list.length < 2;
    if (list.length < 2) return;
    const rows = list.map((x) => {
      const m = x.mode;
      const mode = m
        ? "FORCED " + m.mode.toUpperCase() + " by " + m.set_by + ": “" + m.reason + "”" +
          (m.expires_at ? ", until " + clock(m.expires_at) + " (in " + span(m.expires_at - Date.now()) + ")" : "")
        : "node-wide mode";
      const vendors = Array.isArray(x.vendors)
        ? x.vendors.map((v) => h("span", {}, h("span", { text: v.name + " " }), pill(v.state)))
        : [h("span", { class: "muted", text: "shared [vendors]" })];
      return h("article", { class: "tenant", "data-route": x.route.route, "data-tenant": x.id },
        h("div", { class: "vendor-head" },
          h("span", { class: "name", text: x.id }),
          h("span", { class: "kind", text: x.route.route.toUpperCase() + " · " + x.route.reason }),
          h("span", { class: "since", text: mode })),
        h("div", { class: "vendor-facts" }, ...vendors));
    });
    if (t.more) rows.push(h("p", { class: "muted", text: "and " + t.more + " more tenants (see GET /admin/status)" }));
    $("tenants").replaceChildren(...rows);
  }

  function fact(label, value, bad) {
    return h("span", {}, h("span", { class: "muted", text: label + " " }), h("b", { text: value, "data-bad": bad ? "true" : null }));
  }
  const queued = (l) => ((l.realtime && l.realtime.queued) || 0) + ((l.bulk && l.bulk.queued) || 0);
  const inFlight = (l) => ((l.realtime && l.realtime.in_flight) || 0) + ((l.bulk && l.bulk.in_flight) || 0);
  const sum = (o) => Object.values(o || {}).reduce((a, b) => a + b, 0);
  const dropTotal = (l) => sum(l.realtime && l.realtime.dropped) + sum(l.bulk && l.bulk.dropped);

  function renderTraffic(st, now) {
    const ser = S.series || {};
    const t = ser.t || [];
    const d = now.delivered_per_s || {};
    $("rate-window").textContent = now.window_ms ? "averaged over " + span(now.window_ms) : "";
    $("published").textContent = num(now.published_per_s);
    $("delivered-ws").textContent = num(d.ws);
    $("delivered-sse").textContent = num(d.sse);
    $("delivered-poll").textContent = num(d.poll);
    $("delivered-vendor").textContent = num(d.vendor);
    const del = ser.delivered || {};
    chart($("chart-events"), {
      title: "events / s", t, unit: "/s", floor: 1,
      lines: [
        { values: ser.published, color: COLORS.published, label: "published" },
        { values: del.ws, color: COLORS.ws, label: "ws" },
        { values: del.sse, color: COLORS.sse, label: "sse" },
        { values: del.poll, color: COLORS.poll, label: "poll" },
        { values: del.vendor, color: COLORS.vendor, label: "vendor" },
      ],
    });

    const c = now.connections || {};
    $("conn-ws").textContent = num(c.ws);
    $("conn-sse").textContent = num(c.sse);
    $("channels").textContent = num(st.channels);
    const conns = ser.connections || {};
    chart($("chart-connections"), {
      title: "open connections", t, unit: "", floor: 5,
      lines: [
        { values: conns.ws, color: COLORS.ws, label: "ws" },
        { values: conns.sse, color: COLORS.sse, label: "sse" },
      ],
    });

    const slow = now.slow_consumer_closes || {};
    const resets = now.resets || {};
    $("slow").textContent = num(slow.last_15m);
    $("slow-total").textContent = "· " + num(slow.total) + " since start";
    $("resets").textContent = num(resets.last_15m);
    $("resets-total").textContent = "· " + num(resets.total) + " since start";
    chart($("chart-trouble"), {
      title: "per 5 s", t, unit: "", floor: 2,
      lines: [
        { values: ser.slow_consumer_closes, color: COLORS.slow, label: "slow-consumer closes" },
        { values: ser.resets, color: COLORS.resets, label: "resets" },
      ],
    });
  }

  /* ---------- charts: hand-rolled SVG ---------- */

  const W = 600, H = 64;

  function niceMax(v, floor) {
    if (!(v > floor)) return floor;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v * 1.1) return m * p;
    return 10 * p;
  }

  /** Lines over the last 15 minutes: o = {title, value, t, unit, floor | max, lines: [{values, color, label}], markers}. */
  function chart(box, o) {
    const t = o.t || [];
    const end = t.length ? t[t.length - 1] : Date.now();
    // The history there is, from one minute (a fresh node) up to the 15 minutes kept.
    const spanMs = t.length ? Math.min(SPAN_MS, Math.max(MIN_SPAN_MS, end - t[0])) : SPAN_MS;
    const x = (ms) => Math.max(0, W * (1 - (end - ms) / spanMs));
    let top = 0;
    for (const l of o.lines) for (const v of l.values || []) if (v !== null && v > top) top = v;
    const max = o.max !== undefined ? o.max : niceMax(top, o.floor || 1);
    const y = (v) => H - 3 - (H - 8) * Math.min(v, max) / max;
    const svg = s("svg", { viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none", role: "img", "aria-label": o.title });
    for (const f of [0.5, 1]) {
      svg.append(s("line", { x1: 0, x2: W, y1: y(max * f), y2: y(max * f), stroke: "#1d3447", "stroke-width": 1,
        "stroke-dasharray": "3 5", "vector-effect": "non-scaling-stroke" }));
    }
    if (o.markers) {
      o.markers.forEach((m, i) => {
        if (m > 0 && t[i] !== undefined) {
          const title = s("title", {});
          title.textContent = m + " " + (o.markerLabel || "") + " at " + clock(t[i]);
          const r = s("rect", { x: x(t[i]) - 3, y: 0, width: 6, height: H, fill: "#ef4444", opacity: 0.6 });
          r.append(title);
          svg.append(r);
        }
      });
    }
    o.lines.forEach((l, li) => {
      const vals = l.values || [];
      let d = "", area = "", pen = false, start = 0, lastX = 0, lastY = 0, seen = false;
      const close = () => { if (pen) area += "L" + lastX.toFixed(1) + " " + (H - 1) + "L" + start.toFixed(1) + " " + (H - 1) + "Z"; };
      vals.forEach((v, i) => {
        if (v === null || v === undefined || t[i] === undefined) { close(); pen = false; return; }
        const px = x(t[i]), py = y(v);
        if (!pen) { start = px; area += "M" + px.toFixed(1) + " " + (H - 1) + "L" + px.toFixed(1) + " " + py.toFixed(1); }
        else area += "L" + px.toFixed(1) + " " + py.toFixed(1);
        d += (pen ? "L" : "M") + px.toFixed(1) + " " + py.toFixed(1);
        pen = true; seen = true; lastX = px; lastY = py;
      });
      close();
      if (!seen) return;
      if (li === 0) svg.append(s("path", { d: area, fill: l.color, opacity: 0.14, stroke: "none" }));
      svg.append(s("path", { d, fill: "none", stroke: l.color, "stroke-width": 2, "stroke-linejoin": "round",
        "vector-effect": "non-scaling-stroke" }));
      svg.append(s("rect", { x: lastX - 3, y: lastY - 3, width: 6, height: 6, fill: l.color }));
    });
    const title = h("div", { class: "title" }, h("span", { text: o.title }), o.value !== undefined ? h("span", { class: "value", text: o.value }) : null);
    const legend = o.lines.length > 1 || o.markers
      ? h("div", { class: "legend" }, ...o.lines.filter((l) => l.label).map((l) => {
        const i = h("i");
        i.style.background = l.color;
        return h("span", {}, i, l.label);
      }))
      : null;
    const axis = h("div", { class: "axis" }, h("span", { text: "−" + span(spanMs) }),
      h("span", { text: t.length ? "top " + num(max) + (o.unit ? " " + o.unit : "") : "collecting: one point every 5 s" }),
      h("span", { text: "now" }));
    box.replaceChildren(title, svg, axis, legend || "");
  }

  /* ---------- audit ---------- */

  function auditWhat(e) {
    const d = e.details || {};
    switch (e.action) {
      case "mode_changed":
        return "mode " + d.from + " → " + d.to + (d.expires_at ? " until " + clock(d.expires_at) : "");
      case "mode_expired": return "forced " + d.from + " expired → auto";
      case "transition_auto": return d.vendor + ": " + d.from + " → " + d.to;
      case "admin_rejected": return "refused " + (d.method || "") + " " + (d.path || "") + (d.status ? " (" + d.status + ")" : "");
      case "maintenance_scheduled":
        return "maintenance #" + d.id + " scheduled: " + dayRange(d.start, d.end) + " → " + d.mode;
      default: {
        // Other actions (drain, maintenance, reload): their details as "key value" pairs.
        const shown = (k, v) => (v !== null && typeof v === "object" ? JSON.stringify(v)
          : typeof v === "number" && /^(start|end|at|expires_at)$/.test(k) ? day(v) : v);
        const pairs = d && typeof d === "object" ? Object.entries(d).map(([k, v]) => k.replace(/_/g, " ") + " " + shown(k, v)) : [];
        return e.action.replace(/_/g, " ") + (pairs.length ? " (" + pairs.join(", ") + ")" : "");
      }
    }
  }

  async function loadAudit() {
    if (!S.token) return;
    try {
      const r = await fetch("/admin/audit?limit=12", { headers: authHeaders(), cache: "no-store" });
      if (r.status === 401) return askToken("That admin token was refused (HTTP 401). Paste a valid one.");
      const body = await r.json();
      const tbody = $("audit");
      if (!r.ok) {
        tbody.replaceChildren(h("tr", {}, h("td", { colSpan: 4, class: "muted", text: (body.error && body.error.message) || "HTTP " + r.status })));
        return;
      }
      const entries = (body.entries || []).slice().sort((a, b) => b.ts - a.ts);
      if (!entries.length) {
        tbody.replaceChildren(h("tr", {}, h("td", { colSpan: 4, class: "muted", text: "Nothing recorded yet." })));
        return;
      }
      tbody.replaceChildren(...entries.map((e) => h("tr", { "data-action": e.action },
        h("td", { title: new Date(e.ts).toLocaleString(), text: clock(e.ts) + " · " + ago(e.ts) }),
        h("td", { class: "who", text: e.actor }),
        h("td", { class: "what", text: auditWhat(e) }),
        // understudy's own reasons are state-machine terms; an operator's are left as typed.
        h("td", { text: e.actor === "system" ? human(e.reason) : e.reason || "" }))));
    } catch (e) { /* the feed shows the node as offline */ }
  }
  setInterval(() => { if (S.snap && S.offlineSince === null) loadAudit(); }, 15000);

  /* ---------- mode control: choose, give a reason and an expiry, review, confirm ---------- */

  const MODE_EFFECT = {
    auto: "Return to automatic: the route follows vendor health again.",
    vendor: "Force the vendor path: screens use the vendor even if understudy thinks it is unhealthy.",
    self: "Force understudy's own WebSocket/SSE: screens leave the vendor within seconds.",
    poll: "Force polling: every screen polls understudy. For networks that kill WebSockets and buffer SSE.",
  };

  function say(text, kind) {
    $("mode-result").textContent = text;
    $("mode-result").dataset.kind = kind;
    $("mode-result").hidden = false;
  }

  function resetModeControl() {
    S.pendingMode = null;
    $("mode-form").hidden = true;
    $("mode-confirm-box").hidden = true;
    for (const b of document.querySelectorAll(".mode")) b.setAttribute("aria-pressed", "false");
  }

  for (const b of document.querySelectorAll(".mode")) {
    b.addEventListener("click", () => {
      S.pendingMode = b.dataset.mode;
      for (const o of document.querySelectorAll(".mode")) o.setAttribute("aria-pressed", String(o === b));
      $("mode-effect").textContent = MODE_EFFECT[S.pendingMode];
      $("expiry-row").hidden = S.pendingMode === "auto";
      $("mode-confirm-box").hidden = true;
      $("mode-form").hidden = false;
      $("mode-result").hidden = true;
      $("mode-reason").focus();
    });
  }

  $("mode-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const mode = S.pendingMode;
    const reason = $("mode-reason").value.trim();
    if (!mode) return;
    if (!reason) { say("Say why: the reason is required and goes to the audit trail.", "error"); return; }
    const sel = $("mode-expiry-in");
    const forHow = sel.options[sel.selectedIndex].text;
    $("mode-confirm-text").textContent = mode === "auto"
      ? "Return to AUTO? The route will follow vendor health. Reason: “" + reason + "”."
      : "Force " + mode.toUpperCase() + " for " + forHow + "? " + MODE_EFFECT[mode] + " Reason: “" + reason + "”.";
    $("mode-confirm").textContent = mode === "auto" ? "Yes, return to auto" : "Yes, force " + mode;
    $("mode-form").hidden = true;
    $("mode-confirm-box").hidden = false;
    $("mode-confirm").focus();
  });
  $("mode-cancel").addEventListener("click", resetModeControl);
  $("mode-back").addEventListener("click", () => {
    $("mode-confirm-box").hidden = true;
    $("mode-form").hidden = false;
  });

  $("mode-confirm").addEventListener("click", async () => {
    const mode = S.pendingMode;
    if (!mode) return;
    const body = { mode, reason: $("mode-reason").value.trim() };
    if (mode !== "auto") body.expires_in = $("mode-expiry-in").value;
    $("mode-confirm").disabled = true;
    try {
      const r = await fetch("/admin/mode", {
        method: "PUT",
        headers: authHeaders({ "Content-Type": "application/json" }),
        body: JSON.stringify(body),
      });
      const answer = await r.json().catch(() => ({}));
      if (r.status === 401) { askToken("That admin token was refused (HTTP 401)."); return; }
      if (!r.ok) { say((answer.error && answer.error.message) || "HTTP " + r.status, "error"); return; }
      const m = answer.mode || {};
      say("Mode " + m.mode + " set by " + m.set_by + " at " + clock(Date.now()) +
        (answer.route ? "; clients are told to use " + answer.route.route : "") + ".", "ok");
      $("mode-reason").value = "";
      resetModeControl();
      loadAudit();
    } catch (e) {
      say("The admin listener cannot be reached: " + e.message, "error");
    } finally {
      $("mode-confirm").disabled = false;
    }
  });

  $("node").textContent = location.host;
  connect();
})();
