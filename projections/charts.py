"""Charts as SVG strings, drawn on the server: no JavaScript, printable, readable by a test.

Pure functions of their numbers. Three shapes: grouped bars, stacked bars (negative values
stack below zero) and lines. Every bar and point carries a ``<title>`` (the browser shows it
on hover) and ``data-`` attributes naming its category, series and value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape
from typing import Literal

WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 70, 16, 28, 40
PALETTE = ("#2f6fb0", "#e08a1e", "#3c9a4e", "#b8433a", "#7a5aa6")
# Series whose meaning has a colour of its own (losses red, cancellations grey).
NAMED = {"dispute_losses": "#b8433a", "forfeited": "#b8433a", "cancelled": "#8c8c8c"}
MAX_X_LABELS = 8


def nice_ticks(low: int, high: int, count: int = 5) -> list[int]:
    """Round tick values covering ``low``..``high`` (0 always among them when in range)."""
    low, high = min(low, 0), max(high, 0)
    if low == high:
        high = low + 1
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    step = max(1, int(step))
    first = math.floor(low / step) * step
    last = math.ceil(high / step) * step
    return list(range(first, last + 1, step))


def svg_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[int]]],
    kind: Literal["bars", "stacked", "line"],
) -> str:
    """An SVG chart of ``series`` (name, one value per category) over ``categories``."""
    n = len(categories)
    if kind == "stacked":
        tops = [sum(max(0, v[i]) for _, v in series) for i in range(n)]
        bottoms = [sum(min(0, v[i]) for _, v in series) for i in range(n)]
    else:
        tops = [max((v[i] for _, v in series), default=0) for i in range(n)]
        bottoms = [min((v[i] for _, v in series), default=0) for i in range(n)]
    ticks = nice_ticks(min(bottoms, default=0), max(tops, default=0))
    lo, hi = ticks[0], ticks[-1]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def y(value: float) -> float:
        return TOP + plot_h * (hi - value) / (hi - lo)

    band = plot_w / max(n, 1)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}" '
        'font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
    ]
    for t in ticks:
        out.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(t):.1f}" y2="{y(t):.1f}" '
            f'stroke="{"#555" if t == 0 else "#ddd"}"/>'
            f'<text x="{LEFT - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t:,}</text>'
        )
    every = max(1, math.ceil(n / MAX_X_LABELS))
    for i, category in enumerate(categories):
        if i % every == 0:
            x = LEFT + band * (i + 0.5)
            out.append(
                f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">'
                f"{escape(category)}</text>"
            )
    out += _marks(categories, series, kind, band, y)
    for k, (name, _) in enumerate(series):
        x = LEFT + k * 130
        out.append(
            f'<rect x="{x}" y="6" width="10" height="10" fill="{colour(name, k)}"/>'
            f'<text x="{x + 14}" y="15">{escape(name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _marks(
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[int]]],
    kind: str,
    band: float,
    y: Callable[[float], float],
) -> list[str]:
    out: list[str] = []
    if kind == "line":
        for k, (name, values) in enumerate(series):
            color = colour(name, k)
            points = [(LEFT + band * (i + 0.5), y(v)) for i, v in enumerate(values)]
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}"/>')
            for (px, py), category, v in zip(points, categories, values, strict=True):
                out.append(
                    _mark(
                        "circle", f'cx="{px:.1f}" cy="{py:.1f}" r="2.5"', color, category, name, v
                    )
                )
        return out
    for i, category in enumerate(categories):
        up = down = 0
        for k, (name, values) in enumerate(series):
            v, color = values[i], colour(name, k)
            if kind == "stacked":
                width, x = band * 0.7, LEFT + band * (i + 0.15)
                base = up if v >= 0 else down
                top, bottom = (y(base + v), y(base)) if v >= 0 else (y(base), y(base + v))
                up, down = (up + v, down) if v >= 0 else (up, down + v)
            else:
                width = band * 0.8 / len(series)
                x = LEFT + band * (i + 0.1) + width * k
                top, bottom = (y(v), y(0)) if v >= 0 else (y(0), y(v))
            shape = f'x="{x:.1f}" y="{top:.1f}" width="{width:.1f}" height="{bottom - top:.1f}"'
            out.append(_mark("rect", shape, color, category, name, v))
    return out


def colour(name: str, k: int) -> str:
    return NAMED.get(name, PALETTE[k % len(PALETTE)])


def _mark(tag: str, shape: str, color: str, category: str, name: str, value: int) -> str:
    return (
        f'<{tag} {shape} fill="{color}" data-x="{escape(category)}" data-series="{escape(name)}" '
        f'data-value="{value}"><title>{escape(category)} {escape(name)}: {value:,}</title></{tag}>'
    )
