"""Rates from cumulative counters, robust to wrap-around and resets.

A counter read twice gives a rate: (v1 - v0) / (t1 - t0). Hardware counters wrap at their
width (2**32 or 2**64); a driver reload or a server restart resets them to zero. A wrap is a
small step past the top of the range; anything else that goes backwards is a reset, for which
no rate is reported for that interval (a reset is not negative traffic).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _Last:
    value: float
    t: float


class CounterRates:
    def __init__(self) -> None:
        self._last: dict[object, _Last] = {}

    def update(self, key: object, value: float | None, t: float, bits: int | None = 64) -> float | None:
        """Record ``value`` at time ``t`` and return the rate since the previous reading,
        or None on the first reading, a reset, a missing value or a zero interval."""
        if value is None:
            self._last.pop(key, None)
            return None
        prev = self._last.get(key)
        self._last[key] = _Last(value, t)
        if prev is None or t <= prev.t:
            return None
        delta = value - prev.value
        if delta < 0:
            if bits is None:
                return None
            top = 2**bits
            wrapped = top - prev.value + value
            # a genuine wrap: the old value was in the top quarter of the range and the step
            # across the top is smaller than a quarter of it
            if prev.value >= top * 0.75 and 0 <= wrapped < top / 4:
                delta = wrapped
            else:
                return None
        return delta / (t - prev.t)

    def forget(self, predicate) -> None:
        for key in [k for k in self._last if predicate(k)]:
            del self._last[key]
