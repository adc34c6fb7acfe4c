"""Charts as data: an ECharts option and the drill-down links of its points, embedded in the page as inert JSON.

The page's `static/charts.js` draws each with ECharts' SVG renderer (vendored
in static/vendor: no CDN). The JSON sits in a `<script type="application/json">`
block, which no browser runs, with `<`, `>` and `&` escaped, so a project
named `</script><script>…` stays text. Amounts go out as plain decimals;
the chart draws them, and the table beside every chart holds the same
figures exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Sequence

from ..exactjson import dumps

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
# The grid's top under a legend at the top: room for the legend's row and, below it, the value axis' name
# (drawn above the axis' end), which sat on the legend's row at 40.
LEGEND_ROOM = 64
_ESCAPES = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026", 0x2028: "\\u2028", 0x2029: "\\u2029"}


@dataclass(frozen=True)
class Chart:
    """One chart: `id` names its JSON block, `title` is what a screen reader hears."""

    id: str
    title: str
    option: dict
    links: tuple[tuple[str | None, ...], ...] | None = None

    def data_json(self) -> str:
        """The chart's block, safe inside a <script type="application/json"> element."""
        links = [list(series) for series in self.links] if self.links is not None else None
        return dumps({"option": self.option, "links": links}).translate(_ESCAPES)


def _axis_labels(values: Sequence[str]) -> dict:
    return {"type": "category", "data": list(values), "axisLabel": {"hideOverlap": True}}


def _chart(id: str, title: str, option: dict, links: Sequence[Sequence[str | None]] | None) -> Chart:
    """A chart of `option` with what every chart here shares: the palette, no animation, links per point."""
    option = {"color": list(PALETTE), "animation": False, **option}
    return Chart(id, title, option, tuple(tuple(s) for s in links) if links is not None else None)


def stacked_bars(id: str, title: str, categories: Sequence[str], series: Sequence[tuple[str, Sequence[Decimal]]],
                 links: Sequence[Sequence[str | None]] | None = None, unit: str = "credits") -> Chart:
    """Bars per category, one stacked segment per series (e.g. spend a day, a segment a project)."""
    option = {
        "tooltip": {"trigger": "item"},
        "legend": {"type": "scroll", "top": 0},
        "grid": {"left": 60, "right": 20, "top": LEGEND_ROOM, "bottom": 40, "containLabel": True},
        "xAxis": _axis_labels(categories),
        "yAxis": {"type": "value", "name": unit},
        "series": [{"name": name, "type": "bar", "stack": "total", "data": list(values)} for name, values in series],
    }
    return _chart(id, title, option, links)


def lines(id: str, title: str, categories: Sequence[str], series: Sequence[tuple[str, Sequence[Decimal | None]]],
          unit: str = "credits", links: Sequence[Sequence[str | None]] | None = None) -> Chart:
    """A line a series over categories (e.g. an account's balance a day)."""
    option = {
        "tooltip": {"trigger": "axis"},
        "legend": {"type": "scroll", "top": 0},
        "grid": {"left": 60, "right": 20, "top": LEGEND_ROOM, "bottom": 40, "containLabel": True},
        "xAxis": _axis_labels(categories),
        "yAxis": {"type": "value", "name": unit, "scale": True},
        "series": [{"name": name, "type": "line", "showSymbol": False, "data": list(values)} for name, values in series],
    }
    return _chart(id, title, option, links)


def horizontal_bars(id: str, title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[Decimal]]],
                    unit: str = "credits", links: Sequence[Sequence[str | None]] | None = None) -> Chart:
    """Bars side by side a label (e.g. a budget's spend beside its limit)."""
    option = {
        "tooltip": {"trigger": "item"},
        "legend": {"top": 0},
        "grid": {"left": 20, "right": 30, "top": 40, "bottom": 20, "containLabel": True},
        "yAxis": {"type": "category", "data": list(labels), "inverse": True},
        "xAxis": {"type": "value", "name": unit},
        "series": [{"name": name, "type": "bar", "data": list(values)} for name, values in series],
    }
    return _chart(id, title, option, links)
