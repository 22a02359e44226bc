"""The reader of recordings (the format is in :mod:`.format`): what replay uses.

:func:`open_recording` indexes a file in one pass that reads only each line's head (its
time) and end (is it whole?) -- no JSON is parsed and no Snapshot built -- and keeps compact
arrays of offsets and times. ``rec[i]`` decodes one snapshot on demand (small LRU cache).
For gzip it keeps, every ~4 MB of text, a copy of the decompressor's state (zlib's own
``copy()``, ~50 KB each), so reaching any line means inflating at most ~4 MB, and a
sequential walk reuses its position. Memory stays bounded (a day at 1 s of 8 GPUs: a few
MB of index) and nothing is written to disk.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import zlib
from array import array
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

from ..model import SCHEMA_VERSION, Snapshot
from ..userfiles import regular_file_problem
from .format import PREFIX, RecordingError, is_gzip_name, rotated_siblings

_TIME_AT = len(PREFIX)
_TIME_LEN = len("2026-11-23T07:55:21.205Z")
_HEAD = 256  # bytes of each line the index looks at
_CHUNK = 4 << 20  # plain files are scanned in 4 MiB reads
_GZ_CHUNK = 256 << 10  # compressed bytes fed to zlib at a time
_CHECKPOINT_EVERY = 4 << 20  # decompressed bytes between gzip checkpoints
_MAX_WARNINGS = 20

_FAST_TIME = re.compile(rb"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d(?:\.\d{1,6})?)Z")
_SCHEMA_RE = re.compile(rb'"schema_version"\s*:\s*(-?\d+)')
_TIME_RE = re.compile(rb'"time"\s*:\s*"([^"]{1,64})"')


# ---- times -----------------------------------------------------------------------------------

_day_cache: dict[bytes, float] = {}


def _fast_epoch(ts: bytes) -> float | None:
    m = _FAST_TIME.fullmatch(ts)
    if m is None:
        return None
    day = _day_cache.get(ts[:10])
    if day is None:
        try:
            day = datetime(int(m.group(1)), int(m.group(2)), int(m.group(3)), tzinfo=timezone.utc).timestamp()
        except ValueError:
            return None
        if len(_day_cache) > 4096:
            _day_cache.clear()
        _day_cache[ts[:10]] = day
    return day + int(m.group(4)) * 3600 + int(m.group(5)) * 60 + float(m.group(6))


def _parse_epoch(text: str) -> float | None:
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _to_epoch(when) -> float:
    if isinstance(when, (int, float)):
        return float(when)
    if isinstance(when, str):
        t = _parse_epoch(when)
        if t is None:
            raise ValueError(f"not an ISO 8601 time: {when!r}")
        return t
    if isinstance(when, datetime):
        return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()
    raise TypeError(f"expected a datetime, ISO string or epoch seconds, got {type(when).__name__}")


def _line_time(head: bytes, last: int | None) -> tuple[float | None, str | None]:
    """The time of a line from its head, or (None, why it is not a snapshot line)."""
    if last != 0x7D and last != 0x0D:  # '}', or '\r' of a CRLF line (checked when decoded)
        return None, "is not a whole JSON object"
    if head.startswith(PREFIX) and head[_TIME_AT + _TIME_LEN: _TIME_AT + _TIME_LEN + 1] == b'"':
        t = _fast_epoch(head[_TIME_AT: _TIME_AT + _TIME_LEN])
        if t is not None:
            return t, None
    # another writer's spacing or key order (e.g. `gpuwatch snapshot --json | jq -c`)
    m = _SCHEMA_RE.search(head)
    if m is None or not head.lstrip().startswith(b"{"):
        return None, "is not a gpuwatch snapshot"
    if int(m.group(1)) != SCHEMA_VERSION:
        return None, f"has schema_version {int(m.group(1))} (this gpuwatch reads {SCHEMA_VERSION})"
    m = _TIME_RE.search(head)
    t = _parse_epoch(m.group(1).decode("ascii", "replace")) if m else None
    if t is None:
        return None, "has no readable time"
    return t, None


# ---- scanning lines out of a stream of chunks ------------------------------------------------

def _lines(chunks: Iterator[bytes]):
    """Yield (offset, length, head, last_byte, whole) for each line of a byte stream given in
    chunks; ``length`` excludes the newline, ``whole`` is False for a last line without one."""
    pos = 0
    c_off = -1  # offset of a line carried over from an earlier chunk, -1 for none
    c_head = b""
    c_len = 0
    c_last = None
    for chunk in chunks:
        n = len(chunk)
        if not n:
            continue
        start = 0
        find = chunk.find
        while True:
            nl = find(b"\n", start)
            if nl < 0:
                break
            if c_off >= 0:
                head = c_head if len(c_head) >= _HEAD else c_head + chunk[: min(nl, _HEAD - len(c_head))]
                yield c_off, c_len + nl, head, (chunk[nl - 1] if nl else c_last), True
                c_off = -1
            else:
                yield pos + start, nl - start, chunk[start: min(nl, start + _HEAD)], \
                    (chunk[nl - 1] if nl > start else None), True
            start = nl + 1
        if start < n:
            if c_off < 0:
                c_off, c_head, c_len = pos + start, chunk[start: start + _HEAD], n - start
            else:
                if len(c_head) < _HEAD:
                    c_head += chunk[: _HEAD - len(c_head)]
                c_len += n
            c_last = chunk[-1]
        pos += n
    if c_off >= 0:
        yield c_off, c_len, c_head, c_last, False


# ---- sources: where the bytes of one file come from -----------------------------------------

class _PlainSource:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.f = open(path, "rb")
        self.warnings: list[str] = []

    def chunks(self) -> Iterator[bytes]:
        read = self.f.read
        while True:
            data = read(_CHUNK)
            if not data:
                return
            yield data

    def read(self, off: int, n: int) -> bytes:
        return os.pread(self.f.fileno(), n, off)

    def close(self) -> None:
        self.f.close()


def _inflate(d, data: bytes):
    """Feed ``data`` to decompressor ``d``, going on into further gzip members (concatenated
    files); returns (the decompressor now in use, output, whether that one is mid-member)."""
    out = []
    while True:
        out.append(d.decompress(data))
        if not d.eof:
            return d, b"".join(out), True
        data = d.unused_data
        d = zlib.decompressobj(31)
        if not data:
            return d, b"".join(out), False


def _inflate_salvage(d, data: bytes):
    """:func:`_inflate`, but on damaged data return what decompresses before the damage:
    (decompressor, output, mid-member, the zlib error or None)."""
    before = d.copy()
    try:
        return (*_inflate(d, data), None)
    except zlib.error as e:
        error = e
    d, good = before, []
    try:
        for k in range(0, len(data), 64):
            d, out, _ = _inflate(d, data[k: k + 64])
            good.append(out)
    except zlib.error:
        pass
    return d, b"".join(good), False, error


class _GzipSource:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.f = open(path, "rb")
        self.warnings: list[str] = []
        self.unterminated = False
        # checkpoints: decompressed offset -> (compressed offset, decompressor state there)
        self._cp_d: list[int] = []
        self._cp: list[tuple[int, object]] = []
        self._cur = None  # cursor: (decompressor, compressed offset); _buf starts at _bd
        self._buf = b""
        self._bd = 0

    def chunks(self) -> Iterator[bytes]:
        d = zlib.decompressobj(31)
        cpos = dpos = 0
        self._cp_d, self._cp = [0], [(0, d.copy())]
        pending = False
        read = self.f.read
        while True:
            data = read(_GZ_CHUNK)
            if not data:
                break
            d, out, pending, error = _inflate_salvage(d, data)
            if error is not None:
                if out:
                    yield out
                dpos += len(out)
                self.warnings.append(f"{self.path}: gzip data is damaged ({error}); the text after "
                                     f"{dpos:,} bytes is skipped and lines before it may be wrong")
                break
            cpos += len(data)
            dpos += len(out)
            if dpos - self._cp_d[-1] >= _CHECKPOINT_EVERY:
                self._cp_d.append(dpos)
                self._cp.append((cpos, d.copy()))
            if out:
                yield out
        # a decompressor left mid-member: the recorder did not finish the file (killed, or
        # still recording); every line before the cut decompresses all the same
        self.unterminated = pending
        self._cur = None

    def read(self, off: int, n: int) -> bytes:
        i = bisect.bisect_right(self._cp_d, off) - 1
        cp_d = self._cp_d[i]
        cur = self._cur
        if cur is None or not (self._bd <= off and cp_d <= self._bd + len(self._buf)):
            c, d = self._cp[i]
            cur = (d.copy(), c)
            self._buf, self._bd = b"", cp_d
        d, c = cur
        buf, bd = self._buf, self._bd
        while True:
            if off > bd:  # drop what lies before the line, bounding memory
                drop = min(off - bd, len(buf))
                buf, bd = buf[drop:], bd + drop
            if bd + len(buf) >= off + n:
                break
            data = os.pread(self.f.fileno(), _GZ_CHUNK, c)
            if not data:
                break
            c += len(data)
            d, out, _, error = _inflate_salvage(d, data)
            buf += out
            if error is not None:  # damaged data: give what there is, start afresh next time
                self._cur, self._buf, self._bd = None, b"", 0
                return buf[off - bd: off - bd + n]
        self._cur, self._buf, self._bd = (d, c), buf, bd
        return buf[off - bd: off - bd + n]

    def close(self) -> None:
        self.f.close()
        self._cp = []
        self._cur = None


def _open_source(path: Path):
    why = regular_file_problem(path)
    if why:  # a FIFO blocks for ever, /dev/zero never ends: only regular files are recordings
        raise RecordingError(f"{path} {why}")
    try:
        f = open(path, "rb")
    except IsADirectoryError:
        raise RecordingError(f"{path} is a directory, not a recording") from None
    except OSError as e:
        raise RecordingError(f"cannot open {path}: {e.strerror or e}") from None
    with f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return _GzipSource(path)
    if is_gzip_name(path) and magic:
        raise RecordingError(f"{path} is named .gz but is not gzip data")
    return _PlainSource(path)


# ---- the recording ---------------------------------------------------------------------------

class Recording:
    """An indexed recording: ``len(rec)`` snapshots, ``rec[i]`` decodes one, ``rec.times[i]`` is
    its time (epoch seconds, UTC), ``rec.seek_time(when)`` finds an index. Snapshots come from
    a small LRU cache: treat them as read-only. Use as a context manager or call ``close()``."""

    def __init__(self, paths: Sequence[Path], cache_size: int = 64) -> None:
        self.paths: list[Path] = list(paths)
        self.warnings: list[str] = []
        self.times = array("d")
        self._seg = array("H")
        self._off = array("Q")
        self._len = array("I")
        self._lineno = array("I")
        self._sources: list = []
        self._cache: OrderedDict[int, Snapshot] = OrderedDict()
        self._cache_size = max(1, cache_size)
        self._dropped = 0
        try:
            for seg, path in enumerate(self.paths):
                self._index(seg, path)
        except BaseException:
            self.close()
            raise
        if self._dropped:
            self.warnings.append(f"... and {self._dropped} more skipped lines")
        if not len(self.times):
            self.close()
            names = ", ".join(str(p) for p in self.paths)
            why = self._why_empty or "it holds no snapshots"
            raise RecordingError(f"{names} is not a gpuwatch recording: {why}")
        t = self.times
        self.monotonic = all(t[i] <= t[i + 1] for i in range(len(t) - 1))

    _why_empty: str | None = None

    def _warn(self, text: str) -> None:
        if len(self.warnings) < _MAX_WARNINGS:
            self.warnings.append(text)
        else:
            self._dropped += 1

    def _index(self, seg: int, path: Path) -> None:
        src = _open_source(path)
        self._sources.append(src)
        before = len(self.times)
        lineno = 0
        try:
            for off, length, head, last, whole in _lines(src.chunks()):
                lineno += 1
                if not length:
                    continue  # a blank line
                if not whole:
                    self._warn(f"{path}: line {lineno} is cut short (the recorder stopped mid-write); skipped")
                    if self._why_empty is None and lineno == 1 and head.startswith(PREFIX):
                        self._why_empty = "its only line is cut short"
                    continue
                t, why = _line_time(head, last)
                if t is None:
                    if lineno == 1 and len(self.times) == before and self._why_empty is None:
                        self._why_empty = f"line 1 {why}"
                    self._warn(f"{path}: line {lineno} {why}; skipped")
                    continue
                self.times.append(t)
                self._seg.append(seg)
                self._off.append(off)
                self._len.append(length)
                self._lineno.append(lineno)
        except UnicodeError as e:  # pragma: no cover - heads are parsed as bytes
            raise RecordingError(f"{path}: {e}") from None
        except OSError as e:
            raise RecordingError(f"cannot read {path}: {e.strerror or e}") from None
        for w in src.warnings:
            self._warn(w)
        if getattr(src, "unterminated", False) and len(self.times) > before:
            self.warnings.append(f"{path}: the gzip stream has no end (the recorder did not exit cleanly "
                                 f"or is still recording); every whole line was read")
        if len(self.times) == before and lineno and self._why_empty is None:
            self._why_empty = "no line is a schema v1 snapshot"

    # ---- access ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.times)

    def _index_of(self, i: int) -> int:
        n = len(self.times)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"snapshot {i} out of range (the recording has {n})")
        return i

    def raw_line(self, i: int) -> bytes:
        """The JSON text of snapshot ``i`` (without the newline)."""
        i = self._index_of(i)
        src = self._sources[self._seg[i]]
        try:
            return src.read(self._off[i], self._len[i])
        except (OSError, zlib.error) as e:
            raise RecordingError(f"cannot read {self.where(i)}: {e}") from None

    def raw(self, i: int) -> dict:
        """Snapshot ``i`` as the schema-v1 dict."""
        text = self.raw_line(i)
        try:
            d = json.loads(text)
        except ValueError as e:  # bad UTF-8 too (UnicodeDecodeError is a ValueError)
            raise RecordingError(f"{self.where(i)} is not valid JSON ({str(e)[:120]})") from None
        except RecursionError:
            raise RecordingError(f"{self.where(i)} is nested too deeply to be a snapshot") from None
        if not isinstance(d, dict):
            raise RecordingError(f"{self.where(i)} is not a JSON object")
        return d

    def __getitem__(self, i: int) -> Snapshot:
        i = self._index_of(i)
        snap = self._cache.get(i)
        if snap is not None:
            self._cache.move_to_end(i)
            return snap
        try:
            snap = Snapshot.from_dict(self.raw(i))
        except (TypeError, ValueError, AttributeError, RecursionError) as e:
            raise RecordingError(f"{self.where(i)} is not a schema v1 snapshot ({str(e)[:120]})") from None
        self._cache[i] = snap
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return snap

    def __iter__(self) -> Iterator[Snapshot]:
        for i in range(len(self)):
            yield self[i]

    def where(self, i: int) -> str:
        """``path line N`` of snapshot ``i``, for messages."""
        i = self._index_of(i)
        return f"{self.paths[self._seg[i]]} line {self._lineno[i]}"

    def time(self, i: int) -> datetime:
        return datetime.fromtimestamp(self.times[self._index_of(i)], tz=timezone.utc)

    @property
    def start(self) -> datetime:
        return self.time(0)

    @property
    def end(self) -> datetime:
        return self.time(-1)

    def seek_time(self, when) -> int:
        """The index of the last snapshot taken at or before ``when`` (a datetime -- naive
        means UTC --, an ISO string, or epoch seconds); 0 when ``when`` precedes them all."""
        t = _to_epoch(when)
        if self.monotonic:
            i = bisect.bisect_right(self.times, t) - 1
        else:  # the clock stepped back somewhere: the snapshot before the first later one
            i = next((k for k, x in enumerate(self.times) if x > t), len(self.times)) - 1
        return max(0, i)

    def close(self) -> None:
        for s in self._sources:
            s.close()
        self._sources = []
        self._cache.clear()

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_recording(path: str | os.PathLike | Sequence[str | os.PathLike], *, rotated: bool = False,
                   cache_size: int = 64) -> Recording:
    """Open a recording: one file (plain or gzip), a list of files read in order, or with
    ``rotated=True`` the file together with its rotated predecessors (``rec.000001.ndjson.gz``,
    ...) oldest first. Raises :class:`RecordingError` (one line) for a file that cannot be read
    or holds no snapshot; skipped lines are listed in ``rec.warnings``."""
    if isinstance(path, (str, os.PathLike)):
        paths = [Path(path)]
        if rotated:
            paths = [p for _, p in rotated_siblings(path)] + ([paths[0]] if paths[0].exists() else [])
            if not paths:
                raise RecordingError(f"cannot open {path}: no such file, and no rotated files beside it")
    else:
        paths = [Path(p) for p in path]
        if not paths:
            raise RecordingError("no recording files given")
    return Recording(paths, cache_size=cache_size)
