/**
 * Pan and zoom of the drawing: one transform on the viewport group of every layer, applied at most once per
 * animation frame.
 * Dragging the background pans, the wheel zooms around the pointer. A drag longer than a few pixels swallows the
 * click that ends it, so panning never selects a node by accident. Below a zoom of about one half the labels are
 * hidden: unreadable there anyway, and text is most of what the browser paints.
 */
const MIN_SCALE = 0.02;
const MAX_SCALE = 4;
const FAR_SCALE = 0.55;
const DRAG_SLOP = 4;

export class Viewport {
  constructor(stage, bounds) {
    this.stage = stage;  // the element the layers fill; it takes the pointer events and the zoom class
    this.groups = [];
    this.bounds = bounds;  // {x, y, w, h} in drawing units
    this.scale = 1;
    this.tx = 0;
    this.ty = 0;
    this.frame = 0;
    this.dragged = false;
    this.listen();
  }

  size() {
    const rect = this.stage.getBoundingClientRect();
    return {w: rect.width || 800, h: rect.height || 600};
  }

  /** The whole drawing in view, with a margin; never zoomed in past 1:1. */
  fit() {
    const {w, h} = this.size();
    const b = this.bounds;
    const scale = Math.max(MIN_SCALE, Math.min(1, (w - 48) / b.w, (h - 48) / b.h));
    this.scale = scale;
    this.tx = (w - b.w * scale) / 2 - b.x * scale;
    this.ty = Math.max(24 - b.y * scale, (h - b.h * scale) / 2 - b.y * scale);
    this.apply();
  }

  /** Bring the drawing point (x, y) to the middle of the view, zooming in to at least `minScale`. */
  centerOn(x, y, minScale = 1) {
    const {w, h} = this.size();
    this.scale = Math.max(this.scale, minScale);
    this.tx = w / 2 - x * this.scale;
    this.ty = h / 2 - y * this.scale;
    this.apply();
  }

  /** Keep the box {x, y, w, h} (drawing units) inside the view: pan as little as needed, zoom out if it must. */
  reveal(box) {
    const {w, h} = this.size();
    const fits = Math.min((w - 32) / box.w, (h - 32) / box.h);
    if (fits < this.scale) {
      this.scale = Math.max(MIN_SCALE, fits);
      this.tx = (w - box.w * this.scale) / 2 - box.x * this.scale;
      this.ty = (h - box.h * this.scale) / 2 - box.y * this.scale;
      this.apply();
      return;
    }
    const left = box.x * this.scale + this.tx, right = (box.x + box.w) * this.scale + this.tx;
    const top = box.y * this.scale + this.ty, bottom = (box.y + box.h) * this.scale + this.ty;
    if (left < 16) this.tx += 16 - left; else if (right > w - 16) this.tx -= Math.min(right - (w - 16), left - 16);
    if (top < 16) this.ty += 16 - top; else if (bottom > h - 16) this.ty -= Math.min(bottom - (h - 16), top - 16);
    this.apply();
  }

  zoomAt(factor, px, py) {
    const scale = Math.max(MIN_SCALE, Math.min(MAX_SCALE, this.scale * factor));
    this.tx = px - (px - this.tx) * (scale / this.scale);
    this.ty = py - (py - this.ty) * (scale / this.scale);
    this.scale = scale;
    this.apply();
  }

  /** The groups the transform applies to, once drawn; they take the current transform at once. */
  attach(groups) {
    this.groups = groups;
    this.render();
  }

  apply() {
    if (!this.groups.length) {  // not drawn yet: only the label rule, so labels of a far zoom are never laid out
      this.stage.classList.toggle("hg-far", this.scale < FAR_SCALE);
      return;
    }
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  render() {
    const transform = `translate(${this.tx.toFixed(1)},${this.ty.toFixed(1)}) scale(${this.scale.toFixed(4)})`;
    for (const group of this.groups) group.setAttribute("transform", transform);
    this.stage.classList.toggle("hg-far", this.scale < FAR_SCALE);
  }

  listen() {
    const stage = this.stage;
    stage.addEventListener("wheel", (event) => {
      event.preventDefault();
      const rect = stage.getBoundingClientRect();
      this.zoomAt(Math.exp(-event.deltaY * 0.0015), event.clientX - rect.left, event.clientY - rect.top);
    }, {passive: false});
    let start = null;
    stage.addEventListener("pointerdown", (event) => {
      if (event.button !== 0) return;
      start = {x: event.clientX, y: event.clientY, tx: this.tx, ty: this.ty};
      this.dragged = false;
    });
    stage.addEventListener("pointermove", (event) => {
      if (!start) return;
      const dx = event.clientX - start.x, dy = event.clientY - start.y;
      if (!this.dragged && Math.hypot(dx, dy) < DRAG_SLOP) return;
      if (!this.dragged) {
        this.dragged = true;
        stage.setPointerCapture(event.pointerId);
        stage.classList.add("is-panning");
      }
      this.tx = start.tx + dx;
      this.ty = start.ty + dy;
      this.apply();
    });
    const end = () => {
      start = null;
      stage.classList.remove("is-panning");
    };
    stage.addEventListener("pointerup", end);
    stage.addEventListener("pointercancel", end);
    stage.addEventListener("click", (event) => {
      if (this.dragged) {
        event.stopImmediatePropagation();
        this.dragged = false;
      }
    }, {capture: true});
  }
}
