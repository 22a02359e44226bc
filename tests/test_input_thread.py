"""The dashboard's terminal input thread sleeps until a key arrives (frontends/tui/driver.py):
no wake-ups while nobody types, yet a lone Esc still goes back, q quits at once, and a
suspended (ctrl+z / SIGTSTP) and resumed dashboard still takes keys."""

from __future__ import annotations

import os
import signal
import time

import psutil

from conftest import ROOT
from test_terminal import pty_process, read_until

# run in the dashboard's process: log every select() of Textual's input thread (its timeout)
BOOT = """
import runpy, selectors, sys, threading, time
log = open(sys.argv[1], "a", buffering=1)
orig = selectors.SelectSelector.select
def select(self, timeout=None):
    if threading.current_thread().name == "textual-input":
        log.write("%.3f %s\\n" % (time.monotonic(), timeout))
    return orig(self, timeout)
selectors.SelectSelector.select = select
sys.argv = ["gpuwatch", *sys.argv[2:]]
runpy.run_module("gpuwatch", run_name="__main__", alter_sys=True)
"""


def _start(tmp_path):
    boot = tmp_path / "boot.py"
    boot.write_text(BOOT)
    log = tmp_path / "selects.log"
    env = dict(os.environ, TERM="xterm-256color", PYTHONPATH=str(ROOT), COLUMNS="120", LINES="40")
    env.pop("NO_COLOR", None)
    env.pop("TEXTUAL_DRIVER", None)
    return pty_process([str(boot), str(log), "--demo", "--no-discover"], env, 120, 40), log


def _selects(log, since: float, until: float) -> list[str]:
    out = []
    for line in log.read_text().splitlines():
        t, timeout = line.split()
        if since <= float(t) < until:
            out.append(timeout)
    return out


def _exit_code(proc, master, timeout: float):
    """The process's exit code, reading what it writes meanwhile (a terminal that stopped reading
    would block its last writes); None if it is still running after ``timeout``."""
    end = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < end:
        read_until(master, (b"\x00never",), 0.05)
    return proc.poll()


def test_the_input_thread_sleeps_while_nobody_types_and_esc_and_q_still_work(tmp_path):
    ctx, log = _start(tmp_path)
    with ctx as (proc, master):
        out = read_until(master, (b"H100",), 30)
        assert b"H100" in out, out[-500:]
        idle_from = time.monotonic()
        time.sleep(2.0)
        idle_to = time.monotonic()
        # Textual's own driver selects every 0.1 s: ~20 times in these two seconds
        idle = _selects(log, idle_from, idle_to)
        assert len(idle) <= 1 and set(idle) <= {"None"}, idle
        os.write(master, b"\r")  # the selected GPU's detail
        out = read_until(master, (b"thresholds",), 20)
        assert b"thresholds" in out, out[-800:]
        # a lone Esc is only an Esc once the parser's timeout for a longer sequence ran out:
        # the thread ticks for it, then the main screen (its top line) comes back
        os.write(master, b"\x1b")
        out = read_until(master, (b"demo-h100x8",), 20)
        assert b"demo-h100x8" in out, out[-800:]
        ticks = [t for t in _selects(log, idle_to, time.monotonic()) if t != "None"]
        assert ticks, "the Esc was read without waiting for a longer sequence"
        os.write(master, b"q")
        assert _exit_code(proc, master, 15) == 0


def test_a_suspended_and_resumed_dashboard_still_takes_keys(tmp_path):
    ctx, log = _start(tmp_path)
    with ctx as (proc, master):
        assert b"H100" in read_until(master, (b"H100",), 30)
        proc.send_signal(signal.SIGTSTP)  # ctrl+z in a shell: Textual leaves the terminal and stops
        p = psutil.Process(proc.pid)
        end = time.monotonic() + 15
        while p.status() != psutil.STATUS_STOPPED and time.monotonic() < end:
            read_until(master, (b"\x00never",), 0.05)  # the terminal keeps reading what it is sent
        assert p.status() == psutil.STATUS_STOPPED
        proc.send_signal(signal.SIGCONT)  # fg
        read_until(master, (b"H100",), 20)  # it draws again
        # (keys typed while it takes the terminal back may be flushed with the old input mode, as
        # a shell's are: the detail is asked for until it shows, a few times at most)
        out = b""
        for _ in range(4):
            os.write(master, b"\r")
            out = read_until(master, (b"thresholds",), 5)
            if b"thresholds" in out:
                break
        assert b"thresholds" in out, out[-800:]
        os.write(master, b"q")
        assert _exit_code(proc, master, 15) == 0
