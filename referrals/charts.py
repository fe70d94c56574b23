"""Bar charts drawn on the server as inline SVG: the dashboard needs no JavaScript
library, prints, and reads in a screen reader through the table beside each chart."""

from __future__ import annotations

from dataclasses import dataclass, field

ROW = 26
LABEL_WIDTH = 250  # room for 30 characters at 13 px
BAR_WIDTH = 360
VALUE_WIDTH = 70


@dataclass
class Bar:
    y: int
    width: float
    value: str
    css: str = "bar"


@dataclass
class Row:
    label: str
    y: int
    bars: list[Bar] = field(default_factory=list)


@dataclass
class Chart:
    title: str
    rows: list[Row]
    height: int
    legend: tuple[str, ...] = ()
    label_width: int = LABEL_WIDTH
    bar_x: int = LABEL_WIDTH + 8
    width: int = LABEL_WIDTH + BAR_WIDTH + VALUE_WIDTH + 16

    @property
    def empty(self) -> bool:
        return not self.rows


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.0f}" if value >= 10 or float(value).is_integer() else f"{value:.1f}"


def bar_chart(data: list[tuple[str, float | None]], *, title: str, unit: str = "") -> Chart:
    top = max((v or 0 for _, v in data), default=0) or 1
    rows = []
    for i, (label, value) in enumerate(data):
        y = i * ROW
        rows.append(Row(str(label), y, [Bar(y + 4, BAR_WIDTH * (value or 0) / top, _fmt(value) + unit)]))
    return Chart(title, rows, max(len(rows), 1) * ROW)


def paired_bar_chart(
    data: list[tuple[str, float | None, float | None]], *, title: str, labels: tuple[str, str]
) -> Chart:
    """Two bars per row (e.g. to-accepted and to-closed) on one scale."""
    top = max((max(a or 0, b or 0) for _, a, b in data), default=0) or 1
    rows = []
    pair = ROW + 10
    for i, (label, first, second) in enumerate(data):
        y = i * pair
        rows.append(
            Row(
                str(label or "(none)"),
                y,
                [
                    Bar(y + 2, BAR_WIDTH * (first or 0) / top, _fmt(first), "bar"),
                    Bar(y + 2 + ROW // 2 + 2, BAR_WIDTH * (second or 0) / top, _fmt(second), "bar alt"),
                ],
            )
        )
    return Chart(title, rows, max(len(rows), 1) * pair, legend=labels)
