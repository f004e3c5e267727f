"""A small inline SVG line chart of a rate over a time window: no script, no external resource."""

from __future__ import annotations

import html

WIDTH = 600
HEIGHT = 120


def rate_chart(intervals: list[tuple[float, float, float]], now_s: float, window_s: float, label: str) -> str:
    """SVG steps of (start, end, rate) intervals from `now_s - window_s` to `now_s`; the y axis starts at 0.

    Steps, not a line through points: each value is an average over its interval.
    """
    top = max((r for _, _, r in intervals), default=0.0)
    scale = top if top > 0 else 1.0
    start = now_s - window_s
    coords = []
    for t0, t1, rate in intervals:
        y = HEIGHT - rate / scale * (HEIGHT - 4)
        for t in (t0, t1):
            x = min(WIDTH, max(0.0, (t - start) / window_s * WIDTH))
            coords.append(f"{x:.1f},{y:.1f}")
    line = (
        f'<polyline fill="none" stroke="currentColor" stroke-width="2" vector-effect="non-scaling-stroke" '
        f'points="{" ".join(coords)}"/>'
        if len(coords) > 1
        else ""
    )
    name = html.escape(label, quote=True)
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" preserveAspectRatio="none" role="img" '
        f'aria-label="{name}"><title>{name}</title>'
        f'<line x1="0" y1="{HEIGHT}" x2="{WIDTH}" y2="{HEIGHT}" stroke="#999" stroke-width="1" '
        f'vector-effect="non-scaling-stroke"/>{line}</svg>'
    )
