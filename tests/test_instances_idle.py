"""Idle servers are polled less often (instances.IDLE_BACKOFF_S), and a request that starts is
still seen promptly: within the back-off's cap at worst, at the next tick when a GPU gets busier.
Counted as the requests a test server received, on a simulated clock."""

from __future__ import annotations

import pytest

from gpuwatch.collect.instances import IDLE_BACKOFF_S, BackendConfig, InstanceCollector
from gpuwatch.model import GPU, Instance, Process
from gpuwatch.pipeline import Sampler

from _tables import StubServers


class Vllm:
    """A vLLM /metrics page whose running count and token counter the test sets."""

    def __init__(self) -> None:
        self.running = 0
        self.tokens = 1000.0

    def body(self, handler=None) -> str:
        return (f'vllm:num_requests_running{{model_name="m"}} {self.running}\n'
                f'vllm:num_requests_waiting{{model_name="m"}} 0\n'
                f'vllm:generation_tokens_total{{model_name="m"}} {self.tokens}\n')


@pytest.fixture
def idle_vllm(clock, servers):
    """(page state, server, collector) for one vLLM server on the simulated clock; closed after."""
    state = Vllm()
    srv = servers({"/metrics": state.body, "/version": {"version": "0.11.0"}})
    col = InstanceCollector([BackendConfig(url=srv.url, kind="vllm")], discover=False, clock=clock.now,
                            timeout_s=10.0, grace_s=10.0, prime_s=0.0)
    try:
        yield state, srv, col
    finally:
        col.close()


def _scrapes(srv) -> int:
    return sum(1 for r in srv.requests if r[1] == "/metrics")


def _tick(col, clock):
    clock.advance(1.0)
    return col.collect()[0]


def _idle_for(col, clock, ticks: int) -> None:
    """The first poll, then ``ticks`` one-second ticks with nothing running (backing off)."""
    col.collect()
    for _ in range(ticks):
        _tick(col, clock)


def test_an_idle_server_is_polled_less_often_and_a_request_starting_is_seen_within_the_cap(clock, idle_vllm):
    state, srv, col = idle_vllm
    _idle_for(col, clock, 30)
    idle = _scrapes(srv)
    # 31 ticks: polled at the first ticks, then every 2, 4, then 5 s
    assert idle <= 4 + 30 // int(IDLE_BACKOFF_S[-1]) + 1, idle
    state.running, state.tokens = 3, 1500.0  # a request starts
    seen_after = None
    for k in range(1, 10):
        if _tick(col, clock).requests_running == 3:
            seen_after = k
            break
    assert seen_after is not None and seen_after <= IDLE_BACKOFF_S[-1]
    before = _scrapes(srv)
    for _ in range(5):
        state.tokens += 100.0
        inst = _tick(col, clock)
    assert _scrapes(srv) - before == 5  # busy: every tick again
    assert abs(inst.generation_tokens_per_s - 100.0) < 1e-6  # per second, as ever


def test_a_rate_after_an_idle_gap_is_per_second_over_the_gap(clock, idle_vllm):
    """A short request that ends between two backed-off polls: its tokens over the whole gap,
    per second (not all of them in one second)."""
    state, srv, col = idle_vllm
    col.collect()
    last_poll = clock.now()
    for _ in range(12):  # idle: backed off to the cap
        n = _scrapes(srv)
        _tick(col, clock)
        if _scrapes(srv) > n:
            last_poll = clock.now()
    state.tokens += 500.0
    for _ in range(int(IDLE_BACKOFF_S[-1]) + 1):
        n = _scrapes(srv)
        inst = _tick(col, clock)
        if _scrapes(srv) > n:
            break
    gap = clock.now() - last_poll
    assert gap > 1.0
    assert abs(inst.generation_tokens_per_s - 500.0 / gap) < 1e-6


def test_wake_polls_an_idle_server_at_the_next_tick(clock, idle_vllm):
    state, srv, col = idle_vllm
    _idle_for(col, clock, 12)
    before = _scrapes(srv)
    quiet = [_scrapes(srv)]
    _tick(col, clock)
    quiet.append(_scrapes(srv))
    col.wake()
    state.running = 2
    assert _tick(col, clock).requests_running == 2
    assert _scrapes(srv) > quiet[-1] >= before


class _Reading:
    driver_version = cuda_version = nvml_version = error = pid_namespace = None

    def __init__(self, gpus) -> None:
        self.gpus = gpus


class _Nvml:
    def __init__(self) -> None:
        self.util = 0.0
        self.pids: list[int] = []
        self.memory = 2**20

    def collect(self):
        return _Reading([GPU(index=0, utilization_gpu_pct=self.util,
                             processes=[Process(pid=p, used_memory_bytes=self.memory) for p in self.pids])])

    def close(self) -> None:
        pass


class _Woken(StubServers):
    def __init__(self) -> None:
        self.wakes = 0

    def collect(self):
        return [Instance(name="i", kind="vllm", url="u", status="up")]

    def wake(self) -> None:
        self.wakes += 1


def test_the_sampler_wakes_the_servers_when_a_gpu_gets_busier_or_its_processes_change():
    """What the Sampler sees before any server answers: utilization rising, a process starting,
    a process's memory changing by a GiB (a model loaded). Each polls every server at once."""
    nvml, servers = _Nvml(), _Woken()
    s = Sampler(nvml=nvml, instances=servers, analyzers=[])
    try:
        s.sample(wait_instances=True)
        nvml.util = 4.0  # noise
        s.sample(wait_instances=True)
        assert servers.wakes == 0
        nvml.util = 60.0  # a request started somewhere
        s.sample(wait_instances=True)
        assert servers.wakes == 1
        nvml.util = 55.0  # busy, not busier
        s.sample(wait_instances=True)
        assert servers.wakes == 1
        nvml.pids = [4242]  # a new process on the GPU
        s.sample(wait_instances=True)
        assert servers.wakes == 2
        nvml.memory = 40 * 2**30  # it loaded a model
        s.sample(wait_instances=True)
        assert servers.wakes == 3
        s.sample(wait_instances=True)
        assert servers.wakes == 3
    finally:
        s.close()


def test_wake_does_not_wait_for_a_collect_held_up_by_a_hung_server(clock, servers):
    """The Sampler calls wake() on the GPU tick: it must return while a collect() waits for a
    server that does not answer (the GPU picture never waits for a server)."""
    import threading

    from _instances_servers import HANG

    srv = servers({"/metrics": HANG})
    col = InstanceCollector([BackendConfig(url=srv.url, kind="vllm")], discover=False, clock=clock.now,
                            timeout_s=60.0, prime_s=0.0)
    done = threading.Event()
    try:
        worker = threading.Thread(target=lambda: (col.collect(), done.set()), daemon=True)
        worker.start()
        assert srv.holds.wait_for(lambda h: h.now >= 1, timeout=30)  # the collect is waiting on it now
        col.wake()
        assert not done.is_set()  # wake() came back while the collect was still waiting
        srv.close()  # the hung request ends: the collect returns
        worker.join(30)
        assert done.is_set()
    finally:
        col.close()
