/**
 * The minimum-weight filter: hides incidences weaker than a threshold and the nodes they leave alone.
 *
 * A node stays visible while its strongest incidence does, so both incidences and nodes hide in one fixed order:
 * incidences by weight, nodes by their strongest incidence's weight (their "reach"). The drawing puts them in that
 * order, in bands that are layers of their own (draw.js), so any threshold hides a prefix: the bands below the cut
 * are hidden whole by their opacity, which the compositor applies without repainting anything, and only the band the
 * cut falls in has elements hidden one by one (`display: none`), which repaints that band alone. At the pruning caps
 * a slider step, from one end to the other included, therefore changes at most one band of 2,000 incidences and one
 * of 1,000 nodes; redrawing all 20,000 incidences, as a single layer would, costs several hundred milliseconds on
 * this machine's two cores. Nodes that no incidence joins never hide.
 */
const HIDDEN = "is-off";

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

/** Elements drawn in hiding order, in bands of `size`; `cut` of them (a prefix) are hidden. */
class PrefixHider {
  constructor(elements, order, bands, size) {
    this.drawn = Array.from(order, (i) => elements[i]);  // elements in drawing order
    this.bands = bands;
    this.size = size;
    this.cut = 0;
  }

  setCut(cut) {
    const before = this.cut;
    if (cut === before) return;
    const lo = Math.floor(Math.min(cut, before) / this.size);
    const hi = Math.min(this.bands.length - 1, Math.floor(Math.max(cut, before) / this.size));
    for (let b = lo; b <= hi; b++) this.setBand(b, before, cut);
    this.cut = cut;
  }

  setBand(b, before, cut) {
    const start = b * this.size, end = Math.min(start + this.size, this.drawn.length);
    const partial = (n) => n > start && n < end;
    if (partial(before)) for (let j = start; j < before; j++) this.drawn[j].classList.remove(HIDDEN);
    this.bands[b].classList.toggle(HIDDEN, cut >= end);
    if (partial(cut)) for (let j = start; j < cut; j++) this.drawn[j].classList.add(HIDDEN);
  }
}

export class WeightFilter {
  /** `drawn` is what `drawGraph` returned for a drawing made in `order`. */
  constructor(layout, order, drawn) {
    this.layout = layout;
    this.order = order;
    this.incidences = new PrefixHider(drawn.incidenceEls, order.incidences.order, drawn.incidenceBands,
      drawn.incidenceBandSize);
    this.nodes = new PrefixHider(drawn.nodeEls, order.nodes.order, drawn.nodeBands, drawn.nodeBandSize);
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

  incidenceIsVisible(k) {
    return this.order.incidences.value[k] >= this.threshold;
  }

  nodeIsVisible(i) {
    return this.order.nodes.value[i] >= this.threshold;
  }
}
