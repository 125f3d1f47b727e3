/**
 * Layered layout of a HIF v1 document, computed without the DOM (the page and the benchmark lay out alike).
 *
 * Columns run left to right the way attribution reads, causes to effects: input tokens, SAE features by layer
 * (a supernode sits in the layer most of its members come from), output tokens. Tokens keep their order; a feature
 * is placed at the weighted mean height of the tokens it is joined to, so most incidences run short and flat.
 * Every step is a sort or a linear pass: 5,000 nodes and 20,000 incidences lay out in a few tens of milliseconds.
 */

export const NODE_H = 18;
export const ROW = 22;
const FEATURE_W = 196;
export const CHAR_W = 6.3;
const TOKEN_MIN_W = 28;
const TOKEN_MAX_W = 150;
const TOKEN_COLUMN_MIN_W = 124;  // room for the column's title above short tokens
const COLUMN_GAP = 180;
const MAX_TOKEN_PITCH = 3 * ROW;
const MIN_ROWS = 24;
const MAX_WRAP = 6;
const SUB_COLUMN_W = FEATURE_W + 16;
const HUB_R = 4;

const KIND_OF_TYPE = {
  input_token: "input",
  output_token: "output",
  sae_feature: "feature",
  circuit_supernode: "super",
};
const FEATURE_ID = /^feat_(\d+)_(\d+)$/;

/** (layer, index) of a `feat_<layer>_<index>` id, or null. */
export function parseFeatureId(id) {
  const match = FEATURE_ID.exec(id);
  return match ? {layer: Number(match[1]), index: Number(match[2])} : null;
}

function tokenWidth(label) {
  return Math.min(TOKEN_MAX_W, Math.max(TOKEN_MIN_W, Math.round(label.length * CHAR_W + 16)));
}

/** The layer of a feature node, or of most of a supernode's listed members; null when nothing says. */
function layerOf(doc) {
  if (Number.isInteger(doc.layer)) return doc.layer;
  if (doc.type === "sae_feature") {
    const parsed = parseFeatureId(doc.id);
    return parsed ? parsed.layer : null;
  }
  const members = (doc.attributes && doc.attributes.members) || [];
  const votes = new Map();
  let best = null;
  for (const id of members) {
    const parsed = parseFeatureId(id);
    if (!parsed) continue;
    const count = (votes.get(parsed.layer) || 0) + 1;
    votes.set(parsed.layer, count);
    if (best === null || count > votes.get(best) || (count === votes.get(best) && parsed.layer < best)) best = parsed.layer;
  }
  return best;
}

function readNodes(docNodes) {
  const index = new Map();
  const nodes = new Array(docNodes.length);
  for (let i = 0; i < docNodes.length; i++) {
    const doc = docNodes[i];
    const kind = KIND_OF_TYPE[doc.type] || "feature";
    const label = typeof doc.label === "string" && doc.label !== "" ? doc.label : doc.id;
    index.set(doc.id, i);
    nodes[i] = {
      i, id: doc.id, kind, label, doc,
      layer: kind === "feature" || kind === "super" ? layerOf(doc) : null,
      column: 0, sub: 0, x: 0, y: 0, w: kind === "input" || kind === "output" ? tokenWidth(label) : FEATURE_W, h: NODE_H,
      degree: 0,
    };
  }
  return {nodes, index};
}

function readIncidences(docIncidences, index, nodes) {
  const incidences = new Array(docIncidences.length);
  for (let k = 0; k < docIncidences.length; k++) {
    const doc = docIncidences[k];
    const ids = doc.node_ids;
    const members = [];
    for (let j = 0; j < ids.length; j++) {
      const i = index.get(ids[j]);
      if (i !== undefined) {
        members.push(i);
        nodes[i].degree++;
      }
    }
    const effect = doc.attributes ? doc.attributes.effect : undefined;
    incidences[k] = {
      k, id: doc.id, doc, members, weight: Number(doc.weight) || 0,
      sign: typeof effect === "number" ? (effect > 0 ? 1 : effect < 0 ? -1 : 0) : 0, d: "",
    };
  }
  return incidences;
}

function columnsOf(nodes) {
  const keys = new Map();
  for (const node of nodes) {
    const key = node.kind === "input" ? "in" : node.kind === "output" ? "out"
      : node.layer === null ? "features" : `L${node.layer}`;
    if (!keys.has(key)) keys.set(key, []);
    keys.get(key).push(node.i);
    node.key = key;
  }
  const rank = (key) => (key === "in" ? -2 : key === "out" ? 1e9 : key === "features" ? 1e9 - 1 : Number(key.slice(1)));
  const ordered = [...keys.keys()].sort((a, b) => rank(a) - rank(b));
  return ordered.map((key, c) => {
    const members = keys.get(key);
    for (const i of members) nodes[i].column = c;
    const title = key === "in" ? "Input tokens" : key === "out" ? "Output tokens"
      : key === "features" ? "Features" : `Layer ${key.slice(1)}`;
    return {key, title, members, x: 0, w: 0, wrap: 1, isToken: key === "in" || key === "out"};
  });
}

/**
 * How many sub-columns each feature column wraps into, and the drawing's height. A layer with far more features
 * than there are tokens would make a drawing so tall that, fitted to the screen, no label could be read; such a
 * layer wraps (up to MAX_WRAP sub-columns) to about the tokens' height.
 */
function wrapColumns(columns) {
  const tokenRows = Math.max(0, ...columns.filter((c) => c.isToken).map((c) => c.members.length));
  const rowsWanted = Math.max(tokenRows, MIN_ROWS);
  let rows = Math.max(4, tokenRows);
  for (const column of columns) {
    if (column.isToken) continue;
    column.wrap = Math.min(MAX_WRAP, Math.max(1, Math.ceil(column.members.length / rowsWanted)));
    rows = Math.max(rows, Math.ceil(column.members.length / column.wrap));
  }
  return rows * ROW;
}

function placeTokens(column, nodes, height) {
  column.members.sort((a, b) => (nodes[a].doc.position ?? a) - (nodes[b].doc.position ?? b) || a - b);
  const count = column.members.length;
  const pitch = Math.min(MAX_TOKEN_PITCH, height / count);
  const top = (height - pitch * count) / 2;
  column.members.forEach((i, r) => { nodes[i].y = Math.round(top + pitch * r + (pitch - NODE_H) / 2); });
}

/**
 * Heights as close as possible (least squares) to `targets`, sorted, `pitch` apart, inside [0, bottom].
 *
 * With z_r = y_r - r * pitch the spacing rule becomes "z is non-decreasing", so the answer is the isotonic
 * regression of t_r - r * pitch (pool adjacent violators, linear time) clamped to the bounds: a crowd of features
 * wanting the same height spreads evenly above and below it instead of piling up downwards.
 */
function spreadRows(targets, bottom, pitch) {
  const blocks = [];
  targets.forEach((t, r) => {
    let block = {sum: t - r * pitch, count: 1};
    while (blocks.length && blocks[blocks.length - 1].sum / blocks[blocks.length - 1].count >= block.sum / block.count) {
      const previous = blocks.pop();
      block = {sum: previous.sum + block.sum, count: previous.count + block.count};
    }
    blocks.push(block);
  });
  const high = Math.max(0, bottom - (targets.length - 1) * pitch);
  const ys = [];
  for (const block of blocks) {
    const z = Math.min(high, Math.max(0, block.sum / block.count));
    for (let c = 0; c < block.count; c++) ys.push(z + ys.length * pitch);
  }
  return ys;
}

/**
 * Features go to the weighted mean height of the tokens they are joined to (one pass over the incidences for all
 * columns), then each column is spread out. A wrapped column deals its features, in height order, to its
 * sub-columns in turn, `ROW / wrap` apart: neighbours in one sub-column are then a whole row apart.
 */
function placeFeatures(columns, nodes, incidences, height) {
  const sum = new Float64Array(nodes.length);
  const mass = new Float64Array(nodes.length);
  const tokenY = new Float64Array(nodes.length).fill(NaN);
  for (const node of nodes) if (node.kind === "input" || node.kind === "output") tokenY[node.i] = node.y;
  for (const inc of incidences) {
    const members = inc.members;
    let ySum = 0, tokens = 0;
    for (let j = 0; j < members.length; j++) {
      const y = tokenY[members[j]];
      if (y === y) { ySum += y; tokens++; }
    }
    if (!tokens) continue;
    const w = inc.weight + 1e-6, y = ySum / tokens;
    for (let j = 0; j < members.length; j++) { sum[members[j]] += w * y; mass[members[j]] += w; }
  }
  const target = new Float64Array(nodes.length);
  for (let i = 0; i < nodes.length; i++) target[i] = mass[i] > 0 ? sum[i] / mass[i] : height / 2;
  for (const column of columns) {
    if (column.isToken) continue;
    column.members.sort((a, b) => target[a] - target[b] || (nodes[a].id < nodes[b].id ? -1 : 1));
    const pitch = ROW / column.wrap;
    const ys = spreadRows(column.members.map((i) => target[i]), Math.max(height, column.members.length * pitch) - NODE_H,
      pitch);
    column.members.forEach((i, r) => {
      nodes[i].y = Math.round(ys[r]);
      nodes[i].sub = r % column.wrap;
    });
  }
}

const round = Math.round;

/** SVG path data of one incidence: a curve for two members, a hub joined to every member for more. */
function incidencePath(inc, nodes) {
  const members = inc.members;
  if (members.length < 2) return "";
  if (members.length === 2) {
    let a = nodes[members[0]], b = nodes[members[1]];
    if (a.x > b.x) [a, b] = [b, a];
    const ay = a.y + NODE_H / 2, by = b.y + NODE_H / 2;
    if (a.column === b.column) {
      const x = a.x + a.w, bulge = 40 + Math.abs(by - ay) / 4;
      return `M${round(x)} ${round(ay)}C${round(x + bulge)} ${round(ay)} ${round(x + bulge)} ${round(by)} ${round(x)} ${round(by)}`;
    }
    const x1 = a.x + a.w, x2 = b.x, mid = (x1 + x2) / 2;
    return `M${round(x1)} ${round(ay)}C${round(mid)} ${round(ay)} ${round(mid)} ${round(by)} ${round(x2)} ${round(by)}`;
  }
  // Causes (features, supernodes, input tokens) on one side of the hub, effects (output tokens) on the other.
  let causeRight = -Infinity, effectLeft = Infinity, causeY = 0, causes = 0, effectY = 0, effects = 0;
  let minX = Infinity, maxX = -Infinity, allY = 0;
  for (const i of members) {
    const n = nodes[i], cy = n.y + NODE_H / 2;
    if (n.kind === "output") { effectLeft = Math.min(effectLeft, n.x); effectY += cy; effects++; }
    else { causeRight = Math.max(causeRight, n.x + n.w); causeY += cy; causes++; }
    minX = Math.min(minX, n.x + n.w / 2); maxX = Math.max(maxX, n.x + n.w / 2); allY += cy;
  }
  let hx, hy;
  if (causes && effects && causeRight < effectLeft) {
    hx = (causeRight + effectLeft) / 2;
    hy = (causeY / causes + effectY / effects) / 2;
  } else {
    hx = (minX + maxX) / 2;
    hy = allY / members.length;
  }
  hx = round(hx); hy = round(hy);
  // The hub is a small diamond: four straight segments rasterize far faster than a circle's arcs, 20,000 times.
  let d = `M${hx - HUB_R} ${hy}l${HUB_R} ${-HUB_R}l${HUB_R} ${HUB_R}l${-HUB_R} ${HUB_R}z`;
  for (const i of members) {
    const n = nodes[i], my = round(n.y + NODE_H / 2);
    const mx = round(n.x + n.w / 2 < hx ? n.x + n.w : n.x);
    const cx = round((hx + mx) / 2);
    d += `M${hx} ${hy}C${cx} ${hy} ${cx} ${my} ${mx} ${my}`;
  }
  return d;
}

/**
 * `{nodes, incidences, columns, width, height}`: every node with x, y, w, h and its column; every incidence with
 * its member indices, weight, effect sign (1, -1, 0 when absent) and SVG path `d`.
 */
export function layoutGraph(doc) {
  const {nodes, index} = readNodes(doc.nodes || []);
  const incidences = readIncidences(doc.incidences || [], index, nodes);
  const columns = columnsOf(nodes);
  const height = wrapColumns(columns);
  for (const column of columns) if (column.isToken) placeTokens(column, nodes, height);
  placeFeatures(columns, nodes, incidences, height);
  let x = 0;
  for (const column of columns) {
    column.x = x;
    column.w = column.isToken ? column.members.reduce((w, i) => Math.max(w, nodes[i].w), TOKEN_COLUMN_MIN_W)
      : column.wrap * SUB_COLUMN_W - (SUB_COLUMN_W - FEATURE_W);
    for (const i of column.members) {
      const node = nodes[i];
      // Input chips end where their edges start; features sit in their sub-column.
      node.x = column.key === "in" ? x + column.w - node.w : column.isToken ? x : x + node.sub * SUB_COLUMN_W;
    }
    x += column.w + COLUMN_GAP;
  }
  let bottom = height;
  for (const node of nodes) bottom = Math.max(bottom, node.y + NODE_H);
  for (const inc of incidences) inc.d = incidencePath(inc, nodes);
  return {nodes, index, incidences, columns, width: Math.max(0, x - COLUMN_GAP), height: bottom};
}
