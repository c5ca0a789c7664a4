"""The demo's own cover pictures, drawn with Pillow when the demo is seeded.

Every demo project gets a cover: a flat illustration of its theme (a school with its flag,
a stack of books, a bowl of rice, a clinic, a hand-embroidery hoop, saplings on dunes, a kite…)
under a sky, hills and a sun in its category's colours. They are drawn here from shapes — no
photograph or downloaded picture is used — and are dedicated to the public domain (CC0 1.0),
as the README next to this module says.

Each design is drawn once per seed (about twenty), then stored through the same pipeline as an
upload (``core.images``: resized to 320/640/1280 px WebP); projects of the same design share
the stored bytes, each with its own attachment row.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from shanju.core import files, images
from shanju.core.clock import utcnow
from shanju.core.files import Attachment
from shanju.demo import data
from shanju.projects.models import Project

WIDTH, HEIGHT = 1280, 720
SCALE = 2  # drawn at twice the size and scaled down: smooth edges without anti-aliasing
W, H = WIDTH * SCALE, HEIGHT * SCALE
HORIZON = int(H * 0.62)

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Palette:
    """A category's colours: sky top and bottom, far/mid/near hills, sun, accent."""

    sky_top: RGB
    sky_bottom: RGB
    far: RGB
    mid: RGB
    near: RGB
    sun: RGB
    accent: RGB


def _hex(value: str) -> RGB:
    return (int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16))


def _palette(*values: str) -> Palette:
    return Palette(*(_hex(v) for v in values))


PALETTES: dict[str, Palette] = {
    "education": _palette("#8ec5ff", "#fdf2d8", "#a7c8e8", "#7fb08a", "#5d9a6b", "#ffd36b",
                          "#e4453a"),
    "health": _palette("#ffc8c8", "#fff3ea", "#f0b9b4", "#9fcf9a", "#78b27a", "#ffe08a",
                       "#e4453a"),
    "poverty": _palette("#ffd59a", "#fff6e3", "#e9c49a", "#b7c972", "#8fae57", "#ffb347",
                        "#c2410c"),
    "environment": _palette("#9fe3d0", "#f3fbe9", "#a6d3b8", "#6fb58a", "#4f9a6c", "#fff1a6",
                            "#2f855a"),
    "elderly": _palette("#c9b8f0", "#fdf0e6", "#c7b5d8", "#a3c08f", "#83a874", "#ffc98b",
                        "#b45309"),
    "children": _palette("#ffd0a8", "#fff8ec", "#f3c7a6", "#a9d39a", "#86bb78", "#ffe27a",
                         "#f97316"),
    "disaster": _palette("#a9cbe8", "#eef4f8", "#b4c6d6", "#93b0a0", "#728f80", "#ffe9b0",
                         "#1d4ed8"),
    "disability": _palette("#b7e0f5", "#f7fbff", "#b9d3e3", "#9cc9a3", "#7cae86", "#ffe39a",
                           "#0e7490"),
}
DEFAULT_PALETTE = PALETTES["health"]

Motif = Callable[[ImageDraw.ImageDraw, Palette], None]


# --- shapes -----------------------------------------------------------------------------------


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t),
            round(a[2] + (b[2] - a[2]) * t))


def _box(cx: float, cy: float, rx: float, ry: float | None = None) -> tuple[int, int, int, int]:
    ry = rx if ry is None else ry
    return (round(cx - rx), round(cy - ry), round(cx + rx), round(cy + ry))


def _ridge(d: ImageDraw.ImageDraw, base: float, amp: float, waves: Sequence[tuple[float, float]],
           fill: RGB) -> None:
    points = [(0, H)]
    for x in range(0, W + 40, 40):
        y = base + sum(amp * a * math.sin(x / W * math.tau * f + f) for f, a in waves)
        points.append((x, round(y)))
    points.append((W, H))
    d.polygon(points, fill=fill)


def _scene(p: Palette, *, seed: int) -> Image.Image:
    sky = Image.linear_gradient("L").resize((W, H))
    im = Image.merge("RGB", [sky.point(lambda v, c=c: round(p.sky_top[c] + (
        p.sky_bottom[c] - p.sky_top[c]) * v / 255)) for c in range(3)])
    d = ImageDraw.Draw(im)
    sun_x = W * (0.78 if seed % 2 else 0.2)
    for r, t in ((230, 0.75), (180, 0.5), (130, 0.0)):
        d.ellipse(_box(sun_x, H * 0.24, r), fill=_mix(p.sun, p.sky_bottom, t))
    for cx, cy, s in ((0.36, 0.16, 1.0), (0.62, 0.3, 0.7)):
        x, y = W * cx + (seed % 7) * 30, H * cy
        d.rounded_rectangle(_box(x, y, 150 * s, 34 * s), radius=round(34 * s), fill="#ffffff")
        d.ellipse(_box(x - 40 * s, y - 30 * s, 62 * s), fill="#ffffff")
        d.ellipse(_box(x + 50 * s, y - 20 * s, 48 * s), fill="#ffffff")
    shift = (seed % 5) * 0.3
    _ridge(d, HORIZON - 170, 70, ((1.3 + shift, 1.0), (3.1, 0.4)), p.far)
    _ridge(d, HORIZON - 40, 45, ((2.2, 0.8), (0.7 + shift, 0.6)), p.mid)
    _ridge(d, HORIZON + 110, 22, ((1.1, 1.0), (4.0, 0.3)), p.near)
    return im


# --- motifs (each drawn on the near ground, about x = 0.3-0.7 of the width) --------------------


def _school(d: ImageDraw.ImageDraw, p: Palette) -> None:
    x0, y1 = W * 0.30, HORIZON + 150
    d.rectangle((x0, y1 - 330, x0 + 760, y1), fill="#fff7ec")
    d.polygon([(x0 - 50, y1 - 320), (x0 + 380, y1 - 520), (x0 + 810, y1 - 320)], fill=p.accent)
    d.rectangle((x0 + 330, y1 - 170, x0 + 430, y1), fill="#8b5e3c")
    for i in range(4):
        wx = x0 + 60 + i * 180 + (60 if i >= 2 else 0)
        d.rectangle((wx, y1 - 250, wx + 110, y1 - 160), fill="#9fd3ff", outline="#ffffff",
                    width=10)
    d.ellipse(_box(x0 + 380, y1 - 400, 44), fill="#ffffff")
    pole = x0 + 980
    d.rectangle((pole, y1 - 600, pole + 14, y1), fill="#9ca3af")
    d.polygon([(pole + 14, y1 - 600), (pole + 230, y1 - 555), (pole + 14, y1 - 490)],
              fill="#e4453a")


def _books(d: ImageDraw.ImageDraw, p: Palette) -> None:
    x, y = W * 0.36, HORIZON + 170
    colours: tuple[RGB | str, ...] = (p.accent, "#3b82f6", "#f59e0b", "#10b981")
    for i, c in enumerate(colours):
        w = 640 - i * 50
        d.rounded_rectangle((x + i * 22, y - (i + 1) * 92, x + i * 22 + w, y - i * 92 - 8),
                            radius=14, fill=c)
        d.rectangle((x + i * 22 + 30, y - (i + 1) * 92 + 22, x + i * 22 + w - 30,
                     y - (i + 1) * 92 + 34), fill="#ffffff")
    bx, by = x + 820, y - 60
    d.polygon([(bx, by), (bx + 220, by - 70), (bx + 220, by + 60), (bx, by + 120)],
              fill="#fffdf6", outline="#d6cbb3", width=6)
    d.polygon([(bx + 440, by), (bx + 220, by - 70), (bx + 220, by + 60), (bx + 440, by + 120)],
              fill="#fffdf6", outline="#d6cbb3", width=6)


def _bowl(d: ImageDraw.ImageDraw, p: Palette, cx: float = W * 0.5, s: float = 1.0) -> None:
    cy = HORIZON + 60
    d.chord(_box(cx, cy, 330 * s, 260 * s), 0, 180, fill="#ffffff", outline="#e5e7eb",
            width=round(8 * s))
    d.rectangle(_box(cx, cy + 270 * s, 120 * s, 16 * s), fill="#e5e7eb")
    for i in range(9):
        d.ellipse(_box(cx - 250 * s + i * 62 * s, cy - 24 * s - (i % 3) * 14 * s, 48 * s),
                  fill="#fffaf0")
    d.ellipse(_box(cx - 90 * s, cy - 60 * s, 44 * s), fill="#4ade80")
    d.ellipse(_box(cx + 70 * s, cy - 58 * s, 40 * s), fill="#fb923c")
    for k in (-1, 0, 1):
        sx = cx + k * 110 * s
        d.arc(_box(sx, cy - 210 * s, 40 * s, 70 * s), 100, 260, fill="#ffffff",
              width=round(12 * s))
    d.line((cx + 180 * s, cy - 300 * s, cx + 420 * s, cy - 40 * s), fill=p.accent,
           width=round(18 * s))
    d.line((cx + 230 * s, cy - 320 * s, cx + 450 * s, cy - 70 * s), fill=p.accent,
           width=round(18 * s))


def _heart(d: ImageDraw.ImageDraw, p: Palette, cx: float = W * 0.5, cy: float = HORIZON - 40,
           r: float = 170, fill: RGB | str | None = None, cross: bool = True) -> None:
    colour = fill or p.accent
    d.ellipse(_box(cx - r * 0.55, cy - r * 0.3, r * 0.62), fill=colour)
    d.ellipse(_box(cx + r * 0.55, cy - r * 0.3, r * 0.62), fill=colour)
    d.polygon([(cx - r * 1.12, cy - r * 0.12), (cx + r * 1.12, cy - r * 0.12),
               (cx, cy + r * 1.1)], fill=colour)
    if cross:
        a, b = r * 0.42, r * 0.13
        d.rectangle(_box(cx, cy, b, a), fill="#ffffff")
        d.rectangle(_box(cx, cy, a, b), fill="#ffffff")


def _clinic(d: ImageDraw.ImageDraw, p: Palette) -> None:
    x0, y1 = W * 0.28, HORIZON + 160
    d.rectangle((x0, y1 - 460, x0 + 560, y1), fill="#ffffff")
    d.rectangle((x0 + 560, y1 - 300, x0 + 980, y1), fill="#f3f4f6")
    d.rectangle((x0 - 20, y1 - 480, x0 + 580, y1 - 440), fill="#d1d5db")
    _cross(d, x0 + 280, y1 - 330, 70, p.accent)
    d.rectangle((x0 + 220, y1 - 170, x0 + 340, y1), fill="#93c5fd")
    for i in range(3):
        d.rectangle((x0 + 620 + i * 120, y1 - 220, x0 + 700 + i * 120, y1 - 140),
                    fill="#bfdbfe")
    _heart(d, p, cx=x0 + 1180, cy=y1 - 380, r=90, cross=False)


def _cross(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, fill: RGB) -> None:
    d.rectangle(_box(cx, cy, r * 0.33, r), fill=fill)
    d.rectangle(_box(cx, cy, r, r * 0.33), fill=fill)


def _medkit(d: ImageDraw.ImageDraw, p: Palette) -> None:
    cx, cy = W * 0.5, HORIZON + 10
    d.rounded_rectangle((cx - 120, cy - 330, cx + 120, cy - 230), radius=30, outline="#6b7280",
                        width=26)
    d.rounded_rectangle(_box(cx, cy, 420, 260), radius=50, fill="#ffffff", outline="#e5e7eb",
                        width=10)
    _cross(d, cx, cy, 130, p.accent)
    d.arc(_box(cx + 620, cy - 40, 160), 200, 520, fill="#374151", width=22)
    d.ellipse(_box(cx + 620, cy + 150, 46), fill="#9ca3af")


def _field(d: ImageDraw.ImageDraw, p: Palette) -> None:
    top = HORIZON + 40
    for row in range(7):
        y = top + row * row * 14 + row * 40
        d.line((0, y, W, y), fill=_mix(p.near, (63, 98, 18), 0.25), width=10 + row * 3)
        for i in range(14):
            x = (i + (row % 2) * 0.5) * W / 13
            r = 14 + row * 7
            d.ellipse(_box(x, y - r * 0.6, r, r * 0.8), fill=(74 + row * 6, 150 - row * 4, 60))
    d.rectangle((W * 0.72, HORIZON - 250, W * 0.72 + 320, HORIZON + 20), fill="#fff7ed")
    d.polygon([(W * 0.72 - 40, HORIZON - 240), (W * 0.72 + 160, HORIZON - 380),
               (W * 0.72 + 360, HORIZON - 240)], fill=p.accent)


def _embroidery(d: ImageDraw.ImageDraw, p: Palette) -> None:
    cx, cy, r = W * 0.5, HORIZON - 40, 360
    d.ellipse(_box(cx, cy, r + 40), fill="#c08457")
    d.ellipse(_box(cx, cy, r), fill="#fffbf2")
    petals = ("#e4453a", "#f59e0b", "#db2777", "#7c3aed", "#0ea5e9", "#16a34a")
    for k in range(12):
        a = k / 12 * math.tau
        d.ellipse(_box(cx + math.cos(a) * 150, cy + math.sin(a) * 150, 70, 70),
                  fill=petals[k % len(petals)])
    d.ellipse(_box(cx, cy, 90), fill="#fde047")
    for k in range(24):
        a = k / 24 * math.tau
        d.ellipse(_box(cx + math.cos(a) * 290, cy + math.sin(a) * 290, 14),
                  fill=p.accent)
    d.rectangle((cx + r + 30, cy - 30, cx + r + 90, cy + 30), fill="#a16207")


def _water(d: ImageDraw.ImageDraw, _p: Palette) -> None:
    x0, y1 = W * 0.30, HORIZON + 150
    d.rectangle((x0, y1 - 380, x0 + 520, y1), fill="#e5e7eb")
    d.ellipse((x0, y1 - 440, x0 + 520, y1 - 320), fill="#f9fafb")
    d.ellipse((x0, y1 - 60, x0 + 520, y1 + 60), fill="#d1d5db")
    d.rectangle((x0 + 520, y1 - 120, x0 + 820, y1 - 80), fill="#9ca3af")
    d.rectangle((x0 + 800, y1 - 120, x0 + 840, y1 - 20), fill="#9ca3af")
    cx, cy = x0 + 1180, y1 - 300
    d.polygon([(cx, cy - 260), (cx - 150, cy + 20), (cx + 150, cy + 20)], fill="#38bdf8")
    d.ellipse(_box(cx, cy + 40, 160), fill="#38bdf8")
    d.ellipse(_box(cx - 50, cy + 10, 36), fill="#bae6fd")


def _sapling(d: ImageDraw.ImageDraw, x: float, y: float, s: float, leaf: RGB | str) -> None:
    d.rectangle((x - 8 * s, y - 160 * s, x + 8 * s, y), fill="#8b5e3c")
    d.ellipse(_box(x - 40 * s, y - 170 * s, 48 * s, 30 * s), fill=leaf)
    d.ellipse(_box(x + 42 * s, y - 200 * s, 52 * s, 32 * s), fill=leaf)
    d.ellipse(_box(x, y - 240 * s, 44 * s, 56 * s), fill=leaf)


def _trees(d: ImageDraw.ImageDraw, _p: Palette) -> None:
    d.chord((-W * 0.2, HORIZON - 20, W * 0.7, HORIZON + 700), 180, 360, fill="#f2d49b")
    d.chord((W * 0.3, HORIZON + 20, W * 1.3, HORIZON + 740), 180, 360, fill="#e9c07a")
    for i, (fx, s) in enumerate(((0.18, 1.2), (0.32, 1.6), (0.47, 1.1), (0.6, 1.8),
                                 (0.76, 1.3), (0.88, 1.0))):
        base = HORIZON + 120 + (i % 2) * 60
        _sapling(d, W * fx, base, s, "#3f9d5c" if i % 2 else "#59b36f")


def _river(d: ImageDraw.ImageDraw, _p: Palette) -> None:
    left = [(W * 0.42 + math.sin(t / 9) * 180 * (t / 40) - t * 6, HORIZON + t * 16)
            for t in range(0, 41)]
    right = [(x + 60 + t * 22, y) for t, (x, y) in enumerate(left)]
    d.polygon(left + right[::-1], fill="#60a5fa")
    for t in range(4, 40, 6):
        x, y = left[t]
        d.line((x + 30 + t * 4, y, x + 80 + t * 8, y), fill="#dbeafe", width=8)
    for k in range(9):
        x = W * 0.1 + k * 60
        d.line((x, HORIZON + 520, x + 20 * math.sin(k), HORIZON + 300 - (k % 3) * 40),
               fill="#4d7c0f", width=12)
    for k in range(7):
        x = W * 0.82 + k * 50
        d.line((x, HORIZON + 560, x - 15, HORIZON + 360 - (k % 2) * 50), fill="#4d7c0f",
               width=12)


def _forest(d: ImageDraw.ImageDraw, _p: Palette) -> None:
    for i in range(11):
        x = W * (0.05 + i * 0.09)
        s = 1.0 + (i % 3) * 0.35
        base = HORIZON + 120 + (i % 2) * 40
        d.rectangle((x - 10 * s, base - 60 * s, x + 10 * s, base), fill="#6b4f3a")
        for k in range(3):
            top = base - 60 * s - k * 90 * s
            d.polygon([(x - (130 - k * 30) * s, top), (x + (130 - k * 30) * s, top),
                       (x, top - 170 * s)], fill=(47 + k * 15, 110 + k * 15, 70 + k * 8))
    for k, (bx, by) in enumerate(((0.55, 0.2), (0.62, 0.16), (0.68, 0.23))):
        x, y, s = W * bx, H * by, 1.0 - k * 0.15
        d.line((x - 50 * s, y - 20 * s, x, y + 8 * s, x + 50 * s, y - 20 * s), fill="#374151",
               width=10, joint="curve")


def _house(d: ImageDraw.ImageDraw, p: Palette) -> None:
    x0, y1 = W * 0.33, HORIZON + 150
    d.rectangle((x0, y1 - 360, x0 + 640, y1), fill="#fff7ed")
    d.polygon([(x0 - 60, y1 - 340), (x0 + 320, y1 - 600), (x0 + 700, y1 - 340)], fill="#9a3412")
    d.rectangle((x0 + 80, y1 - 250, x0 + 250, y1 - 110), fill="#fde68a", outline="#92400e",
                width=10)
    d.rectangle((x0 + 380, y1 - 220, x0 + 520, y1), fill="#92400e")
    d.ellipse(_box(x0 + 495, y1 - 110, 10), fill="#fde68a")
    bx = x0 + 860
    d.rectangle((bx, y1 - 120, bx + 360, y1 - 96), fill="#92400e")
    d.rectangle((bx + 20, y1 - 200, bx + 40, y1), fill="#92400e")
    d.rectangle((bx + 320, y1 - 200, bx + 340, y1), fill="#92400e")
    d.rectangle((bx, y1 - 200, bx + 360, y1 - 176), fill="#b45309")
    _heart(d, p, cx=x0 + 320, cy=y1 - 700, r=70, cross=False, fill="#f43f5e")


def _table(d: ImageDraw.ImageDraw, p: Palette) -> None:
    y = HORIZON + 90
    d.rounded_rectangle((W * 0.18, y - 40, W * 0.82, y + 10), radius=12, fill="#b45309")
    d.rectangle((W * 0.22, y + 10, W * 0.22 + 30, y + 300), fill="#92400e")
    d.rectangle((W * 0.78 - 30, y + 10, W * 0.78, y + 300), fill="#92400e")
    for fx in (0.3, 0.5, 0.7):
        _bowl(d, p, cx=W * fx, s=0.42)


def _package(d: ImageDraw.ImageDraw, p: Palette) -> None:
    cx, cy = W * 0.46, HORIZON + 20
    d.rounded_rectangle(_box(cx, cy, 330, 250), radius=30, fill="#fef3c7", outline="#f59e0b",
                        width=12)
    d.rectangle(_box(cx, cy, 330, 34), fill=p.accent)
    d.rectangle(_box(cx, cy, 34, 250), fill=p.accent)
    d.ellipse(_box(cx - 70, cy - 280, 70, 40), outline=p.accent, width=24)
    d.ellipse(_box(cx + 70, cy - 280, 70, 40), outline=p.accent, width=24)
    sx, sy = cx + 620, cy + 230
    d.rectangle((sx - 120, sy - 120, sx + 120, sy), fill="#c2410c")
    d.line((sx, sy - 120, sx, sy - 330), fill="#16a34a", width=18)
    d.ellipse(_box(sx - 80, sy - 300, 80, 40), fill="#22c55e")
    d.ellipse(_box(sx + 80, sy - 360, 80, 40), fill="#22c55e")


def _kite(d: ImageDraw.ImageDraw, p: Palette) -> None:
    cx, cy = W * 0.62, H * 0.3
    d.polygon([(cx, cy - 200), (cx + 150, cy), (cx, cy + 260), (cx - 150, cy)], fill=p.accent)
    d.polygon([(cx, cy - 200), (cx + 150, cy), (cx, cy)], fill="#fbbf24")
    d.polygon([(cx, cy + 260), (cx - 150, cy), (cx, cy)], fill="#fbbf24")
    tail = [(cx + math.sin(t / 3) * 60, cy + 260 + t * 40) for t in range(0, 10)]
    d.line(tail, fill="#6b7280", width=8)
    for k in range(1, 9, 2):
        x, y = tail[k]
        d.polygon([(x - 30, y - 20), (x + 30, y + 20), (x + 30, y - 20), (x - 30, y + 20)],
                  fill="#f43f5e")
    d.line((cx, cy + 30, W * 0.3, HORIZON + 250), fill="#9ca3af", width=5)
    d.ellipse(_box(W * 0.3, HORIZON + 250, 18), fill="#6b7280")


def _tent(d: ImageDraw.ImageDraw, p: Palette) -> None:
    x0, y1 = W * 0.22, HORIZON + 180
    d.polygon([(x0, y1), (x0 + 380, y1 - 420), (x0 + 760, y1)], fill="#2563eb")
    d.polygon([(x0 + 300, y1), (x0 + 380, y1 - 420), (x0 + 460, y1)], fill="#1e3a8a")
    for bx, by in ((0, 0), (230, 0), (115, -190)):
        left, bottom = x0 + 920 + bx, y1 + by
        d.rectangle((left, bottom - 190, left + 220, bottom), fill="#d6a45f", outline="#a16207",
                    width=8)
        d.rectangle((left + 95, bottom - 190, left + 125, bottom), fill="#fde68a")
    _heart(d, p, cx=x0 + 1590, cy=y1 - 420, r=80, cross=False, fill="#e4453a")
    for k in range(3):
        cx = x0 + 1500 + k * 110
        d.ellipse(_box(cx, y1 - 70, 30, 46), fill="#38bdf8")


def _waves(d: ImageDraw.ImageDraw, p: Palette) -> None:
    cx, cy = W * 0.36, HORIZON - 30
    d.ellipse(_box(cx, cy - 90, 150), fill="#fcd9b6")
    d.chord(_box(cx, cy + 330, 250, 230), 180, 360, fill=p.accent)
    d.ellipse(_box(cx + 150, cy - 90, 40, 56), fill="#f4b98a")
    for k in range(1, 5):
        d.arc(_box(cx + 170, cy - 90, 70 + k * 80), -45, 45, fill=_mix(p.accent, p.sky_bottom,
                                                                      k * 0.18), width=26)
    for k in range(5):
        d.ellipse(_box(W * 0.78 + (k % 3) * 70, H * 0.2 + k * 60, 18), fill="#f59e0b")


def _generic(d: ImageDraw.ImageDraw, p: Palette) -> None:
    _heart(d, p, r=200, cross=False)


MOTIFS: dict[str, tuple[Motif, ...]] = {
    "education": (_school, _books, _bowl),
    "health": (_heart, _clinic, _medkit),
    "poverty": (_field, _embroidery, _water),
    "environment": (_trees, _river, _forest),
    "elderly": (_house, _table),
    "children": (_package, _kite),
    "disaster": (_tent,),
    "disability": (_waves,),
}


def design_for(category: str, title: str) -> tuple[str, int]:
    """The design (category, motif index) of a demo project: the project text it was written
    from (``data.PROJECTS``), else one chosen by the title's hash."""
    motifs = MOTIFS.get(category)
    if not motifs:
        return ("other", 0)
    for index, (pattern, _summary, _plan) in enumerate(data.PROJECTS.get(category, ("", ()))[1]):
        head, _, tail = pattern.partition("{place}")
        if title.startswith(head) and title.endswith(tail) and index < len(motifs):
            return (category, index)
    return (category, int(hashlib.sha256(title.encode()).hexdigest(), 16) % len(motifs))


def draw(category: str, index: int) -> Image.Image:
    """Draw design ``index`` of ``category`` (1280 × 720)."""
    palette = PALETTES.get(category, DEFAULT_PALETTE)
    motif = MOTIFS.get(category, (_generic,))[index % len(MOTIFS.get(category, (_generic,)))]
    im = _scene(palette, seed=index + len(category))
    motif(ImageDraw.Draw(im), palette)
    return im.resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS)


def prepared(category: str, index: int) -> images.PreparedImage:
    """A design drawn and put through the upload pipeline (as a PNG upload would be)."""
    buffer = io.BytesIO()
    draw(category, index).save(buffer, "PNG", compress_level=1)
    return images.check_image(files.Upload(f"demo-{category}-{index + 1}.png",
                                           buffer.getvalue()), field="cover")


def do_give_covers(*, session: Session, upload_dir: Path,
                   projects: Sequence[tuple[int, str, str]]) -> int:
    """Give each ``(project id, category, title)`` a drawn cover (written to ``upload_dir``)
    and return how many were given; the caller's transaction keeps them."""
    if not projects:
        return 0
    keys = [design_for(category, title) for _pid, category, title in projects]
    unique = list(dict.fromkeys(keys))
    # Pillow lets go of the GIL while it encodes: the designs are drawn side by side.
    with ThreadPoolExecutor(max_workers=4) as pool:
        designs = dict(zip(unique, pool.map(lambda key: prepared(*key), unique), strict=True))
    for design in designs.values():
        for variant in design.variants:
            files.write_once(upload_dir, variant.sha256, variant.data)
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for (pid, _category, title), key in zip(projects, keys, strict=True):
        largest = designs[key].largest
        rows.append({
            "owner_type": "project_cover", "owner_id": pid,
            "filename": designs[key].filename, "content_type": images.CONTENT_TYPE,
            "size": len(largest.data), "sha256": largest.sha256, "uploaded_by_id": None,
            "created_at": now, "alt_text": f"示意插画：{title}", "width": largest.width,
            "height": largest.height,
        })
    ids = [int(v) for v in session.scalars(
        insert(Attachment).returning(Attachment.id, sort_by_parameter_order=True), rows)]
    session.execute(insert(images.ImageVariant), [
        {"attachment_id": aid, "width": v.width, "height": v.height,
         "content_type": images.CONTENT_TYPE, "size": len(v.data), "sha256": v.sha256,
         "created_at": now}
        for aid, key in zip(ids, keys, strict=True) for v in designs[key].variants
    ])
    session.execute(update(Project), [
        {"id": pid, "cover_image_id": aid}
        for (pid, _c, _t), aid in zip(projects, ids, strict=True)
    ])
    session.flush()
    return len(ids)


def do_give_missing_covers(*, session: Session, upload_dir: Path) -> int:
    """Give a cover to every project without one, or whose cover's file is not on disk (a
    demo seeded before covers existed, or its uploads deleted)."""
    rows = session.execute(
        select(Project.id, Project.category, Project.title, Attachment.sha256)
        .outerjoin(Attachment, Attachment.id == Project.cover_image_id)
        .order_by(Project.id)
    ).all()
    missing = [(int(pid), str(category), str(title))
               for pid, category, title, sha256 in rows
               if sha256 is None or not files.path_for(upload_dir, sha256).is_file()]
    return do_give_covers(session=session, upload_dir=upload_dir, projects=missing)
