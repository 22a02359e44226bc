"""Line charts in braille dots, for the history charts.

A chart is a grid of cells, each 2 dots wide and 4 high (Unicode braille, U+2800 + a bit per
dot), with a y axis of round values on the left, a frame, and a time axis underneath. The lines
join consecutive samples dot by dot; where two series cross a cell, the one drawn last gives it
its colour.

Why not plotext: plotext 6 builds an object per point and per cell; one chart of eight GPUs cost
25 ms of CPU with 20 samples and 150-300 ms with the ten minutes of history the dashboard keeps
(measured on the 2-core benchmark VM), and the dashboard draws four of them every few seconds --
more than nvitop spends on everything. This draws the same chart in 3-13 ms there (60 to 600
samples of eight series): each dot column's samples are one slice of the series, found by
bisection.
"""

from __future__ import annotations

from bisect import bisect_left

# bit of each dot in a braille cell, by (column, row)
_DOT = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
# the bits of dots a..b (rows within a cell) of one column: _SPAN[column][a][b]
_SPAN = tuple(tuple(tuple(sum(_DOT[c][r] for r in range(a, b + 1)) for b in range(4)) for a in range(4))
              for c in range(2))

Line = tuple[str, list[tuple[int, int, object]]]  # text and (start, end, colour) runs


def _columns(xs: list[float], x_span: float, sx: float, dots_x: int) -> list[tuple[int, int, int]]:
    """(dot column, first sample, end) of each dot column that has samples: samples are in time
    order, so each column's are one slice, found by bisection."""
    out: list[tuple[int, int, int]] = []
    if sx > 0 and xs:
        lo_px = max(0, int((xs[0] + x_span) * sx + 0.5))
        hi_px = min(dots_x - 1, int((xs[-1] + x_span) * sx + 0.5))
        start = bisect_left(xs, (lo_px - 0.5) / sx - x_span)
        for px in range(lo_px, hi_px + 1):
            end = bisect_left(xs, (px + 0.5) / sx - x_span, start)
            if end > start:
                out.append((px, start, end))
            start = end
    return out


def plot(series: list[tuple[list[float], list[float], object]], width: int, height: int,
         x_span: float, y_lo: float, y_hi: float, y_ticks: tuple[list[float], list[str]],
         x_ticks: tuple[list[float], list[str]]) -> list[Line]:
    """``height`` lines of ``width`` cells: a frame with y labels on the left, the series (each
    its x values in [-x_span, 0] in time order, its y values, and its colour) in braille inside
    it, the time axis and its labels underneath. Colours are passed through as they are given."""
    ticks_y, labels_y = y_ticks
    label_w = max((len(s) for s in labels_y), default=0)
    inner_w = width - label_w - 2  # label, left edge, cells, right edge
    inner_h = height - 3  # top edge, cells, bottom edge, time labels
    if inner_w < 2 or inner_h < 1:
        return []
    dots_x, dots_y = inner_w * 2, inner_h * 4
    masks = [[0] * inner_w for _ in range(inner_h)]
    colours: list[list[object]] = [[None] * inner_w for _ in range(inner_h)]
    y_span = (y_hi - y_lo) or 1.0
    sx = (dots_x - 1) / x_span if x_span > 0 else 0.0
    sy = (dots_y - 1) / y_span

    def fill(px: int, a: int, b: int, colour) -> None:
        """Dots a..b (either order) of dot column px: a cell at a time."""
        if a > b:
            a, b = b, a
        cx, span = px >> 1, _SPAN[px & 1]
        ca, cb = a >> 2, b >> 2
        if ca == cb:  # the usual case: within one cell
            masks[ca][cx] |= span[a & 3][b & 3]
            colours[ca][cx] = colour
            return
        for cy in range(ca, cb + 1):
            masks[cy][cx] |= span[a & 3 if cy == ca else 0][b & 3 if cy == cb else 3]
            colours[cy][cx] = colour

    columns: dict[int, list[tuple[int, int, int]]] = {}
    for xs, ys, colour in series:
        # every sample's dot row at once; then per dot column: the first and last dot row of the
        # samples in it and their range; each column is then filled from its lowest to its
        # highest dot, joined to the column before (a line at dot resolution). Each column's
        # samples are one slice (``_columns``), its extremes taken by min and max -- ten minutes
        # of eight GPUs cost a few hundred Python steps, not one per sample.
        if ys and y_lo <= min(ys) and max(ys) <= y_hi:  # the usual case: nothing to clamp
            rows = [int((y_hi - y) * sy + 0.5) for y in ys]
        else:
            rows = [int((y_hi - (y_lo if y < y_lo else y_hi if y > y_hi else y)) * sy + 0.5) for y in ys]
        slices = columns.get(id(xs))
        if slices is None:  # the series of one chart share their times: sliced once
            slices = columns[id(xs)] = _columns(xs, x_span, sx, dots_x)
        prev_px = prev_last = None
        for px, start, end in slices:
            if end - start == 1:
                first = last = top = bottom = rows[start]
            else:
                part = rows[start:end]
                first, last, top, bottom = part[0], part[-1], min(part), max(part)
            if prev_px is not None:
                steps = px - prev_px
                qy0 = prev_last
                for k in range(1, steps):  # columns between two samples: the straight line across
                    qy = prev_last + (first - prev_last) * k // steps
                    fill(prev_px + k, qy0, qy, colour)  # steep: every dot, no gaps
                    qy0 = qy
                if qy0 < top:  # this column reaches where the line came from
                    top = qy0
                elif qy0 > bottom:
                    bottom = qy0
            fill(px, top, bottom, colour)
            prev_px, prev_last = px, last

    # y ticks: the cell row each round value falls in
    tick_rows: dict[int, str] = {}
    for value, label in zip(ticks_y, labels_y):
        if y_lo <= value <= y_hi:
            tick_rows[round((y_hi - value) * sy) >> 2] = label
    lines: list[Line] = [(" " * label_w + "┌" + "─" * inner_w + "┐", [])]
    for row in range(inner_h):
        label = tick_rows.get(row)
        head = (label.rjust(label_w) + "┤") if label is not None else (" " * label_w + "│")
        cells = "".join(chr(0x2800 + m) if m else " " for m in masks[row])
        runs: list[tuple[int, int, object]] = []
        start = len(head)
        for cx, colour in enumerate(colours[row]):
            if colour is None or not masks[row][cx]:
                continue
            a = start + cx
            if runs and runs[-1][1] == a and runs[-1][2] is colour:
                runs[-1] = (runs[-1][0], a + 1, colour)
            else:
                runs.append((a, a + 1, colour))
        lines.append((head + cells + "│", runs))

    # the time axis: a tick under each labelled time, the labels centred on it (never cut, never
    # overlapping, never in the last column: a label that does not fit is left out)
    bottom = ["─"] * inner_w
    label_row = [" "] * width
    free_from = 0
    for t, label in zip(*x_ticks):
        cx = round((t + x_span) * sx) >> 1
        if not 0 <= cx < inner_w:
            continue
        bottom[cx] = "┬"
        at = label_w + 1 + cx - len(label) // 2
        at = max(free_from, min(at, width - len(label) - 1))  # a blank last column: never against the next widget
        if at + len(label) <= width and at >= free_from:
            label_row[at:at + len(label)] = label
            free_from = at + len(label) + 1
    lines.append((" " * label_w + "└" + "".join(bottom) + "┘", []))
    lines.append(("".join(label_row), []))
    return lines
