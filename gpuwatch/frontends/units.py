"""Formatting of values for humans. Unknown is ``n/a``, never 0."""

from __future__ import annotations

NA = "n/a"


def na(value, fmt: str = "{}") -> str:
    return NA if value is None else fmt.format(value)


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return NA
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            if unit == "B":
                return f"{n:.0f}B"
            return f"{n:.1f}{unit}" if abs(n) < 100 else f"{n:.0f}{unit}"
        n /= 1024
    return f"{n:.0f}TiB"


def fmt_rate(n: float | None) -> str:
    """Bytes per second, decimal units as link speeds are quoted (GB/s)."""
    if n is None:
        return NA
    n = float(n)
    for unit in ("B/s", "kB/s", "MB/s", "GB/s"):
        if abs(n) < 1000 or unit == "GB/s":
            return f"{n:.0f}{unit}" if unit == "B/s" or abs(n) >= 100 else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.0f}GB/s"


def fmt_pct(p: float | None) -> str:
    return NA if p is None else f"{p:.0f}%"


# what an instance that is alive but not serving is doing (vocab.RESTING_STATUSES)
_RESTING_TEXT = {"loading": "loading its model", "sleeping": "model unloaded until the next request"}


def status_text(inst) -> str:
    """``loading its model (since 08:12:03)`` for an instance in one of the resting statuses;
    the status word otherwise."""
    text = _RESTING_TEXT.get(inst.status, inst.status)
    since = inst.status_since or ""
    return f"{text} (since {since[11:19]})" if len(since) >= 19 else text
