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
