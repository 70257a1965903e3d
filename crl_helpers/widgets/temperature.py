"""The temperature explorer: one anchor's InfoNCE under a temperature slider, and a circle toy (Wang & Liu 2021).

A thin layer over :mod:`crl_helpers.temperature`, drawn by ``widgets_js/temperature.js`` in the browser.

Example:
    >>> len(negative_draws(4)), 255 in K_CHOICES
    (4, True)
"""
from __future__ import annotations

import math

import numpy as np
import torch

from crl_helpers.widgets.base import _new_figure, _rounded
from crl_helpers.widgets.browser import BrowserControl, _browser_classes

__all__ = ["K_CHOICES", "CIRCLE_TEMPERATURES", "negative_draws", "temperature_explorer"]

K_CHOICES = (1, 2, 3, 4, 5, 7, 10, 15, 20, 31, 40, 63, 80, 127, 160, 255)
#: The temperatures at which the circle toy is trained ahead: the browser's "train" button replays the nearest.
CIRCLE_TEMPERATURES = (0.05, 0.2, 1.0, 5.0)


def negative_draws(n_negatives: int, seed: int = 0) -> list[float]:
    """The K sorted standard-normal draws ``z`` behind :func:`crl_helpers.temperature.similarities_with`.

    ``similarities_with(K, mean, positive, spread, seed)`` is ``[positive, clip(mean + spread * z, -1, 1)]``
    (clipping keeps the order), so the browser rebuilds it for any mean from these K numbers. They are read
    off ``similarities_with`` itself at a spread of 2^-10 (a power of two: scaling back is exact).

    Example:
        >>> from crl_helpers.temperature import similarities_with
        >>> z = negative_draws(3)
        >>> [0.7] + [min(1, max(-1, 0.2 + 0.1 * v)) for v in z] == similarities_with(3, 0.2).tolist()
        True
    """
    from crl_helpers.temperature import similarities_with

    scale = 2.0 ** -10
    return (similarities_with(n_negatives, 0.0, spread=scale, seed=seed)[1:] / scale).tolist()


def _draw_circle(ax, snapshot, title: str) -> None:
    """The circle toy's embedding: view 1 on the circle, view 2 just outside, coloured by the content's angle."""
    hue = (torch.atan2(snapshot.content[:, 1], snapshot.content[:, 0]) / (2 * math.pi)) % 1  # (n,) in [0, 1)
    theta = np.linspace(0, 2 * math.pi, 200)
    ax.plot(np.cos(theta), np.sin(theta), color="grey", alpha=0.4, linewidth=0.8)
    ax.scatter(*snapshot.z1.T.numpy(), c=hue.numpy(), cmap="hsv", s=12, vmin=0, vmax=1)
    ax.scatter(*(1.15 * snapshot.z2).T.numpy(), c=hue.numpy(), cmap="hsv", s=5, alpha=0.6, vmin=0, vmax=1)
    ax.set_aspect("equal")
    ax.set_xlim(-1.3, 1.3)
    ax.set_ylim(-1.3, 1.3)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)


def _circle_run(temperature: float, train_steps: int, n_points: int):
    """The circle toy's snapshots while it trains (about 6 of them and the untrained one)."""
    from crl_helpers.temperature import circle_training

    return circle_training(temperature, train_steps, n_points, every=max(1, train_steps // 6))


def _circle_json(temperature: float, snapshots: list) -> dict:
    return {"temperature": float(temperature),
            "snapshots": [{"step": s.step, "z1": _rounded(s.z1, 3), "z2": _rounded(s.z2, 3), "alignment": float(s.alignment),
                           "uniformity": float(s.uniformity)} for s in snapshots]}


def _temperature_figure(state: dict, sweep: dict, snapshot, trained_at: str):
    """The four panels of the temperature explorer as a matplotlib Figure (the PNG of ``w.png``)."""
    s, p, weights, tau, loss = state["similarities"], state["p"], state["weights"], state["temperature"], state["loss"]
    fig = _new_figure(15.0, 3.4, layout=None)
    ax_p, ax_g, ax_l, ax_c = fig.subplots(1, 4, gridspec_kw={"width_ratios": [1.2, 1.2, 1.0, 0.8]})
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.22, top=0.86, wspace=0.25)
    x = np.arange(len(s))
    colours = ["tab:green"] + ["tab:red"] * (len(s) - 1)
    ax_p.bar(x, p.numpy(), color=colours)
    ax_p.set_title(f"(a) key distribution p_j, p_pos = {float(p[0]):.2f}", fontsize=9)
    ax_p.set_ylim(0, 1)
    ax_g.bar(x, weights.numpy(), color=colours)
    ax_g.axhline(0, color="black", linewidth=0.6)
    ax_g.set_title(f"(b) gradient dL/ds_j: hardest negative gets {100 * state['hardness_share']:.0f}% of the push",
                   fontsize=9)
    for ax in (ax_p, ax_g):
        if len(s) <= 24:
            ax.set_xticks(x)
            ax.set_xticklabels(["pos"] + [f"{v:.2f}" for v in s[1:].tolist()], rotation=90, fontsize=7)
        ax.set_xlabel("candidate (similarity s_j)" if len(s) <= 24 else "candidate: 0 = positive, then hardest first",
                      fontsize=8)
    ax_l.plot(sweep["temperature"].numpy(), sweep["loss"].numpy(), color="tab:blue")
    ax_l.axhline(math.log(len(s)), color="grey", linestyle=":", linewidth=0.8)
    ax_l.axvline(tau, color="tab:orange", linestyle="--")
    ax_l.plot([tau], [loss], "o", color="tab:orange")
    ax_l.set_xscale("log")
    ax_l.set_xlabel("temperature (dotted: log(K + 1))", fontsize=8)
    ax_l.set_title(f"(c) InfoNCE loss = {loss:.3f} at temperature {tau:.3f}", fontsize=9)
    ax_l.grid(alpha=0.3)
    _draw_circle(ax_c, snapshot, f"(d) circle toy ({trained_at}), step {snapshot.step}\n"
                                 f"align {snapshot.alignment:.2f}, uniform {snapshot.uniformity:.2f}")
    return fig


def temperature_explorer(similarities: torch.Tensor | None = None, temperature: float = 0.5, n_negatives: int = 15,
                         negative_mean: float = 0.3, train_steps: int = 150, n_points: int = 64):
    """A log-scale temperature slider over one anchor's InfoNCE, and a 2-D encoder trained on a circle (Wang & Liu 2021).

    Drawn by JavaScript in the browser (``widgets_js/temperature.js``, an anywidget), so its sliders work
    in JupyterLab and on a static page without a kernel. Four panels redraw as the controls move: (a) the
    key distribution ``p_j`` (softmax of ``s / temperature`` over the candidate keys, the positive in green);
    (b) the gradient ``dL/ds_j`` per candidate (the pull on the positive, the push on each negative); (c)
    the loss against the temperature, with the current value marked; (d) the circle toy of
    :func:`crl_helpers.temperature.circle_training`. The browser computes (a)-(c) from similarities Python
    supplies (the K sorted draws of :func:`crl_helpers.temperature.similarities_with`, see
    :func:`negative_draws`); tests/test_widgets_js.py checks its softmax, loss and gradient against
    :mod:`crl_helpers.temperature`. The circle toy is trained ahead in Python at
    :data:`CIRCLE_TEMPERATURES` (and the starting temperature): on a static page the "train on the circle"
    button replays the run nearest the slider's temperature, snapshot by snapshot; with a kernel (JupyterLab)
    it trains the toy live at exactly the slider's temperature, as ``w.train()`` does. The ``K`` slider offers
    :data:`K_CHOICES` (and the starting K); ``negatives around`` (``negative_mean``) sets how hard the negatives
    are: the centre they are drawn around, which the mean of the K drawn ones misses by a little (the caption
    gives both); passing ``similarities`` fixes them instead (the two sliders are then disabled).

    Args:
        similarities: ``(1 + K,)`` cosine similarities, positive first; default: drawn from the sliders.
        temperature: the starting temperature (the slider spans 0.01 to 10, widened if needed).
        n_negatives, negative_mean: the sliders' starting values (K in 1..255, mean in [-0.9, 0.9]).
        train_steps, n_points: the circle toy's training length and number of points.

    Returns:
        An :class:`Explorer` (an ``anywidget.AnyWidget``); ``w.controls`` holds ``temperature``,
        ``n_negatives``, ``negative_mean`` (:class:`BrowserControl`: set ``.value`` to move them) and
        ``train``; ``w.train()`` trains the circle toy at the current temperature; ``w.state`` holds
        ``temperature``, ``loss``, ``p`` (1 + K,), ``weights`` (1 + K,), ``similarities`` (1 + K,),
        ``p_positive``, ``hardness_share`` (of the hardest negative), ``n_negatives``, ``negative_mean`` and
        ``circle`` (the shown snapshot: step, temperature, alignment, uniformity); ``w.text`` the caption;
        ``w.png`` a matplotlib rendering of the same numbers.

    Raises:
        TypeError, ValueError: as :func:`crl_helpers.temperature.key_distribution` and
            :func:`crl_helpers.temperature.similarities_with`.

    Example:
        >>> w = temperature_explorer(temperature=0.2, train_steps=10, n_points=16)
        >>> before = w.state["loss"]
        >>> w.controls["negative_mean"].value = 0.6  # harder negatives
        >>> w.state["loss"] > before
        True
        >>> w.train()["step"]
        10
    """
    from crl_helpers import temperature as tm
    from crl_helpers.validate import check_int, check_temperature

    fixed = None if similarities is None else tm.check_similarities(similarities).detach().cpu().double()
    temperature = check_temperature(temperature)
    n_negatives = check_int("n_negatives", n_negatives, 1)
    if n_negatives > 255:
        raise ValueError(f"n_negatives={n_negatives} must be in 1..255 (the K slider's range)")
    tm.similarities_with(n_negatives, negative_mean)  # validates the starting values
    train_steps, n_points = check_int("train_steps", train_steps, 1), check_int("n_points", n_points, 2)
    low = min(-2.0, math.floor(math.log10(temperature)))
    high = max(1.0, math.ceil(math.log10(temperature)))
    temperatures = torch.logspace(low, high, 61, dtype=torch.float64).tolist()
    k_options = sorted(set(K_CHOICES) | {n_negatives})

    runs = {repr(float(tau)): list(_circle_run(tau, train_steps, n_points)) for tau in sorted({*CIRCLE_TEMPERATURES, temperature})}
    content = next(iter(runs.values()))[0].content
    hue = (torch.atan2(content[:, 1], content[:, 0]) / (2 * math.pi)) % 1  # (n,) in [0, 1)
    widget = _browser_classes()["temperature"](
        temperature=temperature, log_range=[float(low), float(high)], n_negatives=n_negatives,
        negative_mean=float(negative_mean), k_options=k_options, draws={str(k): negative_draws(k) for k in k_options},
        fixed=[] if fixed is None else fixed.tolist(), circle_hue=_rounded(hue),
        circle_runs={key: _circle_json(float(key), snaps) for key, snaps in runs.items()},
        even_uniformity=math.log(math.exp(-4) * float(np.i0(4))))
    widget.layout.width = "100%"

    def shown_snapshot():
        snapshots = runs.get(widget.circle_key) or next(iter(runs.values()))[:1]
        return snapshots[min(widget.circle_index, len(snapshots) - 1)] if widget.circle_key in runs else snapshots[0]

    def compute() -> dict:
        tau = widget.temperature
        s = fixed if fixed is not None else tm.similarities_with(widget.n_negatives, widget.negative_mean)  # (1 + K,)
        p = tm.key_distribution(s, tau)  # (1 + K,)
        weights = tm.gradient_weights(s, tau)  # (1 + K,)
        loss = tm.info_nce_from_similarities(s, tau)
        share = tm.hardness_share(s, tau, top=1)
        snap = shown_snapshot()
        run_temperature = float(widget.circle_key) if widget.circle_key in runs else None
        trained_at = "untrained" if run_temperature is None else f"trained at temperature {run_temperature:.3f}"
        # The slider sets the centre the negatives are drawn around; the K drawn ones average a little off it.
        negatives = (f"K = {len(s) - 1} negatives as passed (mean similarity {float(s[1:].mean()):.2f})" if fixed is not None
                     else f"K = {len(s) - 1} negatives drawn around {widget.negative_mean:.2f} "
                          f"(mean of this draw {float(s[1:].mean()):.2f})")
        widget.text = (
            f"temperature {tau:.3f}, {negatives}: "
            f"loss {loss:.3f} (log(K + 1) = {math.log(len(s)):.3f}), p(positive) {float(p[0]):.3f}, "
            f"pull on the positive {float(weights[0]):.2f}, the hardest negative takes {100 * share:.1f}% "
            f"of the push (uniform would be {100 / (len(s) - 1):.1f}%). Circle toy ({trained_at}, step "
            f"{snap.step}): alignment {snap.alignment:.3f}, uniformity {snap.uniformity:.3f} "
            f"(an even spread: {widget.even_uniformity:.3f})")
        return {"temperature": tau, "loss": loss, "p": p, "weights": weights, "similarities": s,
                "p_positive": float(p[0]), "hardness_share": share, "n_negatives": len(s) - 1,
                "negative_mean": float(s[1:].mean()), "trained_at": trained_at,
                "circle": {"step": snap.step, "temperature": run_temperature, "alignment": snap.alignment,
                           "uniformity": snap.uniformity}}

    def draw(state: dict):
        sweep = tm.temperature_sweep(state["similarities"], temperatures)
        return _temperature_figure(state, sweep, shown_snapshot(), state["trained_at"])

    def put_k(k) -> int:
        k = check_int("n_negatives", k, 1)
        if k > 255:
            raise ValueError(f"n_negatives={k} must be in 1..255 (the K slider's range)")
        if k not in widget.k_options:
            widget.draws = {**widget.draws, str(k): negative_draws(k)}
            widget.k_options = sorted([*widget.k_options, k])
        return k

    def put_mean(mean) -> float:
        tm.similarities_with(1, mean)  # validates
        return float(mean)

    def train(_button=None) -> dict:
        """Train the circle toy at the current temperature (``train_steps`` steps), sending each snapshot to the
        browser as it comes (a run trained before is shown at once); returns ``state["circle"]``."""
        tau = widget.temperature
        key = repr(float(tau))
        if key not in runs:
            runs[key] = []
            for snapshot in _circle_run(tau, train_steps, n_points):
                runs[key].append(snapshot)
                widget.circle_runs = {**widget.circle_runs, key: _circle_json(tau, runs[key])}
                widget.circle_key, widget.circle_index = key, len(runs[key]) - 1
        widget.circle_key, widget.circle_index = key, len(runs[key]) - 1
        return widget.state["circle"]

    def on_message(_widget, content, _buffers) -> None:
        # The browser's "train" button: in a kernel the toy trains at exactly the slider's temperature.
        if isinstance(content, dict) and content.get("event") == "train":
            widget.temperature = check_temperature(content.get("temperature"))
            train()

    disabled = fixed is not None
    widget.controls = {
        "temperature": BrowserControl(widget, "temperature", put=check_temperature, description="temperature",
                                      min=low, max=high, base=10),
        "n_negatives": BrowserControl(widget, "n_negatives", put=put_k, description="K negatives", min=1, max=255,
                                      disabled=disabled),
        "negative_mean": BrowserControl(widget, "negative_mean", put=put_mean, description="negatives around", min=-0.9,
                                        max=0.9, disabled=disabled),
        "train": BrowserControl(widget, "circle_key", description="train on the circle", click=train),
    }
    widget.train = train
    widget.on_msg(on_message)
    widget._start(compute, draw, ["temperature", "n_negatives", "negative_mean", "circle_key", "circle_index"])
    return widget

