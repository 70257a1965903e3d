// The 2-D map explorers in the browser (crl_helpers.widgets.umap_explorer and run_comparison_explorer): they step
// through maps that Python aligned and supplies (one panel per run shown), coloured by a class or a float; the
// share of shared nearest neighbours of two runs' maps is Python's (crl_helpers.widgets.compare_maps).

/** The point's colour: tab10 by class for integer colourings, a hue for floats scaled to [lo, hi]. */
export function pointColour(colouring, i) {
  const v = colouring.values[i];
  if (colouring.kind === "class") return TAB10[((v % 10) + 10) % 10];
  const [lo, hi] = colouring.range;
  return hueColour(hi > lo ? (0.85 * (v - lo)) / (hi - lo) : 0);
}

/** The caption of a view: which snapshot (and, for two runs, how many neighbours their maps share). */
export function captionText({ runs, key, index, count, colouring, shared, k }) {
  if (runs.length === 1) return `snapshot ${key} (${index + 1} of ${count}), colour: ${colouring}`;
  return `${runs[0]} vs ${runs[1]} at ${key}, coloured by ${colouring}: the two maps agree on `
    + `${(100 * shared).toFixed(0)}% of each point's ${k} nearest neighbours`;
}

function scatter(parent, { points, colouring, limits, title, legend }) {
  const p = panel(parent, { width: legend ? 390 : 310, height: 330, margin: [24, legend ? 90 : 10, 6, 10], title });
  const { svg, box } = p;
  const side = Math.min(box.right - box.left, box.bottom - box.top);
  const [xlo, ylo, xhi, yhi] = limits;
  const span = Math.max(xhi - xlo, yhi - ylo);
  const x = linearScale(xlo, xlo + span, box.left, box.left + side);
  const y = linearScale(ylo, ylo + span, box.top + side, box.top);
  node("rect", { x: box.left, y: box.top, width: side, height: side, class: "crl-frame" }, svg);
  const group = node("g", {}, svg);
  for (let i = 0; i < points.length / 2; i++) {
    node("circle", { cx: x(points[2 * i]), cy: y(points[2 * i + 1]), r: 2.2, fill: pointColour(colouring, i),
                     "fill-opacity": 0.75 }, group);
  }
  if (legend) {
    const entries = colouring.kind === "class"
      ? (colouring.names.length ? colouring.names : [...new Set(colouring.values)].sort((a, b) => a - b).map(String))
          .map((name, c) => [name, TAB10[c % 10]])
      : [0, 0.25, 0.5, 0.75, 1].map((f) => {
          const [lo, hi] = colouring.range;
          return [(lo + f * (hi - lo)).toFixed(2), hueColour(0.85 * f)];
        });
    entries.slice(0, 20).forEach(([name, colour], row) => {
      node("circle", { cx: box.left + side + 12, cy: box.top + 8 + 14 * row, r: 4, fill: colour }, svg);
      node("text", { x: box.left + side + 20, y: box.top + 12 + 14 * row, class: "crl-small", text: name }, svg);
    });
  }
  return p;
}

function render({ model, el }) {
  const root = node("html:div", { class: "crl-explorer crl-maps" }, el);
  const controls = node("html:div", { class: "crl-controls" }, root);
  const runs = model.get("runs");
  const keys = model.get("steps");
  const two = model.get("panels") === 2;
  const leftSelect = two ? dropdown(controls, { label: "left run", options: runs, value: model.get("left"), name: "left" }) : null;
  const rightSelect = two ? dropdown(controls, { label: "right run", options: runs, value: model.get("right"), name: "right" }) : null;
  const colourSelect = dropdown(controls, { label: "colour by", options: Object.keys(model.get("colourings")),
                                            value: model.get("colouring"), name: "colour" });
  const stepper = node("html:div", { class: "crl-controls" }, root);
  let timer = null;
  const playButton = button(stepper, "▶ animate", () => play(), "play");
  const keySlider = slider(stepper, { label: model.get("key_label"), min: 0, max: keys.length - 1, step: 1,
                                      value: model.get("index"), name: "snapshot", format: (i) => keys[i] });
  const caption = node("html:div", { class: "crl-caption" }, root);
  const figure = node("html:div", { class: "crl-figure" }, root);

  function setAndSave(name, value) {
    model.set(name, value);
    save(model);
  }
  if (two) {
    leftSelect.addEventListener("change", () => setAndSave("left", leftSelect.value));
    rightSelect.addEventListener("change", () => setAndSave("right", rightSelect.value));
  }
  colourSelect.addEventListener("change", () => setAndSave("colouring", colourSelect.value));
  keySlider.addEventListener("input", () => setAndSave("index", Number(keySlider.value)));

  function play() {
    clearInterval(timer);
    let index = 0;
    setAndSave("index", index);
    timer = setInterval(() => {
      index += 1;
      if (index >= keys.length) {
        clearInterval(timer);
        return;
      }
      setAndSave("index", index);
    }, 900);
  }

  function draw() {
    const index = model.get("index");
    const key = keys[index];
    const name = model.get("colouring");
    const colouring = model.get("colourings")[name];
    const shown = two ? [model.get("left"), model.get("right")] : runs.slice(0, 1);
    const points = model.get("points");
    figure.replaceChildren();
    shown.forEach((run, side) => {
      const title = two ? `${run}, ${key}` : `${key}: coloured by ${name}`;
      scatter(figure, { points: points[run][index], colouring, limits: model.get("limits"), title,
                        legend: side === shown.length - 1 });
    });
    const shared = two ? model.get("shared")[`${shown[0]}\t${shown[1]}`][index] : null;
    caption.textContent = captionText({ runs: shown, key, index, count: keys.length, colouring: name, shared,
                                        k: model.get("k") });
    if (two) {
      leftSelect.value = shown[0];
      rightSelect.value = shown[1];
    }
    colourSelect.value = name;
    keySlider.value = index;
    keySlider.refresh();
    Object.assign(root.dataset, { key, colouring: name, shared: shared === null ? "" : String(shared),
                                  runs: JSON.stringify(shown) });
  }

  draw();
  const names = ["index", "colouring", "left", "right"];
  for (const n of names) model.on(`change:${n}`, draw);
  return () => {
    clearInterval(timer);
    for (const n of names) model.off(`change:${n}`, draw);
  };
}

export default { render };
