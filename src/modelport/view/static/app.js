// modelport view: the page. Everything it shows comes from the JSON API of the local server;
// search runs on the server too, so the page and the API share one syntax.
"use strict";

const state = { file: 0, files: [], rows: [], sort: null, desc: false, current: null, stats: null };
const $ = (sel) => document.querySelector(sel);

async function api(path) {
  const sep = path.includes("?") ? "&" : "?";
  const resp = await fetch(`${path}${sep}f=${state.file}`);
  const doc = await resp.json();
  if (!resp.ok) throw new Error(doc.error || resp.statusText);
  return doc;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

const fmtBytes = (n) => {
  for (const u of ["B", "KB", "MB", "GB", "TB"]) { if (n < 1000 || u === "TB") return u === "B" ? `${n} B` : `${n.toFixed(1)} ${u}`; n /= 1000; }
};
const fmtNum = (x) => (typeof x === "number" ? (Number.isInteger(x) ? x.toLocaleString("en") : x.toPrecision(6)) : String(x));

async function loadFiles() {
  state.files = await (await fetch("/api/files")).json();
  const nav = $("#files");
  nav.replaceChildren(...state.files.map((f) => el("button", { "data-index": f.index, onclick: () => select(f.index) }, `${f.index === 0 ? "A" : "B"}: ${f.path}`)));
  $("#diff-button").hidden = state.files.length < 2;
  $("#diff-button").onclick = showDiff;
  await select(0);
}

async function select(i) {
  state.file = i;
  document.querySelectorAll("#files button").forEach((b) => b.classList.toggle("active", +b.dataset.index === i));
  $("#diff").hidden = true;
  $("#detail").hidden = true;
  const s = await api("/api/summary");
  renderSummary(s);
  await search();
}

function renderSummary(s) {
  const safety = s.safety || {};
  const total = Object.values(s.dtypes || {}).reduce((a, b) => a + b, 0) || 1;
  const dtypes = Object.entries(s.dtypes || {}).map(([k, v]) => `${k} ${Math.round((100 * v) / total)}%`).join(", ");
  const rows = [["path", s.path], ["format", s.format], ["kind", s.kind], ["size", fmtBytes(s.file_size || 0)],
    ["parameters", fmtNum(s.parameters)], ["weights", `${s.weights_count} tensors`], ["other tensors", s.other_tensors],
    ["dtypes", dtypes || "(none)"]];
  if (s.architecture && s.architecture.family) rows.push(["architecture", `${s.architecture.family} (${s.architecture.class || "?"})`]);
  const graph = s.info && s.info.graph;
  if (graph) rows.push(["graph", `${graph.node_count} nodes; ` + Object.entries(graph.op_counts || {}).slice(0, 10).map(([k, v]) => `${k} ${v}`).join(", ")]);
  if (graph) rows.push(["inputs / outputs", [...(graph.inputs || []), ...(graph.outputs || [])].map((t) => `${t.name}: ${t.dtype}`).join("; ")]);
  // Format-neutral summary lines a reader adds (TF signatures and op counts, TorchScript code,
  // GGUF architecture, Keras layers...), as `inspect` prints them.
  for (const [label, text] of Object.entries((s.info && s.info.summary) || {})) {
    rows.push([label, Array.isArray(text) ? text.join("\n") : String(text)]);
  }
  const dl = el("dl");
  for (const [k, v] of rows) dl.append(el("dt", {}, k), el("dd", { class: "pre" }, v));
  dl.append(el("dt", {}, "safety"), el("dd", { class: `verdict-${safety.verdict}`, id: "verdict" }, `${safety.verdict}: ${safety.reason || ""}`));
  if (s.can) {
    for (const [k, v] of Object.entries(s.can)) dl.append(el("dt", {}, k.replace("_", " ")), el("dd", {}, `${v.answer}: ${v.why || ""}`));
  }
  const vals = s.metadata && Object.keys(s.metadata).length ? el("details", {}, el("summary", {}, "values"), el("pre", {}, JSON.stringify(s.metadata, null, 1).slice(0, 20000))) : "";
  $("#summary").replaceChildren(dl, vals);
  const findings = safety.findings || [];
  $("#findings").replaceChildren(...(findings.length ? [el("h2", {}, "scan findings"), el("ul", {}, ...findings.map((f) => el("li", {}, `${f.severity} ${f.rule}: ${f.message}`)))] : []));
}

async function search() {
  const q = $("#search").value;
  try {
    state.rows = await api(`/api/tensors?query=${encodeURIComponent(q)}`);
    $("#count").textContent = `${state.rows.length} tensors`;
    $("#count").classList.remove("error");
  } catch (e) {
    state.rows = [];
    $("#count").textContent = e.message;
    $("#count").classList.add("error");
  }
  renderTable();
  renderTree();
}

function renderTable() {
  const rows = [...state.rows];
  if (state.sort) {
    const k = state.sort;
    rows.sort((a, b) => {
      const x = k === "shape" ? a.shape.reduce((p, d) => p * d, 1) : a[k];
      const y = k === "shape" ? b.shape.reduce((p, d) => p * d, 1) : b[k];
      return (x > y ? 1 : x < y ? -1 : 0) * (state.desc ? -1 : 1);
    });
  }
  const body = $("#table tbody");
  body.replaceChildren(...rows.slice(0, 5000).map((r) => el("tr", { "data-name": r.name, onclick: () => showTensor(r.name) },
    el("td", {}, r.name), el("td", {}, r.dtype), el("td", {}, `[${r.shape.join(", ")}]`), el("td", {}, fmtNum(r.numel)),
    el("td", {}, fmtBytes(r.nbytes)), el("td", {}, r.shard || ""), el("td", {}, r.offset == null ? "" : fmtNum(r.offset)))));
}

// The tree groups names by their dotted path; runs of numbered layers whose members have the
// same dtypes and shapes fold into one node, as `modelport inspect` folds them.
function renderTree() {
  const root = {};
  for (const r of state.rows) {
    let node = root;
    const parts = r.name.split(".");
    parts.forEach((p, i) => { node[p] = node[p] || (i === parts.length - 1 ? { __leaf: r } : {}); node = node[p]; });
  }
  const sig = (n) => JSON.stringify(Object.entries(n).map(([k, v]) => [k, v.__leaf ? [v.__leaf.dtype, v.__leaf.shape] : sig(v)]));
  function build(node, prefix) {
    const out = [];
    const keys = Object.keys(node);
    const numeric = keys.filter((k) => /^\d+$/.test(k) && !node[k].__leaf);
    let folded = null;
    if (numeric.length > 1 && numeric.every((k) => sig(node[k]) === sig(node[numeric[0]]))) folded = numeric;
    for (const k of keys) {
      if (folded && folded.includes(k) && k !== folded[0]) continue;
      const v = node[k];
      const label = folded && k === folded[0] ? `{${folded[0]}..${folded[folded.length - 1]}} (${folded.length} alike)` : k;
      if (v.__leaf) out.push(el("div", { class: "leaf", "data-name": v.__leaf.name, onclick: () => showTensor(v.__leaf.name) }, `${label}  ${v.__leaf.dtype}[${v.__leaf.shape.join(",")}]`));
      else out.push(el("details", {}, el("summary", {}, label), ...build(v, `${prefix}${k}.`)));
    }
    return out;
  }
  $("#tree").replaceChildren(...build(root, ""));
}

async function showTensor(name) {
  state.current = name;
  $("#detail").hidden = false;
  $("#detail-name").textContent = name;
  $("#detail-stats").textContent = "computing...";
  $("#save-npy").href = `/api/tensor/${encodeURIComponent(name)}/npy?f=${state.file}`;
  try {
    const s = await api(`/api/tensor/${encodeURIComponent(name)}/stats?bins=64`);
    if (state.current !== name) return;
    state.stats = s;
    const t = el("table", { id: "stats-table" });
    for (const k of ["dtype", "numel", "min", "max", "mean", "std", "zeros", "nan", "inf", "l2"]) t.append(el("tr", {}, el("td", {}, k), el("td", { "data-stat": k }, fmtNum(s[k]))));
    $("#detail-stats").replaceChildren(t);
    drawHistogram();
    drawHeatmap(s.heatmap);
  } catch (e) {
    $("#detail-stats").replaceChildren(el("span", { class: "error" }, e.message));
  }
}

function drawHistogram() {
  const c = $("#histogram"), g = c.getContext("2d"), s = state.stats;
  g.clearRect(0, 0, c.width, c.height);
  if (!s || !s.histogram.counts.length) return;
  const log = $("#log-scale").checked;
  const vals = s.histogram.counts.map((n) => (log ? Math.log10(1 + n) : n));
  const top = Math.max(...vals) || 1, w = c.width / vals.length;
  g.fillStyle = "#2563eb";
  vals.forEach((v, i) => { const h = (v / top) * (c.height - 20); g.fillRect(i * w, c.height - 20 - h, Math.max(1, w - 1), h); });
  g.fillStyle = "#333";
  g.fillText(fmtNum(s.histogram.edges[0]), 2, c.height - 5);
  const last = fmtNum(s.histogram.edges[s.histogram.edges.length - 1]);
  g.fillText(last, c.width - g.measureText(last).width - 2, c.height - 5);
  c.dataset.bars = String(vals.filter((v) => v > 0).length);
}

function drawHeatmap(h) {
  const c = $("#heatmap");
  c.hidden = !h;
  if (!h) return;
  const g = c.getContext("2d");
  const flat = h.values.flat(), lo = Math.min(...flat), hi = Math.max(...flat), span = hi - lo || 1;
  const cw = c.width / h.cols, ch = c.height / h.rows;
  h.values.forEach((row, i) => row.forEach((v, j) => {
    const x = Math.round(255 * (v - lo) / span);
    g.fillStyle = `rgb(${x},${Math.round(x * 0.6)},${255 - x})`;
    g.fillRect(j * cw, i * ch, Math.ceil(cw), Math.ceil(ch));
  }));
}

async function showDiff() {
  $("#diff").hidden = false;
  $("#diff-summary").textContent = "comparing...";
  const d = await api("/api/diff");
  $("#diff-summary").textContent = `${d.same ? "same" : "differ"}: ${d.added.length} added, ${d.removed.length} removed, ${d.changed.length} changed, ${d.unchanged} unchanged`;
  const body = $("#diff-table tbody");
  const rows = [...d.changed.map((c) => [c, "changed"]), ...d.added.map((c) => [c, "added"]), ...d.removed.map((c) => [c, "removed"])];
  body.replaceChildren(...rows.map(([c, kind]) => {
    const tr = el("tr", { "data-name": c.name, class: kind }, el("td", {}, c.name), el("td", {}, kind), el("td", {}, c.a || ""), el("td", {}, c.b || ""),
      el("td", { class: "max-abs" }, c.max_abs == null ? "" : fmtNum(c.max_abs)), el("td", { class: "max-rel" }, ""), el("td", { class: "cosine" }, ""));
    if (kind === "changed") {
      fetch(`/api/diff/${encodeURIComponent(c.name)}`).then((r) => r.json()).then((x) => {
        if (x.comparable) { tr.querySelector(".max-rel").textContent = fmtNum(x.max_rel); tr.querySelector(".cosine").textContent = fmtNum(x.cosine); }
      });
    }
    return tr;
  }));
}

document.addEventListener("DOMContentLoaded", () => {
  let timer = null;
  $("#search").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(search, 150); });
  $("#log-scale").addEventListener("change", drawHistogram);
  document.querySelectorAll("#table th").forEach((th) => th.addEventListener("click", () => {
    state.desc = state.sort === th.dataset.key ? !state.desc : false;
    state.sort = th.dataset.key;
    renderTable();
  }));
  loadFiles().catch((e) => { document.body.prepend(el("p", { class: "error" }, e.message)); });
});
