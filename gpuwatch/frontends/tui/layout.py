"""Where everything goes, decided by the space there is (a pure function: tested without a
terminal).

The order of what matters: every GPU (one card, two labelled lines or one line each); the
alerts in full, remedies included; every inference instance; then, in the rows left over,
history charts with a time axis. Wider terminals give the instance column and the sparklines
the room; a 120x40 terminal keeps each GPU's name and the instance it serves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CARD_WIDTH = 46  # a full GPU card, border included
CARD_HEIGHT = 9  # border included; the grid sizes a row by its cards' lines (7 with NVLink)
INSTANCE_MIN_WIDTH = 44
NARROW_BELOW = 110  # columns: below this, instances go under the GPUs
CHART_MIN_ROWS = 8  # a chart with a time axis, a y axis and something to read
SIDE_BY_SIDE_MIN_WIDTH = 100  # two charts next to each other need this many columns


@dataclass(frozen=True)
class Layout:
    mode: str  # "cards" | "rows" (two labelled lines per GPU) | "tight" (one line per GPU)
    narrow: bool  # instances below the GPUs instead of beside them
    cols: int  # GPU cards per row ("cards" mode)
    gpu_width: int  # columns of the GPU panel
    instance_width: int  # columns of the instance column (the full width when narrow)
    alert_lines: int  # lines the alert strip may use
    gpu_chart_rows: int  # rows under the GPUs for history charts (0: none)
    gpu_charts_side_by_side: bool

    @property
    def compact(self) -> str | None:
        return None if self.mode == "cards" else self.mode


def plan(width: int, height: int, gpus: int, alert_lines_wanted: int, instances: int = 0,
         instance_rows: int = 0, card_height: int = CARD_HEIGHT) -> Layout:
    """``alert_lines_wanted``: lines the alerts need in full at this width; ``instance_rows``:
    the rows the instance cards take (0 when unknown); ``card_height``: rows of a GPU card as
    drawn (border included)."""
    narrow = width < NARROW_BELOW
    rows_total = max(1, height - 2)  # the top line and the footer
    n = max(gpus, 0)
    if narrow:
        cols, gpu_width, inst_width = 1, width, width
    else:
        cols = max(1, (width - INSTANCE_MIN_WIDTH - 1) // (CARD_WIDTH + 1))
        gpu_width = width - INSTANCE_MIN_WIDTH
        inst_width = INSTANCE_MIN_WIDTH
    # the alerts get what they need, but never the rows the GPUs need in their smallest form
    # (narrow: instances scroll under the GPUs; a title and a few lines of them stay in view)
    instance_floor = min(instance_rows or 5, 5) if (narrow and instances) else 0
    alert_room = max(2, rows_total - n - instance_floor)
    alert_lines = min(alert_lines_wanted, alert_room)
    avail = rows_total - alert_lines
    card_rows = math.ceil(n / cols) if n else 0
    if not narrow and n and card_rows * card_height <= avail:
        mode = "cards"
        gpu_width = cols * (CARD_WIDTH + 1)  # cards, gutters and the grid's left padding
        inst_width = max(INSTANCE_MIN_WIDTH, width - gpu_width)
        used = card_rows * card_height
    elif n * 2 + (instance_floor if narrow else 0) <= avail and width >= 80:
        mode, used = "rows", n * 2
    else:
        mode, used = "tight", n
    if narrow:
        used += max(instance_rows, instance_floor)
    spare = avail - used
    chart_rows = spare if spare >= CHART_MIN_ROWS else 0
    return Layout(mode=mode, narrow=narrow, cols=cols if mode == "cards" else 1, gpu_width=gpu_width,
                  instance_width=inst_width, alert_lines=alert_lines, gpu_chart_rows=chart_rows,
                  gpu_charts_side_by_side=gpu_width >= SIDE_BY_SIDE_MIN_WIDTH)
