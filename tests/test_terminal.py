"""The dashboard in a real pseudo-terminal: SIGHUP (SSH drop) ends it promptly, NO_COLOR is
respected, and `q` quits."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

import psutil
import pytest

from conftest import ROOT


@contextmanager
def pty_process(argv, env, cols=100, rows=30):
    """``python ARGV`` on a pty of cols x rows with ``env``: (process, master fd); killed and
    closed after."""
    master, slave = pty.openpty()
    import fcntl
    import struct
    import termios
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen([sys.executable, *argv], stdin=slave, stdout=slave, stderr=slave,
                            env=env, cwd=ROOT, start_new_session=True)
    os.close(slave)
    try:
        yield proc, master
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        try:
            os.close(master)  # a test may have closed it already (the terminal went away)
        except OSError:
            pass


@contextmanager
def _dashboard(args, env_extra=None, cols=100, rows=30):
    """The dashboard on a pty of cols x rows: (process, master fd); killed and closed after."""
    env = dict(os.environ, TERM="xterm-256color", PYTHONPATH=str(ROOT), COLUMNS=str(cols), LINES=str(rows))
    env.pop("NO_COLOR", None)
    env.update(env_extra or {})
    with pty_process(["-m", "gpuwatch", *args], env, cols, rows) as got:
        yield got


def read_until(master, needles: tuple[bytes, ...], timeout: float = 30.0, out: bytes = b"") -> bytes:
    """What the terminal received (after ``out``), until every needle is in it or ``timeout``."""
    end = time.time() + timeout
    while time.time() < end and not all(n in out for n in needles):
        r, _, _ = select.select([master], [], [], 0.1)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    return out


def _read_until(master, needle: bytes, timeout: float) -> bytes:
    return read_until(master, (needle,), timeout)


def _wait_exit(proc, timeout):
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
def test_hangup_or_term_ends_the_dashboard_promptly(sig):
    with _dashboard(["--demo", "--no-discover"]) as (proc, master):
        out = _read_until(master, b"H100", 20)
        assert b"H100" in out, out[-500:]
        os.close(master)  # the terminal goes away, as when the SSH connection drops
        start = time.time()
        proc.send_signal(sig)
        code = _wait_exit(proc, 5)
        assert code is not None, "still running 5 s after the hangup"
        assert time.time() - start < 5


def test_no_orphan_spins_after_hangup_even_if_exit_is_slow():
    """After SIGHUP the process must be gone (not spinning at 100 % CPU on a dead terminal)."""
    with _dashboard(["--demo", "--no-discover"]) as (proc, master):
        _read_until(master, b"H100", 20)
        os.close(master)
        proc.send_signal(signal.SIGHUP)
        assert _wait_exit(proc, 5) is not None
        assert not psutil.pid_exists(proc.pid) or psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE


def test_q_quits_and_no_color_is_respected():
    with _dashboard(["--demo", "--no-discover"], env_extra={"NO_COLOR": "1"}) as (proc, master):
        out = _read_until(master, b"H100", 20)
        assert b"H100" in out
        out += _read_until(master, b"\x00never", 1.0)
        # NO_COLOR: no foreground/background colour sequences at all
        assert b"\x1b[38;" not in out and b"\x1b[48;" not in out
        os.write(master, b"q")
        assert _wait_exit(proc, 10) == 0


def test_256_colour_terminal_gets_colour():
    env = {"TERM": "xterm-256color", "COLORTERM": ""}
    with _dashboard(["--demo", "--no-discover"], env_extra=env) as (proc, master):
        out = _read_until(master, b"H100", 20)
        out += _read_until(master, b"\x00never", 1.0)
        assert b"\x1b[38;5;" in out  # 256-colour sequences, not truecolor
        os.write(master, b"q")
        _wait_exit(proc, 10)
