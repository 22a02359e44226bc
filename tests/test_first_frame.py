"""The dashboard's first frame (issue 16): the GPUs are drawn before anything they do not need
is imported or asked. Run as a real process in a pseudo-terminal on the compiled NVML stand-in,
asserted on what is imported when the first frame with GPUs goes out and on what the screen
shows, never on time; and the deferred server collector (runtime.LaterInstances) on its own."""

from __future__ import annotations

import json
import os
import textwrap
import threading
import time
from contextlib import contextmanager

import pytest

from _instances_servers import HANG, FakeServer
from conftest import ROOT
from test_terminal import pty_process, read_until
from gpuwatch.runtime import LaterInstances

# Modules the first frame does not need: the server collector (httpx and what its import pulls
# in: click, rich's console through httpx's CLI), metrics parsing, the charts, nginx's parser,
# the simulator, and the screens a key opens.
NOT_IN_FIRST_FRAME = ("httpx", "httpcore", "click", "prometheus_client", "plotext", "crossplane", "aiohttp",
                      "gpuwatch.collect.instances", "gpuwatch.collect.engines", "gpuwatch.analysis.doctor",
                      "gpuwatch.sim.demo", "gpuwatch.frontends.tui.screens", "gpuwatch.frontends.exporter")

# `gpuwatch ARGS`, noting sys.modules when the first frame that shows a GPU card is sent
RUNNER = textwrap.dedent("""
    import json, os, sys
    from gpuwatch.frontends.tui import app as A

    shown = A.GpuWatchApp.post_display_hook

    def post_display_hook(self):
        out = os.environ["FIRST_FRAME_MODULES"]
        if not os.path.exists(out) and any(c.region for c in self.query(A.GpuCard)):
            with open(out, "w") as f:
                json.dump(sorted(sys.modules), f)
        shown(self)

    A.GpuWatchApp.post_display_hook = post_display_hook
    from gpuwatch.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.fixture(scope="module")
def cnvml(tmp_path_factory):
    from gpuwatch.sim import cnvml

    if cnvml.compiler() is None:
        pytest.skip("no C compiler (cc/gcc/clang) on this machine: the NVML stand-in cannot be built")
    return cnvml.build(tmp_path_factory.mktemp("cnvml"))


@contextmanager
def dashboard(cnvml, argv, env_extra=None, cols=200, rows=60):
    """The dashboard on the stand-in's 8 H100s, in a pty of cols x rows: (process, master fd)."""
    from gpuwatch.sim import cnvml as stand_in

    env = stand_in.environment(cnvml)  # this process's environment with the stand-in's variables
    env.update(TERM="xterm-256color", PYTHONPATH=str(ROOT), **(env_extra or {}))
    with pty_process(argv, env, cols, rows) as got:
        yield got


def quit_and_wait(proc, master) -> int | None:
    """Press q and read the terminal until the process has exited (a full pty would block it)."""
    os.write(master, b"q")
    end = time.time() + 20
    while time.time() < end and proc.poll() is None:
        read_until(master, (b"\x00never",), timeout=0.2)
    return proc.poll()


def vllm_server() -> FakeServer:
    return FakeServer({"/version": '{"version": "0.11.0"}',
                       "/metrics": 'vllm:num_requests_running{model_name="m"} 3\n'
                                   'vllm:num_requests_waiting{model_name="m"} 0\n'})


def test_the_first_frame_imports_nothing_the_gpus_do_not_need_and_the_server_follows(cnvml, tmp_path):
    server = vllm_server()
    modules = tmp_path / "modules.json"
    try:
        with dashboard(cnvml, ["-c", RUNNER, "--backend", server.url, "--no-discover", "--interval", "1"],
                       {"FIRST_FRAME_MODULES": str(modules)}) as (proc, master):
            out = read_until(master, (b"H100",))
            assert b"H100" in out, out[-500:]
            # the server is still shown: its collector starts once the GPUs are on screen
            card = (f"localhost:{server.port}".encode(), b"vLLM")
            out = read_until(master, card, out=out)
            assert all(c in out for c in card), out[-800:]
            quit_and_wait(proc, master)
    finally:
        server.close()
    loaded = set(json.loads(modules.read_text()))
    assert "gpuwatch.collect.nvml" in loaded  # (the record is of the dashboard's process)
    assert sorted(m for m in NOT_IN_FIRST_FRAME if m in loaded) == []


def test_the_demos_first_frame_waits_for_no_http_stack_and_its_servers_follow(tmp_path):
    """`gpuwatch --demo`, the README's first command: the simulated box's servers are found by
    the deferred collector like real ones, so the first frame imports none of the HTTP stack (the
    simulator's servers module once pulled it in through the instance collector: ~0.6 s more
    before the first frame), and the servers' cards come afterwards."""
    modules = tmp_path / "modules.json"
    env = dict(os.environ, TERM="xterm-256color", PYTHONPATH=str(ROOT), FIRST_FRAME_MODULES=str(modules),
               COLUMNS="200", LINES="60")  # (a worker's COLUMNS/LINES would override the pty's size)
    with pty_process(["-c", RUNNER, "--demo", "--interval", "1"], env, 200, 60) as (proc, master):
        out = read_until(master, (b"H100",))
        assert b"H100" in out, out[-500:]
        out = read_until(master, (b"vLLM", b"SGLang"), out=out)  # the simulated servers' cards
        assert b"vLLM" in out and b"SGLang" in out, out[-800:]
        quit_and_wait(proc, master)
    loaded = set(json.loads(modules.read_text()))
    assert "gpuwatch.sim.demo" in loaded  # (the record is of the demo's process)
    http = ("aiohttp", "httpx", "httpcore", "prometheus_client", "gpuwatch.collect.instances", "gpuwatch.collect.engines")
    assert sorted(m for m in http if m in loaded) == []


def test_the_first_frame_shows_the_gpus_while_every_server_hangs(cnvml):
    """Servers that accept the connection and never answer: the GPUs come first, the servers'
    panel says it is still looking, and the servers are shown (not answering) afterwards."""
    hung = [FakeServer(default=HANG) for _ in range(2)]
    names = tuple(f"localhost:{s.port}".encode() for s in hung)
    try:
        with dashboard(cnvml, ["-m", "gpuwatch", *[a for s in hung for a in ("--backend", s.url)], "--no-discover",
                               "--interval", "1"]) as (proc, master):
            looking = b"looking for inference servers"
            out = read_until(master, (b"H100", looking, *names))
            assert all(n in out for n in (b"H100", looking, *names)), out[-800:]
            # the GPUs and "looking for inference servers" came first, the servers' names later
            # (drawn when their polls gave up): the first frame did not wait for them
            first_name = min(out.index(n) for n in names)
            assert out.index(b"H100") < first_name and out.index(looking) < first_name
            assert all(s.requests for s in hung)  # they were asked (and never answered)
            assert quit_and_wait(proc, master) == 0
    finally:
        for s in hung:
            s.close()


class _Collector:
    """Stands in for the InstanceCollector a LaterInstances builds."""

    def __init__(self) -> None:
        self.notes, self.probed, self.benches, self.closed = ["a note"], None, [], False

    first_pending = False

    def collect(self):
        return ["instance"]

    def collect_nowait(self):
        return ["instance (no wait)"]

    def probe(self, urls) -> None:
        self.probed = list(urls)

    def record_bench(self, name, result) -> None:
        self.benches.append((name, result))

    def wake(self) -> None:
        self.woken = getattr(self, "woken", 0) + 1

    def close(self) -> None:
        self.closed = True


def _later(go: threading.Event, max_wait_s: float = 60) -> tuple[LaterInstances, list[_Collector]]:
    """A LaterInstances over stand-in collectors, and the list of those it built."""
    built: list[_Collector] = []
    return LaterInstances(lambda: built.append(_Collector()) or built[-1], go, max_wait_s=max_wait_s), built


def test_servers_wait_for_the_go_and_keep_what_was_asked_of_them_meanwhile():
    go = threading.Event()
    later, built = _later(go)
    got: list = []
    worker = threading.Thread(target=lambda: got.append(later.collect()))
    worker.start()
    later.probe(["http://127.0.0.1:8001"])  # nginx's members, found before the go
    later.record_bench("localhost:8001", "result")
    worker.join(0.2)
    assert worker.is_alive() and not built and later.notes == []  # nothing built before the go
    go.set()
    worker.join(10)
    assert got == [["instance"]] and len(built) == 1
    assert built[0].probed == ["http://127.0.0.1:8001"] and built[0].benches == [("localhost:8001", "result")]
    assert later.notes == ["a note"]
    later.close()
    assert built[0].closed


def test_the_dashboard_s_ticks_get_nothing_before_the_go_without_waiting_for_it():
    """collect_nowait() on the ticking thread: nothing, and still pending, until the go (or
    ``max_wait_s``); then the collector is built and read, with what was asked meanwhile."""
    go = threading.Event()
    later, built = _later(go)
    got: list = []
    worker = threading.Thread(target=lambda: got.append(later.collect_nowait()))
    worker.start()
    worker.join(10)
    assert not worker.is_alive() and got == [[]]  # returned at once, with the go not given
    assert later.first_pending and not built
    later.probe(["http://127.0.0.1:8001"])
    go.set()
    assert later.collect_nowait() == ["instance (no wait)"] and not later.first_pending
    assert len(built) == 1 and built[0].probed == ["http://127.0.0.1:8001"]
    later.close()
    # without a go, max_wait_s after the first call, the collector is built anyway
    late, built = _later(threading.Event(), max_wait_s=0.2)
    assert late.collect_nowait() == []
    deadline = time.monotonic() + 30
    while late.collect_nowait() != ["instance (no wait)"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    late.close()


def test_quitting_before_the_first_frame_builds_no_server_collector():
    built: list = []
    later = LaterInstances(lambda: built.append(1), threading.Event(), max_wait_s=60)
    got: list = []
    worker = threading.Thread(target=lambda: got.append(later.collect()))
    worker.start()
    later.close()  # q before the first frame: the waiting poll ends at once, with nothing
    worker.join(10)
    assert not worker.is_alive() and got == [[]] and built == []


def test_the_deferred_collector_answers_all_a_sampler_asks_of_a_server_collector():
    # every tick whose GPUs got busier calls wake(): a method missing here failed those ticks
    # ("collector error" on screen, and a layout pass of the whole screen each time it came and went)
    from gpuwatch.pipeline import InstanceSource

    asked = {name for name, value in vars(InstanceSource).items() if callable(value) and not name.startswith("_")}
    assert asked and all(callable(getattr(LaterInstances, name, None)) for name in asked)
    go = threading.Event()
    later, built = _later(go)
    later.wake()  # before the go: nothing to wake, and no error
    go.set()
    assert later.collect() == ["instance"]
    later.wake()
    assert built[0].woken == 1
    later.close()


class _Monitor:
    """Stands in for the Monitor behind a LiveSource: ``tick()`` waits for ``go``."""

    def __init__(self, snap, go: threading.Event | None = None, error: Exception | None = None) -> None:
        self.snap, self.go, self.error, self.ticks = snap, go, error, 0

    def tick(self):
        self.ticks += 1
        if self.go is not None:
            self.go.wait(30)
        if self.error is not None:
            raise self.error
        return self.snap


def test_the_first_snapshot_is_handed_over_once_and_only_when_it_is_there():
    from gpuwatch.frontends.sources import LiveSource
    from gpuwatch.model import Snapshot

    snap = Snapshot(time="2026-12-02T00:00:00.000Z", host="box")
    go = threading.Event()
    src = LiveSource(_Monitor(snap, go))
    src.start()
    assert src.first_if_ready(0.05) is None  # not taken yet: the caller polls as usual
    go.set()
    assert src.first_if_ready(10) is snap
    assert src.first_if_ready(10) is None  # handed over once; next() takes a new one
    assert src.next() is snap and src.monitor.ticks == 2
    # a first snapshot that failed is not handed over: next() raises its error, as a poll would
    failing = LiveSource(_Monitor(snap, error=RuntimeError("NVML: driver not loaded")))
    failing.start()
    assert failing.first_if_ready(10) is None
    with pytest.raises(RuntimeError, match="driver not loaded"):
        failing.next()


async def test_the_first_frame_draws_the_first_snapshot_without_waiting_for_a_poll():
    from conftest import until
    from gpuwatch.frontends.tui.app import GpuWatchApp
    from gpuwatch.frontends.tui.widgets import GpuCard
    from test_dashboard import FakeSource, make_snapshot, visible_text

    never = threading.Event()  # every poll hangs: only the snapshot taken early can be drawn

    class Early(FakeSource):
        def first_if_ready(self, wait_s):
            first, self.first = getattr(self, "first", make_snapshot()), None
            return first

    src = Early(lambda n: never.wait(30) and None)
    frames: list[str] = []
    app = GpuWatchApp(src, interval=0.05, on_first_frame=lambda: frames.append(visible_text(app)))
    try:
        async with app.run_test(size=(200, 60)) as pilot:
            await until(pilot, lambda: frames, "no first frame")
            assert "GPU 7" in frames[0] and len(app.query(GpuCard)) == 8
    finally:
        never.set()
