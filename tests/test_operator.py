"""Pilot tests of what an operator hits first (issue 15): a selection that shows, a refresh rate
that takes effect at once, alerts that keep their remedy, honest words for unknowns."""

from __future__ import annotations

import asyncio
import time

from test_dashboard import FakeSource, make_snapshot, visible_text

from gpuwatch.frontends.tui.app import GpuWatchApp
from gpuwatch.frontends.tui.widgets import GpuCard


def _row_styles(app, card):
    """The styles of the cells of a card's first line, as drawn."""
    strip = card.render_line(0)
    return {seg.style for seg in strip if seg.text.strip()}


async def test_a_gpu_is_selected_from_the_start_and_the_selection_shows_at_small_sizes():
    for size in ((80, 24), (120, 40)):
        app = GpuWatchApp(FakeSource(make_snapshot()), interval=60)
        async with app.run_test(size=size) as pilot:
            await pilot.pause(0.3)
            cards = list(app.query(GpuCard))
            assert app.focused is cards[0], size  # enter acts on something from the start
            before = [_row_styles(app, c) for c in cards[:3]]
            assert before[0] != before[1] and before[1] == before[2], size  # the selected row looks different
            await pilot.press("down")
            await pilot.pause(0.1)
            assert app.focused is cards[1]
            after = [_row_styles(app, c) for c in cards[:3]]
            assert after[1] != after[0] and after[0] == after[2], size
            await pilot.press("enter")
            await pilot.pause(0.2)
            assert type(app.screen).__name__ == "GpuDetailScreen" and app.screen.index == 1


async def test_a_faster_refresh_takes_effect_at_once():
    src = FakeSource(make_snapshot(n=2))
    app = GpuWatchApp(src, interval=30.0)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.3)
        assert src.calls == 1  # the first poll; the next one is 30 s away
        for _ in range(6):
            await pilot.press("plus")
        assert app.interval == 0.25
        deadline = time.monotonic() + 10
        while src.calls < 3:  # not after the 30 s sleep that was pending
            assert time.monotonic() < deadline, "the pending 30 s sleep was not cut short"
            await asyncio.sleep(0.05)
        assert "every 0.25s" in visible_text(app)
