// Strata's dashboard: reads /status and /history from this admin listener every 2 seconds and
// draws every configured layer. Everything it shows is built with text nodes (never HTML from
// the data: a backend's reason is whatever its server said).
"use strict";

const REFRESH_MS = 2000;
const TOKEN_KEY = "strata-admin-token";
let history = { series: [] };
let busy = false;
// the page is drawn again every refresh: not between a button's press and its release
let pressed = false;

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    // through the CSSOM: the page's policy refuses style attributes
    else if (k === "style") Object.assign(el.style, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function svg(tag, attrs) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

function fmt(n, digits = 1) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(digits) + "M";
  if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(digits) + "k";
  return Number.isInteger(n) ? String(n) : n.toFixed(digits);
}

function ms(n) {
  if (n === null || n === undefined) return "–";
  return n >= 100 ? n.toFixed(0) + " ms" : n.toFixed(2) + " ms";
}

function ago(ms) {
  if (ms === null || ms === undefined) return "";
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

function state(name) {
  return h("span", { class: `state ${name}` }, name);
}

// one sparkline over the last 5 minutes of a column of /history
function spark(label, kind, points, column, show) {
  const values = points.map((p) => p[column]);
  const last = values.length ? values[values.length - 1] : null;
  const box = svg("svg", { viewBox: "0 0 170 34", preserveAspectRatio: "none", role: "img" });
  const known = values.filter((v) => v !== null);
  if (known.length > 1) {
    const max = Math.max(...known, 1e-9);
    const step = 170 / Math.max(values.length - 1, 1);
    const coords = values
      .map((v, i) => (v === null ? null : `${(i * step).toFixed(1)},${(32 - (v / max) * 30).toFixed(1)}`))
      .filter((c) => c !== null);
    box.append(svg("polyline", { points: coords.join(" ") }));
    const title = svg("title", {});
    title.textContent = `${label}: max ${show(max)} over the last ${values.length * history.interval_seconds} s`;
    box.append(title);
  }
  return h("div", { class: `spark ${kind}`, "data-metric": label },
    h("span", { class: "label" }, label),
    h("span", { class: "value" }, show(last)),
    box);
}

function sparks(layer, listener, names) {
  const series = history.series.find((s) => s.layer === layer && s.listener === listener);
  const points = series ? series.points : [];
  const rate = (v) => (v === null ? "–" : fmt(v) + "/s");
  const row = [
    spark(names[0], "rate", points, 1, rate),
    spark(names[1], "errors", points, 2, rate),
  ];
  if (names[2]) {
    row.push(spark(`${names[2]} p50`, "latency", points, 3, ms));
    row.push(spark(`${names[2]} p99`, "latency", points, 5, ms));
  }
  return h("div", { class: "sparks" }, row);
}

function actionButton(layer, listener, b, drained = b.state === "draining") {
  const action = drained ? "restore" : "drain";
  return h("button", {
    "data-layer": layer, "data-listener": listener, "data-backend": b.address, "data-action": action,
    onclick: () => act(layer, listener, b.address, action),
  }, drained ? "Restore" : "Drain");
}

function backendsTable(layer, listener, backends) {
  return h("table", { class: "backends" },
    h("tr", {}, ["backend", "state", "weight", "in flight", "requests", "failures", "reason", ""].map((t) => h("th", {}, t))),
    backends.map((b) => h("tr", { "data-backend": b.address },
      h("td", {}, b.address),
      h("td", {}, state(b.state), b.ejected_for_ms ? ` for ${ago(b.ejected_for_ms)}` : ""),
      h("td", {}, b.weight),
      h("td", {}, b.in_flight),
      h("td", {}, fmt(b.requests, 0)),
      h("td", {}, fmt(b.failures, 0)),
      h("td", { class: "reason" }, b.reason),
      h("td", {}, actionButton(layer, listener, b)))));
}

function lbSection(layer, listeners) {
  const unit = layer === "tcp" ? ["connections", "no backend"] : ["requests", "5xx", "latency"];
  return listeners.map((l) => h("div", { class: "card", "data-listener": `${layer}:${l.name}` },
    h("h3", {}, l.name, h("span", { class: "muted" }, `${layer === "http" && l.tls ? "https" : layer}://${l.listen}`)),
    h("div", { class: "facts" },
      h("span", {}, "open connections ", h("b", {}, l.open_connections)),
      h("span", {}, `${unit[0]} `, h("b", {}, fmt(l.requests ?? l.connections, 0))),
      l.balance && h("span", {}, "balance ", h("b", {}, l.balance)),
      h("span", {}, "available ", h("b", {}, `${l.available} of ${l.backends.length}`))),
    sparks(layer, l.name, [`${unit[0]}/s`, unit[1], unit[2]]),
    backendsTable(layer, l.name, l.backends)));
}

function cacheSection(pools) {
  return pools.map((p) => {
    const ring = h("div", { class: "ring", title: "each server's share of the keys" },
      p.servers.map((s) => h("div", {
        class: s.state, style: { width: `${(s.ring_share * 100).toFixed(2)}%` },
        title: `${s.name}: ${(s.ring_share * 100).toFixed(1)}% (${s.state})`,
      })));
    return h("div", { class: "card", "data-listener": `cache:${p.name}` },
      h("h3", {}, p.name, h("span", { class: "muted" }, `${p.protocol}://${p.listen}`)),
      h("div", { class: "facts" },
        h("span", {}, "placement ", h("b", {}, `${p.distribution} / ${p.hash}`)),
        h("span", {}, "consistency ", h("b", {}, p.consistency)),
        h("span", {}, "open connections ", h("b", {}, p.open_connections)),
        h("span", {}, "commands ", h("b", {}, fmt(p.commands, 0)))),
      sparks("cache", p.name, ["commands/s", "errors", "server latency"]),
      p.cluster ? h("p", { class: "muted" }, `Redis Cluster: ${p.cluster.nodes.length} masters`) : ring,
      h("table", { class: "backends" },
        h("tr", {}, ["server", "share", "master", "replicas", "state", "requests", "reason", ""].map((t) => h("th", {}, t))),
        p.servers.map((s) => h("tr", { "data-backend": s.address },
          h("td", {}, s.name === s.address ? s.address : `${s.name} (${s.address})`),
          h("td", {}, h("span", { class: "bar", style: { width: `${Math.round(s.ring_share * 120)}px` } }), `${(s.ring_share * 100).toFixed(1)}%`),
          h("td", {}, s.master ?? "–"),
          h("td", {}, (s.replicas || []).map((r) => (typeof r === "string" ? r : `${r.address} (${r.state})`)).join(", ") || "–"),
          h("td", {}, state(s.state), s.ejected_for_ms ? ` until ${ago(s.ejected_for_ms)} from now` : ""),
          h("td", {}, fmt(s.requests, 0)),
          h("td", { class: "reason" }, s.reason),
          h("td", {}, actionButton("cache", p.name, s))))));
  });
}

function vipSection(instances) {
  return instances.map((v) => h("div", { class: "card", "data-listener": `vip:${v.name}` },
    h("h3", {}, v.name, h("span", { class: "muted" }, `VRID ${v.vrid} on ${v.interface}`)),
    h("div", { class: "facts" },
      h("span", {}, "state ", state(v.state)),
      h("span", {}, "priority ", h("b", {}, v.priority), v.priority !== v.configured_priority ? ` (configured ${v.configured_priority})` : ""),
      h("span", {}, "addresses ", h("b", {}, v.addresses.join(", "))),
      h("span", {}, "master ", h("b", {}, v.master ?? "–")),
      v.fault && h("span", {}, "fault ", h("b", {}, v.fault)),
      v.error && h("span", {}, "error ", h("b", {}, v.error))),
    v.tracks.length ? h("div", { class: "facts" }, v.tracks.map((t) => h("span", {}, `${t.track}: `, state(t.healthy ? "up" : "down")))) : null,
    h("ul", { class: "transitions" },
      v.transitions.slice(-8).reverse().map((t) => h("li", {},
        new Date(t.at * 1000).toLocaleTimeString(), ` ${t.from} → ${t.to}`, h("span", { class: "muted" }, ` ${t.why}`))))));
}

function dbSection(listeners) {
  return listeners.map((d) => h("div", { class: "card", "data-listener": `database:${d.name}` },
    h("h3", {}, d.name, h("span", { class: "muted" }, `postgres://${d.listen}`)),
    h("div", { class: "facts" },
      h("span", {}, "pool mode ", h("b", {}, d.pool_mode)),
      h("span", {}, "pool size ", h("b", {}, d.pool_size)),
      h("span", {}, "clients ", h("b", {}, d.clients)),
      h("span", {}, "active ", h("b", {}, d.clients_active)),
      h("span", {}, "waiting ", h("b", {}, d.pools.reduce((n, p) => n + p.clients_waiting, 0)))),
    sparks("database", d.name, ["server assignments/s", "no server", "wait"]),
    h("table", { class: "servers" },
      h("tr", {}, ["server", "shard", "role", "lag", "reason", ""].map((t) => h("th", {}, t))),
      d.servers.map((s) => h("tr", { "data-server": s.address, "data-backend": s.address },
        h("td", {}, s.address),
        h("td", {}, s.shard),
        h("td", {}, state(s.role), s.drained ? " " : "", s.drained ? state("draining") : "",
          s.banned_for_ms ? ` banned ${ago(s.banned_for_ms)} more` : ""),
        h("td", {}, s.lag_bytes === null ? "–" : `${fmt(s.lag_bytes, 0)} B`),
        h("td", { class: "reason" }, s.reason),
        // a primary's writes can't go elsewhere, and a server not (yet) known as a replica
        // is refused: only replicas are drained
        h("td", {}, s.role === "replica" || s.drained ? actionButton("database", d.name, s, s.drained) : "")))),
    d.pools.length ? h("table", { class: "pools" },
      h("tr", {}, ["user", "database", "server", "in use", "shared by reads", "idle", "clients waiting"].map((t) => h("th", {}, t))),
      d.pools.map((p) => h("tr", {},
        h("td", {}, p.user), h("td", {}, p.database), h("td", {}, p.server),
        h("td", {}, p.server_in_use), h("td", {}, p.server_shared), h("td", {}, p.server_idle),
        h("td", {}, p.clients_waiting)))) : null));
}

const SECTIONS = [
  ["vip", "Entry: virtual addresses", vipSection],
  ["http", "HTTP listeners", (l) => lbSection("http", l)],
  ["tcp", "TCP listeners", (l) => lbSection("tcp", l)],
  ["cache", "Cache pools", cacheSection],
  ["database", "Database listeners", dbSection],
];

function render(status) {
  document.getElementById("version").textContent = `v${status.version}`;
  document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  const parts = [];
  for (const [key, title, draw] of SECTIONS) {
    const items = status[key];
    if (Array.isArray(items) && items.length) {
      let body;
      try {
        body = draw(items);
      } catch (e) {
        // one layer this page can't draw does not blank the others
        body = h("p", { class: "empty" }, `cannot draw this layer: ${e.message}`);
      }
      parts.push(h("section", { id: key }, h("h2", {}, title), body));
    }
  }
  if (!parts.length) parts.push(h("p", { class: "empty" }, "No layer is configured on this node."));
  document.getElementById("layers").replaceChildren(...parts);
}

function notice(text) {
  const el = document.getElementById("notice");
  el.textContent = text || "";
  el.hidden = !text;
}

async function getJson(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

async function refresh() {
  if (busy || pressed) return;
  busy = true;
  try {
    const [status, hist] = await Promise.all([getJson("/status"), getJson("/history")]);
    history = hist;
    render(status);
  } catch (e) {
    document.getElementById("updated").textContent = `not reachable: ${e.message}`;
  } finally {
    busy = false;
  }
}

async function act(layer, listener, backend, action) {
  const token = document.getElementById("token").value.trim();
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const path = `/backends/${encodeURIComponent(layer)}/${encodeURIComponent(listener)}/${encodeURIComponent(backend)}/${action}`;
  try {
    const r = await fetch(path, { method: "POST", headers, cache: "no-store" });
    const body = await r.json().catch(() => ({}));
    if (r.status === 401) notice(`${body.error || "refused"}: enter this node's admin token above.`);
    else if (!r.ok) notice(body.error || `HTTP ${r.status}`);
    else notice(`${backend} of ${layer}:${listener}: ${action === "drain" ? "draining" : "restored"}`);
  } catch (e) {
    notice(`${action} failed: ${e.message}`);
  }
  await refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  const token = document.getElementById("token");
  token.value = sessionStorage.getItem(TOKEN_KEY) || "";
  token.addEventListener("change", () => sessionStorage.setItem(TOKEN_KEY, token.value.trim()));
  document.addEventListener("pointerdown", () => { pressed = true; });
  document.addEventListener("pointerup", () => { pressed = false; });
  document.addEventListener("pointercancel", () => { pressed = false; });
  refresh();
  setInterval(refresh, REFRESH_MS);
});
