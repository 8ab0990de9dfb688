// detkit results browser: reads the JSON API of the server that shipped this file, draws boxes in SVG.
// The view's state lives in the URL (?classes=&score=&errors=&sort=&page=&per_page=&open=), so a view
// can be shared and reloaded.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf", "#393b79", "#e7ba52", "#637939", "#ad494a", "#a55194", "#31a354"];
const STATUS_TEXT = {tp: "TP", fp: "FP", ignored: "ignored (crowd)", matched: "matched", missed: "missed",
                     crowd: "crowd", gt: "ground truth"};

let summary = null;
let state = null;
let pageItems = [];
let requestSeq = 0;
let detailSeq = 0;

const $ = (id) => document.getElementById(id);

function colour(cls) { return PALETTE[cls % PALETTE.length]; }

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function fmt(v, digits) { return v === null || v === undefined ? "–" : Number(v).toFixed(digits); }

// ---- state <-> URL ----

function readState() {
  const q = new URLSearchParams(location.search);
  const n = summary.classes.length;
  let classes = null;
  if (q.get("classes")) {
    classes = q.get("classes").split(",").map(Number).filter((c) => Number.isInteger(c) && c >= 0 && c < n);
    if (classes.length === 0 || classes.length === n) classes = null;
  }
  const score = parseFloat(q.get("score"));
  const open = parseInt(q.get("open"), 10);
  const sort = q.get("sort");
  return {
    classes,
    score: Number.isFinite(score) ? Math.min(1, Math.max(0, score)) : summary.default_score,
    errors: q.get("errors") === "1",
    sort: ["index", "fp", "missed"].includes(sort) ? sort : "index",
    page: Math.max(1, parseInt(q.get("page"), 10) || 1),
    perPage: Math.min(500, Math.max(1, parseInt(q.get("per_page"), 10) || 48)),
    open: Number.isInteger(open) && open >= 0 && open < summary.num_images ? open : null,
  };
}

function stateQuery(s) {
  const q = new URLSearchParams();
  if (s.classes) q.set("classes", s.classes.join(","));
  q.set("score", s.score.toFixed(2));
  if (s.errors) q.set("errors", "1");
  if (s.sort !== "index") q.set("sort", s.sort);
  if (s.page > 1) q.set("page", String(s.page));
  if (s.perPage !== 48) q.set("per_page", String(s.perPage));
  if (s.open !== null) q.set("open", String(s.open));
  return q;
}

function setState(changes, push) {
  state = Object.assign({}, state, changes);
  const url = "?" + stateQuery(state).toString();
  if (push) history.pushState(null, "", url); else history.replaceState(null, "", url);
  render();
}

function apiFilter(s) {
  const q = new URLSearchParams();
  q.set("score", s.score.toFixed(2));
  if (s.classes) q.set("classes", s.classes.join(","));
  return q;
}

// ---- drawing ----

function boxesSvg(width, height, gt, pred, labels) {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "boxes");
  const fontSize = Math.max(width, height) / 45;  // in image pixels: labels keep their size relative to the image
  const add = (b, kind, status, text) => {
    const [x0, y0, x1, y1] = b.box;
    const r = document.createElementNS(SVG_NS, "rect");
    r.setAttribute("x", x0); r.setAttribute("y", y0);
    r.setAttribute("width", Math.max(0, x1 - x0)); r.setAttribute("height", Math.max(0, y1 - y0));
    r.setAttribute("class", `box ${kind} ${status}`);
    r.setAttribute("stroke", colour(b.class));
    r.setAttribute("color", colour(b.class));  // currentColor: the fill of a missed box
    r.setAttribute("vector-effect", "non-scaling-stroke");
    r.setAttribute("data-class", b.class);
    r.setAttribute("data-id", b.id);
    if (b.score !== undefined) r.setAttribute("data-score", b.score);
    const title = document.createElementNS(SVG_NS, "title");
    title.textContent = text;
    r.appendChild(title);
    svg.appendChild(r);
    if (labels) {
      const t = document.createElementNS(SVG_NS, "text");
      t.setAttribute("x", x0 + 1); t.setAttribute("y", y0 > fontSize ? y0 - fontSize / 4 : y1 + fontSize);
      t.setAttribute("class", `label ${kind}`); t.setAttribute("fill", colour(b.class));
      t.setAttribute("font-size", fontSize);
      t.textContent = kind === "pred" ? `${summary.classes[b.class]} ${b.score.toFixed(2)}` : "";
      if (t.textContent) svg.appendChild(t);
    }
  };
  for (const b of gt) add(b, "gt", b.state, `${summary.classes[b.class]} · ground truth · ${STATUS_TEXT[b.state]}`);
  for (const b of pred) add(b, "pred", b.status, `${summary.classes[b.class]} ${b.score.toFixed(2)} · ${STATUS_TEXT[b.status]}`);
  return svg;
}

function figure(item, src, labels) {
  const fig = el("div", {class: "frame"});
  fig.style.aspectRatio = `${item.width} / ${item.height}`;
  if (labels) fig.style.maxWidth = `calc(78vh * ${item.width / item.height})`;  // the full image fits the screen
  fig.appendChild(el("img", {src, alt: item.file, loading: "lazy", draggable: "false"}));
  fig.appendChild(boxesSvg(item.width, item.height, item.gt, item.pred, labels));
  return fig;
}

// ---- summary and controls ----

function renderSummary() {
  $("dataset").textContent = summary.dataset;
  document.body.classList.toggle("no-results", !summary.has_results);
  const body = $("summary-body");
  body.replaceChildren();
  const facts = el("p", {class: "facts"});
  facts.textContent = `${summary.num_images} images · ${summary.num_boxes} boxes` +
    (summary.num_crowd ? ` (+${summary.num_crowd} crowd)` : "") +
    (summary.has_results ? ` · ${summary.num_predictions} predictions from ${summary.results_file}` :
     " · no results file: ground truth only");
  body.appendChild(facts);
  const table = el("table", {id: "class-table"});
  const head = el("tr");
  for (const h of ["class", "boxes"].concat(summary.ap ? ["AP"] : [])) head.appendChild(el("th", {}, h));
  table.appendChild(head);
  summary.classes.forEach((name, c) => {
    const row = el("tr");
    const cell = el("td");
    const swatch = el("span", {class: "swatch"});
    swatch.style.background = colour(c);
    cell.append(swatch, name);
    row.append(cell, el("td", {class: "num"}, String(summary.boxes_per_class[name])));
    if (summary.ap) row.appendChild(el("td", {class: "num"}, fmt(summary.ap.per_class[name], 1)));
    table.appendChild(row);
  });
  body.appendChild(table);
  if (summary.ap) {
    const ap = el("table", {id: "ap-table"});
    const keys = Object.keys(summary.ap.overall);
    const h = el("tr"), v = el("tr");
    for (const k of keys) { h.appendChild(el("th", {}, k)); v.appendChild(el("td", {class: "num"}, fmt(summary.ap.overall[k], 1))); }
    ap.append(h, v);
    body.appendChild(ap);
  }
}

function buildControls() {
  const box = $("class-filter");
  summary.classes.forEach((name, c) => {
    const label = el("label", {class: "class-option"});
    const input = el("input", {type: "checkbox", value: String(c), "data-class": String(c)});
    input.addEventListener("change", onClassChange);
    const swatch = el("span", {class: "swatch"});
    swatch.style.background = colour(c);
    label.append(input, swatch, name);
    box.appendChild(label);
  });
  const score = $("score");
  score.addEventListener("input", () => {
    $("score-value").textContent = Number(score.value).toFixed(2);
    setState({score: Number(score.value), page: 1}, false);
  });
  $("errors-only").addEventListener("change", (e) => setState({errors: e.target.checked, page: 1}, false));
  $("sort").addEventListener("change", (e) => setState({sort: e.target.value, page: 1}, false));
  $("per-page").addEventListener("change", (e) => setState({perPage: Number(e.target.value), page: 1}, false));
  $("prev").addEventListener("click", () => setState({page: Math.max(1, state.page - 1)}, false));
  $("next").addEventListener("click", () => setState({page: state.page + 1}, false));
  $("close").addEventListener("click", () => setState({open: null}, true));
  $("detail").addEventListener("click", (e) => { if (e.target.id === "detail") setState({open: null}, true); });
  $("detail-prev").addEventListener("click", () => stepDetail(-1));
  $("detail-next").addEventListener("click", () => stepDetail(1));
  document.addEventListener("keydown", (e) => {
    if (state.open === null || e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
    if (e.key === "Escape") setState({open: null}, true);
    if (e.key === "ArrowLeft") stepDetail(-1);
    if (e.key === "ArrowRight") stepDetail(1);
  });
  window.addEventListener("popstate", () => { state = readState(); render(); });
}

function onClassChange() {
  const checked = [...document.querySelectorAll("#class-filter input:checked")].map((i) => Number(i.value));
  const all = checked.length === 0 || checked.length === summary.classes.length;
  setState({classes: all ? null : checked, page: 1}, false);
}

function syncControls() {
  for (const input of document.querySelectorAll("#class-filter input")) {
    input.checked = state.classes === null || state.classes.includes(Number(input.value));
  }
  $("score").value = String(state.score);
  $("score-value").textContent = state.score.toFixed(2);
  $("errors-only").checked = state.errors;
  $("sort").value = state.sort;
  const perPage = $("per-page");
  if (![...perPage.options].some((o) => o.value === String(state.perPage))) perPage.appendChild(el("option", {}, String(state.perPage)));
  perPage.value = String(state.perPage);
}

// ---- grid and detail ----

async function getJson(url) {
  const response = await fetch(url);
  const doc = await response.json();
  if (!response.ok) throw new Error(doc.error || response.statusText);
  return doc;
}

function stepDetail(delta) {
  const pos = pageItems.findIndex((it) => it.index === state.open);
  const next = pageItems[pos + delta];
  if (pos >= 0 && next) setState({open: next.index}, false);
}

async function renderGrid() {
  const seq = ++requestSeq;
  const q = apiFilter(state);
  q.set("page", String(state.page));
  q.set("per_page", String(state.perPage));
  q.set("sort", state.sort);
  if (state.errors) q.set("errors_only", "1");
  const doc = await getJson("/api/images?" + q.toString());
  if (seq !== requestSeq) return false;  // a newer request is on its way
  if (doc.total > 0 && doc.page > doc.pages) {  // a shared link to a page that no longer exists
    setState({page: doc.pages}, false);
    return false;
  }
  pageItems = doc.images;
  const grid = $("grid");
  grid.replaceChildren();
  for (const item of doc.images) {
    const cell = el("figure", {class: "cell", "data-index": String(item.index), tabindex: "0"});
    cell.appendChild(figure(item, `/thumb/${item.index}`, false));
    const c = item.counts;
    const caption = el("figcaption");
    caption.append(el("span", {class: "name"}, `#${item.index} ${item.file}`));
    if (summary.has_results) {
      caption.append(el("span", {class: "count tp"}, `${c.tp} TP`), el("span", {class: "count fp"}, `${c.fp} FP`),
                     el("span", {class: "count missed"}, `${c.missed} missed`));
    } else {
      caption.append(el("span", {class: "count"}, `${c.gt} boxes`));
    }
    cell.appendChild(caption);
    cell.addEventListener("click", () => setState({open: item.index}, true));
    cell.addEventListener("keydown", (e) => { if (e.key === "Enter") setState({open: item.index}, true); });
    grid.appendChild(cell);
  }
  if (doc.images.length === 0) grid.appendChild(el("p", {class: "empty"}, "No image matches these filters."));
  $("page-info").textContent = `page ${doc.page} of ${doc.pages} · ${doc.total} images`;
  $("prev").disabled = doc.page <= 1;
  $("next").disabled = doc.page >= doc.pages;
  return true;
}

function detailTable(item) {
  const table = $("detail-table");
  table.replaceChildren();
  const head = el("tr");
  for (const h of ["box", "class", "score", "status", "TIDE", "IoU", "with"]) head.appendChild(el("th", {}, h));
  table.appendChild(head);
  const row = (b, kind) => {
    const tr = el("tr", {class: `${kind} ${kind === "pred" ? b.status : b.state}`, "data-id": String(b.id)});
    const cls = el("td");
    const swatch = el("span", {class: "swatch"});
    swatch.style.background = colour(b.class);
    cls.append(swatch, summary.classes[b.class]);
    const partner = kind === "pred" ? (b.gt === null ? "–" : `GT ${b.gt}`) : (b.pred === null ? "–" : `pred ${b.pred}`);
    tr.append(el("td", {}, `${kind === "pred" ? "pred" : "GT"} ${b.id}`), cls,
              el("td", {class: "num"}, kind === "pred" ? b.score.toFixed(3) : "–"),
              el("td", {}, STATUS_TEXT[kind === "pred" ? b.status : b.state]),
              el("td", {}, b.category || "–"), el("td", {class: "num"}, fmt(b.iou, 2)), el("td", {}, partner));
    tr.addEventListener("mouseenter", () => highlight(kind, b.id, true));
    tr.addEventListener("mouseleave", () => highlight(kind, b.id, false));
    table.appendChild(tr);
  };
  item.pred.slice().sort((a, b) => b.score - a.score).forEach((b) => row(b, "pred"));
  item.gt.forEach((b) => row(b, "gt"));
}

function highlight(kind, id, on) {
  const r = document.querySelector(`#detail-figure rect.${kind}[data-id="${id}"]`);
  if (r) r.classList.toggle("hl", on);
}

async function renderDetail() {
  const panel = $("detail");
  if (state.open === null) { panel.hidden = true; document.body.classList.remove("modal"); return true; }
  const seq = ++detailSeq;
  const item = await getJson(`/api/images/${state.open}?` + apiFilter(state).toString());
  if (seq !== detailSeq) return false;
  const c = item.counts;
  $("detail-title").textContent = `#${item.index} ${item.file} (id ${item.image_id}) · ${item.width}×${item.height}` +
    (summary.has_results ? ` · ${c.tp} TP · ${c.fp} FP · ${c.missed} missed at score ≥ ${item.score.toFixed(2)}` : "");
  const fig = $("detail-figure");
  fig.replaceChildren(figure(item, `/img/${item.index}`, true));
  detailTable(item);
  panel.hidden = false;
  document.body.classList.add("modal");
  return true;
}

async function render() {
  syncControls();
  document.body.dataset.state = "loading";
  try {
    const done = await Promise.all([renderGrid(), renderDetail()]);
    if (done.every(Boolean)) { document.body.dataset.state = "ready"; $("message").textContent = ""; }
  } catch (err) {
    document.body.dataset.state = "error";
    $("message").textContent = String(err.message || err);
  }
}

async function main() {
  try {
    summary = await getJson("/api/summary");
  } catch (err) {
    $("message").textContent = "Could not load the summary: " + (err.message || err);
    document.body.dataset.state = "error";
    return;
  }
  renderSummary();
  buildControls();
  state = readState();
  history.replaceState(null, "", "?" + stateQuery(state).toString());
  render();
}

main();
