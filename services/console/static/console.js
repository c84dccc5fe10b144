// ordermesh console: renders the server's state (Server-Sent Events from /api/events) and sends operator actions.
// Plain JavaScript; the only library is uPlot (vendored) for the equity chart. Every value from the bus is put in
// the page as text (textContent), never as HTML.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  let session = { role: "observer", csrf: "", label: "" };
  let state = null;
  const equity = {}; // account -> { t: [], eq: [], bal: [] }
  let chart = null;
  let chartAccount = "";

  // ------------------------------------------------------------------------------------------ helpers

  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text === undefined || text === null ? "" : String(text);
    if (cls) td.className = cls;
    return td;
  }

  function fill(id, rows, cells, mark) {
    const body = $(id).tBodies[0];
    const frag = document.createDocumentFragment();
    for (const row of rows) {
      const tr = document.createElement("tr");
      for (const td of cells(row)) tr.appendChild(td);
      if (mark) mark(tr, row);
      frag.appendChild(tr);
    }
    body.replaceChildren(frag);
  }

  const money = (s) => {
    const text = String(s ?? "");
    if (text.startsWith("-")) return "n neg";
    if (/^[0-9.]+/.test(text) && Number.parseFloat(text) > 0) return "n pos";
    return "n";
  };
  const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });
  const short = (id) => (id ? id.slice(0, 12) : "");
  const ago = (s) => (s === null || s === undefined ? "" : s < 60 ? `${s.toFixed(1)} s` : `${Math.round(s / 60)} min`);
  const uptime = (s) => (s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`);

  function result(ok, text) {
    const el = $("action-result");
    el.className = ok ? "ok" : "error";
    el.textContent = text;
  }

  // ------------------------------------------------------------------------------------------ session

  function renderRole() {
    const operator = session.role === "operator";
    const role = $("role");
    role.className = `role ${session.role}`;
    role.textContent = operator ? `operator · ${session.label}` : "observer · read-only";
    $("login-form").hidden = operator;
    $("logout").hidden = !operator;
    $("action-hint").textContent = operator ? "" : "actions need the operator token";
  }

  async function loadSession() {
    const res = await fetch("/api/session", { credentials: "same-origin" });
    const data = await res.json();
    session = { role: data.role, csrf: data.csrf, label: data.label };
    $("token").placeholder = "operator token";
    $("token").title = `the token is in ${data.token_file}`;
    renderRole();
  }

  async function login(token) {
    const res = await fetch("/api/login", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token }),
    });
    const data = await res.json().catch(() => ({}));
    if (res.ok) {
      session = { role: "operator", csrf: data.csrf, label: data.label };
      result(true, `logged in: ${data.label}`);
    } else {
      result(false, `${res.status} ${data.error || res.statusText}`);
    }
    renderRole();
  }

  async function logout() {
    await fetch("/api/logout", { method: "POST", credentials: "same-origin" });
    session = { role: "observer", csrf: "", label: "" };
    result(true, "logged out: read-only");
    renderRole();
  }

  // ------------------------------------------------------------------------------------------ actions

  async function act(btn) {
    const action = btn.dataset.action;
    if (btn.dataset.confirm && !btn.classList.contains("confirming")) {
      btn.classList.add("confirming");
      btn.dataset.label = btn.textContent;
      btn.textContent = "Click again to confirm";
      setTimeout(() => unconfirm(btn), 4000);
      return;
    }
    unconfirm(btn);
    const body = {
      action,
      account: $("scope-account").value,
      strategy: $("scope-strategy").value,
      reason: $("reason").value,
    };
    result(true, `${action}: sending…`);
    let res;
    try {
      res = await fetch("/api/action", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": session.csrf },
        body: JSON.stringify(body),
      });
    } catch (err) {
      result(false, `${action}: the console did not answer (${err})`);
      return;
    }
    const data = await res.json().catch(() => ({}));
    if (res.ok) result(true, `${action}: ${data.detail}`);
    else result(false, `${res.status} ${data.error || res.statusText}`);
  }

  function unconfirm(btn) {
    if (btn.classList.contains("confirming")) {
      btn.classList.remove("confirming");
      btn.textContent = btn.dataset.label;
    }
  }

  // ------------------------------------------------------------------------------------------ rendering

  function setOptions(select, values, none) {
    const current = select.value;
    const wanted = ["", ...values];
    const have = Array.from(select.options).map((o) => o.value);
    if (have.join("\n") === wanted.join("\n")) return;
    select.replaceChildren();
    for (const v of wanted) {
      const o = document.createElement("option");
      o.value = v;
      o.textContent = v || none;
      select.appendChild(o);
    }
    select.value = wanted.includes(current) ? current : "";
  }

  function renderTrading(t) {
    const box = $("trading-box");
    const global = t.known ? t.global : "UNKNOWN";
    box.className = `state ${global}`;
    $("trading-state").textContent = global;
    const parts = [];
    for (const [account, st] of Object.entries(t.accounts || {})) parts.push(`account ${account} ${st}`);
    for (const s of t.strategies || []) parts.push(`strategy ${s.account}/${s.strategy} ${s.state}`);
    if (!t.known && t.error) parts.push(t.error);
    $("trading-detail").textContent = parts.join(" · ");
  }

  function render(s) {
    state = s;
    renderTrading(s.trading);
    $("link").textContent = `live · NATS ${s.bus.observer ? "ok" : "DOWN"} · operator link ${
      s.bus.operator ? "ok" : "none"
    }`;
    fill("accounts", s.accounts, (a) => a.known
      ? [cell(`${a.account} (${a.mode}, ${a.currency})`), cell(a.trading + (a.trading_scope === "global" ? " (global)" : ""), a.trading),
         cell(a.balance, "n"), cell(a.equity, "n"), cell(a.pnl, money(a.pnl)), cell(a.realized, money(a.realized)),
         cell(a.unrealized, money(a.unrealized)), cell(a.commission, "n"), cell(a.margin_used, "n"),
         cell(a.free_margin, "n"), cell(a.margin_ratio, "n"), cell(a.fills, "n")]
      : [cell(a.account), cell(a.trading, a.trading), cell("no state from the keeper yet", "muted")]);
    const accounts = s.accounts.map((a) => a.account);
    setOptions($("scope-account"), accounts, "every account");
    setOptions($("equity-account"), accounts, "(account)");
    if (!$("equity-account").value && accounts.length) $("equity-account").value = accounts[0];
    const strategies = Array.from(new Set([...s.strategies.map((r) => r.strategy), ...s.positions.map((p) => p.strategy)]))
      .filter((x) => x && x !== "*").sort();
    setOptions($("scope-strategy"), strategies, "every strategy");

    fill("strategies", s.strategies, (r) => [
      cell(r.account), cell(r.strategy), cell(r.realized, money(r.realized)), cell(r.unrealized, money(r.unrealized)),
      cell(r.fees, "n"), cell(r.net, money(r.net)), cell(r.trades, "n"), cell(r.win_rate, "n"), cell(r.fills, "n"),
    ]);
    fill("positions", s.positions, (p) => [
      cell(p.account), cell(p.strategy), cell(p.symbol + (p.ticket ? ` #${p.ticket}` : "")),
      cell(p.qty, p.side === "long" ? "n pos" : "n neg"), cell(p.avg_price, "n"), cell(p.mark, "n"),
      cell(p.unrealized, money(p.unrealized)), cell(p.realized, money(p.realized)),
    ]);
    $("orders-count").textContent = s.orders_loaded ? `${s.orders.length}` : "loading…";
    fill("orders", s.orders, (o) => [
      cell(short(o.intent_id), "id"), cell(o.account), cell(o.strategy), cell(o.side, o.side), cell(o.qty, "n"),
      cell(o.symbol), cell(o.limit, "n"), cell(o.filled, "n"), cell(o.status), cell(o.broker), cell(ago(o.age_s), "n"),
    ], (tr, o) => { tr.dataset.intent = o.intent_id; });
    $("fills-count").textContent = `${s.counts.fills} read`;
    fill("fills", s.fills, (f) => [
      cell(clock(f.t)), cell(f.strategy), cell(f.side, f.side), cell(f.qty, "n"), cell(f.symbol), cell(f.px, "n"),
      cell(f.broker), cell(short(f.intent_id), "id"),
    ], (tr, f) => { tr.dataset.intent = f.intent_id; });
    $("refusals-count").textContent = `${s.counts.refusals} read`;
    fill("refusals", s.refusals, (r) => [
      cell(clock(r.t)), cell(r.by), cell(r.strategy), cell(r.symbol), cell(r.reason, "reason"),
      cell(short(r.intent_id), "id"),
    ], (tr, r) => { tr.dataset.intent = r.intent_id; });
    fill("processes", s.processes, (p) => [
      cell(p.name), cell(p.status, p.status === "ok" ? "ok" : p.status === "STALE" ? "stale" : "bad"),
      cell(ago(p.age_s), "n"), cell(uptime(p.uptime_s), "n"), cell(p.metrics_url ? `${p.metrics_url}/metrics` : "", "id"),
    ]);
    fill("brokers", s.brokers, (b) => [
      cell(b.broker), cell(b.status, b.connected ? "ok" : "bad"), cell(b.latency_ms === "-" ? "-" : `${b.latency_ms} ms`, "n"),
      cell(ago(b.age_s), "n"),
    ]);
    fill("latency", s.latency, (h) => [
      cell(h.label), cell(h.who, "muted"), cell(h.count, "n"), cell(h.p50, "n"), cell(h.p90, "n"), cell(h.p99, "n"),
      cell(h.max, "n"),
    ]);
    const c = s.counts;
    $("flow").textContent = `since the console started: ${c.intents} intents (${c.intents_per_s}/s over 10 s), ${c.orders} orders · `
      + `exec stream: ${c.fills} fills, ${c.refusals} refusals read${s.exec.caught_up ? "" : ` (catching up: ${s.exec.seq} of ${s.exec.head})`}`;
    $("keeper").textContent = s.keeper.ok
      ? `position-keeper at exec sequence ${s.keeper.applied_seq} (${s.keeper.fills} fills)`
      : `position-keeper: ${s.keeper.detail}`;
    fill("actions", s.actions, (a) => [
      cell(clock(a.t)), cell(a.who), cell(a.action), cell(a.scope), cell(`${a.ok ? "ok" : "refused/failed"}: ${a.detail}`, `reason ${a.ok ? "ok" : "bad"}`),
    ]);
    drawEquity();
  }

  // ------------------------------------------------------------------------------------------ equity

  function setEquity(series) {
    for (const [account, points] of Object.entries(series)) {
      equity[account] = { t: [], eq: [], bal: [] };
      appendEquity(account, points);
    }
  }

  function appendEquity(account, points) {
    const e = equity[account] || (equity[account] = { t: [], eq: [], bal: [] });
    for (const [t, eq, bal] of points) {
      if (e.t.length && t <= e.t[e.t.length - 1]) continue;
      e.t.push(t);
      e.eq.push(eq);
      e.bal.push(bal);
    }
    const most = 20000;
    if (e.t.length > most) {
      for (const k of ["t", "eq", "bal"]) e[k].splice(0, e.t.length - most);
    }
  }

  function drawEquity() {
    const account = $("equity-account").value;
    const e = equity[account] || { t: [], eq: [], bal: [] };
    const box = $("equity-chart");
    if (e.eq.length) {
      let peak = -Infinity;
      let dd = 0;
      for (const v of e.eq) {
        peak = Math.max(peak, v);
        dd = Math.max(dd, peak - v);
      }
      const last = e.eq[e.eq.length - 1];
      $("equity-summary").textContent = `last ${last.toFixed(2)} · peak ${peak.toFixed(2)} · max drawdown ${dd.toFixed(2)} · ${e.eq.length} points`;
    } else {
      $("equity-summary").textContent = "no equity points yet (the keeper writes one per fill and every interval)";
    }
    const data = [e.t, e.eq, e.bal];
    if (chart && chartAccount === account) {
      chart.setData(data);
      return;
    }
    if (chart) chart.destroy();
    chartAccount = account;
    const opts = {
      width: Math.max(300, box.clientWidth),
      height: 260,
      scales: { x: { time: true } },
      axes: [
        { stroke: "#8594a3", grid: { stroke: "#27313c" } },
        { stroke: "#8594a3", grid: { stroke: "#27313c" }, size: 80 },
      ],
      series: [
        {},
        { label: "equity", stroke: "#58a6ff", width: 2, points: { show: false }, value: (u, v) => (v === null ? "-" : v.toFixed(2)) },
        { label: "balance", stroke: "#8594a3", width: 1, points: { show: false }, value: (u, v) => (v === null ? "-" : v.toFixed(2)) },
      ],
    };
    chart = new uPlot(opts, data, box);
  }

  window.addEventListener("resize", () => {
    if (chart) chart.setSize({ width: Math.max(300, $("equity-chart").clientWidth), height: 260 });
  });

  // ------------------------------------------------------------------------------------------ live updates

  function listen() {
    const events = new EventSource("/api/events");
    events.addEventListener("snapshot", (ev) => {
      const first = JSON.parse(ev.data);
      setEquity(first.equity);
      render(first.state);
    });
    events.addEventListener("state", (ev) => render(JSON.parse(ev.data)));
    events.addEventListener("equity", (ev) => {
      for (const [account, points] of Object.entries(JSON.parse(ev.data))) appendEquity(account, points);
    });
    events.onerror = () => {
      $("link").textContent = "console unreachable: reconnecting…";
    };
  }

  // ------------------------------------------------------------------------------------------ start

  document.addEventListener("DOMContentLoaded", async () => {
    for (const btn of document.querySelectorAll("button.action")) btn.addEventListener("click", () => act(btn));
    $("login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const token = $("token").value;
      $("token").value = "";
      login(token);
    });
    $("logout").addEventListener("click", logout);
    $("equity-account").addEventListener("change", () => drawEquity());
    await loadSession();
    // /#token=...: log in with it, then take it out of the address bar and the history
    const m = /^#token=(.+)$/.exec(window.location.hash);
    if (m) {
      window.history.replaceState(null, "", window.location.pathname + window.location.search);
      await login(decodeURIComponent(m[1]));
    }
    listen();
  });
})();
