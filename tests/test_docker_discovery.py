"""Inference servers in Docker containers, found through a Docker Engine API stand-in on a
unix socket that answers with the documented payloads."""

from __future__ import annotations

import socket

import pytest
from _instances_servers import FakeDockerServer, docker_container
from _tables import EmptyProcessTable

from gpuwatch.analysis.groups import assign_gpus
from gpuwatch.collect.docker import DockerDiscovery, gpus_of
from gpuwatch.collect.instances import BackendConfig, InstanceCollector
from gpuwatch.model import GPU, Process, Snapshot

VLLM_METRICS = ('vllm:num_requests_running{engine="0",model_name="llama-70b"} 2\n'
                'vllm:generation_tokens_total{engine="0",model_name="llama-70b"} 100\n')
TGI_METRICS = 'tgi_batch_current_size 1\ntgi_queue_size 0\ntgi_batch_inference_count{method="decode"} 5\n'


def collector(docker, clock, backends=()):
    return InstanceCollector(list(backends), discover=True, process_table=EmptyProcessTable(probe_default_ports=True), clock=clock.now,
                             probe_ports=(), docker=docker)


def test_containers_become_named_instances_joined_to_their_gpus(tmp_path, clock, servers):
    vllm = servers({"/metrics": VLLM_METRICS, "/version": {"version": "0.26.0"}})
    tgi = servers({"/metrics": TGI_METRICS, "/info": {"model_id": "mistral-7b", "router": "text-generation-router"}})
    host_net = servers({"/metrics": VLLM_METRICS})
    containers = [
        docker_container("a1" * 32, "vllm-llama70b", "vllm/vllm-openai:v0.26.0",
                         ["--model", "meta-llama/Llama-3.3-70B", "--tensor-parallel-size", "2"],
                         ports=[(8000, vllm.port)], pids=[4242, 4250],
                         gpus=[{"Driver": "nvidia", "Count": 0, "DeviceIDs": ["0", "GPU-5a1c0b8e-0000"],
                                "Capabilities": [["gpu"]], "Options": {}}]),
        docker_container("b2" * 32, "tgi-mistral", "ghcr.io/huggingface/text-generation-inference:3.3.6",
                         ["--model-id", "mistralai/Mistral-7B-v0.3"], ports=[(80, tgi.port)], pids=[5151],
                         env=["PORT=80", "NVIDIA_VISIBLE_DEVICES=2"]),
        docker_container("c3" * 32, "vllm-host", "vllm/vllm-openai:latest", ["--port", str(host_net.port)],
                         network="host", pids=[6161], gpus=[{"Driver": "", "Count": -1, "DeviceIDs": None,
                                                              "Capabilities": [["gpu"]]}]),
        docker_container("d4" * 32, "postgres", "postgres:16", ["postgres"], ports=[(5432, 5432)], pids=[7171]),
    ]
    api = FakeDockerServer(tmp_path / "docker.sock", containers)
    try:
        with collector(DockerDiscovery(str(tmp_path / "docker.sock")), clock) as col:
            got = {i.name: i for i in col.collect()}
            assert col.notes == []
    finally:
        api.close()
    assert sorted(got) == ["tgi-mistral", "vllm-host", "vllm-llama70b"]
    v, t, h = got["vllm-llama70b"], got["tgi-mistral"], got["vllm-host"]
    assert (v.kind, v.status, v.url) == ("vllm", "up", vllm.url)
    assert (t.kind, t.status, t.models[0].name) == ("tgi", "up", "mistral-7b")
    assert (h.kind, h.status, h.url) == ("vllm", "up", host_net.url)
    assert v.container == "vllm-llama70b" and v.pids == [4242, 4250]
    assert v.container_gpus == ["0", "GPU-5a1c0b8e-0000"] and t.container_gpus == ["2"] and h.container_gpus == ["all"]
    # a container that serves no model is not even inspected
    assert not any(r.startswith("/containers/" + "d4" * 32) for r in api.requests)
    # the container's host PIDs are what NVML lists: the GPU join works as for any server
    gpus = [GPU(index=0, processes=[Process(pid=4250, used_memory_bytes=40 << 30)]),
            GPU(index=1, processes=[Process(pid=4250, used_memory_bytes=40 << 30)]),
            GPU(index=2, processes=[Process(pid=5151, used_memory_bytes=20 << 30)])]
    snap = assign_gpus(Snapshot(time="t", host="h", gpus=gpus, instances=list(got.values())))
    by_name = {i.name: i for i in snap.instances}
    assert by_name["vllm-llama70b"].gpus == [0, 1] and by_name["tgi-mistral"].gpus == [2]
    # NVML lists none of vllm-host's PIDs: the GPUs docker gave it (all) stand in
    assert by_name["vllm-host"].gpus == [0, 1, 2]


def test_no_docker_socket_is_one_note_and_discovery_goes_on(tmp_path, clock, servers):
    srv = servers({"/metrics": VLLM_METRICS})
    with collector(DockerDiscovery(str(tmp_path / "missing.sock")), clock,
                   [BackendConfig(url=srv.url, kind="vllm")]) as col:
        first = col.collect()
        clock.advance(30.0)
        col.collect()
    assert [i.status for i in first] == ["up"]
    assert len(col.notes) == 1 and "no Docker socket" in col.notes[0]


def test_dead_docker_socket_is_one_note(tmp_path, clock):
    path = tmp_path / "docker.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()  # the file stays, nothing listens: what a stopped daemon leaves behind
    with collector(DockerDiscovery(str(path)), clock) as col:
        assert col.collect() == []
        clock.advance(30.0)
        col.collect()
    assert len(col.notes) == 1 and "not readable" in col.notes[0], col.notes


@pytest.mark.parametrize("inspect, env, want", [
    ({"HostConfig": {"DeviceRequests": [{"Driver": "nvidia", "Count": 2, "Capabilities": [["gpu"]]}]}}, {}, ["0", "1"]),
    ({"HostConfig": {"DeviceRequests": None}}, {"NVIDIA_VISIBLE_DEVICES": "GPU-aa,GPU-bb"}, ["GPU-aa", "GPU-bb"]),
    ({"HostConfig": {}}, {"NVIDIA_VISIBLE_DEVICES": "void"}, []),
    ({"HostConfig": {}}, {}, []),
])
def test_gpus_from_device_requests_or_visible_devices(inspect, env, want):
    assert gpus_of(inspect, env) == want


def test_declared_container_gpus_when_nvml_lists_none_of_its_pids():
    from gpuwatch.model import Instance

    inst = Instance(name="vllm-a", kind="vllm", url="u", status="up", container="vllm-a",
                    container_gpus=["GPU-BBB", "3"])
    gpus = [GPU(index=i, uuid=f"GPU-{c * 3}") for i, c in enumerate("ABCD")]
    snap = assign_gpus(Snapshot(time="t", host="h", gpus=gpus, instances=[inst]))
    assert snap.instances[0].gpus == [1, 3] and gpus[1].instances == ["vllm-a"]


def test_doctor_shows_the_discovery_note_and_a_loading_server_as_no_failure():
    from gpuwatch.analysis.doctor import run_doctor
    from gpuwatch.model import Instance

    loading = Instance(name="vllm-a", kind="vllm", url="http://127.0.0.1:8000", status="loading",
                       status_since="2026-12-02T08:00:00+00:00", status_detail="vllm process 42 runs but does not listen yet")
    asleep = Instance(name="vllm-b", kind="vllm", url="http://127.0.0.1:8001", status="sleeping",
                      status_detail="sleep level 1: weights offloaded to CPU memory")
    snap = Snapshot(time="t", host="h", instances=[loading, asleep],
                    discovery_notes=["no Docker socket at /var/run/docker.sock: containers are not looked at"])
    checks = {c.name: c for c in run_doctor([snap]).checks}
    assert checks["discovery"].status == "pass" and "no Docker socket" in checks["discovery"].detail
    assert checks["instance vllm-a"].status == "warn" and "loading since 2026-12-02T08:00:00" in checks["instance vllm-a"].detail
    assert checks["instance vllm-b"].status == "pass" and "sleep level 1" in checks["instance vllm-b"].detail
    assert Snapshot.from_dict(snap.to_dict()).discovery_notes == snap.discovery_notes
