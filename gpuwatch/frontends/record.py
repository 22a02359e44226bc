"""``gpuwatch record``: the recorder run from a terminal or a service manager. The recording
itself (format, writer, cadence) is :mod:`gpuwatch.recording`; this is the part that faces the
user: stop signals, a progress line on a terminal, one-line errors."""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings
from ..recording import RecordError, Recorder, RecordingWriter
from ..runtime import build_monitor
from .units import fmt_bytes

STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP")


@dataclass(frozen=True)
class RecordOptions:
    output: str
    append: bool = False
    count: int | None = None
    duration: float | None = None
    rotate_mb: float | None = None
    keep: int = 10


def _fmt_elapsed(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class _TerminalProgress:
    def __init__(self, stream, path: Path) -> None:
        self.stream = stream
        self.path = path
        self.shown = False

    def __call__(self, rec: Recorder) -> None:
        if self.stream is None:
            return
        text = (f"\rrecording {self.path.name}: {rec.lines} snapshots, "
                f"{_fmt_elapsed(rec.clock() - rec.started)}, {fmt_bytes(rec.writer.bytes_written)}\x1b[K")
        try:
            self.stream.write(text)
            self.stream.flush()
            self.shown = True
        except (OSError, ValueError):  # the terminal went away (SSH hangup)
            self.stream = None

    def done(self) -> None:
        if self.stream is not None and self.shown:
            try:
                self.stream.write("\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass


def _fail(message: str) -> int:
    print(f"gpuwatch: {message}", file=sys.stderr)
    return 1


def run_record(settings: Settings, opts: RecordOptions) -> int:
    """Record until the count, the duration or a stop signal; 0 when every line was written,
    1 (with one line on stderr) when the recording could not go on."""
    stopper: dict = {"reason": None, "recorder": None}

    def on_signal(signum, frame):
        name = signal.Signals(signum).name
        stopper["reason"] = name
        rec = stopper["recorder"]
        if rec is not None:
            rec.request_stop(name)

    previous = {}
    for name in STOP_SIGNALS:
        sig = getattr(signal, name, None)
        # a signal the parent set to be ignored stays ignored: `nohup gpuwatch record` survives hangups
        if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, on_signal)
    writer = monitor = None
    try:
        rotate = int(opts.rotate_mb * 1024 * 1024) if opts.rotate_mb else None
        try:
            writer = RecordingWriter(opts.output, append=opts.append, rotate_bytes=rotate, keep=opts.keep)
        except RecordError as e:
            return _fail(str(e))
        monitor = build_monitor(settings, one_shot=True, history_points=2)
        progress = _TerminalProgress(sys.stderr if _isatty(sys.stderr) else None, writer.path)
        recorder = Recorder(monitor.sampler, writer, settings.interval, count=opts.count, duration=opts.duration,
                            analyze=monitor.observe, progress=progress)
        recorder.stop_reason = stopper["reason"]  # a signal during start-up
        stopper["recorder"] = recorder
        try:
            recorder.run()
        except RecordError as e:
            progress.done()
            _quietly(writer)
            return _fail(str(e))
        progress.done()
        stopper["recorder"] = None
        try:
            writer.close(discard_if_empty=True)
        except RecordError as e:
            return _fail(str(e))
        for w in writer.warnings:
            print(f"gpuwatch: warning: {w}", file=sys.stderr)
        return 0
    finally:
        stopper["recorder"] = None
        if monitor is not None:
            monitor.close()
        if writer is not None and writer.file is not None:
            _quietly(writer)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _quietly(writer: RecordingWriter) -> None:
    """Close after a failure, ignoring a second failure."""
    try:
        writer.close(discard_if_empty=True)
    except RecordError:
        pass


def _isatty(stream) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (OSError, ValueError):
        return False
