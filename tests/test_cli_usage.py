"""How gpuwatch is called (issue 15, items 10 and 11): real subprocesses, as a user types it."""

from __future__ import annotations

import time

import pytest

from _instances_servers import free_port
from conftest import run_cli


def test_demo_before_a_command_is_the_default_scenario():
    r = run_cli("--demo", "doctor", timeout=120)
    assert r.returncode in (0, 1) and "PASS" in r.stdout and "scenario" not in r.stderr, r.stderr
    r = run_cli("--demo", "snapshot", "--text", timeout=120)
    assert r.returncode == 0 and "GPU" in r.stdout, r.stderr


@pytest.mark.parametrize("args, words", [
    (["--theme", "nosuch", "--demo"], "unknown theme 'nosuch'"),
    (["--backend", "http://", "--demo"], "no host"),
    (["--backend", "http://127.0.0.1:99999", "--demo"], "invalid URL"),
    (["snapshot", "--size", "80x24", "--demo"], "--size is the size of the picture drawn by --svg"),
    (["snapshot", "--svg", "x.svg", "--theme", "nosuch", "--demo"], "unknown theme"),
])
def test_wrong_values_are_one_line_and_exit_2(args, words):
    r = run_cli(*args, timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert words in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_bench_against_a_closed_port_names_the_server():
    port = free_port()
    r = run_cli("bench", f"http://127.0.0.1:{port}", timeout=60)
    assert r.returncode == 1
    assert f"127.0.0.1:{port}" in r.stderr and "?" not in r.stderr.split(":")[0] and "connection refused" in r.stderr


def test_without_a_terminal_the_dashboard_says_so_and_exits_2(tmp_path):
    out = tmp_path / "out.txt"
    start = time.monotonic()
    import subprocess
    import sys
    from conftest import ROOT
    with open(out, "w") as f, open("/dev/null") as devnull:
        p = subprocess.run([sys.executable, "-m", "gpuwatch", "--demo"], stdin=devnull, stdout=f,
                           stderr=subprocess.PIPE, text=True, timeout=60, cwd=ROOT,
                           env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 2
    assert "needs a terminal" in p.stderr and "snapshot" in p.stderr and "record" in p.stderr
    assert p.stderr.count("\n") == 1
    assert out.read_text() == ""  # no escape codes written into the file
    assert time.monotonic() - start < 30
