"""Shared fixtures: the simulated box with a clock the tests drive."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# stored SVG snapshots and colour assertions assume a colour terminal and the default theme
for var in ("NO_COLOR", "TEXTUAL_THEME", "FORCE_COLOR"):
    os.environ.pop(var, None)
# Children (`python -m gpuwatch ...`, servers) compile gpuwatch once per machine, not once each:
# their bytecode goes to a cache outside the tree (PYTHONDONTWRITEBYTECODE, set by .ci/run to keep
# the tree clean, would otherwise make every child compile every module it imports again).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ.setdefault("PYTHONPYCACHEPREFIX", os.path.join(tempfile.gettempdir(), f"gpuwatch-tests-pyc-{os.getuid()}"))


@pytest.fixture
def clock():
    from gpuwatch.sim.box import ManualClock
    return ManualClock()


@pytest.fixture
def servers():
    """A factory of loopback HTTP servers speaking an engine's format (closed after the test)."""
    from _instances_servers import FakeServer

    made = []

    def make(*args, **kw):
        s = FakeServer(*args, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


@pytest.fixture
def sim(clock, tmp_path):
    """A factory: sim("h100x8:hot") -> (box, lib, collector) on the manual clock (with the
    simulated box's /proc and /sys under tmp_path)."""
    from gpuwatch.collect.nvml import NvmlCollector
    from gpuwatch.sim.box import SimBox
    from gpuwatch.sim.host import write_host_tree
    from gpuwatch.sim.nvml import FakeNvmlLibrary, install, uninstall
    from gpuwatch.sim.scenarios import parse_scenario

    made = []

    def make(spec="h100x8", pcie_sample_s=0.0, process_table=None, **lib_kw):
        scenario, faults = parse_scenario(spec)
        box = SimBox(scenario, faults, clock)
        lib = install(FakeNvmlLibrary(box, pcie_sample_s=pcie_sample_s, **lib_kw))
        host = write_host_tree(lib, str(tmp_path / f"host{len(made)}"))
        collector = NvmlCollector(process_table=process_table or _NoProcs(), clock=clock.now, host=host)
        made.append(collector)
        return box, lib, collector

    yield make
    for c in made:
        c.close()
    uninstall()


class _NoProcs:
    """A process table that knows no pid (the simulated pids are not real processes)."""

    def info(self, pid):
        return None


def run_cli(*args, env=None, timeout=60, input=None):
    """Run `python -m gpuwatch ARGS` as a real subprocess from the repo root."""
    import subprocess
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    if env:
        e.update(env)
    return subprocess.run([sys.executable, "-m", "gpuwatch", *args], capture_output=True, text=True,
                          timeout=timeout, env=e, cwd=ROOT, input=input)


async def until(pilot, cond, what: str = "", timeout: float = 30.0, step: float = 0.02):
    """Let the app run until ``cond()`` holds: a wait on what the test needs to see, not on the
    clock (the bound only matters when the test fails; a loaded machine just takes longer)."""
    import time
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what() if callable(what) else (what or cond)}"
        await pilot.pause(step)


def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (pyproject.toml): two workers per CPU and one more, at most eight (each test
    may start servers). Half of a test's time is waiting on a server, a child process or a
    poll (per test: 222 s of CPU, its own and its children's, against 462 s of wall time summed
    on the 2-core VM), which the extra workers fill: the suite took 150-160 s with 3 workers,
    129 s with 4, 114-122 s with 5 (the CPU alone bounds it near 111 s on 2 cores)."""
    return max(2, min(2 * (os.cpu_count() or 1) + 1, 8))
