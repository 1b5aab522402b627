// extauthz dashboard: polls the admin listener's /api/v1 JSON and renders it.
// Every value from the API is put in the page as text (textContent, SVG
// attributes of numbers): clients choose the values shown, so nothing is
// ever parsed as HTML.
"use strict";

(function () {
  const LIVE_MS = 3000;     // rules and offenders
  const HISTORY_MS = 60000; // roll-ups change hourly
  const SVG = "http://www.w3.org/2000/svg";
  const WINDOW_TEXT = { "5m": "5 minutes", "1h": "hour", "24h": "24 hours", "7d": "7 days" };

  const state = { window: "5m", domain: "", rule: "", days: 7, selected: null, rules: [], history: null, day: null };

  const $ = (id) => document.getElementById(id);

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs) e.setAttribute(k, String(attrs[k]));
    return e;
  }

  const intFmt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  function count(n) { return Number.isFinite(n) ? intFmt.format(n) : "–"; }
  function rate(n) {
    if (!Number.isFinite(n)) return "–";
    if (n === 0) return "0";
    if (n >= 100) return intFmt.format(n);
    return n.toFixed(n >= 10 ? 1 : 2);
  }

  // ago formats t relative to ref (both RFC 3339) as "12s ago".
  function ago(t, ref) {
    const d = (Date.parse(ref) - Date.parse(t)) / 1000;
    if (!Number.isFinite(d)) return "–";
    if (d < 1) return "just now";
    if (d < 90) return Math.round(d) + "s ago";
    if (d < 5400) return Math.round(d / 60) + "m ago";
    if (d < 129600) return Math.round(d / 3600) + "h ago";
    return Math.round(d / 86400) + "d ago";
  }

  function timeCell(t, ref) {
    const td = el("td", ago(t, ref));
    td.title = String(t);
    return td;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function setEmpty(id, text) {
    const p = $(id);
    p.textContent = text || "";
    p.hidden = !text;
  }

  // api fetches path and returns the decoded JSON, or throws an Error whose
  // message says what failed (the API's {"error": ...} when it sent one).
  async function api(path) {
    const resp = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    if (!resp.ok) {
      const why = body && typeof body.error === "string" ? body.error : resp.statusText;
      const err = new Error(resp.status + " " + why);
      err.status = resp.status;
      throw err;
    }
    return body || {};
  }

  function showStatus(err) {
    const s = $("status");
    if (!err) { s.textContent = ""; s.className = "status"; return; }
    s.className = "status error";
    s.textContent = err.status === 401 ? "Not authorized: the admin listener needs a token or client certificate"
      : err.status === 404 ? "Traffic insight is off on this server (insight.disabled): no data to show"
      : "Cannot reach the API: " + err.message;
  }

  function showScope(d) {
    const b = $("scope");
    if (d.scope === "fleet") {
      const n = Number(d.replicas) || 0;
      b.textContent = "Fleet · " + n + (n === 1 ? " replica" : " replicas");
      b.className = "badge fleet";
      b.title = "Figures merged from every replica sharing the store";
    } else {
      b.textContent = "This replica only";
      b.className = "badge replica";
      b.title = "No shared store: this replica answers for its own traffic";
    }
    const w = $("warning");
    w.textContent = typeof d.warning === "string" ? d.warning : "";
    w.hidden = !w.textContent;
    $("updated").textContent = d.generated_at ? "updated " + new Date(d.generated_at).toLocaleTimeString() : "";
  }

  // ratioBar draws refused / (admitted + refused) as a small SVG bar.
  function ratioBar(admitted, refused) {
    const td = el("td");
    const total = (admitted || 0) + (refused || 0);
    const share = total > 0 ? (refused || 0) / total : 0;
    const s = svg("svg", { class: "ratio", viewBox: "0 0 100 10", preserveAspectRatio: "none", role: "img" });
    s.appendChild(svg("rect", { class: "track", x: 0, y: 0, width: 100, height: 10 }));
    s.appendChild(svg("rect", { class: "fill", x: 0, y: 0, width: (share * 100).toFixed(1), height: 10 }));
    td.appendChild(s);
    td.appendChild(el("span", total > 0 ? Math.round(share * 100) + "%" : "–", "ratio-label"));
    return td;
  }

  function renderRules(d) {
    const rules = Array.isArray(d.rules) ? d.rules : [];
    state.rules = rules;
    const tb = $("rules").querySelector("tbody");
    clear(tb);
    for (const r of rules) {
      const r1 = r.rate_1m || {}, r5 = r.rate_5m || {}, t = r.totals || {};
      const tr = el("tr");
      tr.appendChild(el("td", r.domain));
      tr.appendChild(el("td", r.rule));
      tr.appendChild(el("td", rate(r1.admitted), "num"));
      tr.appendChild(el("td", rate(r1.refused), "num" + (r1.refused > 0 ? " refused" : "")));
      tr.appendChild(el("td", rate(r5.refused), "num"));
      tr.appendChild(ratioBar(r1.admitted, r1.refused));
      tr.appendChild(el("td", count(t.admitted), "num"));
      tr.appendChild(el("td", count(t.refused), "num"));
      tr.appendChild(el("td", count(t.near_limit), "num"));
      tr.appendChild(el("td", count(t.shadow), "num"));
      tb.appendChild(tr);
    }
    $("rules").hidden = rules.length === 0;
    setEmpty("rules-empty", rules.length === 0 ? "No decisions yet: no request has matched a rule since this replica started." : "");
    fillFilters(rules);
  }

  // fillSelect replaces the options of sel after "all", keeping the choice.
  function fillSelect(sel, values, current) {
    const key = JSON.stringify(values);
    if (sel.dataset.options !== key) { // rebuilt only when changed: an open list stays open
      sel.dataset.options = key;
      while (sel.options.length > 1) sel.remove(1);
      for (const v of values) {
        const o = el("option", v);
        o.value = v;
        sel.appendChild(o);
      }
    }
    sel.value = values.includes(current) ? current : "";
  }

  function fillFilters(rules) {
    const domains = [...new Set(rules.map((r) => String(r.domain)))].sort();
    const names = [...new Set(rules.filter((r) => !state.domain || r.domain === state.domain).map((r) => String(r.rule)))].sort();
    fillSelect($("f-domain"), domains, state.domain);
    fillSelect($("f-rule"), names, state.rule);
  }

  function offendersQuery() {
    const q = new URLSearchParams({ window: state.window, limit: "25" });
    if (state.domain) q.set("domain", state.domain);
    if (state.rule) q.set("rule", state.rule);
    return "api/v1/offenders?" + q.toString();
  }

  function renderOffenders(d) {
    const list = Array.isArray(d.offenders) ? d.offenders : [];
    const tb = $("offenders").querySelector("tbody");
    clear(tb);
    for (const o of list) {
      const tr = el("tr");
      tr.tabIndex = 0;
      tr.dataset.value = String(o.value);
      if (state.selected === String(o.value)) tr.className = "selected";
      const v = el("td", o.value, "value");
      v.title = String(o.value);
      tr.appendChild(v);
      tr.appendChild(el("td", o.domain));
      tr.appendChild(el("td", o.rule));
      tr.appendChild(el("td", count(o.refused), "num" + (o.refused > 0 ? " refused" : "")));
      tr.appendChild(el("td", count(o.admitted), "num"));
      tr.appendChild(timeCell(o.first_seen, d.generated_at));
      tr.appendChild(timeCell(o.last_seen, d.generated_at));
      tr.addEventListener("click", () => selectOffender(String(o.value)));
      tr.addEventListener("keydown", (e) => { if (e.key === "Enter") selectOffender(String(o.value)); });
      tb.appendChild(tr);
    }
    $("offenders").hidden = list.length === 0;
    const where = state.rule ? " for rule " + state.rule : state.domain ? " in domain " + state.domain : "";
    const refusals = list.some((o) => o.refused > 0);
    setEmpty("offenders-empty", list.length === 0 ? "No refusals in the last " + WINDOW_TEXT[state.window] + where + "." : "");
    const note = $("offenders-note");
    note.textContent = list.length > 0 && !refusals ? "No refusals in the last " + WINDOW_TEXT[state.window] + where + "; these clients used the most quota." : "";
    note.hidden = !note.textContent;
    $("bound").textContent = Number(d.error_bound) > 0
      ? "Counts are estimates: each may overstate by at most " + count(Number(d.error_bound)) + "." : "";
  }

  async function selectOffender(value) {
    state.selected = value;
    for (const tr of $("offenders").querySelectorAll("tbody tr")) {
      tr.className = tr.dataset.value === value ? "selected" : "";
    }
    $("detail-value").textContent = value;
    $("detail").hidden = false;
    document.querySelector(".split").className = "split with-detail";
    const tb = $("detail-rules").querySelector("tbody");
    clear(tb);
    setEmpty("detail-empty", "Loading…");
    try {
      const d = await api("api/v1/offenders/detail?" + new URLSearchParams({ value }).toString());
      if (state.selected !== value) return;
      const rules = Array.isArray(d.rules) ? d.rules : [];
      for (const r of rules) {
        const tr = el("tr");
        tr.appendChild(el("td", r.domain));
        tr.appendChild(el("td", r.rule));
        tr.appendChild(el("td", count(r.refused), "num" + (r.refused > 0 ? " refused" : "")));
        tr.appendChild(el("td", count(r.admitted), "num"));
        tr.appendChild(timeCell(r.first_seen, d.generated_at || new Date().toISOString()));
        tr.appendChild(timeCell(r.last_seen, d.generated_at || new Date().toISOString()));
        tb.appendChild(tr);
      }
      setEmpty("detail-empty", rules.length === 0 ? "No rule has recorded this client any more (its entries aged out)." : "");
    } catch (err) {
      setEmpty("detail-empty", "Cannot load the detail: " + err.message);
    }
  }

  function closeDetail() {
    state.selected = null;
    $("detail").hidden = true;
    document.querySelector(".split").className = "split";
    for (const tr of $("offenders").querySelectorAll("tbody tr.selected")) tr.className = "";
  }

  function sumRefused(rules) {
    let n = 0;
    for (const r of Array.isArray(rules) ? rules : []) {
      if (state.domain && r.domain !== state.domain) continue;
      if (state.rule && r.rule !== state.rule) continue;
      n += Number(r.refused) || 0;
    }
    return n;
  }

  // barChart draws points [{label, tick, value, title, key}] into box as SVG
  // bars with a y axis; onPick, optional, is called with a clicked key.
  function barChart(box, points, onPick, selected) {
    clear(box);
    const W = 640, H = 200, L = 48, R = 8, T = 10, B = 26;
    const s = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", preserveAspectRatio: "none" });
    const max = Math.max(1, ...points.map((p) => p.value));
    const step = niceStep(max / 4);
    const top = Math.ceil(max / step) * step;
    const y = (v) => T + (H - T - B) * (1 - v / top);
    for (let v = 0; v <= top + 1e-9; v += step) {
      s.appendChild(svg("line", { class: v === 0 ? "axis" : "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      const t = svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" });
      t.textContent = count(v);
      s.appendChild(t);
    }
    const slot = (W - L - R) / Math.max(1, points.length);
    points.forEach((p, i) => {
      const x = L + i * slot;
      const h = Math.max(p.value > 0 ? 1 : 0, y(0) - y(p.value));
      const bar = svg("rect", { class: "bar" + (p.key === selected ? " selected" : ""), x: (x + slot * 0.15).toFixed(1), y: (y(0) - h).toFixed(1), width: Math.max(1, slot * 0.7).toFixed(1), height: h.toFixed(1) });
      bar.setAttribute("data-value", String(p.value));
      const title = svg("title", {});
      title.textContent = p.title;
      bar.appendChild(title);
      if (onPick) bar.addEventListener("click", () => onPick(p.key));
      s.appendChild(bar);
      if (p.tick) {
        const t = svg("text", { x: (x + slot / 2).toFixed(1), y: H - 8, "text-anchor": "middle" });
        t.textContent = p.tick;
        s.appendChild(t);
      }
    });
    box.appendChild(s);
  }

  function niceStep(raw) {
    const p = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1))));
    for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
    return 10 * p;
  }

  function showCharts(on) { document.querySelector("#history-section .charts").hidden = !on; }

  function renderHistory() {
    const d = state.history;
    const days = Array.isArray(d.days) ? d.days : [];
    const hours = Array.isArray(d.hours) ? d.hours : [];
    const noData = days.length === 0 && hours.length === 0;
    setEmpty("history-empty", noData
      ? (d.scope === "replica" ? "History needs a shared store (Redis): with memory only, no roll-up is kept." : "No history recorded yet: roll-ups appear after the first hour of traffic.")
      : "");
    const hourPoints = hours.map((h, i) => {
      const t = new Date(h.hour);
      const label = t.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
      const v = sumRefused(h.rules);
      return { key: h.hour, value: v, title: label + ": " + count(v) + " refused", tick: t.getHours() % 12 === 0 || hours.length <= 12 ? t.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "" };
    });
    const every = Math.ceil(days.length / 10);
    const dayPoints = days.map((day, i) => {
      const v = sumRefused(day.rules);
      const label = String(day.date);
      return { key: label, value: v, title: label + ": " + count(v) + " refused", tick: i % every === 0 ? label.slice(5) : "" };
    });
    showCharts(!noData);
    if (noData) { $("day-top").hidden = true; return; }
    barChart($("chart-hours"), hourPoints);
    if (!state.day || !days.some((x) => x.date === state.day)) state.day = days.length ? days[days.length - 1].date : null;
    barChart($("chart-days"), dayPoints, (k) => { state.day = k; renderHistory(); }, state.day);
    renderDayTop(days.find((x) => x.date === state.day));
  }

  function renderDayTop(day) {
    const box = $("day-top");
    if (!day) { box.hidden = true; return; }
    box.hidden = false;
    $("day-top-h").textContent = "Top offenders on " + day.date + " (click a day to change)";
    const tb = $("day-offenders").querySelector("tbody");
    clear(tb);
    const list = (Array.isArray(day.top_offenders) ? day.top_offenders : [])
      .filter((o) => (!state.domain || o.domain === state.domain) && (!state.rule || o.rule === state.rule));
    for (const o of list) {
      const tr = el("tr");
      tr.appendChild(el("td", o.value, "value"));
      tr.appendChild(el("td", o.domain));
      tr.appendChild(el("td", o.rule));
      tr.appendChild(el("td", count(o.refused), "num" + (o.refused > 0 ? " refused" : "")));
      tr.appendChild(el("td", count(o.admitted), "num"));
      tb.appendChild(tr);
    }
    if (list.length === 0) {
      const tr = el("tr");
      const td = el("td", "No refusals recorded that day.", "empty");
      td.colSpan = 5;
      tr.appendChild(td);
      tb.appendChild(tr);
    }
  }

  async function pollLive() {
    try {
      const [rules, offenders] = await Promise.all([api("api/v1/rules"), api(offendersQuery())]);
      showScope(rules);
      renderRules(rules);
      renderOffenders(offenders);
      showStatus(null);
    } catch (err) {
      showStatus(err);
    }
  }

  async function pollHistory() {
    try {
      state.history = await api("api/v1/history?days=" + state.days);
      renderHistory();
    } catch (err) {
      state.history = null;
      showCharts(false);
      $("day-top").hidden = true;
      setEmpty("history-empty", err.status === 404
        ? "No history: this server does not serve /api/v1/history."
        : "History is unavailable: " + err.message);
    }
  }

  function wire() {
    $("f-domain").addEventListener("change", (e) => { state.domain = e.target.value; state.rule = ""; fillFilters(state.rules); pollLive(); if (state.history) renderHistory(); });
    $("f-rule").addEventListener("change", (e) => { state.rule = e.target.value; pollLive(); if (state.history) renderHistory(); });
    for (const r of document.querySelectorAll('input[name="window"]')) {
      r.addEventListener("change", (e) => { state.window = e.target.value; pollLive(); });
    }
    $("h-days").addEventListener("change", (e) => { state.days = Number(e.target.value) || 7; pollHistory(); });
    $("filters").addEventListener("submit", (e) => e.preventDefault());
    $("detail-close").addEventListener("click", closeDetail);
  }

  wire();
  pollLive();
  pollHistory();
  setInterval(pollLive, LIVE_MS);
  setInterval(pollHistory, HISTORY_MS);
})();
