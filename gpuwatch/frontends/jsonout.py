"""The snapshot as JSON text (schema v1, docs/SCHEMA.md)."""

from __future__ import annotations

import json
import re

from ..model import Snapshot

_NUMBER_LIST = re.compile(r"\[\s*(-?\d[\d.eE+-]*(?:,\s*-?\d[\d.eE+-]*)*)\s*\]")


def dumps(data, indent: int | None = 2) -> str:
    """Indented JSON, with lists of plain numbers (CPU affinity, GPU indices) kept on one line."""
    # allow_nan=False: NaN/Infinity are not JSON; the model never holds them (sanitize.py), and
    # should one slip through this fails loudly instead of writing a file nothing else reads
    text = json.dumps(data, indent=indent, ensure_ascii=False, allow_nan=False)
    if indent is None:
        return text
    return _NUMBER_LIST.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)


def dumps_snapshot(snap: Snapshot, indent: int | None = 2) -> str:
    return dumps(snap.to_dict(), indent)
