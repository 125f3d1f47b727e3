/**
 * The side panel's contents, one function per thing a person can select. Each returns HTML built from escaped
 * text only. Links inside carry `data-focus` (a node id to select and bring into view) or `data-member`
 * (a supernode member to describe); `page.js` handles both.
 */
import {escapeHtml} from "./draw.js";
import {parseFeatureId} from "./layout.js";

const KIND_NAMES = {input: "Input token", output: "Output token", feature: "SAE feature", super: "Supernode"};
const LIST_LIMIT = 60;

function number(value, digits = 3) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "—";
}

function effectClass(inc) {
  return inc.sign > 0 ? "pos" : inc.sign < 0 ? "neg" : "neu";
}

function facts(rows) {
  return `<dl class="hg-facts">${rows.map(([term, value]) => `<dt>${escapeHtml(term)}</dt><dd>${value}</dd>`).join("")}</dl>`;
}

function weightBar(inc) {
  const width = Math.round(Math.max(0, Math.min(1, inc.weight)) * 100);
  return `<span class="hg-wbar ${effectClass(inc)}"><span style="width:${width}%"></span></span>`;
}

/** The incidences of a node, strongest first: the other members of each, its weight and effect. */
function incidenceList(incidences, self, nodes) {
  if (!incidences.length) return '<p class="hg-muted">No incidences.</p>';
  const items = incidences.slice(0, LIST_LIMIT).map((inc) => {
    const others = Array.from(inc.members).filter((m) => m !== self).map((m) => nodes[m]);
    const named = others.slice(0, 4).map((n) => `<a href="#" data-focus="${escapeHtml(n.id)}">${escapeHtml(n.label)}</a>`);
    const more = others.length > 4 ? ` <span class="hg-muted">+${others.length - 4}</span>` : "";
    const effect = inc.doc.attributes && typeof inc.doc.attributes.effect === "number"
      ? `effect ${inc.doc.attributes.effect.toPrecision(3)}` : "no effect recorded";
    return `<li>${weightBar(inc)}<span class="hg-inc-text">${named.join(", ")}${more}`
      + `<small>weight ${number(inc.weight)} · ${escapeHtml(effect)} · ${escapeHtml(inc.doc.metadata.window)}</small></span></li>`;
  });
  const rest = incidences.length > LIST_LIMIT ? `<p class="hg-muted">and ${incidences.length - LIST_LIMIT} more</p>` : "";
  return `<ul class="hg-inc-list">${items.join("")}</ul>${rest}`;
}

function contextList(notes) {
  if (notes === undefined) return '<p class="hg-muted" data-role="contexts-loading">Loading contexts…</p>';
  const contexts = (notes && notes.contexts) || [];
  if (!contexts.length) return '<p class="hg-muted">The dictionary records no top contexts for this feature.</p>';
  return `<ol class="hg-contexts">${contexts.map((c) => `<li><q>${escapeHtml(c.text)}</q>`
    + `<small>activation ${number(c.activation, 2)}${c.topic ? ` · ${escapeHtml(c.topic)}` : ""}</small></li>`).join("")}</ol>`;
}

export function emptyPanel(counts) {
  return `<h2>Explore the graph</h2>
    <p>${counts.totalNodes} nodes and ${counts.totalIncidences} incidences. Click a token to light its incidences and
    their features; click a feature for its label and top contexts; click a supernode to expand its members.</p>
    <p class="hg-muted">Drag to pan, scroll to zoom, <kbd>Esc</kbd> to clear.</p>`;
}

export function nodePanel(selection, nodes) {
  const {node, incidences} = selection;
  const doc = node.doc;
  const rows = [["kind", escapeHtml(KIND_NAMES[node.kind])], ["id", `<code>${escapeHtml(node.id)}</code>`]];
  if (node.kind === "input" || node.kind === "output") rows.push(["position", escapeHtml(doc.position ?? "—")]);
  if (node.kind === "feature") {
    const parsed = parseFeatureId(node.id);
    const index = doc.attributes && Number.isInteger(doc.attributes.feature_index)
      ? doc.attributes.feature_index : parsed ? parsed.index : "—";
    rows.push(["layer", escapeHtml(node.layer ?? "—")], ["index", escapeHtml(index)],
      ["activation", number(doc.activation_strength)]);
  }
  if (node.kind === "super") {
    const members = (doc.attributes && doc.attributes.members) || [];
    rows.push(["layer", escapeHtml(node.layer ?? "—")],
      ["members", `${escapeHtml(doc.attributes ? doc.attributes.member_count : members.length)}`
        + (members.length < (doc.attributes ? doc.attributes.member_count : 0) ? ` (${members.length} listed)` : "")],
      ["peak activation", number(doc.activation_strength)]);
  }
  rows.push(["incidences", `${incidences.length}`]);
  let body = `<p class="hg-kicker">${escapeHtml(KIND_NAMES[node.kind])}</p><h2>${escapeHtml(node.label)}</h2>${facts(rows)}`;
  if (node.kind === "feature") body += `<h3>Top contexts</h3><div data-role="contexts">${contextList(undefined)}</div>`;
  if (node.kind === "super") body += `<h3>Members</h3><div data-role="members">${memberList(node, undefined)}</div>`;
  return `${body}<h3>Incidences</h3>${incidenceList(incidences, node.i, nodes)}`;
}

/** A supernode's listed members, by label in natural order (`concept 9` before `concept 10`), as on its card. */
export function memberList(node, notes) {
  const ids = (node.doc.attributes && node.doc.attributes.members) || [];
  const members = ids.map((id) => ({id, label: notes && notes[id] && notes[id].label ? notes[id].label : id}))
    .sort((a, b) => a.label.localeCompare(b.label, undefined, {numeric: true}));
  return `<ul class="hg-member-list">${members.map(({id, label}) => `<li><a href="#" data-member="${escapeHtml(id)}" `
    + `data-of="${escapeHtml(node.id)}">${escapeHtml(label)}</a></li>`).join("")}</ul>`;
}

/**
 * A supernode member: what the dictionary says (`notes` undefined while loading, null when unavailable). Its own
 * activation is not in the document, which keeps only the cluster's peak.
 */
export function memberPanel(memberId, supernode, notes) {
  const parsed = parseFeatureId(memberId);
  const label = notes && notes.label ? notes.label : memberId;
  const rows = [
    ["id", `<code>${escapeHtml(memberId)}</code>`],
    ["layer", escapeHtml(notes ? notes.layer : parsed ? parsed.layer : "—")],
    ["index", escapeHtml(notes ? notes.index : parsed ? parsed.index : "—")],
    ["activation", `not recorded per member; cluster peak ${number(supernode.doc.activation_strength)}`],
    ["member of", `<a href="#" data-focus="${escapeHtml(supernode.id)}">${escapeHtml(supernode.label)}</a>`],
  ];
  return `<p class="hg-kicker">SAE feature (supernode member)</p><h2>${escapeHtml(label)}</h2>${facts(rows)}`
    + `<h3>Top contexts</h3><div data-role="contexts">${contextList(notes)}</div>`;
}

export function contextsHtml(notes) {
  return contextList(notes || null);
}

export function incidencePanel(selection) {
  const {incidence: inc, members} = selection;
  const attrs = inc.doc.attributes || {};
  const rows = [
    ["weight", number(inc.weight)],
    ["effect", typeof attrs.effect === "number" ? escapeHtml(attrs.effect.toPrecision(4)) : "—"],
    ["method", escapeHtml(inc.doc.metadata.method)],
    ["window", escapeHtml(inc.doc.metadata.window)],
  ];
  if (attrs.value) rows.push(["value", escapeHtml(attrs.value)]);
  if (typeof attrs.se === "number") rows.push(["std. error", number(attrs.se, 4)]);
  if (attrs.verifier) rows.push(["verifier", escapeHtml(attrs.verifier)]);
  if (typeof attrs.observed_effect === "number") {
    rows.push(["observed effect", escapeHtml(attrs.observed_effect.toPrecision(4))]);
    rows.push(["verified", attrs.verified ? "yes" : "no"]);
  }
  const list = members.map((n) => `<li><a href="#" data-focus="${escapeHtml(n.id)}">${escapeHtml(n.label)}</a>`
    + ` <span class="hg-muted">${escapeHtml(KIND_NAMES[n.kind])}</span></li>`).join("");
  return `<p class="hg-kicker">${members.length > 2 ? "Hyperedge" : "Incidence"}</p><h2><code>${escapeHtml(inc.id)}</code></h2>`
    + `${facts(rows)}<h3>Members</h3><ul class="hg-plain-list">${list}</ul>`;
}

export function searchPanel(query, matches) {
  if (!matches.length) return `<h2>No match</h2><p class="hg-muted">No feature label contains “${escapeHtml(query)}”.</p>`;
  const items = matches.slice(0, LIST_LIMIT).map((n) => `<li><a href="#" data-focus="${escapeHtml(n.id)}">`
    + `${escapeHtml(n.label)}</a> <span class="hg-muted">${n.layer !== null ? `L${escapeHtml(n.layer)}` : ""}</span></li>`);
  const more = matches.length > LIST_LIMIT ? `<p class="hg-muted">and ${matches.length - LIST_LIMIT} more</p>` : "";
  return `<p class="hg-kicker">Search</p><h2>${matches.length} feature${matches.length === 1 ? "" : "s"} match `
    + `“${escapeHtml(query)}”</h2><ul class="hg-plain-list" data-role="search-results">${items.join("")}</ul>${more}`;
}
