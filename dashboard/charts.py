"""Geometry of the dashboard's small line charts, drawn as inline SVG by the templates: every coordinate is
worked out here (as text, so no locale turns a decimal point into a comma) and the template only places
it. Series differ by marker shape and line pattern as well as colour; each chart carries a one-sentence
summary for screen readers, and the table next to it gives every figure."""

from __future__ import annotations

from django.utils import timezone
from django.utils.formats import date_format

from attestations.services.review_quality import format_seconds

WIDTH, HEIGHT = 360, 170
LEFT, RIGHT, TOP, BOTTOM = 46, 24, 14, 28
# Seconds: steps for the time axis, so that its four ticks read as round durations.
TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
              86400, 172800, 604800, 1209600, 2592000)
RATE_SERIES = (
    ("completion_rate", "Completion", "completion", "square"),
    ("confirm_rate", "Confirmed", "confirmed", "triangle"),
    ("release_rate", "Released", "released", "diamond"),
    ("expired_rate", "No response", "expired", "down"),
)
TIME_SERIES = (("median_seconds", "Median time to decide", "time", "square"),)


def _n(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _marker(shape: str, x: float, y: float, size: float = 4.0) -> str:
    """Polygon points of a marker centred on (x, y)."""
    corners = {
        "square": ((-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)),
        "triangle": ((0, -1.1), (1, 0.75), (-1, 0.75)),
        "down": ((-1, -0.75), (1, -0.75), (0, 1.1)),
        "diamond": ((0, -1.15), (1.15, 0), (0, 1.15), (-1.15, 0)),
    }[shape]
    return " ".join(f"{_n(x + dx * size)},{_n(y + dy * size)}" for dx, dy in corners)


def cycle_label(cycle: dict) -> str:
    """A cycle's short name on an axis: the day it closed."""
    closed = cycle["closed_at"]
    return date_format(timezone.localtime(closed).date(), "j M") if closed else "—"


def _time_axis(cycles: list[dict]) -> tuple[float, list[tuple[float, str]]]:
    top = max((c["median_seconds"] for c in cycles if c["median_seconds"] is not None), default=0)
    step = next((s for s in TIME_STEPS if 4 * s >= top), TIME_STEPS[-1])
    if 4 * step < top:
        step = top / 4
    return 4 * step, [(n * step, format_seconds(n * step)) for n in range(5)]


def line_chart(cycles: list[dict], series, y_max: float, ticks: list[tuple[float, str]], value_label,
               summary: str) -> dict:
    """A chart of one line per ``series`` entry (field, label, css name, marker shape) across ``cycles``,
    oldest left; a gap where a cycle has no value; a shaded band behind cycles flagged for rubber-stamping."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    count = len(cycles)

    def x_of(index: int) -> float:
        return LEFT + plot_w / 2 if count == 1 else LEFT + plot_w * index / (count - 1)

    def y_of(value: float) -> float:
        return TOP + plot_h * (1 - (value / y_max if y_max else 0))

    band = plot_w / max(count - 1, 1) * 0.6 if count > 1 else plot_w / 4
    labels = [cycle_label(c) for c in cycles]
    lines = []
    for field, label, css, shape in series:
        segments, current, markers = [], [], []
        for index, cycle in enumerate(cycles):
            value = cycle[field]
            if value is None:
                if current:
                    segments.append(" ".join(current))
                current = []
                continue
            x, y = x_of(index), y_of(value)
            current.append(f"{_n(x)},{_n(y)}")
            markers.append({"points": _marker(shape, x, y), "title": f"{label}: {value_label(value)}, {labels[index]}"})
        if current:
            segments.append(" ".join(current))
        lines.append({"label": label, "css": css, "segments": segments, "markers": markers,
                      "key_points": _marker(shape, 12, 6, 3.5)})
    return {
        "width": WIDTH, "height": HEIGHT,
        "left": LEFT, "right": WIDTH - RIGHT, "tick_x": LEFT - 6, "top": TOP, "bottom": _n(TOP + plot_h),
        "label_y": _n(TOP + plot_h + 16),
        "grid": [{"y": _n(y_of(value)), "label": text} for value, text in ticks],
        "x_labels": [{"x": _n(x_of(i)), "text": text} for i, text in enumerate(labels)],
        "flags": [{"x": _n(x_of(i) - band / 2), "width": _n(band), "mark_x": _n(x_of(i)), "mark_y": _n(TOP - 3),
                   "title": f"Possible rubber-stamping in the cycle closed {labels[i]}"}
                  for i, c in enumerate(cycles) if c["rubber_stamping"]],
        "height_plot": _n(plot_h),
        "series": lines,
        "summary": summary,
    }


def _change(cycles: list[dict], field: str, show) -> str:
    values = [c[field] for c in cycles if c[field] is not None]
    if not values:
        return "none"
    return show(values[0]) if len(values) == 1 else f"{show(values[0])} to {show(values[-1])}"


def _percent(value: float) -> str:
    return f"{_n(value)} %"


def trend_charts(trend: dict) -> dict:
    """The rates chart and the time-to-decide chart of one schedule's trend (``dashboard.trends``)."""
    cycles = trend["cycles"]
    span = f"{len(cycles)} closed cycle{'s' if len(cycles) != 1 else ''}"
    if cycles:
        span += f", closed {cycle_label(cycles[0])}" + (f" to {cycle_label(cycles[-1])}" if len(cycles) > 1 else "")
    flagged = [cycle_label(c) for c in cycles if c["rubber_stamping"]]
    flag_text = f" Possible rubber-stamping in the cycle closed {', '.join(flagged)}." if flagged else ""
    rates = "; ".join(f"{label.lower()} {_change(cycles, field, _percent)}" for field, label, _, _ in RATE_SERIES)
    time_max, time_ticks = _time_axis(cycles)
    return {
        "rates": line_chart(
            cycles, RATE_SERIES, 100, [(v, f"{v} %") for v in (0, 25, 50, 75, 100)], _percent,
            f"{trend['name']}, share of items per cycle over {span}: {rates}.{flag_text}",
        ),
        "time": line_chart(
            cycles, TIME_SERIES, time_max, time_ticks, format_seconds,
            f"{trend['name']}, median time to decide over {span}: "
            f"{_change(cycles, 'median_seconds', format_seconds)}.{flag_text}",
        ),
    }
