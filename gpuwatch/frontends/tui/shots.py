"""`gpuwatch snapshot --svg FILE`: the dashboard drawn headlessly into an SVG file.

On a real box the picture is of two samples one interval apart. On the simulated box the
box's clock is driven by hand through a minute of simulated time first
(:func:`gpuwatch.runtime.simulated_history`), so the picture has history in its sparklines and
alerts that passed their raise delay, in about a second of real time.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ...config import Settings
from ...model import Snapshot
from ...runtime import sample_window, simulated_history
from ..sources import AlertLog, ListSource
from .app import GpuWatchApp


class ScreenshotApp(GpuWatchApp):
    """Paints one snapshot, saves the screen as SVG, and exits."""

    show_self_cost = False  # what it cost to draw a picture says nothing about the box

    def __init__(self, source, path: Path, theme: str | None = None) -> None:
        super().__init__(source, interval=1.0, theme=theme)
        self.path = Path(path)
        self.saved: Path | None = None

    def after_poll(self, snap, error) -> None:
        if snap is not None:
            self.call_after_refresh(self._shoot)

    def _shoot(self, settle: int = 2) -> None:
        # the layout depends on what the first paint mounted (the instance cards' heights):
        # lay out again until it holds, then save
        self._update_layout()
        if settle:
            self.call_after_refresh(self._shoot, settle - 1)
        else:
            self.call_after_refresh(self._save)

    def _save(self) -> None:
        self.saved = Path(self.save_screenshot(filename=self.path.name, path=str(self.path.parent or ".")))
        self.exit()

    def on_source_end(self) -> None:
        pass


def render_svg(snapshots: list[Snapshot], path: str | Path, size: tuple[int, int], theme: str | None = None,
               alert_log: AlertLog | None = None, history=None) -> Path:
    app = ScreenshotApp(ListSource(snapshots, alert_log, history), Path(path), theme=theme)
    app.run(headless=True, size=size)
    if app.saved is None:
        raise RuntimeError("the dashboard did not draw")
    return app.saved


def snapshot_svg(settings: Settings, target: str | Path, size: tuple[int, int]) -> int:
    target = Path(target)
    if target.parent and not target.parent.is_dir():
        print(f"gpuwatch: cannot write {target}: {target.parent} is not a directory", file=sys.stderr)
        return 2
    if settings.demo is not None:
        monitor = simulated_history(settings)
        snaps, log, history = [monitor.last], monitor.alerts, monitor.history
    else:
        snaps, log, history = sample_window(settings), None, None
    try:
        out = render_svg(snaps, target, size, theme=settings.theme, alert_log=log, history=history)
    except OSError as e:
        print(f"gpuwatch: cannot write {target}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(out)
    return 0
