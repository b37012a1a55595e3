/* The waiting-room board. It loads the list from the demo backend together with the channel
 * position the list is current at, subscribes from that position, adds each checked-in ticket
 * as its event arrives, and reloads the list whenever the client says its position is void
 * (onReset). Client options may be tuned from the URL, e.g. ?probeMs=5000&staleAfterMs=20000.
 * window.demoBoard records what happened, for tests and the curious. */
(function () {
  "use strict";

  const CHANNEL = "clinic-42.waiting-room";
  const TUNABLE = ["staleAfterMs", "connectTimeoutMs", "probeMs", "waitMs", "gapWaitMs"];
  const KEEP_EVENTS = 200;

  const $ = (id) => document.getElementById(id);
  const tickets = new Map(); // ticket -> checked_in_at (ms)
  const record = { events: [], resets: [], statuses: [], reloads: 0 };
  window.demoBoard = record;

  function render(fresh) {
    const list = $("tickets");
    const items = Array.from(tickets, ([ticket, at]) => ({ ticket, at })).sort((a, b) => a.at - b.at);
    list.replaceChildren(...items.map(({ ticket, at }) => {
      const li = document.createElement("li");
      li.dataset.ticket = ticket;
      li.append(ticket);
      const when = document.createElement("small");
      when.textContent = "since " + DemoStatus.hhmm(at);
      li.append(when);
      if (ticket === fresh) li.className = "fresh";
      return li;
    }));
    $("count").textContent = String(items.length);
    $("empty").hidden = items.length > 0;
  }

  // Replaces the board with the backend's list. Events that arrived after the position the list
  // is current at are laid on top again, so a reload racing a check-in cannot lose it.
  let generation = 0;
  async function reload() {
    const mine = ++generation;
    for (let attempt = 0; ; attempt++) {
      try {
        const r = await fetch("/demo/api/waiting-room", { cache: "no-store" });
        if (!r.ok) throw new Error("HTTP " + r.status);
        const list = await r.json();
        if (mine !== generation) return null;
        tickets.clear();
        list.tickets.forEach((e) => tickets.set(e.ticket, e.checked_in_at));
        record.events
          .filter((e) => e.epoch === list.position.epoch && e.seq > list.position.seq)
          .forEach((e) => tickets.set(e.ticket, e.at));
        record.reloads++;
        render();
        return list.position;
      } catch (e) {
        if (mine !== generation) return null;
        await new Promise((r) => setTimeout(r, Math.min(10000, 500 * Math.pow(2, attempt))));
      }
    }
  }

  function onEvent(ev) {
    if (ev.name !== "patient.checked_in" || !ev.data || !ev.data.ticket) return;
    const at = ev.data.checked_in_at || ev.ts;
    record.events.push({ id: ev.id, seq: ev.seq, epoch: ev.epoch, ticket: ev.data.ticket, at, ts: ev.ts, shownAt: Date.now() });
    if (record.events.length > KEEP_EVENTS) record.events.shift();
    if (!tickets.has(ev.data.ticket)) {
      tickets.set(ev.data.ticket, at);
      render(ev.data.ticket);
    }
  }

  function onReset(info) {
    record.resets.push(info);
    reload();
  }

  async function start() {
    const params = new URLSearchParams(location.search);
    const opts = { url: "", token: DemoStatus.token };
    TUNABLE.forEach((k) => { const v = Number(params.get(k)); if (v > 0) opts[k] = v; });
    // Pusher's SDK when the page has it; an Ably vendor needs none (the client's built-in adapter).
    if (window.Pusher) opts.vendor = { Pusher: window.Pusher };
    const since = await reload();
    const rt = Understudy.connect(opts);
    rt.subscribe(CHANNEL, { onEvent, onReset, since: since || undefined });
    rt.on("status", (s) => record.statuses.push(s));
    DemoStatus.watch(rt, $("status"), $("freshness"));
    window.demoBoard.client = rt;
  }

  const tick = () => { $("clock").textContent = DemoStatus.hhmm(Date.now()); };
  tick();
  setInterval(tick, 5000);
  render();
  start();
})();
