"""The frame every explorer shares: the :class:`Explorer` attributes, the ipywidgets explorer, PNG figures.

Example:
    >>> from matplotlib.figure import Figure
    >>> figure_png(Figure(figsize=(1, 1)))[:4]
    b'\\x89PNG'
"""
from __future__ import annotations

import base64
import io
import traceback
from typing import Callable

import numpy as np

__all__ = ["Explorer", "figure_png"]


def figure_png(fig, dpi: int = 90) -> bytes:
    """PNG bytes of a matplotlib figure.

    Explorers show PNGs rather than live figures: a PNG displays the same in JupyterLab, in
    VS Code and in a saved notebook, whatever matplotlib backend the kernel has.

    Example:
        >>> from matplotlib.figure import Figure
        >>> figure_png(Figure(figsize=(1, 1)))[:4]
        b'\\x89PNG'
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _new_figure(width: float, height: float, layout: str | None = "constrained"):
    # The object API, not pyplot: no global figure list to leak, nothing shown twice.
    # layout=None (fixed margins) where constrained layout's solver would double a redraw's cost.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout=layout)


class Explorer:
    """Base of the explorers; built by :func:`_make_explorer` as a subclass of ``ipywidgets.VBox``.

    Attributes:
        controls: name -> ipywidgets control (slider, dropdown, button ...).
        output: the ``ipywidgets.Output`` that shows the figure.
        figure: the last matplotlib ``Figure`` drawn.
        png: that figure as PNG bytes.
        state: the numbers behind the figure (for captions and tests).
    """


def _png_output(png: bytes) -> dict:
    """A display_data output (nbformat) holding a PNG, as an Output widget's ``outputs`` entry."""
    return {"output_type": "display_data", "data": {"image/png": base64.b64encode(png).decode("ascii"),
                                                    "text/plain": "<figure>"}, "metadata": {}}


def _in_kernel() -> bool:
    # Outside a Jupyter kernel (plain Python, doctests, tests) nobody sees the Output widget, so a
    # callback's error is raised instead of being shown under the widget.
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None


def _make_explorer(controls: dict, render: Callable[[], tuple], rows: list | None = None, caption: bool = True):
    """Build a VBox explorer whose ``update()`` calls ``render() -> (figure, state, caption_html)``."""
    import ipywidgets as widgets

    class _Explorer(widgets.VBox, Explorer):
        def update(self):
            """Redraw from the controls' current values; returns the new Figure (errors raise)."""
            fig, state, text = render()
            self.figure, self.state, self.png = fig, state, figure_png(fig)
            if self.caption is not None:
                self.caption.value = text
            # Replace the Output widget's outputs as one state update instead of capturing display() calls
            # in a `with output:` block: capture routes the cell's own messages through the widget, and under
            # nbclient (CI) that intermittently stalled a cell until its timeout. One synced trait is atomic.
            self.output.outputs = (_png_output(self.png),)
            return fig

        def _on_change(self, _change=None) -> None:
            # A callback's exception would vanish into the browser's log: show it under the widget instead.
            try:
                self.update()
            except Exception:  # noqa: BLE001 - shown to the user, not swallowed
                if not _in_kernel():
                    raise
                self.output.outputs = ({"output_type": "stream", "name": "stderr", "text": traceback.format_exc()},)

    output = widgets.Output(layout=widgets.Layout(min_height="120px"))
    caption_widget = widgets.HTML() if caption else None
    children = list(rows if rows is not None else controls.values())
    children += [w for w in (caption_widget, output) if w is not None]
    explorer = _Explorer(children=children)
    explorer.controls, explorer.output, explorer.caption = controls, output, caption_widget
    explorer.figure, explorer.png, explorer.state = None, b"", {}
    for control in controls.values():
        if isinstance(control, widgets.Button):
            continue  # buttons wire their own on_click
        # Play drives the snapshot slider (jslink) and is not drawn from itself.
        if isinstance(control, widgets.ValueWidget) and not isinstance(control, widgets.Play):
            control.observe(explorer._on_change, names="value")
    return explorer


def _rounded(values, digits: int = 4) -> list[float]:
    # Map coordinates travel in the widget's saved state: 4 decimals are far below a pixel and keep it small.
    return [round(float(v), digits) for v in np.asarray(values, dtype=np.float64).ravel()]

