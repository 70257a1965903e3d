// The augmentation explorer on a page without a kernel (crl_helpers.widgets.augmentation_explorer, static=True).
// Python drew the views ahead for a grid of crop scales, jitter strengths and seeds, and computed each grid
// point's meters and caption; this module only looks them up: its sliders move over the grid's values.

const SCALE = 2; // screen pixels per stored pixel (nearest-neighbour upscale)

/** The grid point the sliders and the re-sample button pick: points[crop][jitter][seed]. */
export function pointAt(points, cropIndex, jitterIndex, seedIndex) {
  return points[cropIndex][jitterIndex][seedIndex];
}

/** Draw a mosaic's tiles (rows x columns of `side` px) into canvases, one per tile, nearest-neighbour scaled. */
function drawTiles(url, side, canvases) {
  const image = new Image();
  image.onload = () => {
    for (const { canvas, row, col } of canvases) {
      const ctx = canvas.getContext("2d");
      ctx.imageSmoothingEnabled = false;
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      ctx.drawImage(image, col * side, row * side, side, side, 0, 0, canvas.width, canvas.height);
    }
  };
  image.src = url;
}

function meter(parent, name) {
  const row = node("html:div", { class: "crl-control crl-meter", "data-meter": name }, parent);
  node("html:span", { class: "crl-label", text: name }, row);
  const track = node("html:span", { class: "crl-meter-track" }, row);
  const bar = node("html:span", { class: "crl-meter-bar" }, track);
  const text = node("html:span", { class: "crl-meter-text" }, row);
  return { bar, text };
}

function render({ model, el }) {
  const root = node("html:div", { class: "crl-explorer crl-augment" }, el);
  const controls = node("html:div", { class: "crl-controls" }, root);
  const crops = model.get("crop_values");
  const jitters = model.get("jitter_values");
  const seeds = model.get("seeds");
  const cropSlider = slider(controls, { label: "crop_scale_min", min: 0, max: crops.length - 1, step: 1,
                                        value: model.get("crop_index"), name: "crop_scale_min",
                                        format: (i) => crops[i].toFixed(2) });
  const jitterSlider = slider(controls, { label: "jitter_strength", min: 0, max: jitters.length - 1, step: 1,
                                          value: model.get("jitter_index"), name: "jitter_strength",
                                          format: (i) => jitters[i].toFixed(2) });
  button(controls, "re-sample", () => setAndSave("seed_index", (model.get("seed_index") + 1) % seeds.length),
         "resample");
  const fixed = Object.entries(model.get("fixed")).map(([name, v]) => `${name} ${v.toFixed(2)}`).join(", ");
  node("html:div", { class: "crl-caption crl-note", text: `Views drawn ahead for crop_scale_min in `
    + `{${crops.map((v) => v.toFixed(2)).join(", ")}}, jitter_strength in {${jitters.map((v) => v.toFixed(2)).join(", ")}} `
    + `and ${seeds.length} seeds; held here: ${fixed}. Run the notebook in Jupyter to move every control.` }, root);
  const meters = { kept: meter(root, "object kept"), shortcut: meter(root, "colour shortcut") };
  const caption = node("html:div", { class: "crl-caption", "data-caption": "" }, root);
  const figure = node("html:div", { class: "crl-figure crl-tiles" }, root);

  const side = model.get("side");
  const first = pointAt(model.get("points"), 0, 0, 0);
  const k = first.labels.length;
  const nViews = first.labels[0].length;
  figure.style.gridTemplateColumns = `repeat(${nViews + 1}, minmax(0, ${side * SCALE}px))`;  // shrinks on a phone
  const originals = [];
  const views = [];
  const labels = [];
  for (let j = 0; j <= nViews; j++) {
    node("html:div", { class: "crl-tile-title", text: j === 0 ? "original x" : `view ${j}` }, figure);
  }
  for (let i = 0; i < k; i++) {
    for (let j = 0; j <= nViews; j++) {
      const cell = node("html:div", { class: "crl-tile" }, figure);
      const canvas = node("html:canvas", { width: side * SCALE, height: side * SCALE, role: "img",
                                           "aria-label": j === 0 ? `image ${i + 1}, original x` : `image ${i + 1}, view ${j}` },
                          cell);
      if (j === 0) {
        originals.push({ canvas, row: i, col: 0 });
        node("html:div", { class: "crl-tile-label", text: "\u00a0" }, cell);
      } else {
        views.push({ canvas, row: i, col: j - 1 });
        labels.push(node("html:div", { class: "crl-tile-label" }, cell));
      }
    }
  }
  drawTiles(model.get("originals"), side, originals);

  function setAndSave(name, value) {
    model.set(name, value);
    save(model);
  }
  cropSlider.addEventListener("input", () => setAndSave("crop_index", Number(cropSlider.value)));
  jitterSlider.addEventListener("input", () => setAndSave("jitter_index", Number(jitterSlider.value)));

  function draw() {
    const [c, j, s] = [model.get("crop_index"), model.get("jitter_index"), model.get("seed_index")];
    const point = pointAt(model.get("points"), c, j, s);
    drawTiles(point.views, side, views);
    labels.forEach((label, n) => {
      const row = Math.floor(n / nViews), col = n % nViews;
      label.textContent = point.labels[row][col];
      views[n].canvas.setAttribute("aria-label", `image ${row + 1}, view ${col + 1}: ${point.labels[row][col]}`);
      label.classList.toggle("crl-matched", point.matched[row][col]);
    });
    meters.kept.bar.style.width = `${100 * point.object_kept}%`;
    meters.kept.text.textContent = point.object_kept_text;
    meters.shortcut.bar.style.width = `${100 * point.shortcut_rate}%`;
    meters.shortcut.text.textContent = point.shortcut_text;
    caption.textContent = point.caption;
    cropSlider.value = c;
    cropSlider.refresh();
    jitterSlider.value = j;
    jitterSlider.refresh();
    Object.assign(root.dataset, { cropScaleMin: String(crops[c]), jitterStrength: String(jitters[j]),
                                  seed: String(seeds[s]), objectKept: String(point.object_kept),
                                  shortcutRate: String(point.shortcut_rate) });
  }

  draw();
  const names = ["crop_index", "jitter_index", "seed_index"];
  for (const n of names) model.on(`change:${n}`, draw);
  return () => {
    for (const n of names) model.off(`change:${n}`, draw);
  };
}

export default { render };
