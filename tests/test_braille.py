"""The history charts' braille plots: lines without gaps, spikes kept, axes readable."""

from gpuwatch.frontends.tui.braille import plot
from gpuwatch.frontends.tui.widgets import time_ticks, value_ticks

RED, BLUE = (255, 0, 0), (0, 0, 255)


def draw(series, width=60, height=12, span=600.0, lo=0.0, hi=100.0):
    """Plot series given as ((x, y) points, colour)."""
    series = [([x for x, _ in pts], [y for _, y in pts], colour) for pts, colour in series]
    return plot(series, width, height, span, lo, hi, value_ticks(lo, hi, 4), time_ticks(span))


def cells(lines):
    """The plot area: the rows between the frame's top and bottom edges, inside the edges."""
    rows = [text for text, _ in lines[1:-2]]
    start = rows[0].index("┤") + 1 if "┤" in rows[0] else rows[0].index("│") + 1
    return [r[start:-1] for r in rows]


def test_a_rising_line_has_a_dot_in_every_column_from_the_bottom_to_the_top():
    pts = [(-600.0 + k * 60, k * 10.0) for k in range(11)]  # 11 samples, 0 -> 100
    grid = cells(draw([(pts, RED)]))
    columns = ["".join(row[c] for row in grid) for c in range(len(grid[0]))]
    assert all(col.strip() for col in columns)  # no gap anywhere along the line
    assert grid[-1][0] != " " and grid[0][-1] != " "  # starts bottom left, ends top right


def test_a_one_second_spike_among_ten_minutes_of_samples_is_drawn():
    pts = [(-600.0 + k, 10.0) for k in range(601)]
    pts[300] = (pts[300][0], 95.0)
    grid = cells(draw([(pts, RED)]))
    assert grid[0].strip()  # the top row (95 of 100) has the spike


def test_each_series_has_its_colour_and_every_line_its_width():
    flat_low = [(-600.0 + k * 10, 20.0) for k in range(61)]
    flat_high = [(-600.0 + k * 10, 80.0) for k in range(61)]
    lines = draw([(flat_low, RED), (flat_high, BLUE)])
    assert all(len(text) == 60 for text, _ in lines)
    colours = {c for _, runs in lines for _, _, c in runs}
    assert colours == {RED, BLUE}
    for text, runs in lines:
        for a, b, _ in runs:
            assert all(ch != " " for ch in text[a:b])  # colour only where there are dots


def test_axes_say_values_and_times_without_overlapping_labels():
    pts = [(-600.0 + k * 10, 50.0) for k in range(61)]
    lines = draw([(pts, RED)])
    left = "".join(text.split("┤")[0] for text, _ in lines if "┤" in text)
    assert "100" in left and "0" in left
    labels = lines[-1][0]
    assert labels.rstrip().endswith("now") and "-10m" in labels and "-2m" in labels
    words = labels.split()
    assert len(words) == len(set(words))  # none written over another
    assert labels[-1] == " "  # nor against whatever is drawn right of the chart


def test_too_small_a_plot_draws_nothing_rather_than_garbage():
    assert draw([([(-5.0, 1.0), (0.0, 2.0)], RED)], width=4, height=3) == []
