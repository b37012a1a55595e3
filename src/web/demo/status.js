/* Shared by the demo pages: the connection details the demo backend hands out, and the status
 * badge that tells staff in words how fresh the screen is. Plain script, no dependencies. */
(function (root) {
  "use strict";

  const NAMES = { ws: "WebSocket", sse: "SSE", poll: "polling", vendor: "vendor" };
  // Refreshed by every token fetch; the poll interval is what the badge announces.
  const info = { poll_interval_ms: 2000 };

  // Asked by the client on every (re)connection, so a token never outlives its use by much.
  async function token() {
    const r = await fetch("/demo/api/token", { cache: "no-store" });
    if (!r.ok) throw new Error("token: HTTP " + r.status);
    Object.assign(info, await r.json());
    return info.token || "";
  }

  const two = (n) => String(n).padStart(2, "0");
  const hhmm = (t) => { const d = new Date(t); return two(d.getHours()) + ":" + two(d.getMinutes()); };
  const hhmmss = (t) => hhmm(t) + ":" + two(new Date(t).getSeconds());
  const seconds = (ms) => String(Math.round(ms / 100) / 10).replace(/\.0$/, "");

  // The badge: its words, and a kind for its colour.
  function describe(s, offlineSince) {
    if (s.state === "offline") {
      return offlineSince
        ? { kind: "offline", text: "Offline since " + hhmm(offlineSince) }
        : { kind: "offline", text: "Connecting…" };
    }
    // The step is being (re)opened: nothing new can arrive until it is up.
    if (!s.connected) return { kind: "connecting", text: "Reconnecting via " + NAMES[s.via] + "…" };
    if (s.state === "polling") return { kind: "polling", text: "Polling every " + seconds(info.poll_interval_ms) + " s" };
    if (s.via === "vendor") return { kind: "vendor", text: "Live via vendor" };
    return { kind: "fallback", text: "Live via fallback (" + NAMES[s.via] + ")" };
  }

  // Keeps `badge` (and `detail`, optional) up to date with `rt`'s status.
  function watch(rt, badge, detail) {
    let offlineSince = null, everLive = false;
    const render = (s) => {
      if (s.state === "offline") {
        if (everLive && offlineSince == null) offlineSince = Date.now() - s.staleForMs;
      } else {
        everLive = true;
        offlineSince = null;
      }
      const d = describe(s, offlineSince);
      badge.textContent = d.text;
      badge.dataset.kind = d.kind;
      badge.dataset.state = s.state;
      badge.dataset.via = s.via || "";
      if (detail) {
        const heard = Math.round(s.staleForMs / 1000);
        detail.textContent = (s.lastEventAt ? "Last update " + hhmmss(s.lastEventAt) + " · " : "") +
          "server heard " + (heard < 2 ? "just now" : heard + " s ago");
      }
    };
    rt.on("status", render);
    render(rt.status());
    setInterval(() => render(rt.status()), 1000);
  }

  root.DemoStatus = { token, watch, describe, info, hhmm, hhmmss };
})(window);
