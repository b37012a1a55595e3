/* The operator page: shows GET /v1/route (refreshed every 2 s), sets the operator's mode with
 * PUT {admin}/admin/mode, and keeps its own subscription so the failover can be watched. */
(function () {
  "use strict";

  const CHANNEL = "clinic-42.waiting-room";
  const $ = (id) => document.getElementById(id);

  async function showRoute() {
    try {
      const r = await fetch("/v1/route", { cache: "no-store" });
      if (r.status === 404) {
        $("route-note").textContent = "This server does not announce a route (GET /v1/route answers 404): " +
          "there is no vendor path, and clients use understudy's own WebSocket, then SSE, then polling.";
        $("route").hidden = true;
        return;
      }
      const body = await r.json();
      $("route-note").textContent = r.ok
        ? "Clients are told to use: " + body.route + " (mode " + body.mode + ", " + (body.reason || "no reason given") + ")"
        : "GET /v1/route answered HTTP " + r.status;
      $("route").textContent = JSON.stringify(body, null, 2);
      $("route").hidden = false;
    } catch (e) {
      $("route-note").textContent = "understudy cannot be reached: " + e.message;
    }
  }

  // The admin URL survives reloads; the token stays in this tab only.
  const url = $("admin-url"), token = $("admin-token");
  url.value = localStorage.getItem("understudy.admin") || url.value;
  token.value = sessionStorage.getItem("understudy.admin-token") || "";
  url.addEventListener("change", () => localStorage.setItem("understudy.admin", url.value));
  token.addEventListener("change", () => sessionStorage.setItem("understudy.admin-token", token.value));

  // The CLI equivalent, for when this browser may not call the admin listener (another origin).
  function cli(mode) {
    const reason = JSON.stringify($("reason").value);
    return mode === "auto"
      ? "understudy mode auto --reason " + reason
      : "understudy mode set " + mode + " --reason " + reason + " --for " + $("expires").value;
  }

  async function setMode(mode) {
    const say = (text, kind) => { $("mode-result").textContent = text; $("mode-result").className = "result " + kind; };
    const base = url.value.replace(/\/+$/, "");
    $("mode-cli").textContent = cli(mode);
    if (!token.value) return say("Type the admin token first.", "error");
    const body = { mode, reason: $("reason").value };
    if (mode !== "auto") body.expires_in = $("expires").value;
    try {
      const r = await fetch(base + "/admin/mode", {
        method: "PUT",
        headers: { "Content-Type": "application/json", Authorization: "Bearer " + token.value },
        body: JSON.stringify(body),
      });
      const answer = await r.json().catch(() => ({}));
      if (r.ok) say("Mode is now " + mode + ".", "ok");
      else if (r.status === 404) say("This server has no PUT /admin/mode yet (HTTP 404).", "error");
      else say((answer.error && answer.error.message) || "HTTP " + r.status, "error");
    } catch (e) {
      say("Could not reach the admin API at " + base + " from this page (not running, or it does not " +
        "answer pages of another origin): run the command below instead.", "error");
    }
    showRoute();
  }
  document.querySelectorAll("[data-mode]").forEach((b) => b.addEventListener("click", () => setMode(b.dataset.mode)));

  function log(text) {
    const li = document.createElement("li");
    li.textContent = DemoStatus.hhmmss(Date.now()) + "  " + text;
    $("log").prepend(li);
    while ($("log").children.length > 50) $("log").lastChild.remove();
  }

  const opts = { url: "", token: DemoStatus.token };
  if (window.Pusher) opts.vendor = { Pusher: window.Pusher };
  const rt = Understudy.connect(opts);
  rt.subscribe(CHANNEL, {
    onEvent: (ev) => log("#" + ev.seq + " " + ev.name + " " + JSON.stringify(ev.data)),
    onReset: (info) => log("reset (" + info.reason + "): continue from #" + info.seq),
  });
  rt.on("status", (s) => log("status " + s.state + (s.via ? " via " + s.via : "")));
  DemoStatus.watch(rt, $("status"), $("freshness"));

  showRoute();
  setInterval(showRoute, 2000);
})();
