/**
 * The graph page: fetches the trace's HIF document (with the admin session's cookie), draws it, and wires the
 * toolbar (minimum-weight slider, search, fit) and the side panel. The root element says where things are
 * (`data-document-url`, `data-features-url`) and how far it got (`data-state`: loading, ready or error).
 */
import * as panel from "./panel.js";
import {GraphView} from "./view.js";

const NOTES_PER_REQUEST = 200;
const SEARCH_DELAY_MS = 120;

/** Feature notes (label, layer, index, top contexts) from the dictionary, fetched once per feature. */
class FeatureNotes {
  constructor(url) {
    this.url = url;
    this.known = new Map();
  }

  async get(ids) {
    const missing = ids.filter((id) => !this.known.has(id));
    for (let start = 0; start < missing.length; start += NOTES_PER_REQUEST) {
      const chunk = missing.slice(start, start + NOTES_PER_REQUEST);
      const query = chunk.map((id) => `id=${encodeURIComponent(id)}`).join("&");
      const response = await fetch(`${this.url}?${query}`, {credentials: "same-origin"});
      if (!response.ok) throw new Error(`feature notes: HTTP ${response.status}`);
      const {features} = await response.json();
      for (const id of chunk) this.known.set(id, features[id] || null);
    }
    return Object.fromEntries(ids.map((id) => [id, this.known.get(id)]));
  }
}

function formatCounts(counts) {
  return `<strong>${counts.incidences}</strong> of ${counts.totalIncidences} incidences · `
    + `<strong>${counts.nodes}</strong> of ${counts.totalNodes} nodes`;
}

async function showFeature(body, notes, id, render) {
  let described;
  try {
    described = (await notes.get([id]))[id];
  } catch (error) {
    described = null;
  }
  const slot = body.querySelector('[data-role="contexts"]');
  if (render && body.dataset.selection === id) body.innerHTML = render(described);
  else if (slot && body.dataset.selection === id) slot.innerHTML = panel.contextsHtml(described);
}

function wire(root, view, notes) {
  const body = root.querySelector('[data-role="panel"]');
  const counts = root.querySelector('[data-role="counts"]');
  const slider = root.querySelector('input[name="min_weight"]');
  const output = root.querySelector('output[name="min_weight_value"]');
  const search = root.querySelector('input[name="q"]');
  const showCounts = () => { counts.innerHTML = formatCounts(view.counts()); };
  const show = (html, selection) => {
    body.innerHTML = html;
    body.dataset.selection = selection || "";
    body.scrollTop = 0;
  };

  slider.addEventListener("input", () => {
    const threshold = Number(slider.value);
    view.setMinWeight(threshold);
    output.textContent = threshold.toFixed(2);
    showCounts();
  });

  let pending = 0;
  search.addEventListener("input", () => {
    clearTimeout(pending);
    pending = setTimeout(() => {
      const query = search.value.trim();
      const matches = view.search(query);
      if (query) show(panel.searchPanel(query, matches), `search:${query}`);
      else show(panel.emptyPanel(view.counts()));
    }, SEARCH_DELAY_MS);
  });
  search.addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    event.preventDefault();
    const matches = view.search(search.value);
    if (matches.length) view.focusNode(matches[0].id);
  });

  root.querySelector('[data-action="fit"]').addEventListener("click", () => view.fit());
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && event.target !== search) {
      view.clearSelection();
      show(panel.emptyPanel(view.counts()));
    }
  });

  view.onSelect((selection) => {
    if (!selection.kind) {
      show(panel.emptyPanel(view.counts()));
    } else if (selection.kind === "incidence") {
      show(panel.incidencePanel(selection), selection.incidence.id);
    } else if (selection.kind === "member") {
      const {memberId, supernode} = selection;
      show(panel.memberPanel(memberId, supernode, undefined), memberId);
      showFeature(body, notes, memberId, (described) => panel.memberPanel(memberId, supernode, described));
    } else {
      show(panel.nodePanel(selection, view.layout.nodes), selection.node.id);
      if (selection.kind === "feature") showFeature(body, notes, selection.node.id, null);
      if (selection.kind === "super") {
        const ids = (selection.node.doc.attributes && selection.node.doc.attributes.members) || [];
        notes.get(ids).then((described) => {
          const slot = body.querySelector('[data-role="members"]');
          if (slot && body.dataset.selection === selection.node.id) slot.innerHTML = panel.memberList(selection.node, described);
        }).catch(() => {});
      }
    }
  });

  body.addEventListener("click", (event) => {
    const focus = event.target.closest("[data-focus]");
    const member = event.target.closest("[data-member]");
    if (!focus && !member) return;
    event.preventDefault();
    if (focus) view.focusNode(focus.dataset.focus);
    else view.emit({kind: "member", memberId: member.dataset.member, supernode: view.nodeById(member.dataset.of)});
  });

  showCounts();
  show(panel.emptyPanel(view.counts()));
}

async function main() {
  const root = document.querySelector("[data-graph-root]");
  if (!root || !root.dataset.documentUrl) return;
  const canvas = root.querySelector('[data-role="canvas"]');
  try {
    const response = await fetch(root.dataset.documentUrl, {credentials: "same-origin"});
    if (!response.ok) throw new Error(`the document did not load (HTTP ${response.status})`);
    const doc = await response.json();
    const notes = new FeatureNotes(root.dataset.featuresUrl);
    const view = new GraphView(canvas, doc, {describe: (ids) => notes.get(ids)});
    wire(root, view, notes);
    root.dataset.state = "ready";
  } catch (error) {
    canvas.querySelector(".hg-loading").textContent = `Could not draw the graph: ${error.message}`;
    root.dataset.state = "error";
    throw error;
  }
}

main();
