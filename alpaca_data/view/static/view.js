"use strict";
// alpaca-data view: every piece of data is put on the page as text (textContent, SVG text nodes), never as HTML.
// The state of the page lives in the address (#view=records&rev=...), so a reload or a shared link shows the same.

const $ = (id) => document.getElementById(id);
const CORE = ["instruction", "input", "output"];
const SVG_NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#3b6fd8", "#d8793b", "#3bab6f", "#b53bd8", "#d83b5b", "#3bb5c4", "#8a8f3b", "#6f3bd8",
                 "#c4a23b", "#5b7a99"];

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
function short(text, width) {
  const flat = String(text ?? "").replace(/\s+/g, " ").trim();
  return flat.length > width ? flat.slice(0, width - 1) + "…" : flat;
}
function fmt(n) { return n === null || n === undefined ? "-" : Number(n).toLocaleString("en-US"); }

// ----------------------------------------------------------------------------------------- state and API

let state = {};
let catalog = {datasets: []};
let revisions = [];  // every revision of every dataset: {ref, id, dataset, short_id, kind, ...}

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  state = Object.fromEntries(params.entries());
  state.view = state.view || "datasets";
}

function go(changes, replace) {
  const next = {...state, ...changes};
  for (const key of Object.keys(next)) if (next[key] === "" || next[key] === null || next[key] === undefined) delete next[key];
  const hash = "#" + new URLSearchParams(next).toString();
  if (replace) history.replaceState(null, "", hash); else history.pushState(null, "", hash);
  render();
}

let busy = 0;
async function api(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) if (value !== undefined && value !== null && value !== "") query.set(key, value);
  busy += 1; document.body.dataset.busy = "1";
  try {
    const response = await fetch(`/api/${path}?${query}`, {headers: {Accept: "application/json"}});
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    return body;
  } finally {
    busy -= 1; if (busy === 0) document.body.dataset.busy = "0";
  }
}

function say(message) { $("status").textContent = message || ""; }

function revRef(rev) { return `${rev.dataset}@${rev.id}`; }
function findRev(ref) {
  if (!ref) return null;
  const [dataset, spec] = ref.split("@");
  return revisions.find((r) => r.dataset === dataset && (spec === undefined || spec === "main" ? r.refs.includes("main")
    : r.id.startsWith(spec) || r.refs.includes(spec))) || null;
}
function label(rev) {
  const refs = rev.refs.length ? ` (${rev.refs.join(", ")})` : "";
  return `${rev.dataset}@${rev.short_id}${refs} · ${fmt(rev.records)} records`;
}

// ----------------------------------------------------------------------------------------- shell

async function start() {
  catalog = await api("datasets");
  revisions = catalog.datasets.flatMap((d) => d.revisions);
  for (const select of [$("rev"), $("diff-a"), $("diff-b")]) {
    clear(select);
    for (const rev of revisions) select.append(el("option", {value: revRef(rev), text: label(rev)}));
  }
  $("rev").addEventListener("change", () => go({rev: $("rev").value, offset: "", pos: "", reason: "", q: "",
                                                verb: "", object: ""}));
  for (const button of document.querySelectorAll("#tabs button")) {
    button.addEventListener("click", () => go({view: button.dataset.view, offset: "", pos: ""}));
  }
  wireRecords(); wireDropped(); wireDiff(); wireEval();
  window.addEventListener("popstate", render);
  readHash();
  if (!state.rev && revisions.length) {
    const first = revisions.find((r) => r.refs.includes("main")) || revisions[0];
    state.rev = revRef(first);
    history.replaceState(null, "", "#" + new URLSearchParams(state).toString());
  }
  render();
}

async function render() {
  readHash();
  say("");
  for (const button of document.querySelectorAll("#tabs button")) button.classList.toggle("active", button.dataset.view === state.view);
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${state.view}`;
  const rev = findRev(state.rev);
  if (rev) $("rev").value = revRef(rev);
  document.body.dataset.view = state.view;
  try {
    await ({datasets: showDatasets, records: showRecords, dropped: showDropped, diff: showDiff,
            pictures: showPictures, eval: showEval}[state.view] || showDatasets)();
  } catch (error) {
    say(error.message);
  }
}

// ----------------------------------------------------------------------------------------- datasets

async function showDatasets() {
  const list = clear($("dataset-list"));
  for (const dataset of catalog.datasets) {
    const table = el("table", {class: "grid"}, el("thead", {}, el("tr", {}, el("th", {text: "id"}),
      el("th", {text: "refs"}), el("th", {text: "records"}), el("th", {text: "command"}), el("th", {text: "message"}))));
    const body = el("tbody");
    for (const rev of dataset.revisions) {
      const row = el("tr", {"data-ref": revRef(rev), onclick: () => go({rev: revRef(rev)})},
        el("td", {text: rev.short_id}), el("td", {text: rev.refs.join(" ")}), el("td", {text: fmt(rev.records)}),
        el("td", {text: rev.command || ""}), el("td", {text: short(rev.message, 90)}));
      if (state.rev && findRev(state.rev) === rev) row.classList.add("selected");
      body.append(row);
    }
    table.append(body);
    list.append(el("h2", {text: dataset.name}));
    if (dataset.problem) list.append(el("p", {class: "summary", text: dataset.problem}));
    list.append(table);
  }
  const detail = clear($("revision-detail"));
  if (!state.rev) return;
  const info = await api("revision", {rev: state.rev});
  detail.append(el("h2", {text: `${info.dataset}@${info.short_id}`}),
    el("p", {class: "summary", text: `${info.created_at} · ${info.command || "?"} · ${fmt(info.records)} records`}),
    el("div", {class: "field"}, el("div", {class: "label", text: "message"}), el("div", {class: "text", text: info.message || "(none)"})));
  const actions = el("div", {class: "toolbar"},
    el("button", {text: "Browse records", onclick: () => go({view: "records", offset: ""})}),
    info.has_rejections ? el("button", {text: "Why dropped", onclick: () => go({view: "dropped", offset: ""})}) : null,
    info.parents.length ? el("button", {text: "Diff with parent", onclick: () => {
      const parent = revisions.find((r) => r.id === info.parents[0]);
      if (parent) go({view: "diff", a: revRef(parent), b: state.rev, kind: "", offset: ""});
    }}) : null,
    info.kind === "annotations" ? el("button", {text: "Eval", onclick: () => go({view: "eval", offset: ""})}) : null,
    el("button", {text: "Pictures", onclick: () => go({view: "pictures"})}));
  detail.append(actions);
  const stats = info.stats || {};
  const kv = el("dl", {class: "kv"});
  const add = (key, value) => kv.append(el("dt", {text: key}), el("dd", {text: value}));
  add("id", info.id);
  add("records", fmt(stats.record_count));
  add("with input", `${fmt(stats.with_input)} (${((stats.with_input_share || 0) * 100).toFixed(1)}%)`);
  add("duplicate instructions", fmt(stats.duplicate_instructions));
  add("empty outputs", fmt(stats.empty_output));
  for (const [name, words] of Object.entries(stats.words || {})) add(`${name} words`, `mean ${words.mean}, median ${words.median}, p95 ${words.p95}, max ${words.max}`);
  add("columns", (info.columns || []).join(", "));
  add("tool version", (info.recipe || {}).tool_version || "-");
  detail.append(el("h3", {text: "Stats"}), kv);
  const lineage = el("ol", {class: "lineage", id: "lineage"});
  for (const step of info.lineage) {
    const item = el("li");
    if (step.missing) { item.append(`${step.short_id}: not in this store`); lineage.append(item); continue; }
    item.append(el("strong", {text: `${step.dataset}@${step.short_id}`}), ` · ${step.command} · ${fmt(step.records)} records`);
    if (step.sources && step.sources.length) item.append(el("div", {class: "summary", text: `from ${step.sources.join(", ")}`}));
    if (step.generation) item.append(el("div", {text: `teacher ${step.generation.teacher || "?"}${step.generation.model ? " (" + step.generation.model + ")" : ""}` +
                                                      (step.generation.decoding ? ` · ${step.generation.decoding}` : "")}));
    for (const kind of ["filter", "dedup"]) {
      const s = step[kind];
      if (s) item.append(el("div", {text: `${kind}: kept ${fmt(s.kept)} of ${fmt(s.input_records)}; ` +
        Object.entries(s.counts || {}).map(([reason, n]) => `${reason} ${n}`).join(", ")}));
    }
    if (step.message) item.append(el("div", {class: "summary", text: step.message}));
    lineage.append(item);
  }
  detail.append(el("h3", {text: "Lineage (oldest first)"}), lineage);
  const recipe = info.recipe || {};
  detail.append(el("h3", {text: "Recipe"}), el("div", {class: "text", text: JSON.stringify(recipe, null, 2)}));
  if (info.children.length) {
    const kids = el("div", {class: "chips"});
    for (const child of info.children) kids.append(el("button", {text: `${child.dataset}@${child.short_id} (${child.command})`,
      onclick: () => go({rev: `${child.dataset}@${child.id}`})}));
    detail.append(el("h3", {text: "Made from this revision"}), kids);
  }
}

// ----------------------------------------------------------------------------------------- records

const FACET_NAMES = {has_input: "has input", length: "length (characters)", script: "script"};

function wireRecords() {
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    go({q: $("q").value.trim(), offset: "", pos: "", sort: $("sort").value});
  });
  $("sort").addEventListener("change", () => go({sort: $("sort").value, offset: ""}));
  $("prev").addEventListener("click", () => go({offset: Math.max(0, Number(state.offset || 0) - 50)}));
  $("next").addEventListener("click", () => go({offset: Number(state.offset || 0) + 50}));
}

function filterParams() {
  const params = {};
  for (const [key, value] of Object.entries(state)) {
    if (["has_input", "length", "script", "verb", "object", "q", "sort"].includes(key) || key.startsWith("col.")) params[key] = value;
  }
  return params;
}

async function showRecords() {
  $("q").value = state.q || "";
  $("sort").value = state.sort || "";
  const offset = Number(state.offset || 0);
  const answer = await api("records", {rev: state.rev, offset, limit: 50, facets: 1, ...filterParams()});
  const body = clear($("records-table").tBodies[0]);
  answer.rows.forEach((record, i) => {
    const position = answer.positions[i];
    const row = el("tr", {"data-pos": position, onclick: () => go({pos: position}, true)},
      el("td", {text: position}), el("td", {text: short(record.instruction, 160)}),
      el("td", {text: short(record.input, 80)}), el("td", {text: short(record.output, 160)}));
    if (String(position) === state.pos) row.classList.add("selected");
    body.append(row);
  });
  const shown = answer.rows.length ? `${fmt(offset + 1)}–${fmt(offset + answer.rows.length)}` : "none";
  $("records-summary").textContent = `${fmt(answer.total)} records` + (answer.words.length ? ` contain every word of “${answer.words.join(" ")}” (ranked by BM25)` : "") +
    ` · showing ${shown}`;
  $("page-info").textContent = `${shown} of ${fmt(answer.total)}`;
  $("prev").disabled = offset <= 0;
  $("next").disabled = offset + answer.rows.length >= answer.total;
  const active = clear($("active-filters"));
  for (const key of ["verb", "object"]) if (state[key]) active.append(el("button", {class: "on", text: `${key}: ${state[key]} ✕`, onclick: () => go({[key]: "", offset: ""})}));
  renderFacets(answer.facets || {});
  await showRecord();
}

function renderFacets(facets) {
  const box = clear($("facets"));
  for (const [name, values] of Object.entries(facets)) {
    if (!values.length) continue;
    const group = el("div", {class: "facet", "data-facet": name}, el("h3", {text: FACET_NAMES[name] || name.replace(/^col\./, "column ")}));
    for (const [value, count] of values.slice(0, 15)) {
      const on = state[name] === String(value);
      group.append(el("button", {class: on ? "on" : "", "data-value": value,
        onclick: () => go({[name]: on ? "" : String(value), offset: "", pos: ""})},
        el("span", {text: value === "true" ? "yes" : value === "false" ? "no" : value}), el("span", {class: "n", text: fmt(count)})));
    }
    box.append(group);
  }
}

function recordFields(record, changed) {
  const box = el("div");
  const names = [...CORE, ...Object.keys(record).filter((k) => !CORE.includes(k))];
  for (const name of names) {
    if (!(name in record)) continue;
    const value = record[name];
    const text = typeof value === "string" ? value : JSON.stringify(value);
    box.append(el("div", {class: "field" + (changed && changed.includes(name) ? " changed" : ""), "data-field": name},
      el("div", {class: "label", text: name}), el("div", {class: "text", text})));
  }
  return box;
}

async function showRecord() {
  const detail = $("record-detail");
  if (state.pos === undefined) { detail.hidden = true; return; }
  const answer = await api("record", {rev: state.rev, pos: state.pos});
  clear(detail).hidden = false;
  detail.append(el("div", {class: "toolbar"}, el("strong", {text: `record ${answer.position} of ${fmt(answer.total)}`}),
    el("span", {class: "badge", text: `key ${answer.key}`}),
    el("button", {text: "close", onclick: () => go({pos: ""}, true)})), recordFields(answer.record));
}

// ----------------------------------------------------------------------------------------- why dropped

const SCORE_NAMES = {rouge_similar: "ROUGE-L F", near_duplicate: "MinHash Jaccard (est.)", semantic_duplicate: "cosine",
                     exact_duplicate: "exact"};

function wireDropped() {
  $("dropped-prev").addEventListener("click", () => go({offset: Math.max(0, Number(state.offset || 0) - 20)}));
  $("dropped-next").addEventListener("click", () => go({offset: Number(state.offset || 0) + 20}));
}

async function showDropped() {
  const rows = clear($("rejections"));
  const reasons = clear($("reasons"));
  const rev = findRev(state.rev);
  if (rev && !rev.has_rejections) {
    $("dropped-summary").textContent = `${rev.dataset}@${rev.short_id} was not made by a filter step. Revisions with rejections:`;
    for (const other of revisions.filter((r) => r.has_rejections)) {
      reasons.append(el("button", {text: label(other), onclick: () => go({rev: revRef(other), offset: ""})}));
    }
    $("dropped-info").textContent = "";
    return;
  }
  const offset = Number(state.offset || 0);
  const answer = await api("rejections", {rev: state.rev, reason: state.reason, offset, limit: 20});
  const totalDropped = answer.reasons.reduce((sum, [, n]) => sum + n, 0);
  $("dropped-summary").textContent = `${fmt(totalDropped)} records dropped by ${answer.command || "?"} ` +
    `(steps: ${answer.steps.map((s) => s.name).join(", ") || "-"}); click a reason to see its records`;
  reasons.append(el("button", {class: state.reason ? "" : "on", text: `all ${fmt(totalDropped)}`, onclick: () => go({reason: "", offset: ""})}));
  for (const [reason, count] of answer.reasons) {
    reasons.append(el("button", {class: state.reason === reason ? "on" : "", "data-reason": reason, text: `${reason} ${fmt(count)}`,
      onclick: () => go({reason, offset: ""})}));
  }
  for (const item of answer.rows) {
    const r = item.rejection;
    const scoreName = SCORE_NAMES[r.reason] || "score";
    const dropped = el("div", {class: "dropped"}, el("h4", {},
      el("span", {class: "badge", text: r.reason}), r.score !== undefined ? el("span", {class: "badge", text: `${scoreName} ${r.score}`}) : null,
      `dropped (source record ${r.index})`), recordFields({instruction: r.instruction, input: r.input, output: r.output}));
    let kept;
    if (item.kept) {
      kept = el("div", {class: "kept"}, el("h4", {}, `kept: ${item.kept_in} record ${item.kept_position}`), recordFields(item.kept));
    } else if (item.kept_instruction) {
      kept = el("div", {class: "kept"}, el("h4", {text: "collided with (instruction; record not in this store's revisions)"}),
        recordFields({instruction: item.kept_instruction}));
    } else {
      kept = el("div", {class: "kept"}, el("p", {class: "summary", text: "a rule dropped it: no kept record involved"}));
    }
    rows.append(el("div", {class: "pair"}, dropped, kept));
  }
  $("dropped-info").textContent = `${fmt(answer.rows.length ? offset + 1 : 0)}–${fmt(offset + answer.rows.length)} of ${fmt(answer.total)}`;
  $("dropped-prev").disabled = offset <= 0;
  $("dropped-next").disabled = offset + answer.rows.length >= answer.total;
}

// ----------------------------------------------------------------------------------------- diff

function wireDiff() {
  $("diff-a").addEventListener("change", () => go({a: $("diff-a").value, offset: ""}));
  $("diff-b").addEventListener("change", () => go({b: $("diff-b").value, offset: ""}));
  $("diff-prev").addEventListener("click", () => go({offset: Math.max(0, Number(state.offset || 0) - 20)}));
  $("diff-next").addEventListener("click", () => go({offset: Number(state.offset || 0) + 20}));
}

async function showDiff() {
  const rev = findRev(state.rev);
  let a = state.a, b = state.b;
  if (!b && rev) b = revRef(rev);
  if (!a && rev && rev.parents.length) {
    const parent = revisions.find((r) => r.id === rev.parents[0]);
    if (parent) a = revRef(parent);
  }
  a = a || b;
  const [revA, revB] = [findRev(a), findRev(b)];  // the selects list full ids: NAME@main shows as its revision
  if (revA) a = revRef(revA);
  if (revB) b = revRef(revB);
  $("diff-a").value = a; $("diff-b").value = b;
  const kind = state.kind || "changed";
  const offset = Number(state.offset || 0);
  const answer = await api("diff", {a, b, kind, offset, limit: 20});
  const kinds = clear($("diff-kinds"));
  for (const name of ["added", "removed", "changed"]) {
    kinds.append(el("button", {class: name === kind ? "on" : "", "data-kind": name, text: `${name} ${fmt(answer.counts[name])}`,
      onclick: () => go({a, b, kind: name, offset: ""})}));
  }
  kinds.append(el("span", {class: "summary", text: `unchanged ${fmt(answer.counts.unchanged)} · records keyed by normalised instruction + input`}));
  const rows = clear($("diff-rows"));
  for (const item of answer.rows) {
    const left = item.before ? el("div", {}, el("h4", {text: `A: ${answer.a.dataset}@${answer.a.short_id} record ${item.position_a}`}), recordFields(item.before, item.fields))
      : el("div", {}, el("p", {class: "summary", text: "not in A"}));
    const right = item.after ? el("div", {}, el("h4", {text: `B: ${answer.b.dataset}@${answer.b.short_id} record ${item.position_b}`}), recordFields(item.after, item.fields))
      : el("div", {}, el("p", {class: "summary", text: "not in B"}));
    rows.append(el("div", {class: "pair"}, left, right));
  }
  $("diff-info").textContent = `${fmt(answer.rows.length ? offset + 1 : 0)}–${fmt(offset + answer.rows.length)} of ${fmt(answer.total)} ${kind}`;
  $("diff-prev").disabled = offset <= 0;
  $("diff-next").disabled = offset + answer.rows.length >= answer.total;
}

// ----------------------------------------------------------------------------------------- pictures

let verbsTimer = null;

async function showPictures() {
  const lengths = await api("lengths", {rev: state.rev});
  const box = clear($("histograms"));
  for (const [name, field] of Object.entries(lengths.fields)) box.append(histogram(name, field, lengths.bins));
  if (verbsTimer) { clearTimeout(verbsTimer); verbsTimer = null; }
  await pollVerbs(state.rev);
}

function histogram(name, field, bins) {
  const width = 400, height = 170, pad = 24, top = 40;
  const max = Math.max(1, ...field.counts);
  const chart = svg("svg", {width, height, viewBox: `0 0 ${width} ${height}`, "data-field": name, role: "img"});
  chart.append(svg("text", {x: 10, y: 16, "font-size": 13, "font-weight": 600}, `${name}: words per record`),
               svg("text", {x: 10, y: 31, "font-size": 11, fill: "#5c6578"},
                   `mean ${field.mean} · median ${field.median} · max ${field.max}`));
  const step = (width - 2 * pad) / bins.length;
  bins.forEach((bin, i) => {
    const h = (height - top - pad) * field.counts[i] / max;
    const bar = svg("rect", {class: "bar", x: pad + i * step + 2, y: height - pad - h, width: step - 4, height: Math.max(h, 0.5),
                             fill: "#3b6fd8"});
    bar.append(svg("title", {}, `${bin} words: ${fmt(field.counts[i])} records`));
    chart.append(bar, svg("text", {x: pad + i * step + step / 2, y: height - pad + 12, "font-size": 8, "text-anchor": "middle"}, bin));
  });
  return chart;
}

async function pollVerbs(ref) {
  if (state.view !== "pictures" || state.rev !== ref) return;
  const answer = await api("verbs", {rev: ref});
  const status = $("verbs-status");
  if (answer.state === "running") {
    status.textContent = `parsing instructions with spaCy: ${fmt(answer.done)} of ${fmt(answer.total)}…`;
    verbsTimer = setTimeout(() => pollVerbs(ref).catch((error) => say(error.message)), 1000);
    return;
  }
  if (answer.state === "failed") { status.textContent = `no verb-object picture: ${answer.error}`; return; }
  status.textContent = `${fmt(answer.records)} instructions · ${fmt(answer.distinct_verbs)} distinct root verbs · ` +
    `${fmt(answer.no_verb)} without a verb root · ${fmt(answer.no_object)} without a direct object. Hover for counts; click a verb or object to see its records.`;
  drawSunburst(answer);
}

function noFilters() {  // a picture's click shows all of its records: the records view's other filters go
  const cleared = {q: "", offset: "", pos: "", has_input: "", length: "", script: "", verb: "", object: ""};
  for (const key of Object.keys(state)) if (key.startsWith("col.")) cleared[key] = "";
  return cleared;
}

function arcPath(cx, cy, r0, r1, a0, a1) {
  const large = a1 - a0 > Math.PI ? 1 : 0;
  const p = (r, a) => `${(cx + r * Math.sin(a)).toFixed(2)} ${(cy - r * Math.cos(a)).toFixed(2)}`;
  return `M ${p(r0, a0)} L ${p(r1, a0)} A ${r1} ${r1} 0 ${large} 1 ${p(r1, a1)} L ${p(r0, a1)} A ${r0} ${r0} 0 ${large} 0 ${p(r0, a0)} Z`;
}

function drawSunburst(answer) {
  const size = 520, c = size / 2;
  const chart = svg("svg", {width: size, height: size, viewBox: `0 0 ${size} ${size}`, id: "sunburst-svg", role: "img"});
  const total = answer.verbs.reduce((sum, v) => sum + v.count, 0) || 1;
  const info = $("sunburst-info");
  info.textContent = "hover a wedge";
  let angle = 0;
  answer.verbs.forEach((verb, i) => {
    const sweep = 2 * Math.PI * verb.count / total;
    const colour = PALETTE[i % PALETTE.length];
    const wedge = svg("path", {class: "arc verb", d: arcPath(c, c, 60, 160, angle, angle + sweep), fill: colour,
                               stroke: "#fff", "data-verb": verb.verb});
    wedge.append(svg("title", {}, `${verb.verb}: ${fmt(verb.count)} instructions`));
    wedge.addEventListener("mouseenter", () => { info.textContent = `${verb.verb}: ${fmt(verb.count)} instructions (${(100 * verb.count / answer.records).toFixed(1)}% of all)`; });
    wedge.addEventListener("click", () => go({...noFilters(), view: "records", verb: verb.verb}));
    chart.append(wedge);
    if (sweep > 0.12) {
      const mid = angle + sweep / 2;
      chart.append(svg("text", {x: c + 110 * Math.sin(mid), y: c - 110 * Math.cos(mid) + 4, "font-size": 11,
                                "text-anchor": "middle", fill: "#fff", "pointer-events": "none"}, verb.verb));
    }
    let inner = angle;
    for (const object of verb.objects) {
      const part = 2 * Math.PI * object.count / total;
      const arc = svg("path", {class: "arc object", d: arcPath(c, c, 162, 250, inner, inner + part), fill: colour,
                               "fill-opacity": 0.55, stroke: "#fff", "data-verb": verb.verb, "data-object": object.object});
      arc.append(svg("title", {}, `${verb.verb} ${object.object}: ${fmt(object.count)}`));
      arc.addEventListener("mouseenter", () => { info.textContent = `${verb.verb} → ${object.object}: ${fmt(object.count)} instructions`; });
      arc.addEventListener("click", () => go({...noFilters(), view: "records", verb: verb.verb, object: object.object}));
      chart.append(arc);
      if (part > 0.07) {
        const mid = inner + part / 2;
        chart.append(svg("text", {x: c + 206 * Math.sin(mid), y: c - 206 * Math.cos(mid) + 4, "font-size": 10,
                                  "text-anchor": "middle", "pointer-events": "none"}, object.object));
      }
      inner += part;
    }
    angle += sweep;
  });
  chart.append(svg("text", {x: c, y: c + 4, "font-size": 12, "text-anchor": "middle"}, `top ${answer.verbs.length} verbs`));
  clear($("sunburst")).append(chart);
}

// ----------------------------------------------------------------------------------------- eval

function wireEval() {
  $("winner").addEventListener("change", () => go({winner: $("winner").value, offset: ""}));
  $("category").addEventListener("change", () => go({category: $("category").value, offset: ""}));
  $("eval-prev").addEventListener("click", () => go({offset: Math.max(0, Number(state.offset || 0) - 20)}));
  $("eval-next").addEventListener("click", () => go({offset: Number(state.offset || 0) + 20}));
}

function pct(value) { return value === null || value === undefined ? "-" : `${Number(value).toFixed(1)}%`; }

async function showEval() {
  const rev = findRev(state.rev);
  const report = clear($("eval-report"));
  const body = clear($("eval-table").tBodies[0]);
  if (rev && rev.kind !== "annotations") {
    report.append(el("p", {text: `${rev.dataset}@${rev.short_id} is not an annotations revision. Annotations:`}));
    for (const other of revisions.filter((r) => r.kind === "annotations")) {
      report.append(el("button", {text: label(other), onclick: () => go({rev: revRef(other), offset: ""})}));
    }
    return;
  }
  const offset = Number(state.offset || 0);
  const answer = await api("eval", {rev: state.rev, winner: state.winner, category: state.category, offset, limit: 20});
  const r = answer.report;
  if (r) {
    report.append(el("h2", {text: r.headline}));
    const kv = el("dl", {class: "kv", id: "eval-figures"});
    const add = (key, value) => kv.append(el("dt", {text: key}), el("dd", {text: value}));
    add("model (output_2)", r.model); add("baseline (output_1)", r.baseline);
    add("win rate", `${pct(r.win_rate)} ± ${r.standard_error === null ? "-" : Number(r.standard_error).toFixed(2)} (ties count half)`);
    add("bootstrap 95%", r.bootstrap_95 ? r.bootstrap_95.map(pct).join(" – ") : "-");
    add("length-controlled", pct(r.alpaca_eval.length_controlled_winrate));
    add("wins / ties / losses", `${r.wins} / ${r.ties} / ${r.losses} (excluded ${r.excluded_rows})`);
    add("sign test p", r.sign_test.p_value === null ? "-" : Number(r.sign_test.p_value).toPrecision(3));
    add("judges", r.annotators.join(", "));
    report.append(el("div", {class: "split"}, el("div", {class: "pane"}, kv),
      el("img", {class: "eval-figure", alt: "wins, ties and losses per category", src: `/api/eval/figure?rev=${encodeURIComponent(state.rev)}`})));
  } else {
    report.append(el("p", {text: `no report: ${answer.report_error}`}));
  }
  fillSelect($("winner"), answer.winners, state.winner);
  fillSelect($("category"), answer.categories, state.category);
  for (const [i, row] of answer.rows.entries()) {
    body.append(el("tr", {"data-winner": row.winner},
      el("td", {text: answer.positions[i]}),
      el("td", {}, el("div", {class: "text", text: row.instruction}), row.input ? el("div", {class: "text", text: row.input}) : null),
      el("td", {}, el("div", {class: "text", text: row.output_1 ?? ""})),
      el("td", {}, el("div", {class: "text", text: row.output_2 ?? ""})),
      el("td", {}, el("div", {class: `win-${row.winner}`, text: row.winner}), el("div", {class: "summary",
        text: `preference ${row.preference ?? "-"} · ${row.annotator ?? ""}${row.category ? " · " + row.category : ""}`}))));
  }
  $("eval-summary").textContent = `${fmt(answer.total)} rows`;
  $("eval-info").textContent = `${fmt(answer.rows.length ? offset + 1 : 0)}–${fmt(offset + answer.rows.length)} of ${fmt(answer.total)}`;
  $("eval-prev").disabled = offset <= 0;
  $("eval-next").disabled = offset + answer.rows.length >= answer.total;
}

function fillSelect(select, pairs, chosen) {
  clear(select).append(el("option", {value: "", text: "any"}));
  for (const [value, count] of pairs) select.append(el("option", {value, text: `${value} (${fmt(count)})`}));
  select.value = chosen || "";
}

start().catch((error) => say(error.message));
