// healer dashboard: live polling, inline-SVG charts, countdowns. No dependencies.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const W = 600, H = 180, PAD_L = 48, PAD_B = 18, PAD_T = 8;

  function el(tag, attrs, text) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;  // never innerHTML: values are untrusted
    return n;
  }
  function svgEl(tag, attrs, text) {
    const n = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, String(v));
    if (text !== undefined) n.textContent = text;
    return n;
  }
  function fmt(v, unit) {
    if (!isFinite(v)) return "–";
    if (unit === "B") {
      const units = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
      while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
      return v.toFixed(v < 10 ? 1 : 0) + " " + units[i];
    }
    const a = Math.abs(v);
    return (a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2)) + (unit && unit !== "/s" ? " " + unit : unit || "");
  }
  function isoTs(t) { return new Date(t * 1000).toISOString().slice(11, 19) + "Z"; }

  // Per-second rate of a counter; resets (negative steps) count as zero.
  function rate(points) {
    const out = [];
    for (let i = 1; i < points.length; i++) {
      const dt = points[i][0] - points[i - 1][0];
      if (dt > 0) out.push([points[i][0], Math.max(0, (points[i][1] - points[i - 1][1]) / dt)]);
    }
    return out;
  }

  function drawChart(fig, series, opts) {
    const svg = fig.querySelector("svg"), legend = fig.querySelector(".legend");
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    legend.replaceChildren();
    const names = Object.keys(series);
    let t0 = Infinity, t1 = -Infinity, y0 = 0, y1 = -Infinity;
    for (const n of names) for (const [t, v] of series[n]) {
      t0 = Math.min(t0, t); t1 = Math.max(t1, t); y0 = Math.min(y0, v); y1 = Math.max(y1, v);
    }
    for (const m of opts.markers || []) { t0 = Math.min(t0, m.ts); t1 = Math.max(t1, m.ts); }
    if (!isFinite(t0)) { svg.appendChild(svgEl("text", {x: W / 2, y: H / 2, "text-anchor": "middle", class: "axis"}, "no data yet")); return; }
    if (opts.windowSeconds) t0 = Math.min(t0, t1 - opts.windowSeconds);
    if (y1 <= y0) y1 = y0 + 1;
    y1 += (y1 - y0) * 0.08;
    if (t1 <= t0) t1 = t0 + 1;
    const x = t => PAD_L + (t - t0) / (t1 - t0) * (W - PAD_L - 4);
    const y = v => PAD_T + (1 - (v - y0) / (y1 - y0)) * (H - PAD_T - PAD_B);
    for (const f of [0, 0.5, 1]) {
      const v = y0 + f * (y1 - y0);
      svg.appendChild(svgEl("line", {x1: PAD_L, x2: W, y1: y(v), y2: y(v), class: "grid"}));
      svg.appendChild(svgEl("text", {x: PAD_L - 4, y: y(v) + 4, "text-anchor": "end", class: "axis"}, fmt(v, opts.unit)));
    }
    svg.appendChild(svgEl("text", {x: PAD_L, y: H - 3, class: "axis"}, isoTs(t0)));
    svg.appendChild(svgEl("text", {x: W - 2, y: H - 3, "text-anchor": "end", class: "axis"}, isoTs(t1)));
    names.forEach((n, i) => {
      const pts = series[n].map(([t, v]) => x(t).toFixed(1) + "," + y(v).toFixed(1)).join(" ");
      if (pts) svg.appendChild(svgEl("polyline", {points: pts, class: "line s" + (i % 4)}));
      const last = series[n].length ? series[n][series[n].length - 1][1] : NaN;
      legend.appendChild(el("span", {class: "k" + (i % 4)}, "■ " + n + " " + fmt(last, opts.unit)));
    });
    for (const m of opts.markers || []) {
      svg.appendChild(svgEl("line", {x1: x(m.ts), x2: x(m.ts), y1: PAD_T, y2: H - PAD_B, class: "marker"}));
      svg.appendChild(svgEl("text", {x: x(m.ts) + 3, y: PAD_T + 10, class: "marker-label"}, m.label));
    }
  }

  async function getJSON(url) {
    const r = await fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}});
    if (r.status === 401) { window.location = "/login?next=" + encodeURIComponent(location.pathname); throw new Error("signed out"); }
    if (!r.ok) throw new Error(url + ": HTTP " + r.status);
    return r.json();
  }

  function badge(cls, text) { return el("span", {class: "badge " + cls}, text); }
  function cell(...children) {
    const td = el("td");
    for (const c of children) td.append(typeof c === "string" ? document.createTextNode(c) : c);
    return td;
  }
  function link(href, text) { return el("a", {href: href}, text); }
  function actionText(a) {
    const span = el("span");
    span.append(el("code", {}, a.kind), " ", el("span", {class: "scope"}, a.scope), " ",
      a.key || a.knob || (a.index !== undefined ? "gpu " + a.index : "") || a.pid || "");
    return span;
  }
  function fillRows(tbody, items, cols, row) {
    const rows = items.map(row);
    if (!rows.length) { const tr = el("tr", {class: "empty"}); tr.append(el("td", {colspan: cols}, "None.")); rows.push(tr); }
    tbody.replaceChildren(...rows);
  }
  function shortTs(s) { return s ? s.replace("T", " ").slice(0, 19) + "Z" : "—"; }

  function renderTables(incidents, proposals, actions) {
    fillRows(document.getElementById("open-incidents"), incidents, 6, i => {
      const tr = el("tr");
      tr.append(cell(link("/incidents/" + i.id, "#" + i.id)), cell(i.playbook), cell(el("span", {class: "scope"}, i.scope)),
        cell(badge("sev-" + i.severity, i.severity)), cell(String(i.count)), cell(shortTs(i.last_seen)));
      return tr;
    });
    fillRows(document.getElementById("pending"), proposals, 4, p => {
      const tr = el("tr");
      const exp = el("span", {class: "countdown", "data-expires": p.approval.expires_at || ""}, "");
      tr.append(cell(link("/approvals#action-" + p.id, "#" + p.id)), cell(actionText(p.action)),
        cell(p.approval.approved_by.length + "/" + p.approval.needed), cell(exp));
      return tr;
    });
    fillRows(document.getElementById("recent-actions"), actions, 5, a => {
      const tr = el("tr", {id: "row-action-" + a.id});
      const st = cell(badge("st-" + a.state, a.state)); st.className = "state";
      tr.append(cell("#" + a.id), cell(actionText(a.action)), cell(badge("v-" + a.decision.verdict, a.decision.verdict)),
        st, cell(shortTs(a.updated_at)));
      return tr;
    });
    document.getElementById("h-open").textContent = String(incidents.length);
    document.getElementById("h-pending").textContent = String(proposals.length);
    tickCountdowns();
  }

  async function refreshOverview(figs) {
    const names = new Set();
    figs.forEach(f => f.dataset.metrics.split(",").forEach(n => names.add(n)));
    const q = [...names].map(n => "name=" + encodeURIComponent(n)).join("&");
    const [snap, series, incidents, proposals, actions] = await Promise.all([
      getJSON("/api/v1/snapshot"), getJSON("/api/v1/series?seconds=3600&points=360&" + q),
      getJSON("/api/v1/incidents?status=open&limit=50"), getJSON("/api/v1/proposals?limit=50"),
      getJSON("/api/v1/actions?limit=15")]);
    document.getElementById("h-status").textContent = snap.live ? (snap.collector_errors.length ? "degraded" : "sampling") : "no live sample";
    document.getElementById("h-ts").textContent = shortTs(snap.ts);
    document.getElementById("h-llm").textContent = snap.llm ? String(snap.llm.state) : "off";
    document.getElementById("h-errors").textContent = snap.collector_errors.join(", ") || "none";
    for (const fig of figs) {
      const data = {};
      for (const n of fig.dataset.metrics.split(",")) {
        const pts = series.series[n] || [];
        data[n] = fig.dataset.rate === "1" ? rate(pts) : pts;
      }
      drawChart(fig, data, {unit: fig.dataset.unit, windowSeconds: 3600});
    }
    renderTables(incidents, proposals, actions);
  }

  function tickCountdowns() {
    const now = Date.now();
    document.querySelectorAll(".countdown[data-expires]").forEach(n => {
      const t = Date.parse(n.dataset.expires);
      if (!isFinite(t)) { n.textContent = "—"; return; }
      const s = Math.round((t - now) / 1000);
      if (s <= 0) { n.textContent = "expired"; n.classList.add("error"); return; }
      const h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60), sec = s % 60;
      n.textContent = "in " + (h ? h + "h " : "") + m + "m " + String(sec).padStart(2, "0") + "s";
    });
  }

  function start() {
    document.querySelectorAll("figure.chart[data-static]").forEach(fig => {
      const data = JSON.parse(fig.querySelector("script.chart-data").textContent);
      drawChart(fig, {[data.metric]: data.rate ? rate(data.points) : data.points},
        {markers: data.markers, unit: data.rate ? "/s" : ""});
    });
    tickCountdowns();
    setInterval(tickCountdowns, 1000);
    const main = document.getElementById("overview");
    if (!main) return;
    const figs = [...document.querySelectorAll("figure.chart[data-metrics]")];
    const poll = () => refreshOverview(figs).catch(e => console.warn("healer refresh:", e.message));
    poll();
    setInterval(poll, Number(main.dataset.pollMs) || 5000);
  }
  document.addEventListener("DOMContentLoaded", start);
})();
