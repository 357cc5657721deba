"""A self-contained HTML page with inline SVG (no network, no extra dependency): lines delivered over time
per handler, and where every planned line ended up (CloudWatch, spill, lost after logging, never logged)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from mwaa_logging.demo.progress import Sample
from mwaa_logging.demo.runner import RunResult

WIDTH, HEIGHT, PAD = 760, 320, 60
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def _polyline(points: Sequence[tuple[float, float]], colour: str, dashed: bool = False, dots: bool = False) -> str:
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    dash = (' stroke-dasharray="2 3"' if dots else ' stroke-dasharray="6 4"') if dashed else ""
    return f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{coords}"/>'


def _text(x: float, y: float, content: str, anchor: str = "start", size: int = 12) -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'font-family="sans-serif">{html.escape(content)}</text>')


def timeline_svg(results: Sequence[RunResult]) -> str:
    """Cumulative lines logged (dashed) and events stored in CloudWatch (solid), per handler; every run's
    throttle storm (start, end in seconds on its own clock, as its timeline) shaded, in the run's colour when
    there are several."""
    samples = [s for r in results for s in r.timeline]
    t_max = max((s.t for s in samples), default=1.0) or 1.0
    y_max = max([max(s.logged, s.delivered or 0) for s in samples] + [1])
    plot_w, plot_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD

    def point(s: Sample, value: int) -> tuple[float, float]:
        return PAD + s.t / t_max * plot_w, HEIGHT - PAD - value / y_max * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}">',
             f'<rect x="{PAD}" y="{PAD}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>',
             _text(WIDTH / 2, 20, "Lines logged (dashed), events stored in CloudWatch (solid),", "middle", 14),
             _text(WIDTH / 2, 38, "stored or spilled to S3 (dotted), over time", "middle", 14)]
    storms = [(i, r.handler, r.storm) for i, r in enumerate(results) if r.storm is not None and r.storm[1] > r.storm[0]]
    for row, (i, handler, (begin, end)) in enumerate(storms):
        x0 = PAD + min(begin, t_max) / t_max * plot_w
        x1 = PAD + min(end, t_max) / t_max * plot_w
        fill = "#fdd" if len(storms) == 1 else COLOURS[i % len(COLOURS)]
        opacity = "0.6" if len(storms) == 1 else "0.12"
        label = "throttle storm" if len(storms) == 1 else f"storm ({handler})"
        parts.append(f'<rect x="{x0:.1f}" y="{PAD}" width="{x1 - x0:.1f}" height="{plot_h}" fill="{fill}" '
                     f'fill-opacity="{opacity}"><title>{html.escape(label)}: every PutLogEvents call throttled'
                     '</title></rect>')
        parts.append(_text((x0 + x1) / 2, PAD + plot_h - 8 - 14 * row, label, "middle", 11))
    for k in range(5):
        value = y_max * k / 4
        y = HEIGHT - PAD - k / 4 * plot_h
        parts.append(_text(PAD - 6, y + 4, f"{value:,.0f}", "end", 10))
        x = PAD + k / 4 * plot_w
        parts.append(_text(x, HEIGHT - PAD + 16, f"{t_max * k / 4:.0f} s", "middle", 10))
    for i, result in enumerate(results):
        colour = COLOURS[i % len(COLOURS)]
        parts.append(_polyline([point(s, s.logged) for s in result.timeline], colour, dashed=True))
        stored = [point(s, s.delivered) for s in result.timeline if s.delivered is not None]
        if stored:
            parts.append(_polyline(stored, colour))
        kept = [point(s, s.delivered + s.spilled) for s in result.timeline
                if s.delivered is not None and s.spilled is not None]
        if kept and result.total("spilled_total"):
            parts.append(_polyline(kept, colour, dashed=True, dots=True))
        parts.append(f'<rect x="{PAD + 10}" y="{PAD + 10 + 18 * i}" width="12" height="12" fill="{colour}"/>')
        parts.append(_text(PAD + 28, PAD + 21 + 18 * i, result.handler))
    parts.append("</svg>")
    return "\n".join(parts)


def outcome_svg(results: Sequence[RunResult]) -> str:
    """One bar per handler: the planned lines in CloudWatch, spilled (recoverable), lost after logging and never
    logged (a task died first: not the handler's loss), the numbers of the verdict and the tables."""
    bar_h, gap = 34, 24
    height = PAD + len(results) * (bar_h + gap) + 30
    plot_w = WIDTH - 2 * PAD - 60
    total = max([r.expected for r in results] + [1])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}">',
             _text(WIDTH / 2, 24, "Where every planned line ended up", "middle", 14)]
    for i, result in enumerate(results):
        y = PAD + i * (bar_h + gap)
        x = float(PAD + 60)
        parts.append(_text(x - 8, y + bar_h / 2 + 4, result.handler, "end"))
        segments = (("in CloudWatch", result.total("in_cloudwatch"), "#2ca02c"),
                    ("spilled to S3" + (" (then replayed)" if result.after_replay is not None else ""),
                     result.total("spilled_total"), "#1f77b4"),
                    ("lost after logging", result.lost_after_logging, "#d62728"),
                    ("never logged (task died)", result.never_logged, "#bbbbbb"))
        for label, value, colour in segments:
            width = value / total * plot_w
            if width > 0:
                parts.append(f'<rect x="{x:.1f}" y="{y}" width="{max(width, 2):.1f}" height="{bar_h}" '
                             f'fill="{colour}"><title>{label}: {value:,}</title></rect>')
            x += width
        summary = ", ".join(f"{label} {value:,}" for label, value, _ in segments
                            if value or not label.startswith("never"))
        parts.append(_text(PAD + 60, y + bar_h + 14, summary, size=11))
    parts.append("</svg>")
    return "\n".join(parts)


def loss_svg(results: Sequence[RunResult]) -> str:
    """Lines lost after logging per handler, on their own scale (a few lines are invisible next to 40,000); lines
    a task never logged (it died first) are named apart, not counted."""
    bar_h, gap = 28, 16
    height = PAD + len(results) * (bar_h + gap) + 10
    plot_w = WIDTH - 2 * PAD - 160
    most = max([r.lost_after_logging for r in results] + [1])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}">',
             _text(WIDTH / 2, 24, "Lines lost after logging (not in CloudWatch nor in a spill target, or truncated)",
                   "middle", 14)]
    for i, result in enumerate(results):
        y = PAD + i * (bar_h + gap)
        x = PAD + 60
        parts.append(_text(x - 8, y + bar_h / 2 + 4, result.handler, "end"))
        lost = result.lost_after_logging
        width = lost / most * plot_w
        if lost:
            parts.append(f'<rect x="{x}" y="{y}" width="{max(width, 2):.1f}" height="{bar_h}" fill="#d62728"/>')
        truncated = result.total("truncated")
        label = f"{lost:,}" + (f" ({truncated:,} truncated)" if truncated else "")
        if result.never_logged:
            label += f"; {result.never_logged:,} never logged (task died)"
        parts.append(_text(x + width + 8, y + bar_h / 2 + 4, label))
    parts.append("</svg>")
    return "\n".join(parts)


def write_chart(path: Path, results: Sequence[RunResult], title: str) -> Path:
    """Write the HTML page to ``path`` (parent directories created) and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"<li>{html.escape(r.handler)}: {r.expected:,} lines planned, {r.logged:,} logged, "
                   f"{r.total('arrived'):,} arrived exactly, {r.lost_after_logging:,} lost after logging"
                   + (f", {r.never_logged:,} never logged (task died)" if r.never_logged else "")
                   + f"; tasks start -> all exited {r.wall_seconds:.1f} s</li>" for r in results)
    page = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title></head>"
            f"<body style=\"font-family: sans-serif\">\n<h1>{html.escape(title)}</h1>\n<ul>{rows}</ul>\n"
            f"{timeline_svg(results)}\n<br/>\n{outcome_svg(results)}\n<br/>\n{loss_svg(results)}\n"
            "</body></html>\n")
    path.write_text(page, encoding="utf-8")
    return path
