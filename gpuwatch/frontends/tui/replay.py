"""`gpuwatch replay FILE`: the dashboard driven from a recording, with pause, step, seek and speed.

The recording is indexed once (gpuwatch.recording); snapshots are decoded only when
shown. Alerts are the ones the recorder evaluated; their raised/cleared history is rebuilt from
the recording around the current position.
"""

from __future__ import annotations

import bisect
import sys
import time
from datetime import datetime, timedelta, timezone

from textual.app import ComposeResult
from textual.actions import SkipAction
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from ...analysis.history import History
from ...config import Settings
from ...model import Snapshot
from ...recording import Recording, RecordingError, open_recording
from .app import GpuWatchApp

SPEEDS = (1.0, 10.0, 60.0, 600.0)
REBUILD_BACK = 300  # snapshots looked at behind a seek target to rebuild history and alert events


class RecordedAlertHistory:
    """Raised/cleared events derived from the alerts recorded in each snapshot."""

    def __init__(self, limit: int = 500) -> None:
        self.history: list[dict] = []
        self.limit = limit
        self._active: dict[str, dict] = {}
        self.new_critical: list = []

    def reset(self) -> None:
        self.history.clear()
        self._active.clear()

    def feed(self, time_iso: str, alerts: list[dict]) -> None:
        if not isinstance(alerts, list):
            alerts = []
        now = {str(a.get("key") or f"{a.get('kind')}:{a.get('subject')}"): a for a in alerts if isinstance(a, dict)}
        for key, a in now.items():
            if key not in self._active:
                self.history.append({"time": time_iso, "state": "raised", **_fields(a)})
        for key, a in self._active.items():
            if key not in now:
                self.history.append({"time": time_iso, "state": "cleared", **_fields(a)})
        self._active = now
        del self.history[:-self.limit]


def _fields(a: dict) -> dict:
    return {k: a.get(k) for k in ("kind", "severity", "subject", "message")}


class ReplaySource:
    live = False

    def __init__(self, rec: Recording, speed: float = 1.0, start: int = 0) -> None:
        self.rec = rec
        self.speed = speed
        self.playing = True
        self.history = History(600)
        self.alert_log = RecordedAlertHistory()
        self.pos = max(0, min(start, len(rec) - 1))
        self._wall: float | None = None
        self._cursor_time = rec.times[self.pos]
        self.bad: set[int] = set()  # lines that index but do not decode: skipped, counted
        self.seek_index(self.pos)
        if self.current() is None:
            raise RecordingError(f"{rec.paths[0]}: no line of the recording decodes to a snapshot")

    # ---- decoding, skipping what does not decode ------------------------------------------
    def _get(self, i: int) -> Snapshot | None:
        if i in self.bad:
            return None
        try:
            return self.rec[i]
        except RecordingError:
            self.bad.add(i)
            return None

    def _raw(self, i: int) -> dict | None:
        if i in self.bad:
            return None
        try:
            return self.rec.raw(i)
        except RecordingError:
            self.bad.add(i)
            return None

    def current(self) -> Snapshot | None:
        """The snapshot at ``pos``; if that line does not decode, the nearest one that does
        (forward first), and ``pos`` moves there."""
        n = len(self.rec)
        for i in [*range(self.pos, n), *range(self.pos - 1, -1, -1)]:
            snap = self._get(i)
            if snap is not None:
                self.pos = i
                return snap
        return None

    # ---- position -------------------------------------------------------------------
    def seek_index(self, index: int) -> None:
        index = max(0, min(index, len(self.rec) - 1))
        self.pos = index
        self._cursor_time = self.rec.times[index]
        self._wall = None
        # rebuild the charts' history and the alert events from what came just before
        self.history.clear()
        self.alert_log.reset()
        lo = max(0, index - REBUILD_BACK)
        for i in range(lo, index):
            raw = self._raw(i)
            if raw is not None:
                self.alert_log.feed(str(raw.get("time", "")), raw.get("alerts") or [])
        step = max(1, (index - lo) // 120)
        for i in range(lo, index, step):
            snap = self._get(i)
            if snap is not None:
                self.history.add(snap)

    def seek_time(self, when) -> None:
        self.seek_index(self.rec.seek_time(when))

    def step(self, n: int) -> None:
        self.playing = False
        self.pos = max(0, min(self.pos + n, len(self.rec) - 1))
        self._cursor_time = self.rec.times[self.pos]

    def next(self) -> Snapshot:
        now = time.monotonic()
        if self.playing and self._wall is not None:
            self._cursor_time += (now - self._wall) * self.speed
            idx = self.rec.seek_time(self._cursor_time)
            if idx >= len(self.rec) - 1:
                idx = len(self.rec) - 1
                self.playing = False
            self.pos = max(self.pos, idx)
        self._wall = now
        snap = self.current()
        if snap is None:
            raise RecordingError("no line of the recording decodes to a snapshot")
        raw_alerts = [a.__dict__ if hasattr(a, "__dict__") else a for a in snap.alerts]
        self.alert_log.feed(snap.time, raw_alerts)
        self.history.add(snap)
        return snap

    bench_target = None

    def resync(self) -> None:
        """Count play time from now on (after a pause: the paused time is not played)."""
        self._wall = None

    def close(self) -> None:
        self.rec.close()


class SeekScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def compose(self) -> ComposeResult:
        yield Label("Jump to a time: 03:12, 2026-11-23T03:12:00Z, +10m, -1h, start, end", markup=False)
        yield Input(placeholder="time", id="seek-input")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())


class ReplayApp(GpuWatchApp):
    BINDINGS = GpuWatchApp.BINDINGS + [
        Binding("space", "toggle_pause", "Play/pause"),
        Binding("full_stop", "step(1)", "Step →", key_display="."),
        Binding("comma", "step(-1)", "← Step", key_display=","),
        Binding("right_square_bracket", "speed(1)", "Speed+", key_display="]"),
        Binding("left_square_bracket", "speed(-1)", "Speed-", key_display="["),
        Binding("g", "seek", "Seek"),
        # before the focused widget: the GPU list (a scroll view) has Home/End of its own, and with a
        # GPU card selected (one is, from the start) it took these keys whenever it could scroll
        Binding("home", "jump(0)", "Start", show=False, priority=True),
        Binding("end", "jump(-1)", "End", show=False, priority=True),
    ]

    def __init__(self, source: ReplaySource, theme: str | None = None, warnings: list[str] | None = None) -> None:
        super().__init__(source, interval=1.0, theme=theme)
        self.warnings = warnings or []

    def on_mount(self) -> None:
        super().on_mount()
        if self.warnings:
            shown = self.warnings[:5] + ([f"... {len(self.warnings) - 5} more"] if len(self.warnings) > 5 else [])
            self.notify("\n".join(shown), title="recording", severity="warning", timeout=10, markup=False)

    def top_extra(self, snap: Snapshot, narrow: int = 0) -> list:
        src: ReplaySource = self.source
        state = "▶" if src.playing else "❚❚"
        out = [(f" REPLAY {state} {src.speed:g}× ", "$accent reverse bold"),
               (f" {snap.time[:10]} {snap.time[11:19]}Z {src.pos + 1}/{len(src.rec)} ", "bold")]
        if src.bad:
            out.append((f" {len(src.bad)} bad line{'s' if len(src.bad) != 1 else ''} skipped ", "$warning"))
        return out

    def action_toggle_pause(self) -> None:
        src: ReplaySource = self.source
        src.playing = not src.playing
        src.resync()
        self._repaint_now()

    def _repaint_now(self) -> None:
        """Show the snapshot at the current position at once (not at the next tick)."""
        src: ReplaySource = self.source
        snap = src.current()
        if snap is None:
            return
        self.snapshot = snap
        self._paint(snap)

    def action_step(self, n: int) -> None:
        self.source.step(n)
        self._repaint_now()

    def action_speed(self, direction: int) -> None:
        src: ReplaySource = self.source
        i = min(range(len(SPEEDS)), key=lambda k: abs(SPEEDS[k] - src.speed))
        src.speed = SPEEDS[max(0, min(len(SPEEDS) - 1, i + direction))]
        self._repaint_now()

    def action_jump(self, index: int) -> None:
        if self.screen is not getattr(self, "_main_screen", self.screen):
            raise SkipAction()  # another screen's Home/End: the seek field's cursor, a detail's scroll
        src: ReplaySource = self.source
        src.seek_index(index if index >= 0 else len(src.rec) - 1)
        self._repaint_now()

    def action_seek(self) -> None:
        def done(text: str | None) -> None:
            if not text:
                return
            try:
                self.source.seek_time(parse_seek(text, self.source))
            except ValueError as e:
                self.notify(str(e), severity="error", markup=False)
                return
            self._repaint_now()

        self.push_screen(SeekScreen(), done)

    def on_source_end(self) -> None:
        pass


def parse_seek(text: str, src: ReplaySource) -> float:
    """A time to jump to, as epoch seconds: ISO 8601, HH:MM[:SS] on the recording's days,
    +/-N[s|m|h] relative to the current position, start or end."""
    text = text.strip().lower()
    rec = src.rec
    if text in ("start", "begin", "home"):
        return rec.times[0]
    if text == "end":
        return rec.times[-1]
    if text[:1] in "+-" and text[-1:] in "smh" and text[1:-1].replace(".", "", 1).isdigit():
        n = float(text[1:-1]) * {"s": 1, "m": 60, "h": 3600}[text[-1]]
        return rec.times[src.pos] + (n if text[0] == "+" else -n)
    if ":" in text and "t" not in text and "-" not in text:
        parts = [int(p) for p in text.split(":")]
        if len(parts) not in (2, 3) or not 0 <= parts[0] < 24 or not 0 <= parts[1] < 60:
            raise ValueError(f"not a time of day: {text!r}")
        base = datetime.fromtimestamp(rec.times[src.pos], tz=timezone.utc)
        when = base.replace(hour=parts[0], minute=parts[1], second=parts[2] if len(parts) == 3 else 0, microsecond=0)
        span = 1.0 if len(parts) == 3 else 60.0  # "03:12" means that whole minute, "03:12:05" that second
        if when.timestamp() + span <= rec.times[0]:
            when += timedelta(days=1)
        t = when.timestamp()
        # land on the first snapshot inside the typed second/minute, so the top line then reads what was typed
        i = bisect.bisect_left(rec.times, t) if rec.monotonic else None
        if i is not None and i < len(rec.times) and rec.times[i] < t + span:
            return rec.times[i]
        return t
    try:
        when = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a time: {text!r} (try 03:12, +10m or 2026-11-23T03:12:00Z)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def run_replay(settings: Settings, file: str, speed: float = 1.0, start: str | None = None,
               rotated: bool = False) -> int:
    try:
        rec = open_recording(file, rotated=rotated)
    except RecordingError as e:
        print(f"gpuwatch: {e}", file=sys.stderr)
        return 1
    if len(rec) == 0:
        print(f"gpuwatch: {file}: no snapshots in this recording", file=sys.stderr)
        return 1
    try:
        source = ReplaySource(rec, speed=speed)
    except RecordingError as e:
        rec.close()
        print(f"gpuwatch: {e}", file=sys.stderr)
        return 1
    if start:
        try:
            source.seek_time(parse_seek(start, source))
        except ValueError as e:
            print(f"gpuwatch: --start: {e}", file=sys.stderr)
            return 2
    app = ReplayApp(source, theme=settings.theme, warnings=list(rec.warnings))
    try:
        app.run()
    finally:
        source.close()
    return app.return_code or 0
