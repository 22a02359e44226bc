"""Files the user names (config, themes, recordings) are read only when they are regular files:
a FIFO would block for ever, ``/dev/zero`` never ends, a directory is not a file. Each refusal
is one line naming the file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

# a config or theme file is a few KB; beyond this it is not one
MAX_SMALL_FILE = 1024 * 1024


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def regular_file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as a file (one phrase), or None when it is a regular file
    (or does not exist: opening it then says so)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"cannot be read: {e.strerror or e}"
    if stat.S_ISREG(mode):
        return None
    return f"is {_kind(mode)}, not a regular file"


def read_small_file(path: str | os.PathLike, limit: int = MAX_SMALL_FILE) -> bytes:
    """The bytes of a small regular file; OSError or ValueError (one line) otherwise."""
    why = regular_file_problem(path)
    if why:
        raise ValueError(f"{path} {why}")
    # O_NONBLOCK: should the file have been swapped for a FIFO since the check, open() still
    # returns at once
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path} is larger than {limit // 1024} KiB: not a gpuwatch file")
    return data


__all__ = ["MAX_SMALL_FILE", "Path", "read_small_file", "regular_file_problem"]
