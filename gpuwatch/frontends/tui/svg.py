"""SVG screenshots that look the same everywhere.

Rich's SVG export writes the spaces of each text run as ``&#160;`` and asks for Fira Code from a
CDN. librsvg (``rsvg-convert``, GNOME's image viewer, many wikis) then drops the spaces at the
edges of runs (``GPU 2thermal slowdown``), and a browser fetches fonts from the network. Here:
``xml:space="preserve"`` with plain spaces (kept by every SVG renderer), and a local monospace
font stack instead of the download.
"""

from __future__ import annotations

import re

_FONT_FACE = re.compile(r"\s*@font-face\s*\{[^}]*\}")
_FAMILY = re.compile(r"font-family:\s*Fira Code,\s*monospace;")
FONTS = 'font-family: "Fira Code", "DejaVu Sans Mono", Menlo, Consolas, "Liberation Mono", monospace;'


def portable_svg(svg: str) -> str:
    svg = _FONT_FACE.sub("", svg)
    svg = _FAMILY.sub(FONTS, svg)
    svg = svg.replace("&#160;", " ")
    if 'xml:space="preserve"' not in svg:
        svg = svg.replace("<svg ", '<svg xml:space="preserve" ', 1)
    return svg
