"""The thin shell of a widget panel (DESIGN.md, layer 3).

A panel owns named ``controls`` (ipywidgets), one long-lived
``go.FigureWidget`` updated in place, and an HTML ``message`` shown in place of
the figure when the controls ask for something that cannot be drawn. Every
observer calls :meth:`Panel.update`, which reads the control values, asks the
panel's pure ``compute`` (layer 1, cached on the values) for numbers and hands
them to ``draw`` (layer 2 builders, applied in place). Tests build a panel and
set ``control.value``; no browser is needed.
"""

from __future__ import annotations

from collections.abc import Mapping

import ipywidgets as W
import plotly.graph_objects as go


class Panel:
    """Base class. Subclasses build ``self.controls`` and implement ``compute`` and ``draw``."""

    #: largest number of cached results kept per panel
    cache_size = 256

    def __init__(self, controls: Mapping[str, W.Widget], figure: go.Figure, title: str = ""):
        self.controls = dict(controls)
        # one FigureWidget for the panel's lifetime, built with its final layout (Voila quirk)
        self.figure = go.FigureWidget(figure)
        self.message = W.HTML(layout=W.Layout(min_height="60px", padding="8px"))
        self.title = W.HTML(f"<b>{title}</b>") if title else None
        self.error: str | None = None
        self.last_result = None
        self._cache: dict = {}
        self.output = W.Box([self.figure])
        controls_box = W.HBox(list(self.controls.values()), layout=W.Layout(flex_flow="row wrap"))
        self.view = W.VBox([w for w in (self.title, controls_box, self.output) if w is not None])
        for control in self.controls.values():
            control.observe(self.update, names="value")

    # layer 1 and 2, provided by subclasses -------------------------------------------------
    def compute(self, state: dict):
        """Pure: control values in, numbers out. Raise ``ValueError`` for a state that can't be drawn."""
        raise NotImplementedError

    def draw(self, result) -> None:
        """Apply ``result`` to ``self.figure`` in place (inside ``batch_update``)."""
        raise NotImplementedError

    # the shell ------------------------------------------------------------------------------
    def state(self) -> dict:
        return {name: control.value for name, control in self.controls.items()}

    def _key(self, state: dict):
        return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in state.items()))

    def result(self, state: dict | None = None):
        state = self.state() if state is None else state
        key = self._key(state)
        if key not in self._cache:
            if len(self._cache) >= self.cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = self.compute(state)
        return self._cache[key]

    def show_message(self, text: str) -> None:
        self.message.value = f"<div style='font-size:1.1em;color:#a94442'>{text}</div>"
        self.output.children = (self.message,)

    def update(self, change=None) -> None:
        """Observer of every control: recompute (cached) and redraw in place."""
        try:
            result = self.result()
        except ValueError as err:  # a state that can't be drawn: say why instead of the figure
            self.error = str(err)
            self.show_message(str(err))
            return
        self.error = None
        self.last_result = result
        with self.figure.batch_update():
            self.draw(result)
        if self.output.children != (self.figure,):
            self.output.children = (self.figure,)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.view)
