/**
 * The minimum-weight filter: hides incidences weaker than a threshold and the nodes they leave alone.
 *
 * A node stays visible while its strongest incidence does, so both incidences and nodes hide in one fixed order:
 * incidences by weight, nodes by their strongest incidence's weight (their "reach"). The drawing puts elements in
 * that order, in chunks of CHUNK, so any threshold hides a prefix: whole chunks are hidden with one class on the
 * chunk's group, and only the chunk the cut falls in is touched element by element. A slider step, even from one
 * end to the other, changes at most a few hundred elements' classes instead of 25,000, which is what keeps it
 * within 200 ms at the pruning caps. Nodes that no incidence joins never hide.
 */
const HIDDEN = "is-off";
export const CHUNK = 200;

/** The first index of the ascending `sorted` whose value is >= `threshold`. */
function lowerBound(sorted, threshold) {
  let lo = 0, hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid] < threshold) lo = mid + 1; else hi = mid;
  }
  return lo;
}

function ascending(values) {
  const order = Int32Array.from(values.keys()).sort((a, b) => values[a] - values[b] || a - b);
  return {order, sorted: Float64Array.from(order, (i) => values[i])};
}

/** `{incidences, nodes}`: each `{order, sorted, value}`, the hiding order the drawing must follow. */
export function weightOrder(layout) {
  const weight = Float64Array.from(layout.incidences, (inc) => inc.weight);
  const reach = new Float64Array(layout.nodes.length).fill(-Infinity);
  for (const inc of layout.incidences) for (const i of inc.members) reach[i] = Math.max(reach[i], inc.weight);
  for (const node of layout.nodes) if (node.degree === 0) reach[node.i] = Infinity;
  return {incidences: {...ascending(weight), value: weight}, nodes: {...ascending(reach), value: reach}};
}

/** Elements drawn in hiding order, grouped in chunks; `cut` of them (a prefix) are hidden. */
class PrefixHider {
  constructor(elements, order, chunks) {
    this.drawn = Array.from(order, (i) => elements[i]);  // elements in drawing order
    this.chunks = chunks;
    this.cut = 0;
  }

  setCut(cut) {
    const before = this.cut;
    if (cut === before) return;
    const lo = Math.floor(Math.min(cut, before) / CHUNK);
    const hi = Math.min(this.chunks.length - 1, Math.floor(Math.max(cut, before) / CHUNK));
    for (let c = lo; c <= hi; c++) this.setChunk(c, before, cut);
    this.cut = cut;
  }

  setChunk(c, before, cut) {
    const start = c * CHUNK, end = Math.min(start + CHUNK, this.drawn.length);
    const partial = (n) => n > start && n < end;
    if (partial(before)) for (let j = start; j < before; j++) this.drawn[j].classList.remove(HIDDEN);
    this.chunks[c].classList.toggle(HIDDEN, cut >= end);
    if (partial(cut)) for (let j = start; j < cut; j++) this.drawn[j].classList.add(HIDDEN);
  }
}

export class WeightFilter {
  /** `drawn` is what `drawGraph` returned for a drawing made in `order`. */
  constructor(layout, order, drawn) {
    this.layout = layout;
    this.order = order;
    this.incidences = new PrefixHider(drawn.incidenceEls, order.incidences.order, drawn.incidenceChunks);
    this.nodes = new PrefixHider(drawn.nodeEls, order.nodes.order, drawn.nodeChunks);
    this.threshold = -Infinity;
  }

  /** Show exactly the incidences with weight >= `threshold`, and the nodes at least one of them joins. */
  setMinWeight(threshold) {
    this.incidences.setCut(lowerBound(this.order.incidences.sorted, threshold));
    this.nodes.setCut(lowerBound(this.order.nodes.sorted, threshold));
    this.threshold = threshold;
  }

  get visibleIncidences() {
    return this.layout.incidences.length - this.incidences.cut;
  }

  get visibleNodes() {
    return this.layout.nodes.length - this.nodes.cut;
  }

  nodeIsVisible(i) {
    return this.order.nodes.value[i] >= this.threshold;
  }
}
