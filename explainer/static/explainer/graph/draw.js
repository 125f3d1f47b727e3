/**
 * SVG markup of a laid-out graph. The whole drawing is one string handed to the parser once: at 25,000 elements
 * that is several times faster than creating elements one by one, and it is what keeps a graph at the pruning caps
 * within the two-second budget. Items are drawn in the weight filter's order, in bands, so that the filter can
 * hide a prefix cheaply. Every node carries `data-node-id`, every incidence `data-incidence-id`, so tests
 * and people's scripts can read the drawing.
 */
import {CHAR_W, NODE_H, ROW} from "./layout.js";

const SVG_NS = "http://www.w3.org/2000/svg";
export const HEADER_H = 44;
const MEMBER_W = 168;
const MEMBER_ROWS = 20;
const CARD_PAD = 10;

const ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"};
export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

/** The label cut to what fits `width` pixels, with an ellipsis when cut. */
function fitLabel(label, width) {
  const room = Math.max(1, Math.floor((width - 14) / CHAR_W));
  return label.length <= room ? label : `${label.slice(0, Math.max(1, room - 1))}…`;
}

function strokeWidth(weight) {
  return (0.6 + 3.4 * Math.max(0, Math.min(1, weight))).toFixed(2);
}

const SIGN_CLASS = {1: "pos", "-1": "neg", 0: "neu"};

function nodeMarkup(node) {
  const label = node.kind === "input" || node.kind === "output" ? node.label.replace(/\s/g, "\u00b7") : node.label;
  let badge = "";
  let textWidth = node.w;
  if (node.kind === "super") {
    const count = node.doc.attributes ? node.doc.attributes.member_count : "";
    badge = `<text class="hg-badge" x="${node.w - 7}" y="12.5" text-anchor="end">⊕ ${escapeHtml(count)}</text>`;
    textWidth -= 44;
  }
  return `<g class="hg-node hg-node--${node.kind}" data-node-id="${escapeHtml(node.id)}" `
    + `transform="translate(${node.x},${node.y})">`
    + `<rect width="${node.w}" height="${NODE_H}" rx="4"></rect>`
    + `<text x="7" y="12.5">${escapeHtml(fitLabel(label, textWidth))}</text>${badge}</g>`;
}

function columnMarkup(column, layout) {
  const count = column.members.length;
  return `<rect class="hg-lane" x="${column.x - 12}" y="${-HEADER_H + 8}" width="${column.w + 24}" `
    + `height="${layout.height + HEADER_H}" rx="8"></rect>`
    + `<text class="hg-col-title" x="${column.x}" y="${-HEADER_H + 30}">${escapeHtml(column.title)}`
    + `<tspan class="hg-col-count" dx="8">${count}</tspan></text>`;
}

const EDGES_PER_BAND = 2000;
const MAX_EDGE_BANDS = 12;
const NODES_PER_BAND = 1000;
const MAX_NODE_BANDS = 6;

/** Items per band: bands of about `perBand` items, at most `maxBands` of them. */
function bandSize(count, perBand, maxBands) {
  const bands = Math.min(maxBands, Math.max(1, Math.ceil(count / perBand)));
  return Math.max(1, Math.ceil(count / bands));
}

function layer(kind, inner) {
  return `<svg class="hg-layer ${kind}" xmlns="${SVG_NS}"><g class="hg-viewport">${inner}</g></svg>`;
}

/** One layer per band of `size` consecutive items of `order`, each drawn by `markup`. */
function bands(parts, kind, order, size, markup) {
  for (let start = 0; start < order.length; start += size) {
    const items = [];
    for (let j = start; j < Math.min(start + size, order.length); j++) items.push(markup(order[j]));
    parts.push(layer(`hg-band ${kind}`, items.join("")));
  }
}

/** The band layers of `kind` and their items, indexed like `order` (drawing order) mapped back to layout indices. */
function unband(stage, kind, order) {
  const layers = Array.from(stage.querySelectorAll(`:scope > .${kind}`));
  const byIndex = new Array(order.length);
  let j = 0;
  for (const band of layers) for (const el of band.firstElementChild.children) byIndex[order[j++]] = el;
  return {layers, byIndex};
}

/**
 * Draw `layout` into `stage` (an element the layers fill) in the weight filter's `order`: the columns, then the
 * incidences in bands from weakest to strongest (so the strongest lie on top), then the nodes in bands, then an
 * overlay for expanded supernodes. Each band is an `<svg>` of its own, which the browser keeps as a separately
 * painted layer: the weight filter hides a whole band by its opacity, which repaints nothing (see
 * weight_filter.js). Returns the viewport groups of every layer (pan and zoom move them together), node and
 * incidence elements indexed like `layout.nodes` and `layout.incidences`, the band layers and their sizes, the
 * lit groups (copies of a selection, above the dimmed bands) and the overlay group.
 */
export function drawGraph(stage, layout, order) {
  const edgeBand = bandSize(order.incidences.order.length, EDGES_PER_BAND, MAX_EDGE_BANDS);
  const nodeBand = bandSize(order.nodes.order.length, NODES_PER_BAND, MAX_NODE_BANDS);
  const parts = [layer("hg-base", `<g class="hg-columns">${layout.columns.map((c) => columnMarkup(c, layout)).join("")}</g>`)];
  bands(parts, "hg-edges", order.incidences.order, edgeBand, (k) => {
    const inc = layout.incidences[k];
    return `<path class="hg-inc ${SIGN_CLASS[inc.sign]}" data-incidence-id="${escapeHtml(inc.id)}" `
      + `stroke-width="${strokeWidth(inc.weight)}" d="${inc.d}"></path>`;
  });
  bands(parts, "hg-nodes", order.nodes.order, nodeBand, (i) => nodeMarkup(layout.nodes[i]));
  parts.push(layer("hg-top", '<g class="hg-lit"><g class="hg-lit-edges"></g><g class="hg-lit-nodes"></g></g>'
    + '<g class="hg-overlay"></g>'));
  stage.innerHTML = parts.join("");

  const edges = unband(stage, "hg-edges", order.incidences.order);
  const nodes = unband(stage, "hg-nodes", order.nodes.order);
  return {
    groups: Array.from(stage.querySelectorAll(":scope > .hg-layer > .hg-viewport")),
    overlay: stage.querySelector(".hg-overlay"),
    litEdges: stage.querySelector(".hg-lit-edges"), litNodes: stage.querySelector(".hg-lit-nodes"),
    incidenceEls: edges.byIndex, incidenceBands: edges.layers, incidenceBandSize: edgeBand,
    nodeEls: nodes.byIndex, nodeBands: nodes.layers, nodeBandSize: nodeBand,
  };
}

/**
 * A card of a supernode's members beside it, joined to it by a bracket. `members` is `[{id, label}]`; the card
 * lists at most MEMBER_ROWS per column, to the left of the supernode (the side its causes come from).
 */
export function drawMembers(overlay, node, members, totalCount) {
  const columns = Math.max(1, Math.ceil(members.length / MEMBER_ROWS));
  const rows = Math.min(MEMBER_ROWS, members.length);
  const cardW = columns * (MEMBER_W + 8) - 8 + 2 * CARD_PAD;
  const cardH = rows * ROW + 2 * CARD_PAD + 22;
  const x0 = node.x - 36 - cardW;
  const y0 = node.y + NODE_H / 2 - cardH / 2;
  const listed = members.length < totalCount ? `${members.length} of ${totalCount}` : `${totalCount}`;
  const parts = [
    `<path class="hg-bracket" d="M${x0 + cardW} ${node.y + NODE_H / 2}H${node.x}"></path>`,
    `<rect class="hg-card" x="${x0}" y="${y0}" width="${cardW}" height="${cardH}" rx="8"></rect>`,
    `<text class="hg-card-title" x="${x0 + CARD_PAD}" y="${y0 + 17}">${escapeHtml(node.label)} · ${listed} members</text>`,
  ];
  members.forEach((member, n) => {
    const x = x0 + CARD_PAD + Math.floor(n / MEMBER_ROWS) * (MEMBER_W + 8);
    const y = y0 + CARD_PAD + 22 + (n % MEMBER_ROWS) * ROW;
    parts.push(`<g class="hg-member" data-member-id="${escapeHtml(member.id)}" data-member-of="${escapeHtml(node.id)}" `
      + `transform="translate(${x},${y})"><rect width="${MEMBER_W}" height="${NODE_H}" rx="4"></rect>`
      + `<text x="7" y="12.5">${escapeHtml(fitLabel(member.label || member.id, MEMBER_W))}</text></g>`);
  });
  const group = document.createElementNS(SVG_NS, "g");
  group.setAttribute("class", "hg-members");
  group.setAttribute("data-members-of", node.id);
  group.innerHTML = parts.join("");
  overlay.appendChild(group);
  return {group, x: x0, y: y0, w: cardW + 36, h: cardH};
}
