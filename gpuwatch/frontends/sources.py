"""What a dashboard consumes, as typed protocols, and the sources that provide it.

A dashboard (live, replay, a fleet host, a screenshot) draws whatever a :class:`SnapshotSource`
gives it: the next snapshot, the history its charts draw, the alert log its history screen
lists, and, for a live box only, where benchmark results go. The sources here need no UI
toolkit; the replay and fleet sources live beside their screens.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, TimeoutError as FutureTimeout
from typing import Protocol, runtime_checkable

from ..analysis.history import History
from ..model import Alert, BenchResult, Snapshot
from ..pipeline import Monitor


@runtime_checkable
class AlertLog(Protocol):
    """Alerts over time: the events of the alert history screen (raised/cleared, oldest first)
    and the alerts that just became critical (a notification each)."""

    @property
    def history(self) -> list: ...

    @property
    def new_critical(self) -> list[Alert]: ...


class BenchTarget(Protocol):
    """Where a benchmark run from the dashboard is kept (shown on the instance's panel)."""

    def record_bench(self, name: str, result: BenchResult) -> None: ...


@runtime_checkable
class SnapshotSource(Protocol):
    live: bool  # a live box (benchmarks make sense), not a recording or a remote host

    def next(self) -> Snapshot:
        """The next snapshot; ``StopIteration`` when there is none (a recording's end)."""

    @property
    def history(self) -> History | None: ...

    @property
    def alert_log(self) -> AlertLog | None: ...

    @property
    def bench_target(self) -> BenchTarget | None: ...

    def close(self) -> None: ...


class LiveSource:
    """Snapshots from the live pipeline (a :class:`~gpuwatch.pipeline.Monitor`)."""

    live = True

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self._early: Future | None = None

    def start(self) -> None:
        """Take the first snapshot now, on a thread of its own, so that it is (nearly) ready
        when the dashboard asks for it: the dashboard calls this before it starts its UI."""
        if self._early is None:
            self._early = Future()
            threading.Thread(target=self._take_early, name="gpuwatch-first-poll", daemon=True).start()

    def _take_early(self) -> None:
        try:
            self._early.set_result(self.monitor.tick())
        except BaseException as e:  # handed to next(), as a poll's own error would be
            self._early.set_exception(e)

    def next(self) -> Snapshot:
        early, self._early = self._early, None
        if early is not None:
            return early.result()
        return self.monitor.tick()

    def first_if_ready(self, wait_s: float = 0.0) -> Snapshot | None:
        """The first snapshot if it is taken within ``wait_s`` (not a failed one: ``next()``
        raises that error as a poll would), else None."""
        early = self._early
        if early is None:
            return None
        try:
            if early.exception(timeout=wait_s) is not None:
                return None
        except FutureTimeout:  # (the builtin TimeoutError only from Python 3.11)
            return None
        self._early = None
        return early.result()

    @property
    def history(self) -> History:
        return self.monitor.history

    @property
    def alert_log(self) -> AlertLog:
        return self.monitor.alerts

    @property
    def bench_target(self) -> BenchTarget | None:
        return self.monitor.sampler.instances

    def close(self) -> None:
        self.monitor.close()


class ListSource:
    """Plays the last of a list of snapshots once, the others being its history (for a picture
    of the dashboard). ``history``: one already holding every snapshot, the last included."""

    live = False
    bench_target = None

    def __init__(self, snapshots: list[Snapshot], alert_log: AlertLog | None = None,
                 history: History | None = None) -> None:
        self._pending = history is None  # the last snapshot still to be added to the history
        if history is None:
            history = History(max(600, len(snapshots)))
            for s in snapshots[:-1]:
                history.add(s)
        self.history = history
        self._last = snapshots[-1]
        self._done = False
        self.alert_log = alert_log

    def next(self) -> Snapshot:
        if self._done:
            raise StopIteration
        self._done = True
        if self._pending:
            self.history.add(self._last)
        return self._last

    def close(self) -> None:
        pass
