// The temperature explorer in the browser (crl_helpers.widgets.temperature_explorer): one anchor's InfoNCE
// (Wang & Liu 2021) computed here from the similarities Python supplies, so the sliders work on a static page.
// The pure functions below mirror crl_helpers.temperature; tests/test_widgets_js.py checks them against it.

/** The key distribution p_j = exp(s_j / tau) / sum_k exp(s_k / tau) (max subtracted: no overflow). */
export function keyDistribution(s, temperature) {
  const logits = s.map((v) => v / temperature);
  const top = Math.max(...logits);
  const e = logits.map((l) => Math.exp(l - top));
  const total = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / total);
}

/** One anchor's InfoNCE, -log p_0 = logsumexp(s / tau) - s_0 / tau. */
export function infoNce(s, temperature) {
  const logits = s.map((v) => v / temperature);
  const top = Math.max(...logits);
  const lse = top + Math.log(logits.reduce((a, l) => a + Math.exp(l - top), 0));
  return lse - logits[0];
}

/** dL/ds_j = (p_j - [j = 0]) / tau: the pull on the positive (entry 0, < 0) and the push on each negative. */
export function gradientWeights(s, temperature) {
  return keyDistribution(s, temperature).map((p, j) => (p - (j === 0 ? 1 : 0)) / temperature);
}

/** Share of the push on negatives taken by the hardest one: the largest softmax(s_1..K / tau). */
export function hardnessShare(s, temperature) {
  return Math.max(...keyDistribution(s.slice(1), temperature));
}

/** crl_helpers.temperature.similarities_with from its sorted standard-normal draws: [positive, clip(mean + spread z)]. */
export function similaritiesFromDraws(draws, negativeMean, positive, spread) {
  return [positive, ...draws.map((z) => Math.min(1, Math.max(-1, negativeMean + spread * z)))];
}

/** `n` temperatures evenly spaced in log10 from 10^low to 10^high. */
export function logspace(low, high, n) {
  return Array.from({ length: n }, (_, i) => Math.pow(10, low + ((high - low) * i) / (n - 1)));
}

/** Everything the explorer shows for one setting of its controls (the numbers of its caption and panels). */
export function explorerNumbers({ similarities, temperature }) {
  const s = similarities;
  const negatives = s.slice(1);
  return {
    temperature,
    similarities: s,
    p: keyDistribution(s, temperature),
    weights: gradientWeights(s, temperature),
    loss: infoNce(s, temperature),
    hardnessShare: hardnessShare(s, temperature),
    nNegatives: negatives.length,
    negativeMean: negatives.reduce((a, b) => a + b, 0) / negatives.length,
  };
}

function currentSimilarities(model) {
  const fixed = model.get("fixed");
  if (fixed && fixed.length) return fixed;
  const draws = model.get("draws")[String(model.get("n_negatives"))] || [];
  return similaritiesFromDraws(draws, model.get("negative_mean"), model.get("positive"), model.get("spread"));
}

function bars(p, values, colours, { title, yMin, yMax, similarities }) {
  const { svg, box } = p;
  p.heading.textContent = title;
  const n = values.length;
  const x = linearScale(0, n, box.left, box.right);
  const y = linearScale(yMin, yMax, box.bottom, box.top);
  const width = Math.max(0.5, (box.right - box.left) / n - 1);
  values.forEach((v, j) => {
    const top = y(Math.max(v, 0));
    node("rect", { x: x(j) + 0.5, y: top, width, height: Math.max(0.5, Math.abs(y(v) - y(0))), fill: colours[j] }, svg);
  });
  axes(p, { x, y, yTicks: niceTicks(yMin, yMax, 4), yFormat: (t) => t.toFixed(Math.abs(yMax - yMin) < 1.5 ? 2 : 1) });
  node("text", { x: (box.left + box.right) / 2, y: box.bottom + 40, "text-anchor": "middle",
                 text: n <= 24 ? "candidate (similarity s_j)" : "candidate: 0 = positive, then hardest first" }, svg);
  if (yMin < 0) node("line", { x1: box.left, x2: box.right, y1: y(0), y2: y(0), class: "crl-zero" }, svg);
  if (n <= 24) {  // each bar's similarity, written upwards under it
    similarities.forEach((v, j) => {
      const px = x(j + 0.5) + 3, py = box.bottom + 4;
      node("text", { x: px, y: py, "text-anchor": "end", transform: `rotate(-90 ${px} ${py})`, class: "crl-small",
                     text: j === 0 ? "pos" : v.toFixed(2) }, svg);
    });
  }
}

function drawCircle(p, snapshot, hue, title) {
  const { svg, box } = p;
  p.heading.textContent = title;
  const side = Math.min(box.right - box.left, box.bottom - box.top);
  const cx = (box.left + box.right) / 2, cy = (box.top + box.bottom) / 2, r = side / 2 / 1.3;
  node("circle", { cx, cy, r, class: "crl-unit-circle" }, svg);
  if (!snapshot) return;
  const z1 = snapshot.z1, z2 = snapshot.z2;
  for (let i = 0; i < hue.length; i++) {
    node("circle", { cx: cx + 1.15 * r * z2[2 * i], cy: cy - 1.15 * r * z2[2 * i + 1], r: 1.6, fill: hueColour(hue[i]),
                     "fill-opacity": 0.6 }, svg);
    node("circle", { cx: cx + r * z1[2 * i], cy: cy - r * z1[2 * i + 1], r: 2.6, fill: hueColour(hue[i]) }, svg);
  }
}

function render({ model, el }) {
  const root = node("html:div", { class: "crl-explorer crl-temperature" }, el);
  const controls = node("html:div", { class: "crl-controls" }, root);
  const [low, high] = model.get("log_range");
  const temperatureInput = slider(controls, { label: "temperature", min: low, max: high, step: 0.02, name: "temperature",
                                              value: Math.log10(model.get("temperature")),
                                              format: (v) => Math.pow(10, v).toFixed(3) });
  const kInput = slider(controls, { label: "K negatives", min: 0, max: 0, step: 1, value: 0, name: "n_negatives",
                                    format: (i) => String(model.get("k_options")[i]) });
  const meanInput = slider(controls, { label: "negatives around", min: -0.9, max: 0.9, step: 0.05, name: "negative_mean",
                                       value: model.get("negative_mean"), format: (v) => v.toFixed(2) });
  const fixed = (model.get("fixed") || []).length > 0;
  kInput.disabled = fixed;
  meanInput.disabled = fixed;
  let timer = null;
  const trainButton = button(controls, "train on the circle", () => train(), "train");
  const caption = node("html:div", { class: "crl-caption" }, root);
  const figure = node("html:div", { class: "crl-figure" }, root);

  function syncInputs() {
    const options = model.get("k_options");
    kInput.max = options.length - 1;
    kInput.dataset.options = JSON.stringify(options);
    kInput.value = Math.max(0, options.indexOf(model.get("n_negatives")));
    temperatureInput.value = Math.log10(model.get("temperature"));
    meanInput.value = model.get("negative_mean");
    for (const input of [temperatureInput, kInput, meanInput]) input.refresh();
  }

  function setAndSave(name, value) {
    model.set(name, value);
    save(model);
  }

  temperatureInput.addEventListener("input", () => setAndSave("temperature", Math.pow(10, Number(temperatureInput.value))));
  kInput.addEventListener("input", () => setAndSave("n_negatives", model.get("k_options")[Number(kInput.value)]));
  meanInput.addEventListener("input", () => setAndSave("negative_mean", Number(meanInput.value)));

  function nearestRun(temperature) {
    const runs = model.get("circle_runs");
    let best = null;
    for (const key of Object.keys(runs)) {
      const gap = Math.abs(Math.log(runs[key].temperature) - Math.log(temperature));
      if (best === null || gap < best.gap) best = { key, gap };
    }
    return best && best.key;
  }

  let replayed = null;

  function train() {
    // With a kernel, Python trains the toy at exactly this temperature and sends its snapshots as they come
    // (the change of circle_key stops the replay below). Without one (a static page), send does nothing and
    // the replay stands: the runs trained in Python at a grid of temperatures, the nearest one a snapshot at a time.
    try {
      model.send({ event: "train", temperature: model.get("temperature") });
    } catch (err) {
      // no kernel
    }
    const key = nearestRun(model.get("temperature"));
    if (key === null) return;
    replayed = key;
    const last = model.get("circle_runs")[key].snapshots.length - 1;
    clearInterval(timer);
    let index = 0;
    model.set("circle_key", key);
    model.set("circle_index", index);
    save(model);
    trainButton.disabled = true;
    timer = setInterval(() => {
      index += 1;
      if (index > last) {
        clearInterval(timer);
        replayed = null;
        trainButton.disabled = false;
        return;
      }
      model.set("circle_index", index);
      save(model);
    }, 300);
  }

  function draw() {
    const temperature = model.get("temperature");
    const numbers = explorerNumbers({ similarities: currentSimilarities(model), temperature });
    const { p, weights, loss, similarities: s } = numbers;
    const k = s.length - 1;
    const share = numbers.hardnessShare;
    const colours = s.map((_, j) => (j === 0 ? "#2ca02c" : "#d62728"));
    const runs = model.get("circle_runs");
    const key = model.get("circle_key");
    const run = runs[key] || runs[Object.keys(runs)[0]];
    const snapshots = run ? run.snapshots : [];
    const snapshot = key && runs[key] ? snapshots[Math.min(model.get("circle_index"), snapshots.length - 1)] : snapshots[0];
    const trainedAt = key && runs[key] ? `trained at temperature ${runs[key].temperature.toFixed(3)}` : "untrained";

    figure.replaceChildren();
    const barMargin = [28, 10, 48, 46];
    const a = panel(figure, { width: 330, height: 240, margin: barMargin });
    bars(a, p, colours, { title: `(a) key distribution p_j, p_pos = ${p[0].toFixed(2)}`, yMin: 0, yMax: 1, similarities: s });
    const b = panel(figure, { width: 330, height: 240, margin: barMargin });
    const gMax = Math.max(...weights.map(Math.abs), 1e-12);
    bars(b, weights, colours, { title: `(b) dL/ds_j: hardest negative gets ${(100 * share).toFixed(0)}% of the push`,
                                 yMin: -gMax * 1.05, yMax: gMax * 1.05, similarities: s });

    const c = panel(figure, { width: 300 });
    c.heading.textContent = `(c) InfoNCE loss = ${loss.toFixed(3)} at temperature ${temperature.toFixed(3)}`;
    const taus = logspace(low, high, 61);
    const losses = taus.map((t) => infoNce(s, t));
    const yTop = Math.max(...losses, Math.log(k + 1)) * 1.05;
    const x = (t) => linearScale(low, high, c.box.left, c.box.right)(Math.log10(t));
    const y = linearScale(0, yTop, c.box.bottom, c.box.top);
    const decades = [];
    for (let e = Math.ceil(low); e <= Math.floor(high); e++) decades.push(Math.pow(10, e));
    axes(c, { x, y, xTicks: decades, yTicks: niceTicks(0, yTop, 4), xFormat: (t) => String(t),
              yFormat: (t) => t.toFixed(1), xLabel: "temperature (dotted: log(K + 1))" });
    node("polyline", { points: taus.map((t, i) => `${x(t)},${y(losses[i])}`).join(" "), class: "crl-curve" }, c.svg);
    node("line", { x1: c.box.left, x2: c.box.right, y1: y(Math.log(k + 1)), y2: y(Math.log(k + 1)), class: "crl-dotted" }, c.svg);
    node("line", { x1: x(temperature), x2: x(temperature), y1: c.box.top, y2: c.box.bottom, class: "crl-marker" }, c.svg);
    node("circle", { cx: x(temperature), cy: y(loss), r: 4, class: "crl-marker-dot" }, c.svg);

    const d = panel(figure, { width: 250, margin: [40, 10, 10, 10] });
    drawCircle(d, snapshot, model.get("circle_hue"), snapshot ? `(d) circle toy, step ${snapshot.step}` : "(d) circle toy");
    if (snapshot) {
      node("text", { x: 125, y: 28, "text-anchor": "middle", class: "crl-title",
                     text: `align ${snapshot.alignment.toFixed(2)}, uniform ${snapshot.uniformity.toFixed(2)}` }, d.svg);
    }

    const even = model.get("even_uniformity");
    // The slider sets the centre the negatives are drawn around; the K drawn ones average a little off it.
    const negatives = fixed ? `K = ${k} negatives as passed (mean similarity ${numbers.negativeMean.toFixed(2)})`
      : `K = ${k} negatives drawn around ${model.get("negative_mean").toFixed(2)} `
        + `(mean of this draw ${numbers.negativeMean.toFixed(2)})`;
    caption.textContent = `temperature ${temperature.toFixed(3)}, ${negatives}: loss ${loss.toFixed(3)} `
      + `(log(K + 1) = ${Math.log(k + 1).toFixed(3)}), `
      + `p(positive) ${p[0].toFixed(3)}, pull on the positive ${weights[0].toFixed(2)}, the hardest negative takes `
      + `${(100 * share).toFixed(1)}% of the push (uniform would be ${(100 / k).toFixed(1)}%).`
      + (snapshot ? ` Circle toy (${trainedAt}, step ${snapshot.step}): alignment ${snapshot.alignment.toFixed(3)}, `
                    + `uniformity ${snapshot.uniformity.toFixed(3)} (an even spread: ${even.toFixed(3)})` : "");
    // The full-precision numbers, for tests and for anyone reading the page's source.
    Object.assign(root.dataset, { temperature: String(temperature), loss: String(loss), pPositive: String(p[0]),
                                  hardnessShare: String(share), nNegatives: String(k),
                                  weights: JSON.stringify(weights), p: JSON.stringify(p) });
  }

  syncInputs();
  draw();
  const names = ["temperature", "n_negatives", "negative_mean", "k_options", "draws", "circle_runs", "circle_key",
                 "circle_index"];
  const onChange = () => {
    if (replayed !== null && model.get("circle_key") !== replayed) {
      clearInterval(timer);  // the kernel is training at the exact temperature: show its run instead
      replayed = null;
      trainButton.disabled = false;
    }
    syncInputs();
    draw();
  };
  for (const name of names) model.on(`change:${name}`, onChange);
  return () => {
    clearInterval(timer);
    for (const name of names) model.off(`change:${name}`, onChange);
  };
}

export default { render };
