"""The alert engine: runs the rules over a stream of snapshots, with hysteresis.

A condition must hold ``raise_after_s`` before its alert is raised and be gone
``clear_after_s`` before the alert clears, so alerts do not flap. ``since`` is the time
(the snapshot's ISO time) the condition first held. The engine keeps bounded history: the
snapshots its rules look back over (trimmed to the longest rule window) and the last
``history_size`` raised/cleared events.

``evaluate_once`` is the one-shot form for ``gpuwatch snapshot``: everything seen over a
short sampling window, without waiting for the raise delay.
"""

from __future__ import annotations

import bisect
import copy
import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from ..model import Alert, Instance, Snapshot
from ..vocab import SEVERITY_RANK
from .alert_config import AlertConfig
from .rules import RULES, RuleContext, _time

log = logging.getLogger(__name__)

MAX_SAMPLES = 4000  # hard cap on the look-back buffer, whatever the sampling rate


@dataclass
class AlertEvent:
    """One line of the alert history: an alert was raised or cleared."""

    time: str  # ISO time of the snapshot at which it happened
    kind: str
    subject: str
    severity: str
    message: str
    state: str  # raised | cleared
    since: str | None = None
    key: str | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class _State:
    first_t: float
    first_iso: str
    last_t: float
    alert: Alert
    severity: str
    raised: bool = False
    critical_notified: bool = False
    gone_t: float | None = None  # first update at which the condition no longer held


def parse_time(iso: str) -> float:
    """ISO 8601 (``...Z`` or with an offset) -> seconds since the epoch."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _clock_fn(clock) -> Callable[[], float] | None:
    if clock is None:
        return None
    if hasattr(clock, "now"):
        return clock.now
    if callable(clock):
        return clock
    raise TypeError(f"clock must be callable or have now(), got {clock!r}")


class AlertEngine:
    """Feed it snapshots in time order with :meth:`update`.

    ``clock``: ``None`` (use each snapshot's own ``time``), a callable returning seconds, or
    an object with ``now()`` (the simulated box's ``ManualClock``). Use one consistently.
    """

    def __init__(self, config: AlertConfig | None = None, clock=None, *, one_shot: bool = False) -> None:
        self.config = config or AlertConfig()
        self._clock = _clock_fn(clock)
        self._one_shot = one_shot
        self._samples: deque[tuple[float, Snapshot]] = deque(maxlen=MAX_SAMPLES)
        # per instance, (time, instance) of the samples above in which it was up: the rules that
        # look back at an instance take its window from here instead of searching every sample
        self._series: dict[str, list[tuple[float, Instance]]] = {}
        self._states: dict[str, _State] = {}
        self._history: deque[AlertEvent] = deque(maxlen=max(1, int(self.config.history_size)))
        self._keep_s = self.config.max_window_s() + 5.0
        self.active: list[Alert] = []
        self.new_critical: list[Alert] = []  # alerts that became critical in the last update
        self.rule_errors: dict[str, str] = {}  # kind -> last exception text of a failing rule
        self._seen_gpus: frozenset[int] = frozenset()

    # ---- public --------------------------------------------------------------------------
    @property
    def history(self) -> list[AlertEvent]:
        """Raised/cleared events, oldest first (bounded)."""
        return list(self._history)

    def update(self, snapshot: Snapshot) -> list[Alert]:
        now = self._now(snapshot)
        if self._samples and now < self._samples[-1][0]:
            # time went backwards (replay restarted, clock changed): start the look-back afresh
            self._samples.clear()
            self._series.clear()
        self._samples.append((now, snapshot))
        while self._samples and self._samples[0][0] < now - self._keep_s:
            self._samples.popleft()
        self._add_series(now, snapshot)

        conditions = self._evaluate(snapshot, now)
        if snapshot.nvml_error is None:
            self._seen_gpus = self._seen_gpus | {g.index for g in snapshot.gpus}
        self.new_critical = []
        for ident, alert in conditions.items():
            st = self._states.get(ident)
            if st is None:
                st = self._states[ident] = _State(now, snapshot.time, now, alert, alert.severity)
            st.last_t = now
            st.gone_t = None
            st.alert = alert
            if SEVERITY_RANK[alert.severity] > SEVERITY_RANK[st.severity]:
                st.severity = alert.severity  # severity only escalates within one episode
            raise_after = 0.0 if self._one_shot else self.config.raise_after(alert.kind)
            if not st.raised and now - st.first_t >= raise_after:
                st.raised = True
                self._event(st, snapshot.time, "raised")
            if st.raised and st.severity == "critical" and not st.critical_notified:
                st.critical_notified = True
                self.new_critical.append(self._public(st))
        for ident in [i for i in self._states if i not in conditions]:
            st = self._states[ident]
            if not st.raised:
                del self._states[ident]  # it did not hold long enough: forget it
                continue
            if st.gone_t is None:
                st.gone_t = now
            if not self._one_shot and now - st.gone_t >= self.config.clear_after(st.alert.kind):
                self._event(st, snapshot.time, "cleared")
                del self._states[ident]

        self.active = sorted((self._public(st) for st in self._states.values() if st.raised),
                             key=lambda a: (-SEVERITY_RANK[a.severity], a.kind, a.subject))
        snapshot.alerts = list(self.active)
        return list(self.active)

    # ---- internals ---------------------------------------------------------------------------
    def _add_series(self, now: float, snapshot: Snapshot) -> None:
        for inst in snapshot.instances:
            if inst.status == "up":
                self._series.setdefault(inst.name, []).append((now, inst))
        oldest = self._samples[0][0]  # (the look-back, or the samples' count limit)
        for name, ser in list(self._series.items()):
            if ser[0][0] < oldest:
                del ser[:bisect.bisect_left(ser, oldest, key=_time)]
                if not ser:
                    del self._series[name]

    def _now(self, snapshot: Snapshot) -> float:
        if self._clock is not None:
            return float(self._clock())
        try:
            return parse_time(snapshot.time)
        except (TypeError, ValueError):
            return time.time()

    def _evaluate(self, snapshot: Snapshot, now: float) -> dict[str, Alert]:
        found: dict[str, Alert] = {}
        samples = list(self._samples)
        for kind, rule in RULES.items():
            if not self.config.is_enabled(kind):
                continue
            ctx = RuleContext(snapshot=snapshot, samples=samples, now=now, config=self.config, kind=kind,
                              seen_gpus=self._seen_gpus, series=self._series)
            try:
                alerts = rule.fn(ctx)
            except Exception as exc:  # one broken rule must not blind the others
                msg = f"{type(exc).__name__}: {exc}"
                if self.rule_errors.get(kind) != msg:
                    # kept in rule_errors (and logged quietly): a rule bug never prints a traceback
                    log.debug("alert rule %s failed", kind, exc_info=True)
                self.rule_errors[kind] = msg
                continue
            self.rule_errors.pop(kind, None)
            for a in alerts:
                found.setdefault(a.identity(), a)
        return found

    def _public(self, st: _State) -> Alert:
        a = copy.copy(st.alert)
        a.severity = st.severity
        a.since = st.first_iso
        a.key = a.identity()
        return a

    def _event(self, st: _State, when: str, state: str) -> None:
        a = st.alert
        self._history.append(AlertEvent(time=when, kind=a.kind, subject=a.subject, severity=st.severity,
                                        message=a.message, state=state, since=st.first_iso, key=a.identity()))


def evaluate_once(snapshots: list[Snapshot], config: AlertConfig | None = None) -> list[Alert]:
    """Every condition seen over a short run of snapshots (oldest first), without the raise delay.

    Rules that need a long look-back (throughput drop, backlog) stay quiet over a short window.
    The returned alerts are also written into the last snapshot's ``alerts``.
    """
    if not snapshots:
        return []
    engine = AlertEngine(config, one_shot=True)
    alerts: list[Alert] = []
    for snap in snapshots:
        alerts = engine.update(snap)
    return alerts
