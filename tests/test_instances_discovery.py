"""Discovery through the process table, deduplication, default-port probes, parallelism from
command lines, and the join of instances with the GPUs' processes."""

from __future__ import annotations

import pytest
from _instances_servers import Counters, fixture, free_port

from gpuwatch.analysis.groups import assign_gpus
from gpuwatch.collect.engines import ENGINES
from gpuwatch.collect.instances import BackendConfig, InstanceCollector, match_server_process
from gpuwatch.collect.procs import Listener, ProcInfo
from gpuwatch.model import GPU, Instance, Process, Snapshot


class FakeTable:
    """The ProcessTable interface over a dict of processes."""

    probe_default_ports = True
    discovered_source = "discovered"

    def server_name(self, pid):
        return None

    def __init__(self) -> None:
        self.procs: dict[int, ProcInfo] = {}
        self.kids: dict[int, list[int]] = {}
        self.listening: list[Listener] = []
        self.env: dict[int, dict[str, str]] = {}
        self.listener_calls = 0

    def add(self, pid, name, cmdline, ports=(), children=(), host="0.0.0.0", env=None):
        self.procs[pid] = ProcInfo(pid=pid, name=name, cmdline=list(cmdline))
        self.kids[pid] = list(children)
        for port in ports:
            self.listening.append(Listener(pid=pid, port=port, host="127.0.0.1" if host == "0.0.0.0" else host))
        if env:
            self.env[pid] = env

    def info(self, pid):
        return self.procs.get(pid)

    def processes(self):
        return [(p.pid, p.name, p.cmdline, 0.0) for p in self.procs.values()]

    def children(self, pid):
        return list(self.kids.get(pid, []))

    def listeners(self):
        self.listener_calls += 1
        return list(self.listening)

    def environ(self, pid):
        return self.env.get(pid)


def vllm_routes(clock):
    c = Counters(clock, gen=50.0)
    return {"/metrics": lambda h: f'vllm:generation_tokens_total{{model_name="m"}} {c.value("gen")}\n',
            "/version": {"version": "0.11.0"}}


def test_discovers_servers_by_process_name_and_cmdline(clock, servers):
    vllm = servers(vllm_routes(clock))
    ollama = servers({"/api/version": {"version": "0.12.6"}, "/api/ps": fixture("ollama-api-ps-docs.json")})
    runner = servers({"/health": "ok"})
    web = servers({"/": "hello"})
    table = FakeTable()
    table.add(100, "python3", ["/opt/vllm/bin/python3", "-m", "vllm.entrypoints.openai.api_server",
                               "--model", "m", "-tp=2", "--port", str(vllm.port)],
              ports=[vllm.port, free_port()], children=[110, 111])  # + an internal port: ignored
    table.add(200, "ollama", ["/usr/local/bin/ollama", "serve"], ports=[ollama.port], children=[201],
              env={"OLLAMA_HOST": f"0.0.0.0:{ollama.port}"})
    # the ollama runner listens too, but is not a server to poll
    table.add(201, "ollama", ["/usr/local/bin/ollama", "runner", "--model", "/x", "--port", str(runner.port)],
              ports=[runner.port])
    # a python web app that merely has "vllm" in an argument
    table.add(300, "python3", ["python3", "app.py", "--backend", "vllm"], ports=[web.port])
    with InstanceCollector([], discover=True, process_table=table, clock=clock.now, probe_ports=()) as col:
        col.collect()
        clock.advance(1.0)
        got = {i.kind: i for i in col.collect()}

    assert set(got) == {"vllm", "ollama"}
    v = got["vllm"]
    assert v.source == "discovered" and v.status == "up"
    assert v.name == f"vllm:{vllm.port}"
    assert v.pid == 100 and v.pids == [100, 110, 111]
    assert (v.parallelism, v.parallel_size) == ("tensor", 2)
    assert v.generation_tokens_per_s == pytest.approx(50.0, rel=0.02)
    o = got["ollama"]
    assert o.pid == 200 and o.pids == [200, 201] and o.models[0].name == "mistral:latest"


def test_configured_and_discovered_server_is_one_instance(clock, servers):
    vllm = servers(vllm_routes(clock))
    table = FakeTable()
    table.add(100, "vllm", ["/usr/bin/vllm", "serve", "m", "--port", str(vllm.port), "--pipeline-parallel-size", "2"],
              ports=[vllm.port], children=[110, 111])
    backends = [BackendConfig(url=f"localhost:{vllm.port}/", name="prod-vllm"),
                BackendConfig(url=f"http://[::1]:{vllm.port}")]  # the same server, spelled twice
    with InstanceCollector(backends, discover=True, process_table=table, clock=clock.now,
                           probe_ports=(vllm.port,)) as col:
        out = col.collect()
    assert len(out) == 1
    inst = out[0]
    assert inst.name == "prod-vllm" and inst.source == "configured" and inst.kind == "vllm"
    assert inst.pid == 100 and inst.pids == [100, 110, 111]  # GPU mapping works for configured URLs too
    assert (inst.parallelism, inst.parallel_size) == ("pipeline", 2)


def test_default_ports_are_probed_and_only_real_servers_listed(clock, servers):
    ollama = servers({"/api/version": {"version": "0.5.1"}, "/api/ps": {"models": []}})
    web = servers({"/": "<html>a dev server</html>"})
    closed = free_port()
    table = FakeTable()  # no listener info (e.g. not allowed to see other users' sockets)
    with InstanceCollector([], discover=True, process_table=table, clock=clock.now,
                           probe_ports=(ollama.port, web.port, closed)) as col:
        out = col.collect()
    assert [(i.name, i.kind, i.source, i.status) for i in out] == [(f"ollama:{ollama.port}", "ollama", "discovered", "up")]


class KernelView(FakeTable):
    """A FakeTable that also says which loopback ports listen (``open``: port -> socket inodes),
    as ``ProcessTable.loopback_ports`` reads them from the kernel."""

    def __init__(self) -> None:
        super().__init__()
        self.open: dict[int, frozenset] = {}

    def loopback_ports(self):
        return dict(self.open)


def test_default_ports_are_asked_where_something_listens_and_a_non_server_only_once(clock, servers):
    ollama_routes = {"/api/version": {"version": "0.5.1"}, "/api/ps": {"models": []}}
    web = servers({"/": "<html>a dev server</html>"})
    ollama = servers(ollama_routes)
    table = KernelView()
    table.open = {web.port: frozenset({1})}  # the kernel does not list the Ollama's port (yet)
    with InstanceCollector([], discover=True, process_table=table, clock=clock.now, discovery_interval_s=10,
                           probe_ports=(web.port, ollama.port)) as col:
        assert col.collect() == []
        asked = len(web.requests)
        assert asked > 0 and ollama.requests == []  # a port nothing listens on is not asked
        for _ in range(3):  # the same socket, known to be no inference server: not asked again
            clock.advance(11)
            assert col.collect() == []
        assert len(web.requests) == asked
        table.open[ollama.port] = frozenset({2})  # the Ollama listens now: found at the next scan
        table.open[web.port] = frozenset({3})  # the web server restarted (a new socket): asked again
        clock.advance(11)
        assert [(i.kind, i.status) for i in col.collect()] == [("ollama", "up")]
        assert len(web.requests) > asked


def test_without_the_kernels_socket_table_every_default_port_is_asked(clock, servers):
    ollama = servers({"/api/version": {"version": "0.5.1"}, "/api/ps": {"models": []}})
    table = KernelView()
    table.loopback_ports = lambda: None  # sock_diag refused (a locked-down container)
    with InstanceCollector([], discover=True, process_table=table, clock=clock.now, probe_ports=(ollama.port,)) as col:
        assert [i.kind for i in col.collect()] == ["ollama"]


def test_the_kernel_lists_a_loopback_listener_with_a_new_socket_after_a_restart(servers):
    from gpuwatch.collect.procs import ProcessTable

    table = ProcessTable()
    table.listeners()
    if table.loopback_ports() is None:
        pytest.skip("this kernel does not answer sock_diag (the default ports are then all probed)")
    web = servers({"/": "hello"})
    table.listeners()
    first = table.loopback_ports().get(web.port)
    assert first  # bound to 127.0.0.1: reachable on loopback
    port = web.port
    web.close()
    table.listeners()
    assert port not in table.loopback_ports()
    servers({"/": "hello again"}, port=port)
    table.listeners()
    again = table.loopback_ports().get(port)
    assert again and again != first


def test_discovery_off_polls_only_configured(clock, servers):
    vllm = servers(vllm_routes(clock))
    table = FakeTable()
    table.add(100, "python3", ["python3", "-m", "vllm.entrypoints.openai.api_server", "--port", str(vllm.port)],
              ports=[vllm.port])
    with InstanceCollector([], discover=False, process_table=table, clock=clock.now, probe_ports=(vllm.port,)) as col:
        assert col.collect() == []


def test_listeners_are_rescanned_at_most_every_interval(clock, servers):
    table = FakeTable()
    with InstanceCollector([], discover=True, process_table=table, clock=clock.now, probe_ports=(),
                           discovery_interval_s=10) as col:
        for _ in range(5):
            col.collect()
            clock.advance(1.0)
        assert table.listener_calls == 1
        clock.advance(6.0)
        col.collect()
        assert table.listener_calls == 2


@pytest.mark.parametrize(("kind", "argv", "expected"), [
    ("vllm", ["vllm", "serve", "m", "--tensor-parallel-size", "4"], ("tensor", 4)),
    ("vllm", ["vllm", "serve", "m", "-tp", "2", "--pipeline-parallel-size=2"], ("tensor", 4)),
    ("vllm", ["vllm", "serve", "m", "-pp", "3"], ("pipeline", 3)),
    ("vllm", ["vllm", "serve", "m"], ("single", 1)),
    ("sglang", ["python3", "-m", "sglang.launch_server", "--tp-size", "2"], ("tensor", 2)),
    ("llamacpp", ["llama-server", "-m", "x.gguf", "-sm", "row"], ("tensor", None)),
    ("llamacpp", ["llama-server", "-m", "x.gguf", "--split-mode=none"], ("single", None)),
    ("llamacpp", ["llama-server", "-m", "x.gguf"], ("pipeline", None)),
    ("ollama", ["ollama", "serve"], ("pipeline", None)),
])
def test_parallelism_from_command_line(kind, argv, expected):
    assert ENGINES[kind].parallelism(argv) == expected


@pytest.mark.parametrize(("name", "argv", "kind"), [
    ("python3", ["python3", "-m", "vllm.entrypoints.openai.api_server"], "vllm"),
    ("vllm", ["/usr/bin/vllm", "serve", "m"], "vllm"),
    ("python3.12", ["python3.12", "-m", "sglang.launch_server", "--model-path", "m"], "sglang"),
    ("llama-server", ["./llama-server", "-m", "m.gguf"], "llamacpp"),
    ("ollama", ["ollama", "serve"], "ollama"),
    ("ollama", ["ollama", "runner", "--model", "x"], None),
    ("bash", ["bash", "-c", "vllm serve m"], None),  # name must match too
    ("python3", ["python3", "train.py"], None),
])
def test_server_process_matching(name, argv, kind):
    assert match_server_process(name, argv) == kind


# ---- GPU join ------------------------------------------------------------------------------

GiB = 1024**3


def test_assign_gpus_joins_pids_and_finalises_parallelism():
    gpus = [GPU(index=i, processes=[]) for i in range(6)]
    gpus[0].processes = [Process(pid=110, used_memory_bytes=60 * GiB)]
    gpus[1].processes = [Process(pid=111, used_memory_bytes=61 * GiB)]
    gpus[2].processes = [Process(pid=201, used_memory_bytes=20 * GiB)]
    gpus[3].processes = [Process(pid=201, used_memory_bytes=18 * GiB), Process(pid=999, used_memory_bytes=GiB)]
    gpus[4].processes = [Process(pid=300, used_memory_bytes=7 * GiB)]
    snap = Snapshot(time="t", host="h", gpus=gpus, instances=[
        Instance(name="vllm", kind="vllm", url="u1", pid=100, pids=[100, 110, 111], parallelism="tensor", parallel_size=2),
        Instance(name="ollama", kind="ollama", url="u2", pid=200, pids=[200, 201], parallelism="pipeline"),
        Instance(name="llama", kind="llamacpp", url="u3", pid=300, pids=[300], parallelism="pipeline"),
        Instance(name="remote", kind="vllm", url="u4", parallelism="tensor", parallel_size=8),
    ])
    assign_gpus(snap)
    assign_gpus(snap)  # idempotent
    v, o, ll, remote = snap.instances
    assert v.gpus == [0, 1] and v.gpu_memory_bytes == {"0": 60 * GiB, "1": 61 * GiB}
    assert (v.parallelism, v.parallel_size) == ("tensor", 2)
    assert o.gpus == [2, 3] and (o.parallelism, o.parallel_size) == ("pipeline", 2)
    assert o.gpu_memory_bytes == {"2": 20 * GiB, "3": 18 * GiB}
    assert ll.gpus == [4] and (ll.parallelism, ll.parallel_size) == ("single", 1)
    assert remote.gpus == [] and remote.parallelism == "tensor"  # not on this box: hint kept
    assert [g.instances for g in snap.gpus] == [["vllm"], ["vllm"], ["ollama"], ["ollama"], ["llama"], []]


def test_assign_gpus_multi_gpu_without_hint():
    gpus = [GPU(index=0, processes=[Process(pid=5)]), GPU(index=1, processes=[Process(pid=6)])]
    snap = Snapshot(time="t", host="h", gpus=gpus, instances=[
        Instance(name="o", kind="ollama", url="u", pid=4, pids=[4, 5, 6]),
        Instance(name="v", kind="vllm", url="u", pid=5, pids=[5, 6], parallelism="single"),
    ])
    assign_gpus(snap)
    assert snap.instances[0].parallelism == "pipeline" and snap.instances[0].parallel_size == 2
    assert snap.instances[1].parallelism == "unknown"  # vLLM over 2 GPUs with neither TP nor PP: data parallel


def test_vanished_discovered_server_shows_down_then_is_forgotten(clock, servers):
    vllm = servers(vllm_routes(clock))
    table = FakeTable()
    table.add(100, "vllm", ["vllm", "serve", "m", "--port", str(vllm.port)], ports=[vllm.port])
    with InstanceCollector([BackendConfig(f"http://127.0.0.1:{free_port()}", name="configured-dead")],
                           discover=True, process_table=table, clock=clock.now, probe_ports=()) as col:
        assert {i.name: i.status for i in col.collect()} == {"configured-dead": "down", f"vllm:{vllm.port}": "up"}
        vllm.close()
        table.listening.clear()
        clock.advance(60.0)
        assert {i.name: i.status for i in col.collect()}[f"vllm:{vllm.port}"] == "down"  # the user sees it die
        clock.advance(600.0)
        assert [i.name for i in col.collect()] == ["configured-dead"]  # configured ones stay
