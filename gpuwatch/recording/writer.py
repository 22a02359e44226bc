"""Writing recordings: snapshots on a steady cadence into an NDJSON file, losing nothing.

Guarantees (tests/test_record*.py hold them):

* Each snapshot is one line handed to the kernel by a single ``write`` of its complete bytes,
  with no user-space buffer, so a ``kill -9`` or a crash loses at most the line in progress.
  In a ``.gz`` file each line is followed by a zlib sync flush: any prefix of the file
  decompresses to every finished line, and a clean exit ends the gzip stream properly.
* SIGTERM, SIGINT and SIGHUP finish the line in progress (they are only acted on between
  lines) and exit 0. One the parent ignores stays ignored (``nohup`` keeps recording).
* A failed write (disk full, I/O error) truncates the file back to the end of the last whole
  line, prints one line and exits 1; earlier lines are never touched.
* An existing file is never clobbered: without ``--append`` it is refused. ``--append``
  adds to a plain file (after a cut last line it first ends that line, so the reader skips
  just it); appending to a gzip file is refused (record into a new file, or use rotation).
* ``--rotate-mb MB``: once the file reaches MB MiB it is renamed ``STEM.NNNNNN.EXT`` (the next
  sequence number, e.g. ``rec.000003.ndjson.gz``) and a new file is started; the newest
  ``--keep`` rotated files are kept beside the current one.
"""

from __future__ import annotations

import fcntl
import os
import stat
import time
import zlib
from pathlib import Path
from typing import Callable

from ..model import Snapshot
from .format import encode_snapshot, is_gzip_name, rotated_name, rotated_siblings


class RecordError(Exception):
    """A recording that cannot go on (bad path, disk full), worded for a one-line message."""


def _why(e: OSError) -> str:
    return e.strerror or str(e)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class LineFile:
    """One open recording file that takes whole lines: plain, or gzip with a sync flush per line."""

    def __init__(self, path: Path, append: bool = False, level: int = 6) -> None:
        self.path = Path(path)
        self.gzip = is_gzip_name(self.path)
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        if not append:
            flags |= os.O_EXCL
        if self.path.is_dir():
            raise RecordError(f"cannot create {self.path}: Is a directory")
        try:
            self.fd: int | None = os.open(self.path, flags, 0o644)
        except FileExistsError:
            raise RecordError(f"{self.path} already exists: pass --append to add to it, or choose another "
                              f"name") from None
        except OSError as e:
            raise RecordError(f"cannot create {self.path}: {_why(e)}") from None
        try:
            self._lock()
            st = os.fstat(self.fd)
            self.regular = stat.S_ISREG(st.st_mode)
            self.size = st.st_size if self.regular else 0
            self.created = not append or self.size == 0
            self._z = None
            if self.gzip and self.size:
                raise RecordError(f"{self.path} already holds data and appending to a gzip recording is not "
                                  f"supported: record into a new file")
            if self.gzip:
                self._z = zlib.compressobj(level, zlib.DEFLATED, 31)
            if self.size and os.pread(self.fd, 1, self.size - 1) != b"\n":
                self._raw_write(b"\n")  # end a cut last line, so the new lines stay whole
        except OSError as e:
            self._close_fd()
            raise RecordError(f"cannot write to {self.path}: {_why(e)}") from None
        except RecordError:
            self._close_fd()
            raise

    def _lock(self) -> None:
        """One recorder per file: two appending to one file would interleave and, on a full
        disk, truncate each other's lines. An advisory lock held while the file is open; a
        second ``gpuwatch record`` is refused (the lock goes with the process, kill -9 too)."""
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RecordError(f"{self.path} is being written by another gpuwatch record: stop that one first, or "
                              f"record into another file") from None
        except OSError:
            pass  # a file system without locks (some network mounts): record all the same

    def _raw_write(self, data: bytes) -> None:
        good = self.size
        try:
            _write_all(self.fd, data)
        except OSError:
            self._truncate(good)
            raise
        self.size += len(data)

    def _truncate(self, size: int) -> None:
        """Cut what a failed write left after ``size``, but only back to a line end that is in
        the file: the byte before ``size`` must be the newline this recorder wrote (in a gzip
        file, ``size`` is the end of a sync-flushed line). Anything else -- the file shorter
        than we think, another writer's bytes -- is left alone."""
        if self.regular:
            try:
                actual = os.fstat(self.fd).st_size
                at_line_end = size == 0 or self.gzip or os.pread(self.fd, 1, size - 1) == b"\n"
                if actual > size and at_line_end:
                    os.ftruncate(self.fd, size)
                    actual = size
                size = actual
            except OSError:
                pass
        self.size = size

    def write(self, line: bytes) -> None:
        """Append one whole line (ending in a newline) or raise RecordError, leaving the file
        as it was before the call."""
        if self._z is not None:
            saved = self._z.copy()  # the compressor as it was, to end the stream after a failure
            data = self._z.compress(line) + self._z.flush(zlib.Z_SYNC_FLUSH)
        else:
            saved, data = None, line
        try:
            self._raw_write(data)
        except OSError as e:
            if saved is not None:
                self._z = saved
            raise RecordError(f"cannot write to {self.path}: {_why(e)}; it holds every snapshot before "
                              f"this one") from None

    def close(self) -> None:
        """End the gzip stream and close; raises RecordError if the end could not be written
        (the file still holds every line: readers handle a stream without an end)."""
        if self.fd is None:
            return
        try:
            if self._z is not None:
                z, self._z = self._z, None
                try:
                    self._raw_write(z.flush(zlib.Z_FINISH))
                except OSError as e:
                    raise RecordError(f"cannot finish {self.path}: {_why(e)}; it holds every snapshot") from None
            if self.regular:
                try:
                    os.fsync(self.fd)
                except OSError:
                    pass
        finally:
            self._close_fd()

    def _close_fd(self) -> None:
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None


class RecordingWriter:
    """Whole lines into ``path``, rotating by size when asked."""

    def __init__(self, path: str | os.PathLike, append: bool = False, rotate_bytes: int | None = None,
                 keep: int = 10) -> None:
        self.path = Path(path)
        self.rotate_bytes = rotate_bytes
        self.keep = keep
        self.bytes_written = 0
        self.lines = 0
        self.rotations = 0
        self.warnings: list[str] = []
        self.file: LineFile | None = LineFile(self.path, append=append)

    def write(self, line: bytes) -> None:
        if self.rotate_bytes and self.file.size >= self.rotate_bytes:
            self.rotate()  # only when a line comes: no empty file is left at the end
        f = self.file
        before = f.size
        f.write(line)
        self.bytes_written += f.size - before
        self.lines += 1

    def rotate(self) -> None:
        f, self.file = self.file, None
        f.close()
        seq = max((s for s, _ in rotated_siblings(self.path)), default=0) + 1
        target = rotated_name(self.path, seq)
        try:
            os.rename(self.path, target)
        except OSError as e:
            raise RecordError(f"cannot rotate {self.path} to {target.name}: {_why(e)}") from None
        self.rotations += 1
        self.prune()
        self.file = LineFile(self.path, append=False)

    def prune(self) -> None:
        old = rotated_siblings(self.path)
        for _, p in old[: max(0, len(old) - self.keep)]:
            try:
                p.unlink()
            except OSError as e:
                self.warnings.append(f"cannot remove old recording {p}: {_why(e)}")

    def close(self, discard_if_empty: bool = False) -> None:
        """Finish the file; with ``discard_if_empty``, a file this run created and never wrote
        a line to is removed instead (no empty file blocks the next run)."""
        f, self.file = self.file, None
        if f is None:
            return
        if discard_if_empty and f.created and f.regular and self.lines == 0 and self.rotations == 0:
            f._close_fd()
            try:
                self.path.unlink()
            except OSError:
                pass
            return
        f.close()


class _Wake(Exception):
    """Raised by the signal handler, only while the recorder sleeps."""


class Recorder:
    """Sample, annotate, write; on a steady cadence: the k-th sample is due at ``t0 + k *
    interval`` (a late sample does not shift the rest; missed ticks are skipped)."""

    def __init__(self, sampler, writer: RecordingWriter, interval: float, count: int | None = None,
                 duration: float | None = None, analyze: Callable[[Snapshot], object] | None = None,
                 progress: Callable[[Recorder], None] | None = None, clock: Callable[[], float] = time.monotonic):
        self.sampler = sampler
        self.writer = writer
        self.interval = interval
        self.count = count
        self.duration = duration
        self.analyze = analyze
        self.progress = progress
        self.clock = clock
        self.stop_reason: str | None = None
        self.lines = 0
        self.started: float | None = None
        self._sleeping = False

    def request_stop(self, reason: str) -> None:
        """Safe from a signal handler: the line in progress is finished, no new one begun."""
        self.stop_reason = reason
        if self._sleeping:
            raise _Wake()

    def _sleep(self, seconds: float) -> None:
        try:
            self._sleeping = True
            if self.stop_reason is None:
                time.sleep(seconds)
        finally:
            self._sleeping = False

    def run(self) -> int:
        t0 = self.started = self.clock()
        k = 0
        try:
            while self.stop_reason is None:
                if self.count is not None and self.lines >= self.count:
                    break
                due = t0 + k * self.interval
                if self.duration is not None and due - t0 >= self.duration - 1e-9:
                    break
                delay = due - self.clock()
                if delay > 0:
                    self._sleep(delay)
                if self.stop_reason is not None:
                    break
                # the first snapshot waits for the inference servers' first answer
                snap = self.sampler.sample(wait_instances=self.lines == 0)
                if self.analyze is not None:
                    self.analyze(snap)
                self.writer.write(encode_snapshot(snap))
                self.lines += 1
                if self.progress is not None:
                    self.progress(self)
                k += 1
                late = self.clock() - (t0 + k * self.interval)
                if late > 0:  # sampling overran: skip to the next tick still ahead
                    k += int(late // self.interval) + 1
        except _Wake:
            pass
        return self.lines
