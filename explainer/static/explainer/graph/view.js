/**
 * The interactive hypergraph: lays out and draws a HIF v1 document, then owns what a person does with it —
 * the weight filter, selecting a node (its incidences and their other members stay lit, the rest dims),
 * expanding a supernode into its members, search over feature labels, pan and zoom, hover tooltips.
 * It knows nothing about the page around it; `page.js` wires it to the toolbar and the side panel.
 */
import {drawGraph, drawMembers, HEADER_H} from "./draw.js";
import {layoutGraph, NODE_H} from "./layout.js";
import {Viewport} from "./viewport.js";
import {WeightFilter, weightOrder} from "./weight_filter.js";

const LIT = "is-hl";

/** For each node, the incidences it belongs to: CSR arrays, built once in one pass over the memberships. */
function incidencesByNode(layout) {
  const start = new Int32Array(layout.nodes.length + 1);
  for (const inc of layout.incidences) for (const i of inc.members) start[i + 1]++;
  for (let i = 0; i < layout.nodes.length; i++) start[i + 1] += start[i];
  const fill = start.slice(0, -1);
  const list = new Int32Array(start[layout.nodes.length]);
  for (const inc of layout.incidences) for (const i of inc.members) list[fill[i]++] = inc.k;
  return (i) => list.subarray(start[i], start[i + 1]);
}

export class GraphView {
  /**
   * @param container element the SVG goes into (it should have a size)
   * @param doc a HIF v1 document
   * @param describe async (featureIds) => {id: {label, ...}}: labels of supernode members, from the dictionary
   */
  constructor(container, doc, {describe = null} = {}) {
    this.container = container;
    this.describe = describe;
    this.layout = layoutGraph(doc);
    this.stage = document.createElement("div");
    this.stage.className = "hg-stage-layers";
    this.stage.setAttribute("role", "img");
    this.stage.setAttribute("aria-label", "Attribution hypergraph");
    container.appendChild(this.stage);
    // Sized and zoomed before anything is drawn: the browser then lays out the drawing once, at the right zoom
    // (labels of a far zoom are never laid out at all).
    this.viewport = new Viewport(this.stage, {
      x: -24, y: -HEADER_H, w: this.layout.width + 48, h: this.layout.height + HEADER_H + 24,
    });
    this.viewport.fit();
    const order = weightOrder(this.layout);
    const drawn = drawGraph(this.stage, this.layout, order);
    this.viewport.attach(drawn.groups);
    this.nodeEls = drawn.nodeEls;
    this.incidenceEls = drawn.incidenceEls;
    this.overlay = drawn.overlay;
    this.litEdges = drawn.litEdges;
    this.litNodes = drawn.litNodes;
    this.filter = new WeightFilter(this.layout, order, drawn);
    this.incidencesOf = incidencesByNode(this.layout);
    this.nodeIndex = new Map(this.nodeEls.map((el, i) => [el, i]));
    this.incidenceIndex = new Map(this.incidenceEls.map((el, k) => [el, k]));
    this.expanded = new Map();
    this.lit = [];
    this.selected = null;
    this.matches = [];
    this.handlers = [];
    this.tooltip = document.createElement("div");
    this.tooltip.className = "hg-tooltip";
    container.appendChild(this.tooltip);
    this.stage.addEventListener("click", (event) => this.onClick(event));
    this.stage.addEventListener("pointerover", (event) => this.onHover(event));
    this.stage.addEventListener("pointerleave", () => { this.tooltip.style.display = "none"; });
  }

  /** `handler({kind, node?, incidence?, memberId?, supernode?})` on every selection; kind null when cleared. */
  onSelect(handler) {
    this.handlers.push(handler);
  }

  emit(selection) {
    for (const handler of this.handlers) handler(selection);
  }

  counts() {
    return {
      nodes: this.filter.visibleNodes, incidences: this.filter.visibleIncidences,
      totalNodes: this.layout.nodes.length, totalIncidences: this.layout.incidences.length,
    };
  }

  setMinWeight(threshold) {
    this.filter.setMinWeight(threshold);
    const selected = this.selected;  // the lit copies follow the filter
    if (selected && selected.node !== undefined) this.selectNode(selected.node, {quiet: true});
    if (selected && selected.incidence !== undefined) this.selectIncidence(selected.incidence, {quiet: true});
    for (const [id, card] of this.expanded) {
      if (!this.filter.nodeIsVisible(this.layout.index.get(id))) this.collapse(id, card);
    }
  }

  fit() {
    this.viewport.fit();
  }

  nodeById(id) {
    const i = this.layout.index.get(id);
    return i === undefined ? null : this.layout.nodes[i];
  }

  /** Incidences of node `i`, strongest first. */
  incidencesOfNode(i) {
    return Array.from(this.incidencesOf(i), (k) => this.layout.incidences[k]).sort((a, b) => b.weight - a.weight);
  }

  /**
   * A selection dims the bands (an opacity on each band layer, which the compositor applies without repainting) and
   * draws what stays lit again, as copies, in the lit layer above them: the browser then repaints a handful of
   * elements instead of all 25,000 at the caps. The originals carry the `is-hl` class, so scripts can read what is
   * lit; the copies carry no ids and let pointer events through to the originals.
   */
  clearSelection() {
    for (const el of this.lit) el.classList.remove(LIT, "is-selected");
    this.lit = [];
    this.selected = null;
    this.litEdges.replaceChildren();
    this.litNodes.replaceChildren();
    this.stage.classList.remove("hg-focus");
  }

  light(el, layer, shown) {
    if (el.classList.contains(LIT)) return;
    el.classList.add(LIT);
    this.lit.push(el);
    if (!shown) return;
    const copy = el.cloneNode(true);
    copy.removeAttribute("data-node-id");
    copy.removeAttribute("data-incidence-id");
    layer.appendChild(copy);
  }

  lightIncidence(k) {
    this.light(this.incidenceEls[k], this.litEdges, this.filter.incidenceIsVisible(k));
    for (const m of this.layout.incidences[k].members) {
      this.light(this.nodeEls[m], this.litNodes, this.filter.nodeIsVisible(m));
    }
  }

  /** Select node `i`: it, its incidences and their other members stay lit while everything else dims. */
  selectNode(i, {quiet = false} = {}) {
    this.clearSelection();
    const node = this.layout.nodes[i];
    this.nodeEls[i].classList.add("is-selected");
    this.light(this.nodeEls[i], this.litNodes, this.filter.nodeIsVisible(i));
    for (const k of this.incidencesOf(i)) this.lightIncidence(k);
    this.selected = {node: i};
    this.stage.classList.add("hg-focus");
    if (quiet) return;
    this.emit({kind: node.kind, node, incidences: this.incidencesOfNode(i)});
    if (node.kind === "super") this.toggleSupernode(node);
  }

  selectIncidence(k, {quiet = false} = {}) {
    this.clearSelection();
    this.lightIncidence(k);
    this.selected = {incidence: k};
    this.stage.classList.add("hg-focus");
    if (quiet) return;
    const inc = this.layout.incidences[k];
    this.emit({kind: "incidence", incidence: inc, members: Array.from(inc.members, (m) => this.layout.nodes[m])});
  }

  /** Select node `id` and bring it into view (search results, links in the side panel). */
  focusNode(id) {
    const i = this.layout.index.get(id);
    if (i === undefined) return;
    const node = this.layout.nodes[i];
    this.viewport.centerOn(node.x + node.w / 2, node.y + NODE_H / 2, 0.9);
    this.selectNode(i);
  }

  async toggleSupernode(node) {
    if (this.expanded.has(node.id)) {
      this.collapse(node.id, this.expanded.get(node.id));
      return;
    }
    const ids = (node.doc.attributes && node.doc.attributes.members) || [];
    const total = (node.doc.attributes && node.doc.attributes.member_count) || ids.length;
    this.expanded.set(node.id, null);
    let notes = {};
    if (this.describe && ids.length) {
      try { notes = await this.describe(ids); } catch (error) { notes = {}; }
    }
    if (!this.expanded.has(node.id)) return;  // collapsed again while the labels were on their way
    const members = ids.map((id) => ({id, label: (notes[id] && notes[id].label) || id}))
      .sort((a, b) => a.label.localeCompare(b.label, undefined, {numeric: true}));
    const card = drawMembers(this.overlay, node, members, total);
    this.expanded.set(node.id, card);
    this.nodeEls[node.i].classList.add("is-expanded");
    this.viewport.reveal({x: card.x, y: card.y, w: card.w + node.w, h: card.h});
  }

  collapse(id, card) {
    if (card) card.group.remove();
    this.expanded.delete(id);
    const i = this.layout.index.get(id);
    if (i !== undefined) this.nodeEls[i].classList.remove("is-expanded");
  }

  /** Mark feature and supernode labels containing `query` (case-insensitive); returns the matching nodes. */
  search(query) {
    for (const i of this.matches) this.nodeEls[i].classList.remove("is-match");
    this.matches = [];
    const q = query.trim().toLowerCase();
    this.stage.classList.toggle("hg-searching", q !== "");
    if (!q) return [];
    for (const node of this.layout.nodes) {
      if ((node.kind === "feature" || node.kind === "super") && node.label.toLowerCase().includes(q)) {
        this.matches.push(node.i);
        this.nodeEls[node.i].classList.add("is-match");
      }
    }
    return this.matches.map((i) => this.layout.nodes[i]);
  }

  /** The drawn element under an event, of `selector`; none when it lies in a band the weight filter hid. */
  target(event, selector) {
    const el = event.target.closest(selector);
    return el && !el.closest(".hg-band.is-off") ? el : null;
  }

  onClick(event) {
    const member = event.target.closest("[data-member-id]");
    if (member) {
      this.emit({kind: "member", memberId: member.dataset.memberId,
        supernode: this.nodeById(member.dataset.memberOf)});
      return;
    }
    const nodeEl = this.target(event, "[data-node-id]");
    if (nodeEl) {
      this.selectNode(this.nodeIndex.get(nodeEl));
      return;
    }
    const incEl = this.target(event, "[data-incidence-id]");
    if (incEl) {
      this.selectIncidence(this.incidenceIndex.get(incEl));
      return;
    }
    this.clearSelection();
    this.emit({kind: null});
  }

  onHover(event) {
    const el = this.target(event, "[data-node-id], [data-incidence-id], [data-member-id]");
    if (!el) {
      this.tooltip.style.display = "none";
      return;
    }
    let text;
    if (el.dataset.nodeId) {
      const node = this.nodeById(el.dataset.nodeId);
      text = `${node.label} · ${node.kind === "super" ? "supernode" : node.kind}`;
    } else if (el.dataset.incidenceId) {
      const inc = this.layout.incidences[this.incidenceIndex.get(el)];
      const effect = inc.doc.attributes && typeof inc.doc.attributes.effect === "number"
        ? ` · effect ${inc.doc.attributes.effect.toPrecision(3)}` : "";
      text = `${inc.id} · weight ${inc.weight.toFixed(3)}${effect}`;
    } else {
      text = el.querySelector("text").textContent;
    }
    const box = this.container.getBoundingClientRect();
    this.tooltip.textContent = text;
    this.tooltip.style.display = "block";
    this.tooltip.style.left = `${event.clientX - box.left + 14}px`;
    this.tooltip.style.top = `${event.clientY - box.top + 14}px`;
  }
}
