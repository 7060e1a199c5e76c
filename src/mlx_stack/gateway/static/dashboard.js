// The mlx-stack dashboard: polls the front door's JSON view every 2 s with the stack key.
// The key lives in this tab's sessionStorage only; it is sent as a Bearer header, never in a URL.
"use strict";

const KEY_NAME = "mlx-stack-key";
const VIEW = "/api/dashboard";
const POLL_MS = 2000;
const SVG_NS = "http://www.w3.org/2000/svg";
const GIB = 1024 * 1024 * 1024;

let timer = null;
let lastOk = 0;

function $(id) { return document.getElementById(id); }

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

// --- formatting ---------------------------------------------------------------------

function num(v, digits) { return v === null || v === undefined ? "-" : Number(v).toFixed(digits); }
function gb(bytes) { return bytes === null || bytes === undefined ? "-" : (bytes / GIB).toFixed(1); }
function ms(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  return seconds < 1 ? `${Math.round(seconds * 1000)} ms` : `${seconds.toFixed(2)} s`;
}
function ago(epoch, now) {
  if (!epoch) return "-";
  const s = Math.max(0, Math.round(now - epoch));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m ago`;
  return `${Math.floor(s / 86400)}d ago`;
}
function clock(epoch) {
  const d = new Date(epoch * 1000);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

// --- login / logout -----------------------------------------------------------------

function showLogin(message) {
  stopPolling();
  $("dashboard").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("live").textContent = "";
  const err = $("login-error");
  err.hidden = !message;
  err.textContent = message || "";
  $("key").focus();
}

function showDashboard() {
  $("login").hidden = true;
  $("login-error").hidden = true;
  $("dashboard").hidden = false;
  $("logout").hidden = false;
}

async function fetchView(key) {
  return fetch(VIEW, { headers: { Authorization: `Bearer ${key}` }, cache: "no-store", credentials: "omit" });
}

async function login(event) {
  event.preventDefault();
  const input = $("key");
  const key = input.value.trim();
  if (!key) return;
  $("login-button").disabled = true;
  try {
    const r = await fetchView(key);
    if (r.status === 401) {
      sessionStorage.removeItem(KEY_NAME);
      showLogin("Wrong key: the front door refused it.");
      return;
    }
    if (!r.ok) {
      showLogin(`The front door answered ${r.status}.`);
      return;
    }
    sessionStorage.setItem(KEY_NAME, key);
    input.value = "";
    showDashboard();
    render(await r.json());
    startPolling();
  } catch (e) {
    showLogin("The front door does not answer.");
  } finally {
    $("login-button").disabled = false;
  }
}

function logout() {
  sessionStorage.removeItem(KEY_NAME);
  showLogin("");
}

function stopPolling() {
  if (timer !== null) clearTimeout(timer);
  timer = null;
}

function startPolling() {
  stopPolling();
  timer = setTimeout(poll, POLL_MS);
}

async function poll() {
  const key = sessionStorage.getItem(KEY_NAME);
  if (!key) { showLogin(""); return; }
  try {
    const r = await fetchView(key);
    if (r.status === 401) {
      sessionStorage.removeItem(KEY_NAME);
      showLogin("The stack key changed: log in again.");
      return;
    }
    if (!r.ok) throw new Error(String(r.status));
    render(await r.json());
  } catch (e) {
    $("dashboard").classList.add("stale");
    const live = $("live");
    live.classList.add("stale");
    live.textContent = lastOk ? `front door not answering (last update ${clock(lastOk)})` : "front door not answering";
  }
  if ($("login").hidden) startPolling();
}

// --- rendering ----------------------------------------------------------------------

function fact(dl, name, value) {
  dl.append(el("dt", "", name), el("dd", "", value));
}

function memoryCell(t) {
  const dd = el("dd");
  if (t.planned_bytes === null || t.planned_bytes === undefined) {
    dd.textContent = t.rss_bytes ? `${gb(t.rss_bytes)} GB` : "-";
    return dd;
  }
  dd.append(document.createTextNode(`${gb(t.rss_bytes)} / ${gb(t.planned_bytes)} GB`));
  const bar = el("div", "bar");
  const share = t.rss_bytes ? t.rss_bytes / t.planned_bytes : 0;
  if (share > 1.1) bar.classList.add("over");
  const fill = el("span");
  fill.style.width = `${Math.min(100, Math.round(share * 100))}%`;
  bar.append(fill);
  dd.append(bar);
  return dd;
}

function tierCard(t, now, index) {
  const card = el("article", `tier state-${t.state_class || "other"}`);
  card.dataset.tier = t.name;
  card.dataset.state = t.state;
  const head = el("div", "tier-head");
  const name = el("h3", `s${index % 5}`, t.name);
  head.append(name, el("span", "state", t.state));
  card.append(head, el("div", "model", t.model || ""));
  const dl = el("dl", "facts");
  dl.append(el("dt", "", "memory / plan"), memoryCell(t));
  fact(dl, "requests/s", num(t.requests_per_s, 2));
  fact(dl, "TTFT p50", ms(t.ttft_p50_s));
  fact(dl, "tok/s", num(t.tokens_per_s, 1));
  fact(dl, "fallbacks in / out", `${t.fallbacks_in} / ${t.fallbacks_out}`);
  fact(dl, "errors", String(t.errors));
  fact(dl, "last restart", t.started_at ? ago(t.started_at, now) : "-");
  card.append(dl);
  if (t.detail) card.append(el("p", "detail", t.detail));
  return card;
}

function plot(node, times, tiers, field, now, span, format) {
  node.replaceChildren();
  // drawn in the element's own pixels, so text is never stretched
  const W = Math.max(200, Math.round(node.clientWidth || 600));
  const H = Math.max(100, Math.round(node.clientHeight || 180));
  const top = 10, bottom = 20;
  node.setAttribute("viewBox", `0 0 ${W} ${H}`);
  let max = 0;
  for (const s of Object.values(tiers)) for (const v of s[field]) if (v !== null && v > max) max = v;
  const ceiling = max > 0 ? max * 1.15 : 1;
  const y = (v) => top + (H - top - bottom) * (1 - v / ceiling);
  const x = (t) => W * (1 - (now - t) / span);
  for (const f of [0, 0.5, 1]) {
    const gy = y(ceiling * f);
    node.append(svg("line", { x1: 0, x2: W, y1: gy, y2: gy, class: "grid" }));
  }
  const label = svg("text", { x: 4, y: top + 12 });
  label.textContent = max > 0 ? `max ${format(max)}` : "no requests yet";
  const left = svg("text", { x: 4, y: H - 4 });
  left.textContent = `-${Math.round(span / 60)} min`;
  const right = svg("text", { x: W - 4, y: H - 4, "text-anchor": "end" });
  right.textContent = "now";
  node.append(label, left, right);
  Object.entries(tiers).forEach(([name, s], i) => {
    let points = [];
    const flush = () => {
      if (points.length > 1) node.append(svg("polyline", { points: points.join(" "), class: `s${i % 5}` }));
      else if (points.length === 1) {
        const [px, py] = points[0].split(",");
        node.append(svg("circle", { cx: px, cy: py, r: 2.5, class: `s${i % 5}`, fill: "currentColor" }));
      }
      points = [];
    };
    s[field].forEach((v, k) => {
      if (v === null) { flush(); return; }
      points.push(`${x(times[k]).toFixed(1)},${y(v).toFixed(1)}`);
    });
    flush();
  });
}

function peerCard(p) {
  const cls = p.state === "up" ? "up" : p.state === "cooling" ? "down" : "other";
  const card = el("article", `tier peer state-${cls}`);
  card.dataset.peer = p.name;
  card.dataset.state = p.state;
  const head = el("div", "tier-head");
  head.append(el("h3", "", `peer ${p.name}`), el("span", "state", p.state));
  card.append(head, el("div", "model", p.url || ""));
  const dl = el("dl", "facts");
  fact(dl, "tiers", (p.tiers || []).join(", ") || "-");
  fact(dl, "under way", String(p.outstanding || 0));
  fact(dl, "answered", String(p.served || 0));
  card.append(dl);
  if (p.reason) card.append(el("p", "detail", p.reason));
  return card;
}

function render(v) {
  lastOk = v.now;
  $("dashboard").classList.remove("stale");
  const live = $("live");
  live.classList.remove("stale");
  live.textContent = `live, updated ${clock(v.now)}`;

  const tiers = $("tiers");
  tiers.replaceChildren(...v.tiers.map((t, i) => tierCard(t, v.now, i)));
  if (!v.tiers.length) tiers.append(el("p", "empty", "No tiers in this stack."));
  for (const p of v.peers || []) tiers.append(peerCard(p));

  const span = v.history_s || 900;
  plot($("plot-tokens"), v.history.t, v.history.tiers, "tokens_per_s", v.now, span, (m) => `${m.toFixed(1)} tok/s`);
  plot($("plot-ttft"), v.history.t, v.history.tiers, "ttft_p50_s", v.now, span, ms);
  $("legend").replaceChildren(...Object.keys(v.history.tiers).map((n, i) => el("span", `s${i % 5}`, n)));

  const dl = $("machine");
  dl.replaceChildren();
  const hw = v.hardware || {};
  fact(dl, "machine", hw.label || hw.chip || "-");
  fact(dl, "memory", hw.memory_gb ? `${hw.memory_gb} GB` : "-");
  if (hw.gpu_limit_bytes) fact(dl, "GPU working set", `${gb(hw.gpu_limit_bytes)} GB`);
  if (hw.bandwidth_gbs) fact(dl, "bandwidth", `${hw.bandwidth_gbs} GB/s`);
  const b = v.budget;
  fact(dl, "budget", b ? `${gb(b.planned_bytes)} GB planned of ${gb(b.bytes)} GB` : "-");
  const used = v.tiers.reduce((s, t) => s + (t.rss_bytes || 0), 0);
  fact(dl, "in use (tiers)", `${gb(used)} GB`);
  fact(dl, "front door up", ago(v.started_at, v.now).replace(" ago", ""));

  const events = $("events");
  events.replaceChildren();
  for (const e of v.events) {
    const li = el("li");
    const when = el("time", "", clock(e.at));
    when.dateTime = new Date(e.at * 1000).toISOString();
    const what = e.kind === "fallback" ? `${e.tier} → ${e.to || "nothing answered"}` : e.tier;
    const times = e.count > 1 ? ` (×${e.count})` : "";
    li.append(when, el("span", "kind", `${e.kind}: ${what}${times}`), document.createTextNode(e.reason || ""));
    events.append(li);
  }
  if (!v.events.length) events.append(el("li", "empty none", "None since the front door started."));
}

// --- start --------------------------------------------------------------------------

$("login-form").addEventListener("submit", login);
$("logout").addEventListener("click", logout);
if (sessionStorage.getItem(KEY_NAME)) {
  showDashboard();
  poll();
} else {
  showLogin("");
}
