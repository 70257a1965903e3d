// The drawing kit shared by the course's browser explorers: SVG elements, axes, colours and controls.
// crl_helpers.widgets prepends this file to each explorer's module (one ES module per widget, as anywidget
// loads it), so the explorers draw alike without a bundler.

const SVG_NS = "http://www.w3.org/2000/svg";

/** An element (SVG unless `tag` is an HTML tag given as "html:div") with attributes, appended to `parent`. */
export function node(tag, attrs = {}, parent = null) {
  const html = tag.startsWith("html:");
  const element = html ? document.createElement(tag.slice(5)) : document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") element.textContent = value;
    else element.setAttribute(key, value);
  }
  if (parent) parent.appendChild(element);
  return element;
}

/** A linear map from [d0, d1] onto [r0, r1]; a zero-width domain maps to the middle of the range. */
export function linearScale(d0, d1, r0, r1) {
  const width = d1 - d0;
  return (v) => (width === 0 ? (r0 + r1) / 2 : r0 + ((v - d0) / width) * (r1 - r0));
}

/** "Nice" tick values covering [lo, hi]: about `count` of them, at 1, 2 or 5 times a power of ten. */
export function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return ticks;
}

/** A panel: an SVG of `width` x `height` with a plot box inside the margins; returns {svg, box, x, y, title}. */
export function panel(parent, { width = 300, height = 230, margin = [28, 10, 38, 46], title = "" } = {}) {
  const [top, right, bottom, left] = margin;
  const svg = node("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "crl-panel" }, parent);
  const box = { left, top, right: width - right, bottom: height - bottom };
  const heading = node("text", { x: width / 2, y: 14, "text-anchor": "middle", class: "crl-title", text: title }, svg);
  return { svg, box, heading };
}

/** Axis lines, ticks and labels on a panel's box for linear (or log10, with `logX`) scales. */
export function axes(p, { x, y, xTicks, yTicks, xLabel = "", yLabel = "", xFormat = String, yFormat = String }) {
  const { svg, box } = p;
  const g = node("g", { class: "crl-axes" }, svg);
  node("line", { x1: box.left, x2: box.right, y1: box.bottom, y2: box.bottom }, g);
  node("line", { x1: box.left, x2: box.left, y1: box.top, y2: box.bottom }, g);
  for (const t of xTicks || []) {
    const px = x(t);
    node("line", { x1: px, x2: px, y1: box.bottom, y2: box.bottom + 4 }, g);
    node("text", { x: px, y: box.bottom + 14, "text-anchor": "middle", text: xFormat(t) }, g);
  }
  for (const t of yTicks || []) {
    const py = y(t);
    node("line", { x1: box.left - 4, x2: box.left, y1: py, y2: py }, g);
    node("text", { x: box.left - 6, y: py + 3, "text-anchor": "end", text: yFormat(t) }, g);
  }
  if (xLabel) node("text", { x: (box.left + box.right) / 2, y: box.bottom + 30, "text-anchor": "middle", text: xLabel }, g);
  if (yLabel) {
    node("text", { x: 10, y: (box.top + box.bottom) / 2, "text-anchor": "middle",
                   transform: `rotate(-90 10 ${(box.top + box.bottom) / 2})`, text: yLabel }, g);
  }
  return g;
}

/** Matplotlib's tab10, the colours of the course's class plots. */
export const TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                      "#bcbd22", "#17becf"];

/** A hue in [0, 1) as an HSL colour (the circle toy's and the float colourings' cyclic map). */
export function hueColour(h) {
  return `hsl(${Math.round(360 * (((h % 1) + 1) % 1))}, 75%, 45%)`;
}

/** A labelled range input with a readout; `format(value)` writes the readout. Returns the <input>. */
export function slider(parent, { label, min, max, step, value, format = String, name }) {
  const row = node("html:label", { class: "crl-control" }, parent);
  node("html:span", { class: "crl-label", text: label }, row);
  const input = node("html:input", { type: "range", min, max, step, "data-control": name }, row);
  input.value = value;
  const readout = node("html:span", { class: "crl-readout", "data-readout": name }, row);
  // A screen reader reads the readout (tau 0.050), not the input's internal position (-1.3).
  const show = () => {
    readout.textContent = format(Number(input.value));
    input.setAttribute("aria-valuetext", readout.textContent);
  };
  input.addEventListener("input", show);
  show();
  input.refresh = show;
  return input;
}

/** A labelled <select> over `options` (strings). Returns the <select>. */
export function dropdown(parent, { label, options, value, name }) {
  const row = node("html:label", { class: "crl-control" }, parent);
  node("html:span", { class: "crl-label", text: label }, row);
  const select = node("html:select", { "data-control": name }, row);
  for (const option of options) node("html:option", { value: option, text: option }, select);
  select.value = value;
  return select;
}

/** A button with `text`; `onClick` runs on each click. */
export function button(parent, text, onClick, name) {
  const b = node("html:button", { class: "crl-button", type: "button", "data-control": name, text }, parent);
  b.addEventListener("click", onClick);
  return b;
}

/** Send the model's changes to the kernel; a static page has none, and the change stays in the page, which is all it needs. */
export function save(model) {
  try {
    model.save_changes();
  } catch (err) {
    // no kernel to sync with
  }
}
