"""Server-side charts: one layout, drawn as SVG for the dashboard and as PNG for WeCom.

Why not matplotlib: the charts are grouped bars with a few labels, and WeCom needs a PNG. Computing
the shapes here and drawing them twice (SVG text for browsers, Pillow for the image message) costs
one light, well-kept dependency (Pillow) instead of matplotlib with numpy, and the two outputs
cannot disagree. Chinese labels in the PNG need a CJK font: scripts/fonts installs Debian's
fonts-wqy-microhei; without one the bulletin goes out without its image (and says so in the log).
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass
from functools import cache
from html import escape
from pathlib import Path

from bot.reports.figures import Figures
from domain.reports import day_date

_LOGGER = logging.getLogger(__name__)
BLUE, GREEN, GREY, INK = "#3b7ddd", "#2f9e6b", "#d0d4da", "#333333"
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJKsc-Regular.otf",
)


@dataclass(frozen=True)
class Bars:
    """A grouped bar chart: one group per label, one bar per series."""

    title: str
    labels: list[str]
    series: list[tuple[str, list[float], str]]  # name, values, colour


@dataclass(frozen=True)
class Shape:
    kind: str  # rect | text | line
    x: float
    y: float
    w: float = 0.0  # rect width, or line end x
    h: float = 0.0  # rect height, or line end y
    color: str = INK
    text: str = ""
    size: int = 12
    anchor: str = "start"  # start | middle | end


def trend_chart(figures: Figures) -> Bars:
    days = figures.trend
    return Bars("近期趋势（每日）", [f"{day_date(d.day).month}-{day_date(d.day).day}" for d in days],
                [("接收", [d.received for d in days], BLUE), ("按时签收", [d.ack_ontime for d in days], GREEN)])


def station_chart(figures: Figures, names: dict[str, str], top: int = 10) -> Bars:
    stations = sorted(figures.stations, key=lambda s: -s.counts.received)[:top]
    return Bars(f"各派出所对比（接收量前{top}）" if len(figures.stations) > top else "各派出所对比",
                [short_name(names.get(s.station, s.station)) for s in stations],
                [("接收", [s.counts.received for s in stations], BLUE),
                 ("按时签收", [s.counts.ack_ontime for s in stations], GREEN)])


def short_name(name: str) -> str:
    return name.removesuffix("派出所")[:6]


def layout(chart: Bars, x0: float, y0: float, width: float, height: float) -> list[Shape]:
    """The shapes of one chart inside the box (x0, y0, width, height)."""
    shapes = [Shape("text", x0, y0 + 18, text=chart.title, size=16)]
    legend_x = x0 + width
    for name, _, color in reversed(chart.series):
        legend_x -= 12 + 14 * len(name) + 16
        shapes += [Shape("rect", legend_x, y0 + 7, 12, 12, color), Shape("text", legend_x + 16, y0 + 18, text=name)]
    top, bottom, left = y0 + 36, y0 + height - 24, x0 + 40
    peak = max((v for _, values, _ in chart.series for v in values), default=0)
    step = _nice_step(peak)
    ceiling = max(step * math.ceil(peak / step), step)
    for n in range(round(ceiling / step) + 1):
        y = bottom - (bottom - top) * n * step / ceiling
        shapes += [Shape("line", left, y, x0 + width, y, GREY),
                   Shape("text", left - 6, y + 4, text=_number(n * step), size=11, anchor="end")]
    if not chart.labels:
        return [*shapes, Shape("text", x0 + width / 2, (top + bottom) / 2, text="无数据", anchor="middle")]
    slot = (x0 + width - left) / len(chart.labels)
    bar = min(28.0, slot * 0.8 / len(chart.series))
    for i, label in enumerate(chart.labels):
        centre = left + slot * (i + 0.5)
        first = centre - bar * len(chart.series) / 2
        for j, (_, values, color) in enumerate(chart.series):
            h = (bottom - top) * values[i] / ceiling
            shapes.append(Shape("rect", first + j * bar, bottom - h, bar - 2, h, color))
        shapes.append(Shape("text", centre, bottom + 16, text=label, size=11, anchor="middle"))
    return shapes


def bulletin_shapes(figures: Figures, names: dict[str, str], width: int = 800) -> tuple[list[Shape], int, int]:
    """The bulletin's image: the trend above the per-station comparison."""
    heading = f"{figures.period.title} {figures.period.label}"
    shapes = [Shape("rect", 0, 0, width, 640, "#ffffff"), Shape("text", 20, 30, text=heading, size=18)]
    shapes += layout(trend_chart(figures), 20, 50, width - 40, 270)
    shapes += layout(station_chart(figures, names), 20, 350, width - 40, 270)
    return shapes, width, 640


def to_svg(shapes: list[Shape], width: int, height: int, label: str) -> str:
    """Inline SVG for the dashboard (scales with the page; no script, no external resource)."""
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{escape(label)}" class="chart">']
    for s in shapes:
        if s.kind == "rect":
            parts.append(f'<rect x="{s.x:.1f}" y="{s.y:.1f}" width="{max(s.w, 0):.1f}" height="{max(s.h, 0):.1f}" '
                         f'fill="{s.color}"/>')
        elif s.kind == "line":
            parts.append(f'<line x1="{s.x:.1f}" y1="{s.y:.1f}" x2="{s.w:.1f}" y2="{s.h:.1f}" stroke="{s.color}"/>')
        else:
            parts.append(f'<text x="{s.x:.1f}" y="{s.y:.1f}" font-size="{s.size}" fill="{s.color}" '
                         f'text-anchor="{s.anchor}">{escape(s.text)}</text>')
    return "".join(parts) + "</svg>"


def to_png(shapes: list[Shape], width: int, height: int) -> bytes | None:
    """The same shapes as a PNG (WeCom's image message); None without a CJK font."""
    from PIL import Image, ImageDraw

    path = cjk_font()
    if path is None:
        return None
    image = Image.new("RGB", (width, height), "#ffffff")
    draw = ImageDraw.Draw(image)
    anchors = {"start": "ls", "middle": "ms", "end": "rs"}
    for s in shapes:
        if s.kind == "rect":
            if s.w > 0 and s.h > 0:
                draw.rectangle((s.x, s.y, s.x + s.w, s.y + s.h), fill=s.color)
        elif s.kind == "line":
            draw.line((s.x, s.y, s.w, s.h), fill=s.color, width=1)
        else:
            draw.text((s.x, s.y), s.text, fill=s.color, anchor=anchors[s.anchor],
                      font=_font(path, s.size))
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()


@cache
def _font(path: str, size: int):
    from PIL import ImageFont

    return ImageFont.truetype(path, size)


@cache
def cjk_font() -> str | None:
    for candidate in FONT_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    _LOGGER.warning("no CJK font found (scripts/fonts installs fonts-wqy-microhei); bulletin charts are skipped")
    return None


def _nice_step(peak: float) -> float:
    """A round grid step giving about four lines up to peak."""
    if peak <= 0:
        return 1
    raw = peak / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


def _number(value: float) -> str:
    return f"{value:g}" if value < 10000 else f"{value / 10000:g}万"
