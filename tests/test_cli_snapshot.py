"""`gpuwatch snapshot` end to end, as a real subprocess."""

from __future__ import annotations

import json
import os

from conftest import run_cli

GPU_KEYS = {"index", "uuid", "name", "lost", "utilization_gpu_pct", "utilization_memory_pct", "memory_used_bytes",
            "memory_total_bytes", "temperature_c", "temperature_slowdown_c", "power_w", "power_limit_w",
            "sm_clock_mhz", "sm_clock_max_mhz", "throttle_reasons", "pcie", "nvlink", "processes"}


def test_demo_snapshot_json_is_schema_v1_with_real_rates():
    r = run_cli("snapshot", "--json", "--demo", "--interval", "0.3", "--no-discover")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    d = json.loads(r.stdout)
    assert d["schema_version"] == 1
    assert d["time"].endswith("Z") and "T" in d["time"]
    assert {"host", "driver_version", "cuda_version", "gpus", "instances", "alerts"} <= set(d)
    assert len(d["gpus"]) == 8
    for g in d["gpus"]:
        assert GPU_KEYS <= set(g)
        assert set(g["pcie"]) >= {"gen", "max_gen", "width", "max_width", "tx_bytes_per_s", "rx_bytes_per_s"}
        assert set(g["nvlink"]) >= {"links_active", "tx_bytes_per_s", "rx_bytes_per_s"}
        assert g["pcie"]["rx_bytes_per_s"] > 0  # sampled twice: rates are real
    busy = d["gpus"][0]
    assert busy["nvlink"]["tx_bytes_per_s"] > 0
    assert busy["processes"] and {"pid", "name", "used_memory_bytes"} <= set(busy["processes"][0])


def test_demo_scenario_with_faults():
    r = run_cli("snapshot", "--json", "--demo", "rtx4090x2:hot=0", "--interval", "0.2", "--no-discover")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    g0, g1 = d["gpus"]
    assert g0["name"] == "NVIDIA GeForce RTX 4090"
    assert g0["nvlink"] is None  # no NVLink on this board
    assert g0["fan_pct"] is not None
    assert "hw_thermal_slowdown" in g0["throttle_reasons"] and g0["temperature_c"] >= g0["temperature_slowdown_c"]
    assert g1["pcie"]["width"] == 4 and g1["pcie"]["max_width"] == 16  # the x4 slot


def test_lost_gpu_in_json():
    r = run_cli("snapshot", "--json", "--demo", "h100x8:lost=5", "--interval", "0.2", "--no-discover")
    d = json.loads(r.stdout)
    assert d["gpus"][5]["lost"] is True and d["gpus"][5]["utilization_gpu_pct"] is None
    assert d["gpus"][4]["lost"] is False


def test_text_table_by_default():
    r = run_cli("snapshot", "--demo", "--interval", "0.2", "--no-discover")
    assert r.returncode == 0
    assert "NVIDIA H100 80GB HBM3" in r.stdout and "Gen5 x16" in r.stdout and "*" not in r.stdout
    r = run_cli("snapshot", "--demo", "rtx4090x2", "--interval", "0.2", "--no-discover")
    assert "Gen4 x4 of x16" in r.stdout  # the x4 slot is said in words


def test_bad_flags_and_values_are_one_line_exit_2():
    for args in (["--frobnicate"], ["snapshot", "--interval", "fast"], ["snapshot", "--demo", "h200x99"],
                 ["snapshot", "--demo", "h100x8:melt"], ["snapshot", "--backend", "localhost:8000"],
                 ["snapshot", "--demo", "h100x8:hot=12"]):
        r = run_cli(*args)
        assert r.returncode == 2, args
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("gpuwatch: "), (args, r.stderr)
        assert "Traceback" not in r.stderr


def test_broken_config_file_is_one_line(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text("interval = [oops\n")
    r = run_cli("snapshot", "--demo", "--config", str(cfg))
    assert r.returncode == 2
    assert "not valid TOML" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    cfg.write_text('[[backends]]\nurl = "ftp://x"\n')
    r = run_cli("snapshot", "--demo", "--config", str(cfg))
    assert r.returncode == 2 and "backends[0].url" in r.stderr


def test_version_and_help():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("gpuwatch ")
    r = run_cli("snapshot", "--help")
    assert r.returncode == 0 and "--json" in r.stdout and "--backend" in r.stdout and "--no-discover" in r.stdout


def test_snapshot_with_backends_reports_the_rates_the_servers_set():
    """`gpuwatch snapshot --json --backend URL` against a loopback vLLM whose counters grow at
    known rates in real time: the reported tok/s is the server's rate, within the bounds set by
    when the server answered and when the snapshot came out (not by a fixed margin that a busy
    machine can exceed)."""
    import subprocess
    import sys
    import time as _time

    from _instances_servers import FakeServer

    from conftest import ROOT

    rates = {"gen": 420.0, "prompt": 1300.0}
    t0 = _time.monotonic()
    scrapes = []  # when the counters of each /metrics answer were computed

    def metrics(h):
        t = _time.monotonic()
        scrapes.append(t)
        gen, prompt = (rates[k] * (t - t0) for k in ("gen", "prompt"))
        return (f'vllm:generation_tokens_total{{model_name="m"}} {gen}\n'
                f'vllm:prompt_tokens_total{{model_name="m"}} {prompt}\n'
                'vllm:num_requests_running{model_name="m"} 7\n'
                'vllm:num_requests_waiting{model_name="m"} 2\n'
                'vllm:kv_cache_usage_perc{model_name="m"} 0.42\n')

    vllm = FakeServer({"/version": lambda h: '{"version": "0.11.0"}', "/metrics": metrics})
    nothing = FakeServer({})  # answers 404 to everything
    down_port = nothing.url
    interval = 1.0
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        proc = subprocess.Popen([sys.executable, "-m", "gpuwatch", "snapshot", "--json", "--no-discover",
                                 "--backend", vllm.url, "--backend", down_port, "--interval", str(interval)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
        with proc:
            first_line = proc.stdout.readline()  # the document is written at once
            printed = _time.monotonic()  # the snapshot was taken before it was printed
            rest = proc.stdout.read()
        assert proc.returncode == 0, first_line + rest
        insts = {i["url"]: i for i in json.loads(first_line + rest)["instances"]}
        v = insts[vllm.url]
        assert v["kind"] == "vllm" and v["status"] == "up"
        served1, served2 = scrapes[-2:]  # the last answer of each sample (detecting the kind reads one more)
        # gpuwatch reads its clock after each answer: the first reading lies between the first
        # answer and one interval before the second one (it sleeps that long between samples),
        # the second between the second answer and the printed line
        longest, shortest = printed - served1, interval
        for key, name in (("gen", "generation_tokens_per_s"), ("prompt", "prompt_tokens_per_s")):
            served = rates[key] * (served2 - served1)
            assert served / longest * 0.999 <= v[name] <= served / shortest * 1.001, (name, v[name])
        assert v["requests_running"] == 7 and v["requests_waiting"] == 2 and v["kv_cache_usage_pct"] == 42.0
        assert insts[down_port]["status"] in ("down", "error") and insts[down_port]["error"]
    finally:
        vllm.close()
        nothing.close()


def test_snapshot_waits_for_a_slow_server_instead_of_showing_its_previous_answer():
    """A one-off `snapshot` has no next frame to show a late answer in: each of its samples waits
    for every server (within the timeout), not the live view's half second. A vLLM whose answers
    take 0.8 s once the first second is past: the document shows its last answer (before, the
    one before it; and a metered Ollama on a loaded machine had no tok/s at all)."""
    import time as _time

    from _instances_servers import FakeServer

    answers = []
    first = []

    def metrics(h):
        now = _time.monotonic()
        first[:1] = first[:1] or [now]
        if now - first[0] > 1.2:  # the second sample's poll (the first one, primer included, is fast)
            _time.sleep(0.8)
        answers.append(now)
        return (f'vllm:generation_tokens_total{{model_name="m"}} {100 * len(answers)}\n'
                f'vllm:num_requests_running{{model_name="m"}} {len(answers)}\n')

    vllm = FakeServer({"/version": lambda h: '{"version": "0.11.0"}', "/metrics": metrics})
    try:
        r = run_cli("snapshot", "--json", "--no-discover", "--backend", vllm.url, "--interval", "2", timeout=60)
        assert r.returncode == 0, r.stderr
        _time.sleep(1.0)  # an answer still being sent when the snapshot ended is counted too
        (v,) = json.loads(r.stdout)["instances"]
        assert v["status"] == "up" and v["requests_running"] == len(answers) >= 3, (v["requests_running"], len(answers))
    finally:
        vllm.close()
