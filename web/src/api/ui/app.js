// Sundial dashboard: one small script, no framework, no build step.
// Every page is rendered from /api/v1 (docs/api.md); writes go through the
// same API (and so through the control queue). ADR 0016 says why.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const main = () => $("#main");

// ---- elements -------------------------------------------------------------

// h("tag.class#id", {attr: v, onclick: f}, child, ...): an element.
function h(spec, attrs, ...children) {
  const m = spec.match(/^([a-z0-9]+)?((?:[.#][\w-]+)*)$/i);
  const el = document.createElement((m && m[1]) || "div");
  for (const part of ((m && m[2]) || "").match(/[.#][\w-]+/g) || []) {
    if (part[0] === ".") el.classList.add(part.slice(1)); else el.id = part.slice(1);
  }
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? "" : v);
    }
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// Replaces el's children, leaving out null, undefined and false.
function put(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

const svgNS = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function table(headers, rows, id) {
  return h("table", id ? { id } : null,
    h("thead", null, h("tr", null, headers.map((x) => typeof x !== "string" ? h("th", null, x)
      : h("th", x.endsWith(" ") ? { class: "num" } : null, x.trim())))),
    h("tbody", null, rows));
}

// ---- formatting -----------------------------------------------------------

function ago(iso) {
  if (!iso) return "—";
  const ms = Date.now() - Date.parse(iso);
  const a = Math.abs(ms), sign = ms < 0 ? "in " : "";
  const t = a < 60e3 ? `${Math.round(a / 1e3)}s` : a < 3600e3 ? `${Math.round(a / 60e3)}m`
    : a < 86400e3 ? `${Math.round(a / 3600e3)}h` : `${Math.round(a / 86400e3)}d`;
  return ms < 0 ? sign + t : t + " ago";
}
function when(iso) {
  if (!iso) return "—";
  return h("span", { title: iso }, iso.replace("T", " ").replace(/\.\d+Z$/, "Z"), " ",
    h("span.muted", null, `(${ago(iso)})`));
}
function dur(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60e3) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60e3)}m ${Math.round((ms % 60e3) / 1000)}s`;
}
const outcome = (o) => h(`span.pill.o-${o}`, null, o);
const enc = encodeURIComponent;

// ---- API ------------------------------------------------------------------

const token = {
  get: () => sessionStorage.getItem("sundial-token") || "",
  set: (t) => t ? sessionStorage.setItem("sundial-token", t) : sessionStorage.removeItem("sundial-token"),
};

class ApiError extends Error {
  constructor(status, field, message) {
    super(field ? `${field}: ${message}` : message);
    this.status = status; this.field = field;
  }
}

// Whether the API answers. While it does not, pages keep what they show,
// a banner says since when, and a retry asks /status every 3 s; when it
// answers again, a page that could not load is loaded again.
const link = { down: null, retry: null, reload: false };
function reachable(ok) {
  const banner = $("#offline");
  if (ok) {
    if (!link.down) return;
    link.down = null;
    clearInterval(link.retry);
    banner.hidden = true;
    if (link.reload && $("#modal").hidden) { link.reload = false; route(); }
    return;
  }
  if (!link.down) {
    link.down = new Date();
    link.retry = setInterval(() => { api("/status").catch(() => {}); }, 3000);
  }
  put(banner, `Sundial is unreachable since ${link.down.toLocaleTimeString()} — retrying every 3 s; the page shows the last data it had.`);
  banner.hidden = false;
}

async function api(path, opts = {}) {
  const headers = { Accept: "application/json" };
  if (token.get()) headers.Authorization = `Bearer ${token.get()}`;
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  let r;
  try {
    r = await fetch(`/api/v1${path}`, {
      method: opts.method || "GET", headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    });
  } catch (e) {
    reachable(false);
    throw new ApiError(0, null, `Sundial is unreachable (${e.message})`);
  }
  let body = null;
  try { body = await r.json(); } catch (_) { /* not JSON */ }
  // A proxy in front says the scheduler is away (Sundial's own 504, "no
  // reply from a scheduler", comes with its error body).
  if ((r.status === 502 || r.status === 504) && !(body && body.error)) {
    reachable(false);
    throw new ApiError(0, null, `Sundial is unreachable (HTTP ${r.status} from the proxy)`);
  }
  reachable(true);
  if (!r.ok) {
    const e = (body && body.error) || {};
    if (r.status === 401) askToken(e.message);
    throw new ApiError(r.status, e.field, e.message || `HTTP ${r.status}`);
  }
  return body;
}

// Shows `text` for a while; `href` adds a link to what it is about.
function toast(text, bad, href) {
  const t = $("#toast");
  put(t, text, href ? [" ", h("a#toast-link", { href }, "open")] : null);
  t.className = bad ? "toast bad" : "toast";
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, bad ? 8000 : 3500);
}

// ---- dialogs --------------------------------------------------------------

// Shows a dialog; resolves with the field values on OK, null on Cancel.
// `run(values)` may throw to keep the dialog open with the error shown.
function dialog({ title, text, fields = [], ok = "OK", danger = false, run }) {
  return new Promise((resolve) => {
    const modal = $("#modal"), form = $("#modal-form"), err = $("#modal-error");
    $("#modal-title").textContent = title;
    $("#modal-text").textContent = text || "";
    const box = $("#modal-fields");
    put(box, ...fields.map((f) => h("div", null,
      h("label", { for: `field-${f.name}` }, f.label),
      f.options
        ? h("select", { id: `field-${f.name}`, name: f.name }, f.options.map((o) => h("option", { value: o }, o)))
        : h(f.multiline ? "textarea" : "input", {
          id: `field-${f.name}`, name: f.name, type: f.type || "text", value: f.value || "",
          placeholder: f.placeholder || "", required: f.required, rows: f.multiline ? 3 : null,
        }))));
    const okButton = $("#modal-ok"), cancel = $("#modal-cancel");
    okButton.textContent = ok;
    okButton.className = danger ? "danger" : "primary";
    // A destructive button is never the default one: Enter does not press
    // it, and Cancel has the focus.
    okButton.type = danger ? "button" : "submit";
    okButton.onclick = danger ? () => form.requestSubmit() : null;
    err.hidden = true;
    const opener = document.activeElement;
    modal.hidden = false;
    // A destructive dialog starts on Cancel, even with fields to fill.
    const first = box.querySelector("input, textarea, select");
    (danger ? cancel : first || okButton).focus();
    // Esc closes; Tab stays inside the dialog.
    const keys = (ev) => {
      if (ev.key === "Escape") { ev.preventDefault(); close(null); return; }
      // Enter in a field of a destructive dialog submits nothing.
      if (ev.key === "Enter" && danger && ev.target.tagName === "INPUT") { ev.preventDefault(); return; }
      if (ev.key !== "Tab") return;
      const items = [...form.querySelectorAll("input, select, textarea, button")].filter((x) => !x.disabled);
      const at = items.indexOf(document.activeElement);
      const next = ev.shiftKey ? (at <= 0 ? items.length - 1 : at - 1) : (at === items.length - 1 ? 0 : at + 1);
      ev.preventDefault();
      items[next].focus();
    };
    modal.addEventListener("keydown", keys);
    const close = (v) => {
      modal.hidden = true;
      form.onsubmit = null; cancel.onclick = null; okButton.onclick = null;
      modal.removeEventListener("keydown", keys);
      if (opener && opener.focus && document.contains(opener)) opener.focus();
      resolve(v);
    };
    cancel.onclick = () => close(null);
    form.onsubmit = async (ev) => {
      ev.preventDefault();
      const values = {};
      for (const f of fields) values[f.name] = form.elements[f.name].value.trim();
      const missing = fields.find((f) => f.required && !values[f.name]);
      if (missing) { err.textContent = `${missing.label} is required`; err.hidden = false; return; }
      okButton.disabled = true;
      try {
        const result = run ? await run(values) : values;
        close(result === undefined ? values : result);
      } catch (e) {
        err.textContent = e.message; err.hidden = false;
      } finally { okButton.disabled = false; }
    };
  });
}

function askToken(why) {
  if (askToken.open) return;
  askToken.open = true;
  dialog({
    title: "API token",
    text: why || "This endpoint asks for a token (http.tokens).",
    fields: [{ name: "token", label: "Bearer token", type: "password", value: token.get() }],
    ok: "Use token",
  }).then((v) => {
    askToken.open = false;
    if (v) { token.set(v.token); route(); }
  });
}

// ---- job actions ----------------------------------------------------------

const actions = {
  async pause(id) {
    return dialog({
      title: `Pause ${id}`,
      text: "It fires nothing until resumed. The reason is stored and shown to everyone.",
      fields: [{ name: "reason", label: "Reason", required: true, multiline: true, placeholder: "why, and who to ask" }],
      ok: "Pause",
      run: async (v) => {
        await api(`/jobs/${enc(id)}/pause`, { method: "POST", body: { reason: v.reason } });
        toast(`${id} paused`);
        return v;
      },
    });
  },
  async resume(id) {
    return dialog({
      title: `Resume ${id}`, text: "Its misfire policy decides about the occurrences missed while paused.", ok: "Resume",
      fields: [{ name: "reason", label: "Reason (optional)", placeholder: "why, for the audit trail" }],
      run: async (v) => {
        await api(`/jobs/${enc(id)}/resume`, { method: "POST", body: v.reason ? { reason: v.reason } : {} });
        toast(`${id} resumed`);
      },
    });
  },
  async trigger(id) {
    return dialog({
      title: `Trigger ${id}`,
      text: "Fire it now, outside its schedule, with its own fire id (a workflow: one whole occurrence). The history records the payload, the reason and who asked.",
      fields: [
        { name: "payload", label: "Payload (JSON; empty: the job's own)", multiline: true, placeholder: '{"date": "2026-12-04"}' },
        { name: "reason", label: "Reason (optional)", placeholder: "why, for the history" },
      ],
      ok: "Trigger",
      run: async (v) => {
        const body = {};
        if (v.payload) {
          try { body.payload = JSON.parse(v.payload); } catch (e) { throw new Error(`Payload: not JSON (${e.message})`); }
        }
        if (v.reason) body.reason = v.reason;
        const r = await api(`/jobs/${enc(id)}/trigger`, { method: "POST", body });
        toast(`fired ${r.result.fire_id}`, false, `#/run/${enc(r.result.fire_id)}`);
      },
    });
  },
  // Asks for the window, shows how many runs it will fire (a dry run),
  // and fires them only once that is confirmed.
  async backfill(id) {
    const asked = await dialog({
      title: `Backfill ${id}`,
      text: "Fire every occurrence of a past window [from, to), each as its own fire (ID@backfill:OCCURRENCE). A time is a duration ago (6h, 2d, 0s = now) or RFC 3339. The next step shows how many runs that is.",
      fields: [
        { name: "from", label: "From", value: "1h", required: true, placeholder: "6h, or 2026-12-01T00:00:00Z" },
        { name: "to", label: "To (at most now)", value: "0s", required: true, placeholder: "0s = now" },
        { name: "overlap", label: "Overlap", options: ["(the job's)", "allow", "forbid", "replace"] },
        { name: "reason", label: "Reason (optional)", placeholder: "why, for the audit trail" },
      ],
      ok: "Count the runs…",
      run: async (v) => {
        const body = { from: v.from, to: v.to, dry_run: true };
        if (v.overlap !== "(the job's)") body.overlap = v.overlap;
        if (v.reason) body.reason = v.reason;
        const r = await api(`/jobs/${enc(id)}/backfill`, { method: "POST", body });
        return { body, plan: r.result };
      },
    });
    if (!asked) return null;
    const { body, plan } = asked;
    if (!plan.fired) { toast(`no occurrence of ${id} in that window`, true); return null; }
    return dialog({
      title: `Fire ${plan.fired} run${plan.fired === 1 ? "" : "s"} of ${id}?`,
      text: `${plan.occurrences} occurrence${plan.occurrences === 1 ? "" : "s"} in the window; overlap ${plan.overlap} fires ${plan.fired}` +
        `${plan.skipped ? ` and skips ${plan.skipped}` : ""}: from ${plan.first} to ${plan.last}.`,
      ok: `Fire ${plan.fired}`,
      run: async () => {
        const r = await api(`/jobs/${enc(id)}/backfill`, { method: "POST", body: { ...body, dry_run: false } });
        toast(`backfill: ${r.result.fired} fired, ${r.result.skipped} skipped by overlap`, false, `#/runs?job=${enc(id)}&since=1h`);
      },
    });
  },
};

function jobButtons(j, after) {
  const act = (name, label, cls) => h(`button.${name}${cls ? "." + cls : ""}`, {
    type: "button", dataset: { id: j.id },
    onclick: async () => { if (await actions[name](j.id)) after(); },
  }, label);
  return h("span.actions", null,
    j.paused ? act("resume", "Resume") : act("pause", "Pause"),
    act("trigger", "Trigger"));
}

// ---- workflows ------------------------------------------------------------

// The occurrence a fire id belongs to: a step's fire id is
// `{occurrence}/{step}`, `…/{step}#{k}/{n}` or `…/{step}@{worker}`, and job
// ids hold no `/`.
const occurrenceOf = (fireId) => fireId.split("/")[0];

// Each step's stage: 1 + the deepest stage it waits for (the graph is
// acyclic: the scheduler refuses cycles at upsert).
function stages(steps) {
  const at = new Map(steps.map((st) => [st.id, 1]));
  for (let pass = 0; pass < steps.length; pass++) {
    for (const st of steps) {
      const deepest = Math.max(0, ...st.after.map((a) => at.get(a) || 0)) + 1;
      at.set(st.id, Math.max(at.get(st.id), deepest));
    }
  }
  return at;
}

// Each step's state in one occurrence, from the rows of `/runs/{occ}`
// (oldest first, so a later attempt or replay of a fire wins): `pending`
// (nothing ran yet), `running` (a fire runs or retries, or shards are still
// to come), `succeeded`, `dead`, `failed` (a fire failed for good without
// being dead-lettered: stopped by a cancellation) or `skipped`; with its
// fires' latest rows.
function stepStates(steps, occ, rows) {
  const latest = new Map();
  for (const r of rows) if (r.fire_id.startsWith(`${occ}/`)) latest.set(r.fire_id.slice(occ.length + 1), r);
  const out = new Map();
  for (const st of steps) {
    const fires = [...latest].filter(([k]) => k === st.id || k.startsWith(`${st.id}#`) || k.startsWith(`${st.id}@`))
      .map(([unit, row]) => ({ unit, row }));
    const o = fires.map((f) => f.row.outcome === "failed" && f.row.retried ? "running" : f.row.outcome);
    let state = "pending";
    if (o.includes("dead")) state = "dead";
    else if (o.includes("running")) state = "running";
    else if (o.includes("failed")) state = "failed";
    else if (o.length && o.every((x) => x === "skipped")) state = "skipped";
    else if (o.length && o.every((x) => x === "succeeded") && (st.every_worker || o.length >= st.shards)) state = "succeeded";
    else if (o.length) state = "running";
    out.set(st.id, { state, fires });
  }
  return out;
}

// The steps as a graph, one column per stage, edges from the steps each
// waits for (solid: when success; dashed: failure; dotted: done); each
// step coloured by its state in `states` (a Map, or null: no occurrence).
function stepGraph(steps, states, id) {
  const stage = stages(steps);
  const cols = new Map();
  for (const st of steps) {
    const c = stage.get(st.id);
    if (!cols.has(c)) cols.set(c, []);
    cols.get(c).push(st);
  }
  const NW = 150, NH = 46, GX = 60, GY = 14, pad = 8;
  // An edge over more than one stage arcs above the nodes it would cross,
  // higher the further it goes.
  const span = (st, a) => stage.get(st.id) - stage.get(a);
  const lift = (n) => 14 + 12 * n;
  const longest = Math.max(0, ...steps.flatMap((st) => st.after.map((a) => span(st, a))).filter((n) => n > 1));
  const top0 = pad + (longest ? lift(longest) : 0);
  const rowsMax = Math.max(...[...cols.values()].map((c) => c.length));
  const W = pad * 2 + cols.size * NW + (cols.size - 1) * GX, H = top0 + pad + rowsMax * NH + (rowsMax - 1) * GY;
  const pos = new Map();
  for (const [c, list] of cols) {
    const top = top0 + ((rowsMax - list.length) * (NH + GY)) / 2;
    list.forEach((st, i) => pos.set(st.id, { x: pad + (c - 1) * (NW + GX), y: top + i * (NH + GY) }));
  }
  const svg = s("svg", { class: "steps", id, viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": "workflow steps" });
  for (const st of steps) {
    for (const a of st.after) {
      const from = pos.get(a), to = pos.get(st.id);
      if (!from || !to) continue;
      const n = span(st, a), cls = `w-${st.when}`, title = s("title", {}, `${st.id} after ${a} (when ${st.when})`);
      if (n > 1) {
        const x1 = from.x + NW * 0.7, y1 = from.y, x2 = to.x + NW * 0.3, y2 = to.y, up = Math.min(y1, y2) - lift(n);
        svg.append(s("path", { class: `edge ${cls}`, d: `M${x1},${y1} C${x1},${up} ${x2},${up} ${x2},${y2 - 4}` }, title));
        svg.append(s("path", { class: `arrow ${cls}`, d: `M${x2 - 4},${y2 - 8} L${x2},${y2} L${x2 + 4},${y2 - 8}` }));
      } else {
        const x1 = from.x + NW, y1 = from.y + NH / 2, x2 = to.x, y2 = to.y + NH / 2, mx = (x1 + x2) / 2;
        svg.append(s("path", { class: `edge ${cls}`, d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2 - 4},${y2}` }, title));
        svg.append(s("path", { class: `arrow ${cls}`, d: `M${x2 - 8},${y2 - 4} L${x2},${y2} L${x2 - 8},${y2 + 4}` }));
      }
    }
  }
  for (const st of steps) {
    const p = pos.get(st.id), info = states && states.get(st.id);
    const state = info ? info.state : "none";
    const fan = st.every_worker ? "every worker" : st.shards > 1 ? `${st.shards} shards` : "";
    const done = info ? info.fires.filter((f) => f.row.outcome === "succeeded").length : 0;
    const sub = [fan, info && (st.shards > 1 || st.every_worker) ? `${done} ok` : "", st.when !== "success" ? `when ${st.when}` : "", st.pool || ""]
      .filter(Boolean).join(" · ");
    svg.append(s("g", { class: `step s-${state}`, "data-step": st.id, "data-state": state },
      s("title", {}, `${st.id}: ${info ? state : "no occurrence yet"}${st.after.length ? ` (after ${st.after.join(", ")})` : ""}`),
      s("rect", { x: p.x, y: p.y, width: NW, height: NH, rx: 6 }),
      s("text", { x: p.x + 10, y: p.y + 19, class: "id" }, st.id.length > 20 ? `${st.id.slice(0, 19)}…` : st.id),
      s("text", { x: p.x + 10, y: p.y + 36, class: "sub" }, sub || (info ? state : "\u00a0"))));
  }
  return h("div.graph", null, svg);
}

// A strip of step states (in stage order), linked to the occurrence.
function stepStrip(steps, occ, states) {
  const stage = stages(steps);
  const order = steps.slice().sort((a, b) => stage.get(a.id) - stage.get(b.id));
  return h("a.strip", { href: `#/run/${enc(occ)}`, title: `last occurrence ${occ}` },
    order.map((st) => h(`span.s-${states.get(st.id).state}`, { title: `${st.id}: ${states.get(st.id).state}`, dataset: { step: st.id } })));
}

// The latest occurrence of workflow `j` and its rows, or null.
async function lastOccurrence(j) {
  const page = await api(`/jobs/${enc(j.id)}/runs?limit=1`);
  if (!page.runs.length) return null;
  const occ = occurrenceOf(page.runs[0].fire_id);
  const fire = await api(`/runs/${enc(occ)}`);
  return { occ, rows: fire.runs, states: stepStates(j.steps, occ, fire.runs) };
}

// ---- pages ----------------------------------------------------------------

// `e`'s message; a page that could not load for want of the API is loaded
// again once it answers.
function broke(e) {
  if (e && e.status === 0) link.reload = true;
  return e.message;
}

let timers = [];
// Calls `f` every `ms` while `anchor` is on the page: a page left behind
// stops its timers, also one whose first load finished after the next
// page was shown.
function every(anchor, ms, f) {
  const t = setInterval(() => {
    if (!document.contains(anchor)) { clearInterval(t); return; }
    f();
  }, ms);
  timers.push(t);
}

// The Overview, drawn into `view` (a refresh: drawn in place once its data
// is in, nothing blanks, the scroll stays; or not at all when it fails).
// Returns its view.
async function overview(view) {
  const again = !!view;
  if (!view) {
    view = h("div#overview", null, h("h1", null, "Overview"), h("p.muted", null, "loading…"));
    put(main(), view);
  }
  const root = h("div");
  // The 7-day trend is asked again every 5 minutes, not every refresh.
  const stale = !overview.hours || Date.now() - overview.hours.at > 300e3;
  const [st, pm, open, ph] = await Promise.all([
    api("/status"),
    api("/runs/per-minute?since=1h").catch(() => null),
    api("/alerts?open=true&since=24h&limit=1000").catch(() => null),
    stale ? api("/runs/per-hour?since=7d").catch(() => null) : overview.hours.data,
  ]);
  if (stale && ph) overview.hours = { at: Date.now(), data: ph };
  const owners = [...new Set(st.shards.map((x) => x.owner).filter(Boolean))];
  const palette = ["#c2410c", "#1d4ed8", "#15803d", "#7c3aed", "#be185d", "#0e7490", "#a16207", "#4d7c0f"];
  const color = (o) => palette[owners.indexOf(o) % palette.length];
  const unowned = st.shards.filter((x) => !x.owner).length;
  const maxLag = Math.max(0, ...st.shards.map((x) => x.lag_ms || 0));
  const queued = st.pools.reduce((a, p) => a + p.queued, 0);
  const dead = st.pools.reduce((a, p) => a + p.dead, 0);
  const card = (n, l, cls) => h(`div.card${cls ? "." + cls : ""}`, null, h("div.n", null, n), h("div.l", null, l));
  const runs = pm ? pm.minutes.reduce((a, m) => a + m.runs, 0) : null;
  const failed = pm ? pm.minutes.reduce((a, m) => a + m.failed, 0) : null;
  put(root, 
    h("h1", null, "Overview"),
    h("div.cards#overview-cards", null,
      card(st.nodes.length, "scheduler nodes"),
      card(`${st.shards.length - unowned}/${st.shards.length}`, "shards owned", unowned ? "error" : null),
      card(`${(maxLag / 1000).toFixed(1)} s`, "max watermark lag"),
      card(queued, "fires queued"),
      card(dead, "dead letters", dead ? "error" : null),
      card(runs === null ? "—" : runs, "runs, last hour"),
      card(failed === null ? "—" : failed, "failures, last hour", failed ? "error" : null),
      h("a.card-link", { href: "#/alerts" }, card(open === null ? "—" : open.alerts.length, "open alerts, 24 h", open && open.alerts.length ? "error" : null))),
    h("h2", null, "Runs and failures per minute (last hour)"),
    pm ? rateChart(pm.minutes, "minute", 60e3, 60, { id: "minute-chart", label: "runs per minute", ends: ["-60 min", "now"] })
      : h("p.muted", null, "no history index on this process"),
    ph ? [h("h2", null, "Runs and failures per hour (last 7 days)"),
      rateChart(ph.hours, "hour", 3600e3, 168, { id: "hour-chart", label: "runs per hour, 7 days", ticks: true })] : null,
    h("div.two", null,
      h("div", null,
        h("h2", null, "Nodes"),
        table(["node", "broker", "shards ", "heartbeat", "version", "unroutable "], st.nodes.map((n) => h("tr", null,
          h("td", null, h("span.pill", { dataset: {} }, n.node)), h("td", null, n.broker || "—"),
          h("td.num", null, n.owned.length), h("td", null, `${(n.last_heartbeat_ms / 1000).toFixed(1)} s ago`),
          h("td", null, n.version), h("td.num", null, n.unroutable))), "nodes-table"),
        h("h2", null, "Workers"),
        (st.workers || []).length
          ? table(["worker", "pool", "broker", "running ", "heartbeat", "version"], st.workers.map((w) => h("tr", null,
            h("td", null, w.worker), h("td", null, w.pool), h("td", null, w.broker || "—"),
            h("td.num", null, `${w.running}/${w.concurrency}`),
            h("td", null, `${(w.last_heartbeat_ms / 1000).toFixed(1)} s ago`), h("td", null, w.version))), "workers-table")
          : h("p.muted", null, "no worker heard"),
        h("h2", null, "Pools"),
        table(["pool", "queued ", "workers ", "dead letters ", ""], st.pools.map((p) => h("tr", null,
          h("td", null, p.pool), h("td.num", null, p.queued), h("td.num", null, p.workers),
          h("td.num", null, p.dead ? h("a", { href: `#/dead?pool=${enc(p.pool)}` }, p.dead) : "0"),
          h("td", null, p.missing_queues ? h("span.error", null, `${p.missing_queues} queues missing`) : ""))), "pools-table")),
      h("div", null,
        h("h2", null, "Shards"),
        h("div.legend", null, owners.map((o) => {
          const sp = h("span", null, o); sp.style.setProperty("--c", color(o)); return sp;
        }), unowned ? (() => { const sp = h("span", null, "unowned"); sp.style.setProperty("--c", "#9ca3af"); return sp; })() : null),
        h("div.grid#shard-grid", null, st.shards.map((x) => {
          const el = h(`div.shard${x.owner ? "" : ".none"}`, {
            title: `shard ${x.shard}: ${x.owner || "unowned"}, epoch ${x.epoch ?? "—"}, lag ${x.lag_ms ?? "—"} ms`,
          }, x.shard);
          if (x.owner) el.style.background = color(x.owner);
          return el;
        })))),
    h("p.muted#overview-at", null, `as of ${st.at}`));
  const y = window.scrollY;
  put(view, root);
  if (again) window.scrollTo(0, y);
  return view;
}

// Runs and failures per period of `ms`, the last `n` periods up to now
// (`rows`: `{[key]: RFC 3339, runs, failed}`, periods without runs left
// out); under it either a time axis (`ticks`) or the labels `ends`.
function rateChart(rows, key, ms, n, { id, label, ticks, ends }) {
  const W = 720, H = 150, pad = 24, base = H - pad;
  const now = Math.floor(Date.now() / ms) * ms, from = now - (n - 1) * ms;
  const by = new Map(rows.map((m) => [Date.parse(m[key]), m]));
  const svg = s("svg", { class: "chart", id, viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img", "aria-label": label });
  const slots = Array.from({ length: n }, (_, i) => by.get(from + i * ms) || { runs: 0, failed: 0 });
  const max = Math.max(1, ...slots.map((m) => m.runs));
  const bw = (W - pad - 6) / n;
  if (ticks) {
    for (const tick of timeTicks(from, now + ms)) {
      const tx = pad + ((tick.t - from) / (n * ms)) * (W - pad - 6);
      svg.append(s("line", { x1: tx, x2: tx, y1: 4, y2: base, class: "grid" }), s("text", { x: tx - 14, y: H - 8 }, tick.label));
    }
  } else {
    svg.append(s("text", { x: pad, y: H - 6 }, ends[0]), s("text", { x: W - 30, y: H - 6 }, ends[1]));
  }
  slots.forEach((m, i) => {
    const hr = (m.runs / max) * (base - 8), hf = (m.failed / max) * (base - 8);
    if (m.runs) svg.append(s("rect", { x: pad + i * bw, y: base - hr, width: Math.max(1, bw - 1), height: hr, fill: "#fdba74" },
      s("title", {}, `${new Date(from + i * ms).toLocaleString()}: ${m.runs} runs, ${m.failed} failed`)));
    if (m.failed) svg.append(s("rect", { x: pad + i * bw, y: base - hf, width: Math.max(1, bw - 1), height: hf, fill: "#b91c1c" }));
  });
  svg.append(s("line", { x1: pad, x2: W - 6, y1: base, y2: base, class: "axis" }), s("text", { x: 2, y: 12 }, max));
  return svg;
}

async function jobsPage(params) {
  const q = params.get("q") || "", pool = params.get("pool") || "", paused = params.get("paused") || "";
  const label = params.get("label") || "";
  const sort = params.get("sort") || "id", cursor = params.get("cursor") || "";
  const search = h("input#search", { type: "search", placeholder: "search job ids…", value: q, "aria-label": "search" });
  const poolSel = h("select#pool-filter", { "aria-label": "pool" }, h("option", { value: "" }, "all pools"));
  const pausedSel = h("select#paused-filter", { "aria-label": "paused" },
    h("option", { value: "" }, "running and paused"), h("option", { value: "false" }, "running"), h("option", { value: "true" }, "paused"));
  pausedSel.value = paused;
  const sortSel = h("select#sort", { "aria-label": "sort" }, h("option", { value: "id" }, "sort by id"), h("option", { value: "next" }, "sort by next fire"));
  sortSel.value = sort;
  const failingBox = h("input#failing-filter", { type: "checkbox", checked: params.get("failing") === "1" });
  // Filters redraw the list in place (the search box keeps its focus and
  // what is typed meanwhile) and replace the history entry instead of
  // adding one per keystroke.
  let at = cursor, seq = 0;
  const go = (extra = {}) => {
    at = extra.cursor || "";
    const p = new URLSearchParams();
    const v = { q: search.value.trim(), label, pool: poolSel.value, paused: pausedSel.value, sort: sortSel.value, failing: failingBox.checked ? "1" : "", cursor: at };
    for (const [k, x] of Object.entries(v)) if (x && !(k === "sort" && x === "id")) p.set(k, x);
    history.replaceState(null, "", `#/jobs${p.toString() ? "?" + p : ""}`);
    render();
  };
  let debounce;
  search.addEventListener("input", () => { clearTimeout(debounce); debounce = setTimeout(() => go(), 250); });
  for (const el of [poolSel, pausedSel, sortSel, failingBox]) el.addEventListener("change", () => go());
  const body = h("div", null, h("p.muted", null, "loading…"));
  put(main(), h("h1", null, "Jobs"), h("div.toolbar", null, search, poolSel, pausedSel, sortSel,
    h("label", { title: "jobs with failed or dead runs in the last 24 h" }, failingBox, " failing (24 h)"),
    label ? h("span.chip.on#label-filter", null, label, " ", h("a", { href: "#/jobs", title: "every label", "aria-label": "clear the label filter" }, "×")) : null,
    label ? h("a#label-runs", { href: `#/runs?label=${enc(label)}` }, "their runs") : null), body);
  let poolsLoaded = false;
  api("/status").then((st) => {
    for (const p of st.pools) poolSel.append(h("option", { value: p.pool }, p.pool));
    poolSel.value = pool;
    poolsLoaded = true;
  }).catch(() => { if (pool) { poolSel.append(h("option", { value: pool }, pool)); poolSel.value = pool; } poolsLoaded = true; });
  const render = async () => {
    const mine = ++seq;
    if (failingBox.checked) {
      let f;
      try { f = await api("/runs/failing?since=24h&limit=500"); } catch (e) { if (mine === seq) put(body, h("p.error", null, e.message)); return; }
      if (mine !== seq) return;
      const qv = search.value.trim().toLowerCase();
      drawFailing(f.jobs.filter((j) => !qv || j.job_id.toLowerCase().includes(qv)));
      return;
    }
    const qs = new URLSearchParams({ limit: "50" });
    const [qv, pv, pa, so] = [search.value.trim(), poolsLoaded ? poolSel.value : pool, pausedSel.value, sortSel.value];
    if (qv) qs.set("q", qv); if (pv) qs.set("pool", pv); if (pa) qs.set("paused", pa); if (label) qs.set("label", label);
    if (so !== "id") qs.set("sort", so); if (at) qs.set("cursor", at);
    let page;
    try { page = await api(`/jobs?${qs}`); } catch (e) { if (mine === seq) put(body, h("p.error", null, e.message)); return; }
    // An older answer that arrives after a newer search is dropped.
    if (mine !== seq) return;
    draw(page);
  };
  // Jobs that failed in the last 24 h: how often, when last, whether they
  // recovered since, and their last 10 runs.
  const drawFailing = (jobs) => {
    put(body,
      h("p.muted#job-count", null, `${jobs.length} job${jobs.length === 1 ? "" : "s"} failed in the last 24 h`,
        label || poolSel.value || pausedSel.value ? " (the pool, label and paused filters do not apply here)" : ""),
      jobs.length ? table(["id", "failures, 24 h ", "last failure", "now", "last 10"], jobs.map((j) => h("tr", { dataset: { id: j.job_id } },
        h("td", null, h("a.job-link", { href: `#/job/${enc(j.job_id)}` }, j.job_id)),
        h("td.num.failures", null, j.failed >= 1000 ? "1000+" : j.failed),
        h("td", { title: j.last_failure }, ago(j.last_failure)),
        h("td", null, j.last_outcome === "failed" || j.last_outcome === "dead" ? h("strong.o-failed", null, "failing") : outcome(j.last_outcome)),
        h("td.last10", null))), "failing-table") : h("p.muted#failing-empty", null, "No job failed in the last 24 h."));
    fillRecent(jobs.map((j) => j.job_id));
  };
  // The last run, failures in 24 h and the last 10 runs of the jobs shown
  // (one request for the page; a process without an index leaves "—").
  const fillRecent = (ids) => {
    if (!ids.length) return;
    const qs = new URLSearchParams({ n: "10", since: "24h" });
    for (const id of ids.slice(0, 100)) qs.append("job", id);
    api(`/runs/recent?${qs}`).then((r) => {
      for (const j of r.jobs) {
        const row = body.querySelector(`tr[data-id="${CSS.escape(j.job_id)}"]`);
        if (!row) continue;
        const last = j.runs[0];
        const lastCell = row.querySelector("td.last-run");
        if (lastCell) put(lastCell, last ? [outcome(last.outcome), h("div.muted", { title: last.at }, ago(last.at))] : h("span.muted", null, "never ran"));
        const fails = row.querySelector("td.fail24");
        if (fails) put(fails, j.failed ? h("strong.o-failed", null, j.failed >= 1000 ? "1000+" : j.failed) : "0");
        const strip = row.querySelector("td.last10");
        if (strip) put(strip, h("a.strip", { href: `#/runs?job=${enc(j.job_id)}`, title: "the last 10 runs, oldest first" },
          j.runs.slice().reverse().map((r) => h(`span.s-${r.outcome === "failed" && r.retried ? "running" : r.outcome}`, { title: `${r.fire_id} #${r.attempt}: ${r.outcome}` }))));
      }
    }).catch(() => {});
  };
  const draw = (page) => {
    const reload = () => route();
    const rows = page.jobs.map((j) => h("tr", { dataset: { id: j.id } },
      h("td", null, h("a.job-link", { href: `#/job/${enc(j.id)}` }, j.id),
        Object.keys(j.labels || {}).length ? h("div.chips", null, Object.entries(j.labels).map(([k, v]) =>
          h("a.chip", { href: `#/jobs?label=${enc(`${k}=${v}`)}`, title: `jobs with ${k}=${v}` }, `${k}=${v}`))) : null,
        (j.steps || []).length ? h("div.last-occurrence", { dataset: { id: j.id } }) : null),
      h("td", null, h("code", null, j.schedule)), h("td", null, j.timezone), h("td", null, j.pool),
      h("td.state", null, j.paused ? h("span.paused", { title: j.paused_reason || "" }, "paused",
        j.paused_reason || j.paused_by ? h("div.muted.reason", null, [j.paused_by, j.paused_reason].filter(Boolean).join(": ")) : null) : "active"),
      h("td", null, j.next ? when(j.next) : "—"),
      h("td.last-run", null, "—"), h("td.num.fail24", null, "—"), h("td.last10", null),
      h("td", null, jobButtons(j, reload))));
    put(body, 
      h("p.muted#job-count", null, `${page.total} job${page.total === 1 ? "" : "s"} match`),
      table(["id", "schedule", "zone", "pool", "state", "next fire", "last run", "failures, 24 h ", "last 10", ""], rows, "jobs-table"),
      h("div.pager", null,
        at ? h("button", { type: "button", onclick: () => go({ cursor: "" }) }, "« first page") : null,
        page.next ? h("button#next-page", { type: "button", onclick: () => go({ cursor: page.next }) }, "next page »") : null));
    fillRecent(page.jobs.map((j) => j.id));
    // A workflow's last occurrence as a strip of step states, filled in as
    // the answers come (the page does not wait for them).
    for (const j of page.jobs.filter((x) => (x.steps || []).length)) {
      const box = body.querySelector(`.last-occurrence[data-id="${CSS.escape(j.id)}"]`);
      lastOccurrence(j).then((last) => {
        if (box && last) put(box, stepStrip(j.steps, last.occ, last.states));
      }).catch(() => {});
    }
  };
  await render();
}

// One job: its state, definition, next fires, SLO, alerts, who did what
// (the audit trail), durations and history. It follows its runs live: every
// 2 s while one runs or after a trigger, else every 10 s, redrawing only
// what changed (an open output stays open). A deleted job's page shows
// its history and audit trail.
async function jobPage(id) {
  const root = h("div", null, h("h1", null, id), h("p.muted", null, "loading…"));
  put(main(), root);
  let j;
  try { j = await api(`/jobs/${enc(id)}?next=10`); } catch (e) {
    if (e.status === 404) { await deletedJob(id, root); return; }
    put(root, h("h1", null, id), h("p.error", null, broke(e)));
    return;
  }
  const steps = j.steps || [];
  const [runs, summary, last, alerts, audit] = await Promise.all([
    api(`/jobs/${enc(id)}/runs?limit=50`).catch((e) => ({ error: e.message, runs: [] })),
    api(`/jobs/${enc(id)}/summary?since=7d`).catch(() => null),
    steps.length ? lastOccurrence(j).catch(() => null) : null,
    api(`/alerts?job=${enc(id)}&since=7d&limit=10`).catch(() => null),
    api(`/audit?job=${enc(id)}&limit=20`).catch(() => null),
  ]);
  const sla = j.job.sla;
  const grace = (j.job.misfire && j.job.misfire.grace) || "the default grace";
  const reload = () => route();
  const act = (name, label) => h(`button.${name}`, { type: "button", onclick: async () => {
    if (await actions[name](id)) { if (name === "trigger") jobPage.triggered = Date.now(); reload(); }
  } }, label);
  const history = h("section#job-history");
  const summaryBox = h("div#job-summary-box");
  // Durations over a chosen range, on a time axis.
  const range = h("select#duration-range", { "aria-label": "range" }, ["24h", "7d", "30d"].map((v) => h("option", { value: v }, `last ${v}`)));
  range.value = "7d";
  const chartBox = h("div");
  const drawDurations = async () => {
    const days = { "24h": 1, "7d": 7, "30d": 30 }[range.value];
    const to = Date.now(), from = to - days * 86400e3;
    let page;
    try { page = await api(`/jobs/${enc(id)}/runs?since=${range.value}&limit=1000`); } catch (_) { return; }
    put(chartBox, durationChart(page.runs, from, to),
      page.next ? h("p.muted", null, `The newest 1,000 runs of the last ${range.value}.`) : null);
  };
  range.addEventListener("change", drawDurations);
  const durations = h("section#job-durations", null, h("h2", null, "Durations ", range), chartBox);
  const auditBox = h("section#job-audit");
  put(root,
    h("h1.job-id", null, id, " ", j.paused ? h("span.pill.paused#job-state", null, "paused") : h("span.pill.o-succeeded#job-state", null, "active")),
    j.paused ? h("p.paused#pause-reason", null, `Paused ${j.paused_at ? ago(j.paused_at) : ""}${j.paused_by ? ` by ${j.paused_by}` : ""}${j.paused_reason ? `: ${j.paused_reason}` : ""}`) : null,
    h("div.toolbar", null, j.paused ? act("resume", "Resume") : act("pause", "Pause"), act("trigger", "Trigger"), act("backfill", "Backfill…"),
      h("button.danger", { type: "button", onclick: async () => {
        const ok = await dialog({ title: `Delete ${id}`, text: "The definition goes; its history and audit trail stay.", ok: "Delete", danger: true,
          fields: [{ name: "reason", label: "Reason (optional)", placeholder: "why, for the audit trail" }],
          run: async (v) => { await api(`/jobs/${enc(id)}`, { method: "DELETE", body: v.reason ? { reason: v.reason } : {} }); } });
        if (ok) { toast(`${id} deleted`); location.hash = "#/jobs"; }
      } }, "Delete")),
    steps.length ? h("section#job-steps", null, h("h2", null, "Steps"),
      h("p.muted", null, last ? ["Coloured by the last occurrence, ", h("a#last-occurrence", { href: `#/run/${enc(last.occ)}` }, last.occ), "."]
        : "No occurrence yet.", " Edges: solid when success, dashed when failure, dotted when done."),
      stepGraph(steps, last && last.states, "steps-graph")) : null,
    h("div.two", null,
      h("div", null,
        h("h2", null, "Definition"),
        h("dl.kv", null,
          h("dt", null, "schedule"), h("dd", null, h("code", null, j.schedule)),
          h("dt", null, "zone"), h("dd", null, j.timezone),
          h("dt", null, "pool"), h("dd", null, j.pool),
          h("dt", null, "created"), h("dd", null, when(j.created_at)),
          h("dt", null, "next"), h("dd", null, when(j.next)),
          h("dt", null, "SLO"), h("dd#job-slo", null, sla ? `succeeded within ${sla} of its scheduled time (else late); fired within ${grace} (else missed)`
            : `no sla: alerts on failed and missed (not fired within ${grace}) only`)),
        h("pre#job-definition", null, JSON.stringify(j.job, null, 2))),
      h("div", null,
        h("h2", null, j.paused ? "Next fires (once resumed)" : "Next fires"),
        h("div.scroll", null, table(["in its zone", "UTC", "DST note"], j.upcoming.map((o) => h("tr", null,
          h("td", null, o.local), h("td", null, h("span.muted", null, o.at)), h("td", null, o.note || ""))), "upcoming-table")),
        summaryBox)),
    alerts ? h("section#job-alerts", null, h("h2", null, "Recent alerts"),
      alerts.alerts.length ? h("div.scroll", null, alertsTable(alerts.alerts, "job-alerts-table", false)) : h("p.muted", null, "No alert in the last 7 days."),
      h("p", null, h("a#job-alerts-all", { href: `#/alerts?${new URLSearchParams({ all: "1", since: "7d", job: id })}` }, "every alert of this job"))) : null,
    auditBox,
    durations,
    history);
  drawSummary(summaryBox, summary);
  drawDurations();
  drawAudit(auditBox, audit);
  let shown = drawHistory(history, runs, null);
  // Live: the runs, their summary and the trail, redrawn when they change.
  let tick = 0;
  every(root, 2000, async () => {
    tick++;
    const running = (shown.runs || []).some((r) => r.outcome === "running" || (r.outcome === "failed" && r.retried));
    const fresh = Date.now() - (jobPage.triggered || 0) < 60e3;
    if (document.hidden || !$("#modal").hidden || !(running || fresh || tick % 5 === 0)) return;
    let page, trail;
    try {
      [page, trail] = await Promise.all([api(`/jobs/${enc(id)}/runs?limit=50`), api(`/audit?job=${enc(id)}&limit=20`).catch(() => null)]);
    } catch (_) { return; }
    const before = shown.key;
    shown = drawHistory(history, page, shown);
    if (shown.key !== before) {
      api(`/jobs/${enc(id)}/summary?since=7d`).then((x) => drawSummary(summaryBox, x)).catch(() => {});
      drawDurations();
    }
    const seen = trail ? trail.entries.map((e) => e.seq).join(",") : "";
    if (trail && seen !== auditBox.dataset.seen) drawAudit(auditBox, trail);
  });
}

// The rows of a runs page as one key: a redraw is due when it changes.
const runsKey = (runs) => runs.map((r) => `${r.fire_id}/${r.attempt}/${r.replay || ""}/${r.outcome}`).join("|");

// Draws a job's duration chart and history into `box` unless `page` holds
// what `before` showed; outputs that were open stay open.
function drawHistory(box, page, before) {
  const key = page.error ? `error:${page.error}` : runsKey(page.runs);
  if (before && before.key === key) return before;
  const open = new Set([...box.querySelectorAll("tr[data-fire]")].filter((tr) => tr.querySelector("details[open]"))
    .map((tr) => `${tr.dataset.fire}/${tr.dataset.attempt}`));
  put(box, h("h2", null, "History"), page.error ? h("p.error", null, page.error) : h("div.scroll", null, runsTable(page.runs, "history-table")));
  for (const tr of box.querySelectorAll("tr[data-fire]")) {
    const d = tr.querySelector("details");
    if (d && open.has(`${tr.dataset.fire}/${tr.dataset.attempt}`)) d.open = true;
  }
  return { key, runs: page.runs };
}

function drawSummary(box, summary) {
  put(box, summary ? [h("h2", null, "Last 7 days"), h("dl.kv#job-summary", null,
    h("dt", null, "runs"), h("dd", null, `${summary.runs} (${summary.succeeded} succeeded, ${summary.failed} failed)`),
    h("dt", null, "success rate"), h("dd", null, summary.success_rate === null || summary.success_rate === undefined ? "—" : `${(summary.success_rate * 100).toFixed(1)} %`),
    h("dt", null, "duration p50 / p95"), h("dd", null, `${dur(summary.p50_ms)} / ${dur(summary.p95_ms)}`),
    h("dt", null, "last success"), h("dd", null, when(summary.last_success)))] : null);
}

// Who did what to the job, newest first (ADR 0023): past pauses with
// their reasons and who paused stay here after a resume.
function drawAudit(box, audit) {
  if (!audit) { put(box); return; }
  box.dataset.seen = audit.entries.map((e) => e.seq).join(",");
  put(box, h("h2", null, "Who did what"),
    audit.entries.length ? h("div.scroll", null, table(["when", "action", "by", "reason", "detail"], audit.entries.map((e) =>
      h("tr", { dataset: { action: e.action } },
        h("td", { title: e.at }, ago(e.at)), h("td", null, e.action), h("td.by", null, e.by || "—"),
        h("td.reason", null, e.reason || ""), h("td.detail", null, e.detail || ""))), "audit-table"))
      : h("p.muted#audit-empty", null, "Nothing recorded yet (the audit trail starts with this release)."));
}

// A job that is not (any longer) in the registry: its history and trail.
async function deletedJob(id, root) {
  const [runs, audit] = await Promise.all([
    api(`/jobs/${enc(id)}/runs?limit=50`).catch((e) => ({ error: e.message, runs: [] })),
    api(`/audit?job=${enc(id)}&limit=20`).catch(() => null),
  ]);
  const gone = audit && audit.entries.find((e) => e.action === "delete");
  if (!runs.runs.length && !(audit && audit.entries.length)) {
    put(root, h("h1.job-id", null, id), h("p.error#not-found", null, `No job ${id}, and nothing in the history about it.`));
    return;
  }
  const history = h("section#job-history"), auditBox = h("section#job-audit");
  put(root, h("h1.job-id", null, id, " ", h("span.pill.o-cancelled#job-state", null, "deleted")),
    h("p.muted#deleted-note", null, gone ? `Deleted ${ago(gone.at)}${gone.by ? ` by ${gone.by}` : ""}${gone.reason ? `: ${gone.reason}` : ""}. ` : "Not in the registry (deleted). ",
      "Its history and audit trail stay."),
    auditBox, history);
  drawAudit(auditBox, audit);
  drawHistory(history, runs, null);
}

// Tick labels for a time axis over [from, to): 6 of them, as times of day
// within two days, else as dates.
function timeTicks(from, to) {
  const span = to - from, short = span <= 2 * 86400e3;
  const label = (t) => {
    const d = new Date(t), p2 = (n) => String(n).padStart(2, "0");
    return short ? `${p2(d.getHours())}:${p2(d.getMinutes())}` : `${p2(d.getMonth() + 1)}-${p2(d.getDate())}`;
  };
  return Array.from({ length: 6 }, (_, i) => from + (span * i) / 5).map((t) => ({ t, label: label(t) }));
}

// A job's runs over [from, to) on a time axis: a bar per finished attempt
// (its height the duration; green succeeded, red failed or dead), and a
// mark on the axis per skipped fire (overlap, duplicate, misfire).
function durationChart(runs, from, to) {
  const W = 720, H = 150, pad = 24, base = H - pad;
  const svg = s("svg", { class: "chart", id: "duration-chart", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img", "aria-label": "durations over time" });
  const x = (t) => pad + ((t - from) / Math.max(1, to - from)) * (W - pad - 6);
  const at = (r) => Date.parse(r.started_at || r.finished_at || r.scheduled_at);
  const done = runs.filter((r) => r.duration_ms !== null && r.duration_ms !== undefined && r.outcome !== "skipped");
  const skipped = runs.filter((r) => r.outcome === "skipped");
  const max = Math.max(1, ...done.map((r) => r.duration_ms));
  for (const tick of timeTicks(from, to)) {
    svg.append(s("line", { x1: x(tick.t), x2: x(tick.t), y1: 4, y2: base, class: "grid" }),
      s("text", { x: x(tick.t) - 14, y: H - 8 }, tick.label));
  }
  for (const r of done) {
    const hh = Math.max(1, (r.duration_ms / max) * (base - 8));
    svg.append(s("rect", { x: x(at(r)) - 1.5, y: base - hh, width: 3, height: hh, class: `bar o-${r.outcome}`,
      fill: r.outcome === "succeeded" ? "#15803d" : "#b91c1c" },
    s("title", {}, `${r.fire_id} attempt ${r.attempt}: ${r.outcome}, ${dur(r.duration_ms)}`)));
  }
  for (const r of skipped) {
    svg.append(s("path", { d: `M${x(at(r)) - 4},${base + 7} L${x(at(r))},${base + 1} L${x(at(r)) + 4},${base + 7} Z`, class: "skip", fill: "#a16207" },
      s("title", {}, `${r.fire_id}: skipped${r.reason ? ` (${r.reason})` : ""}`)));
  }
  svg.append(s("line", { x1: pad, x2: W - 6, y1: base, y2: base, class: "axis" }), s("text", { x: 2, y: 12 }, dur(max)));
  if (!done.length && !skipped.length) svg.append(s("text", { x: pad + 10, y: 30 }, "no runs in this range"));
  return svg;
}

function runsTable(runs, id) {
  return table(["started", "job", "attempt ", "outcome", "duration ", "worker", "reason / output"], runs.map((r) => {
    const out = r.output ? h("details", null, h("summary", null, "output"), h("pre", null, r.output)) : null;
    return h("tr", { dataset: { fire: r.fire_id, attempt: r.attempt } },
      h("td", null, when(r.started_at || r.scheduled_at)),
      h("td", null, h("a", { href: `#/job/${enc(r.job_id)}` }, r.job_id),
        h("div", null, h("a.fire-link.muted", { href: `#/run/${enc(r.fire_id)}` }, r.fire_id))),
      h("td.num", null, r.attempt), h("td", null, outcome(r.outcome), r.retried ? h("span.muted", null, " (retried)") : null,
        r.replay ? h("span.muted", { title: `replayed ${r.replay}` }, " (replay)") : null),
      h("td.num", null, dur(r.duration_ms)),
      h("td", null, r.worker && !r.worker.startsWith("(") ? h("a.worker-link", { href: `#/runs?worker=${enc(r.worker)}`, title: `runs on ${r.worker}` }, r.worker) : r.worker),
      h("td", null, r.reason ? h("div", null, r.reason) : null, out));
  }), id);
}

const alertKind = (k) => h(`span.pill.a-${k}`, null, k);

// An alert's state: open, resolved (by which), or what it resolves.
function alertState(a) {
  if (a.alert.kind === "resolved") return h("span.muted", null, `resolves ${(a.alert.resolves || []).length}`);
  if (a.resolved_by) return h("span.o-succeeded", { title: a.resolved_by }, "resolved");
  return h("strong.o-failed", null, "open");
}

function alertsTable(alerts, id, withJob = true) {
  return table(["raised", "kind", withJob ? "job / occurrence" : "occurrence", "state", "reason", "routes"], alerts.map((a) =>
    h(`tr${a.resolved_by || a.alert.kind === "resolved" ? "" : ".open"}`, { dataset: { alert: a.alert.id } },
      h("td", { title: a.at }, ago(a.at), h("div.muted", null, a.node)),
      h("td", null, alertKind(a.alert.kind)),
      h("td", null, withJob ? h("a", { href: `#/job/${enc(a.alert.job_id)}` }, a.alert.job_id) : null,
        h("div", null, h("a.fire-link.muted", { href: `#/run/${enc(a.alert.fire_id)}` }, a.alert.fire_id))),
      h("td", null, alertState(a)),
      h("td", null, a.alert.reason),
      h("td", null, (a.deliveries || []).length ? a.deliveries.map((d) =>
        h("div", { title: d.error || `${d.outcome} ${d.at}` }, `${d.route}: `, h(d.outcome === "gave-up" ? "span.o-failed" : "span", null, d.outcome))) : h("span.muted", null, "—")))), id);
}

// Alerts: the open ones by default (every one with ?all=1), newest first,
// refreshed every 5 s (re-drawn only when something changed).
async function alertsPage(params) {
  const all = params.get("all") === "1";
  const since = params.get("since") || "24h";
  // One job's alerts (`?job=`, from its page), or every job's.
  const job = params.get("job") || "";
  const withJob = (q) => (job ? { ...q, job } : q);
  const openOnly = h("input#alerts-open", { type: "checkbox", checked: !all });
  openOnly.addEventListener("change", () => { location.hash = `#/alerts?${new URLSearchParams(withJob(openOnly.checked ? { since } : { all: "1", since }))}`; });
  const range = h("select#alerts-since", { "aria-label": "since" }, ["1h", "24h", "7d"].map((v) => h("option", { value: v }, `last ${v}`)));
  range.value = since;
  range.addEventListener("change", () => { location.hash = `#/alerts?${new URLSearchParams(withJob(all ? { all: "1", since: range.value } : { since: range.value }))}`; });
  const body = h("div", null, h("p.muted", null, "loading…"));
  put(main(), h("h1", null, "Alerts"),
    h("p.muted", null, "Failed, late and missed occurrences, and their resolution (docs/semantics.md §8)."),
    h("div.toolbar", null, h("label", null, openOnly, " open only"), range,
      job ? h("span.chip.on#alerts-job", null, job, " ", h("a", { href: "#/alerts", title: "every job", "aria-label": "clear the job filter" }, "×")) : null), body);
  let shown = null;
  const load = async () => {
    const qs = new URLSearchParams({ since, limit: "500" });
    if (!all) qs.set("open", "true");
    if (job) qs.set("job", job);
    try {
      const list = await api(`/alerts?${qs}`);
      const seen = list.alerts.map((a) => `${a.alert.id}/${a.resolved_by}/${(a.deliveries || []).length}`).join("|");
      if (seen === shown) return;
      shown = seen;
      put(body, list.alerts.length ? alertsTable(list.alerts, "alerts-table")
        : h("p.muted#alerts-empty", null, all ? `No alert in the last ${since}.` : `No open alert in the last ${since}.`));
    } catch (e) { shown = null; put(body, h("p.error", null, e.message)); }
  };
  await load();
  every(body, 5000, () => { if (!document.hidden) load(); });
}

// Runs: filtered by outcome, job (id prefix), label, pool and time range;
// the newest page follows live, older pages are a cursor away.
async function runsPage(params) {
  const f = {
    outcome: params.get("outcome") || "", job: params.get("job") || "", label: params.get("label") || "",
    pool: params.get("pool") || "", worker: params.get("worker") || "", since: params.get("since") || "24h",
    cursor: params.get("cursor") || "",
  };
  const sel = h("select#outcome-filter", { "aria-label": "outcome" }, h("option", { value: "" }, "every outcome"),
    ["running", "succeeded", "failed", "dead", "skipped", "cancelled"].map((o) => h("option", { value: o }, o)));
  sel.value = f.outcome;
  const text = (id, value, placeholder) => h(`input#${id}`, { type: "search", value, placeholder, "aria-label": placeholder });
  const job = text("runs-job", f.job, "job id starts with…");
  const label = text("runs-label", f.label, "label key=value");
  const pool = text("runs-pool", f.pool, "pool");
  const worker = text("runs-worker", f.worker, "worker id");
  const since = h("select#runs-since", { "aria-label": "since" }, ["1h", "6h", "24h", "7d", "30d"].map((v) => h("option", { value: v }, `last ${v}`)));
  since.value = f.since;
  const go = (cursor) => {
    const q = new URLSearchParams();
    const v = { outcome: sel.value, job: job.value.trim(), label: label.value.trim(), pool: pool.value.trim(), worker: worker.value.trim(), since: since.value, cursor: cursor || "" };
    for (const [k, x] of Object.entries(v)) if (x && !(k === "since" && x === "24h")) q.set(k, x);
    location.hash = `#/runs${q.toString() ? "?" + q : ""}`;
  };
  for (const el of [sel, since, job, label, pool, worker]) el.addEventListener("change", () => go());
  const live = h("input#live", { type: "checkbox", checked: !f.cursor, disabled: !!f.cursor });
  const body = h("div", null, h("p.muted", null, "loading…"));
  put(main(), h("h1", null, "Runs"),
    h("div.toolbar", null, sel, job, label, pool, worker, since, h("label", null, live, f.cursor ? " live (newest page only)" : " live (every 2 s)")), body);
  let shown = null;
  const held = h("span.note#runs-held");
  live.parentElement.after(held);
  const load = async (first) => {
    const qs = new URLSearchParams({ limit: "100", since: f.since });
    for (const k of ["outcome", "job", "label", "pool", "worker", "cursor"]) if (f[k]) qs.set(k, f[k]);
    try {
      const page = await api(`/runs?${qs}`);
      // Re-rendered only when something changed; held while the pointer is
      // on the list or an output is open (nothing moves under the cursor,
      // nothing closes).
      const seen = runsKey(page.runs) + `|${page.next || ""}`;
      if (seen === shown) { put(held); return; }
      if (!first && (body.matches(":hover") || body.querySelector("details[open]"))) {
        put(held, "new runs are waiting: move the pointer off the list or close the output");
        return;
      }
      put(held);
      shown = seen;
      put(body, page.runs.length ? runsTable(page.runs, "runs-table") : h("p.muted#runs-empty", null, `no runs in the last ${f.since} that match`),
        h("div.pager", null,
          f.cursor ? h("a#runs-newest", { href: "#", onclick: (ev) => { ev.preventDefault(); go(""); } }, "« newest") : null,
          page.next ? h("button#runs-older", { type: "button", onclick: () => go(page.next) }, "older »") : null));
    } catch (e) {
      // Unreachable: the rows stay (the banner says so); else the error.
      if (e.status === 0 && shown !== null) return;
      shown = null; put(body, h("p.error", null, broke(e)));
    }
  };
  await load(true);
  every(body, 2000, () => { if (live.checked && !f.cursor && !document.hidden) load(false); });
}

// One fire's page: its attempts and, for a workflow occurrence, the step
// graph in its states and every step's and shard's runs. It refreshes
// every 2 s until nothing is left to run.
async function runPage(fireId) {
  const root = h("div", null, h("h1.fire-id", null, fireId), h("p.muted", null, "loading…"));
  put(main(), root);
  const occ = occurrenceOf(fireId);
  let job = null, shown = null;
  const load = async () => {
    let fire;
    try { fire = await api(`/runs/${enc(fireId)}`); } catch (e) {
      shown = null;
      put(root, h("h1.fire-id", null, fireId), h("p.error#run-error", null, e.status === 404 ? `No run of ${fireId} in the history index (yet).` : e.message));
      return true;
    }
    const rows = fire.runs, first = rows[0];
    if (job === null && first) job = await api(`/jobs/${enc(first.job_id)}`).catch(() => ({ id: first.job_id, gone: true }));
    const steps = (job && job.steps) || [];
    const states = steps.length && fireId === occ ? stepStates(steps, occ, rows) : null;
    const own = rows.filter((r) => r.fire_id === fireId);
    const end = own.length ? own[own.length - 1] : null;
    const open = rows.some((r) => r.outcome === "running" || (r.outcome === "failed" && r.retried))
      || (states && [...states.values()].some((x) => x.state === "pending" || x.state === "running") && !(end && end.outcome !== "running"));
    const seen = rows.map((r) => `${r.fire_id}/${r.attempt}/${r.replay || ""}/${r.outcome}`).join("|");
    if (seen === shown) return open;
    shown = seen;
    const label = (r) => r.fire_id === fireId ? (states ? "(occurrence)" : "") : r.fire_id.slice(fireId.length + 1);
    const cancel = states && end && end.outcome === "running" && !(job && job.gone)
      ? h("div.toolbar", null, h("button.danger#cancel-occurrence", { type: "button", onclick: async () => {
        await dialog({
          title: `Cancel ${fireId}?`,
          text: "Its steps not yet started never start; the workers running its steps are asked to stop them. It ends cancelled, with your reason, in the history.",
          fields: [{ name: "reason", label: "Reason (optional)", placeholder: "why, for the history" }],
          ok: "Cancel the occurrence", danger: true,
          run: async (v) => {
            await api(`/runs/${enc(fireId)}/cancel`, { method: "POST", body: v.reason ? { reason: v.reason } : {} });
            toast(`${fireId} cancelled`);
          },
        });
      } }, "Cancel occurrence…"))
      : null;
    put(root,
      h("h1.fire-id", null, fireId, " ", end ? outcome(end.outcome) : null),
      cancel,
      h("dl.kv#run-facts", null,
        h("dt", null, "job"), h("dd", null, first ? h("a", { href: `#/job/${enc(first.job_id)}` }, first.job_id) : "—",
          job && job.gone ? h("span.muted", null, " (deleted)") : null),
        fireId !== occ ? [h("dt", null, "occurrence"), h("dd", null, h("a#run-occurrence", { href: `#/run/${enc(occ)}` }, occ))] : null,
        h("dt", null, "scheduled"), h("dd", null, when(first && first.scheduled_at)),
        end && end.reason ? [h("dt", null, "reason"), h("dd", null, end.reason)] : null),
      states ? h("section", null, h("h2", null, "Steps"), stepGraph(steps, states, "run-graph")) : null,
      h("h2", null, states ? "Every step and shard" : "Attempts"),
      table([states ? "step" : "", "attempt ", "outcome", "started", "duration ", "worker", "reason / output"], rows.map((r) => {
        const out = r.output ? h("details", null, h("summary", null, "output"), h("pre", null, r.output)) : null;
        return h("tr", { dataset: { fire: r.fire_id, attempt: r.attempt } },
          h("td", null, r.fire_id === fireId ? label(r) : h("a", { href: `#/run/${enc(r.fire_id)}` }, label(r))),
          h("td.num", null, r.attempt), h("td", null, outcome(r.outcome), r.retried ? h("span.muted", null, " (retried)") : null,
            r.replay ? h("span.muted", { title: `replayed ${r.replay}` }, " (replay)") : null),
          h("td", null, when(r.started_at)), h("td.num", null, dur(r.duration_ms)), h("td", null, r.worker),
          h("td", null, r.reason ? h("div", null, r.reason) : null, out));
      }), "run-table"));
    return open;
  };
  if (await load()) every(root, 2000, async () => { if (!document.hidden && !(await load())) { for (const t of timers) clearInterval(t); timers = []; } });
}

async function deadPage(params) {
  const root = h("div", null, h("h1", null, "Dead letters"), h("p.muted", null, "loading…"));
  put(main(), root);
  let pools = [];
  try { pools = (await api("/status")).pools; } catch (e) { root.append(h("p.error", null, e.message)); }
  const pool = params.get("pool") || (pools.find((p) => p.dead) || pools[0] || {}).pool || "default";
  const sel = h("select#dead-pool", { "aria-label": "pool" }, pools.map((p) => h("option", { value: p.pool }, `${p.pool} (${p.dead})`)));
  sel.value = pool;
  sel.addEventListener("change", () => { location.hash = `#/dead?pool=${enc(sel.value)}`; });
  let d;
  try { d = await api(`/pools/${enc(pool)}/dead?limit=1000`); } catch (e) { put(root, h("h1", null, "Dead letters"), sel, h("p.error", null, e.message)); return; }
  const jobQ = (params.get("job") || "").toLowerCase();
  const reasonQ = params.get("reason") || "";
  const reasonOf = (l) => (l.error || "").split("\n")[0].slice(0, 160);
  const shown = d.letters.filter((l) => (!jobQ || (l.job_id || "").toLowerCase().includes(jobQ)) && (!reasonQ || reasonOf(l) === reasonQ));
  const go = (job, reason) => {
    const q = new URLSearchParams({ pool });
    if (job) q.set("job", job);
    if (reason) q.set("reason", reason);
    location.hash = `#/dead?${q}`;
  };
  const search = h("input#dead-job", { type: "search", placeholder: "filter by job", "aria-label": "filter by job", value: params.get("job") || "" });
  search.addEventListener("change", () => go(search.value.trim(), reasonQ));
  // Letters grouped by reason (its first line), most first: a click filters.
  const groups = new Map();
  for (const l of d.letters) groups.set(reasonOf(l), (groups.get(reasonOf(l)) || 0) + 1);
  const reasons = [...groups.entries()].sort((a, b) => b[1] - a[1]);
  const checks = [];
  const detail = h("div#dead-detail");
  const rows = shown.map((l) => {
    const cb = h("input.pick", { type: "checkbox", value: l.fire_id || "", "aria-label": `select ${l.fire_id}` });
    checks.push(cb);
    return h("tr", { dataset: { fire: l.fire_id || "" } },
      h("td", null, cb),
      h("td", null, l.fire_id ? h("a.fire-link", { href: `#/run/${enc(l.fire_id)}` }, l.fire_id) : "(no id)",
        h("div", null, h("a.inspect", { href: "#", onclick: (ev) => { ev.preventDefault(); inspect(l, detail); } }, "inspect"))),
      h("td", null, l.job_id ? h("a", { href: `#/job/${enc(l.job_id)}` }, l.job_id) : "—"), h("td.num", null, l.attempts ?? "—"),
      h("td.error", null, l.error), h("td", null, when(l.dead_at)));
  });
  const all = h("input#dead-select-all", { type: "checkbox", "aria-label": "select every letter shown" });
  all.addEventListener("change", () => { for (const c of checks) c.checked = all.checked; });
  const picked = () => checks.filter((c) => c.checked).map((c) => c.value).filter(Boolean);
  const settle = (verb) => async () => {
    const ids = picked();
    if (!ids.length) { toast("select letters first", true); return; }
    const ok = await dialog({
      title: `${verb === "replay" ? "Replay" : "Purge"} ${ids.length} dead letter${ids.length === 1 ? "" : "s"}?`,
      text: verb === "replay" ? "Each is fired again as attempt 1 and leaves the dead-letter queue."
        : "They are deleted for good.",
      ok: verb === "replay" ? "Replay" : "Purge", danger: verb === "purge",
      run: async () => {
        const r = await api(`/pools/${enc(pool)}/dead/${verb}`, { method: "POST", body: { fire_ids: ids } });
        toast(`${verb}: ${r.done.length} done${r.skipped.length ? `, ${r.skipped.length} skipped` : ""}`);
      },
    });
    if (ok) route();
  };
  const filtered = jobQ || reasonQ;
  put(root, h("h1", null, "Dead letters"),
    h("div.toolbar", null, sel, search,
      h("span.muted#dead-count", null, filtered ? `${shown.length} of ${d.total ?? d.letters.length} in sundial.dead.${pool}` : `${d.total ?? d.letters.length} in sundial.dead.${pool}`),
      filtered ? h("a#dead-clear", { href: `#/dead?pool=${enc(pool)}` }, "clear filters") : null,
      h("button#replay", { type: "button", onclick: settle("replay") }, "Replay selected"),
      h("button.danger#purge", { type: "button", onclick: settle("purge") }, "Purge selected")),
    reasons.length > 1 || reasonQ ? h("details#dead-reasons", { open: reasonQ ? true : null }, h("summary", null, `${reasons.length} reason${reasons.length === 1 ? "" : "s"}`),
      h("ul", null, reasons.map(([r, n]) => h("li", null, h("a", { href: "#", onclick: (ev) => { ev.preventDefault(); go(params.get("job") || "", r); } }, r || "(none)"), ` — ${n}`)))) : null,
    shown.length
      ? table([all, "fire id", "job", "attempts ", "reason", "dead-lettered"], rows, "dead-table")
      : h("p.muted#dead-empty", null, filtered ? "no dead letter matches" : "no dead letters in this pool"),
    h("p.muted", null, "Listed in the order they died. Readers take turns: every tab sees every letter."),
    detail);
}

async function inspect(l, box) {
  const out = h("div", null, h("p.muted", null, "looking up the last attempt's output…"));
  put(box, h("h2", null, l.fire_id),
    h("div.two", null,
      h("div", null, h("h2", null, "Headers"), h("dl.kv#dead-headers", null,
        Object.entries(l.headers).flatMap(([k, v]) => [h("dt", null, k), h("dd", null, h("code", null, v))]))),
      h("div", null, h("h2", null, "Fire event"), h("pre", null, l.fire ? JSON.stringify(l.fire, null, 2) : l.undecodable || ""))),
    h("h2", null, "Output"), out);
  if (!l.job_id) { put(out, h("p.muted", null, "not a fire event")); return; }
  try {
    const r = await api(`/jobs/${enc(l.job_id)}/runs?limit=200`);
    const last = r.runs.find((x) => x.fire_id === l.fire_id && x.output);
    put(out, last ? h("pre#dead-output", null, last.output) : h("p.muted", null, "no output recorded (run_events, or the history index has none)"));
  } catch (e) { put(out, h("p.muted", null, e.message)); }
  box.scrollIntoView({ behavior: "smooth" });
}

// ---- router ---------------------------------------------------------------

async function route() {
  for (const t of timers) clearInterval(t);
  timers = [];
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  const section = path.startsWith("/jobs") || path.startsWith("/job/") ? "jobs"
    : path.startsWith("/runs") || path.startsWith("/run/") ? "runs" : path.startsWith("/dead") ? "dead"
    : path.startsWith("/alerts") ? "alerts" : "overview";
  for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("active", a.dataset.nav === section);
  const titles = { overview: "Overview", jobs: "Jobs", runs: "Runs", dead: "Dead letters", alerts: "Alerts" };
  document.title = `${titles[section]} · Sundial`;
  // An id in the path; a malformed one (a stray %) says so.
  const idOf = (prefix) => {
    try { return decodeURIComponent(path.slice(prefix.length)); } catch { return null; }
  };
  try {
    if (path.startsWith("/job/") || path.startsWith("/run/")) {
      const kind = path.startsWith("/job/") ? "job" : "run";
      const id = idOf(`/${kind}/`);
      if (id === null || !id) {
        document.title = `Not found · Sundial`;
        put(main(), h("h1", null, `No such ${kind}`), h("p.error#not-found", null, `"${path.slice(kind.length + 2)}" is not a well-formed ${kind === "job" ? "job id" : "fire id"}.`));
      } else {
        document.title = `${id} · ${kind === "job" ? "Job" : "Run"} · Sundial`;
        await (kind === "job" ? jobPage(id) : runPage(id));
      }
    }
    else if (path === "/jobs") await jobsPage(params);
    else if (path === "/runs") await runsPage(params);
    else if (path === "/dead") await deadPage(params);
    else if (path === "/alerts") await alertsPage(params);
    else if (path === "/") {
      const view = await overview(null);
      every(view, 5000, () => { if (!document.hidden && $("#modal").hidden) overview(view).catch(() => {}); });
    }
    else {
      document.title = `Not found · Sundial`;
      put(main(), h("h1", null, "No such page"), h("p.error#not-found", null, `Nothing is at #${path}. `, h("a", { href: "#/" }, "Overview")));
    }
  } catch (e) {
    put(main(), h("h1", null, "Something went wrong"), h("p.error", null, broke(e)));
  }
  document.body.dataset.page = section;
  document.body.dataset.ready = String(Date.now());
}

window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", () => {
  $("#token-button").addEventListener("click", () => askToken("Paste a token of http.tokens (kept for this tab only)."));
  route();
});
