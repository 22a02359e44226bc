"""`gpuwatch snapshot --svg FILE`: the dashboard drawn headlessly into an SVG file.

On a real box the picture is of two samples one interval apart. On the simulated box the
box's clock is driven by hand through ``--warmup`` simulated seconds first (default 60), so the
picture has history in its sparklines and alerts that passed their raise delay, in about a
second of real time.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ...analysis.history import History
from ...model import Snapshot
from .app import GpuWatchApp

WARMUP_S = 60


class ListSource:
    """Plays a fixed list of snapshots; all but the last become history at once."""

    live = False

    def __init__(self, snapshots: list[Snapshot], alert_engine=None) -> None:
        self.history = History(max(600, len(snapshots)))
        for s in snapshots[:-1]:
            self.history.add(s)
        self._last = snapshots[-1]
        self._done = False
        self.alert_engine = alert_engine

    def next(self) -> Snapshot:
        if self._done:
            raise StopIteration
        self._done = True
        self.history.add(self._last)
        return self._last


class ScreenshotApp(GpuWatchApp):
    """Paints one snapshot, saves the screen as SVG, and exits."""

    show_self_cost = False  # what it cost to draw a picture says nothing about the box

    def __init__(self, source, path: Path, theme: str | None = None) -> None:
        super().__init__(source, interval=1.0, theme=theme)
        self.path = Path(path)
        self.saved: Path | None = None

    def _apply_collected(self, snap, error, elapsed) -> None:
        super()._apply_collected(snap, error, elapsed)
        if snap is not None:
            self.call_after_refresh(self._shoot)

    def _shoot(self) -> None:
        self._update_layout()
        self.call_after_refresh(self._save)

    def _save(self) -> None:
        self.saved = Path(self.save_screenshot(filename=self.path.name, path=str(self.path.parent or ".")))
        self.exit()

    def on_source_end(self) -> None:
        pass


def render_svg(snapshots: list[Snapshot], path: str | Path, size: tuple[int, int], theme: str | None = None,
               alert_engine=None) -> Path:
    app = ScreenshotApp(ListSource(snapshots, alert_engine), Path(path), theme=theme)
    app.run(headless=True, size=size)
    if app.saved is None:
        raise RuntimeError("the dashboard did not draw")
    return app.saved


def simulated_run(spec: str, seconds: int, alerts_config) -> tuple[list[Snapshot], object]:
    """Drive the simulated box by hand for ``seconds`` simulated seconds, one sample a second."""
    from ...analysis.alerts import AlertEngine
    from ...pipeline import make_sampler
    from ...sim.box import ManualClock

    clock = ManualClock()
    sampler = make_sampler(demo=spec, clock=clock)
    engine = AlertEngine(alerts_config)
    snaps = []
    try:
        for _ in range(seconds):
            clock.advance(1.0)
            snap = sampler.sample(wait_instances=True)
            engine.update(snap)
            snaps.append(snap)
    finally:
        sampler.close()
    return snaps, engine


def snapshot_svg(args, cfg, interval, backends, discover) -> int:
    from ...cli import _sample_window, alert_config

    target = Path(args.svg)
    if target.parent and not target.parent.is_dir():
        print(f"gpuwatch: cannot write {target}: {target.parent} is not a directory", file=sys.stderr)
        return 2
    if getattr(args, "demo", None):
        snaps, engine = simulated_run(args.demo, WARMUP_S, alert_config(cfg))
    else:
        snaps, engine = _sample_window(args, cfg, interval, backends, discover), None
    try:
        out = render_svg(snaps, target, args.size, theme=getattr(args, "theme", None) or cfg.theme,
                         alert_engine=engine)
    except OSError as e:
        print(f"gpuwatch: cannot write {target}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(out)
    return 0
