"""The recording format: what ``gpuwatch record`` writes and replay reads.

A recording is NDJSON: one schema-v1 snapshot (docs/SCHEMA.md) per line, compact ASCII JSON
with the keys in ``Snapshot.to_dict()`` order, so every line starts with
``{"schema_version":1,"time":"2026-11-23T07:55:21.205Z"``. A file ending in ``.gz`` is one
gzip stream with a sync flush after every line (any prefix of it decompresses to whole lines).
Rotated files are named ``STEM.NNNNNN.EXT`` beside the current one.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..model import SCHEMA_VERSION, Snapshot

PREFIX = b'{"schema_version":%d,"time":"' % SCHEMA_VERSION
_ROTATED_DIGITS = 6


class RecordingError(Exception):
    """A file that cannot be read as a recording, worded for a one-line message."""


def encode_snapshot(snap: Snapshot) -> bytes:
    """One recording line: compact ASCII JSON of schema v1 and a newline -- the bytes of
    ``Snapshot.to_dict()``."""
    return json.dumps(snap.to_dict(), separators=(",", ":"), allow_nan=False).encode("ascii") + b"\n"


def is_gzip_name(path: str | os.PathLike) -> bool:
    return str(path).endswith(".gz")


def split_name(path: str | os.PathLike) -> tuple[Path, str, str]:
    """``dir/rec.ndjson.gz`` -> (dir, "rec", ".ndjson.gz"); the extension keeps ``.gz``."""
    p = Path(path)
    name = p.name
    gz = ".gz" if name.endswith(".gz") else ""
    stem, ext = os.path.splitext(name[: len(name) - len(gz)])
    if not stem:  # ".ndjson" alone
        stem, ext = ext, ""
    return p.parent, stem, ext + gz


def rotated_name(path: str | os.PathLike, seq: int) -> Path:
    """The name a rotated file gets: ``rec.ndjson.gz`` -> ``rec.000007.ndjson.gz``."""
    parent, stem, ext = split_name(path)
    return parent / f"{stem}.{seq:0{_ROTATED_DIGITS}d}{ext}"


def rotated_siblings(path: str | os.PathLike) -> list[tuple[int, Path]]:
    """The rotated files of ``path`` that exist, as (sequence, path), oldest first."""
    parent, stem, ext = split_name(path)
    pattern = re.compile(re.escape(stem) + r"\.(\d{%d,})" % _ROTATED_DIGITS + re.escape(ext) + "$")
    found = []
    try:
        names = os.listdir(parent if str(parent) else ".")
    except OSError:
        return []
    for name in names:
        m = pattern.match(name)
        if m:
            found.append((int(m.group(1)), parent / name))
    return sorted(found)
