"""`gpuwatch snapshot` end to end, as a real subprocess."""

from __future__ import annotations

import json

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
    """`gpuwatch snapshot --json --backend URL` against loopback servers whose counters grow at
    known rates (real time): the reported tok/s match within a few percent."""
    import time as _time

    from _instances_servers import Counters, FakeServer

    class Wall:
        def now(self):
            return _time.monotonic()

    c = Counters(Wall(), gen=420.0, prompt=1300.0)
    vllm = FakeServer({
        "/version": lambda h: '{"version": "0.11.0"}',
        "/metrics": lambda h: (f'vllm:generation_tokens_total{{model_name="m"}} {c.value("gen")}\n'
                               f'vllm:prompt_tokens_total{{model_name="m"}} {c.value("prompt")}\n'
                               'vllm:num_requests_running{model_name="m"} 7\n'
                               'vllm:num_requests_waiting{model_name="m"} 2\n'
                               'vllm:kv_cache_usage_perc{model_name="m"} 0.42\n'),
    })
    nothing = FakeServer({})  # answers 404 to everything
    down_port = nothing.url
    try:
        r = run_cli("snapshot", "--json", "--no-discover", "--backend", vllm.url, "--backend", down_port,
                    "--interval", "1.0", timeout=60)
        assert r.returncode == 0, r.stderr
        insts = {i["url"]: i for i in json.loads(r.stdout)["instances"]}
        v = insts[vllm.url]
        assert v["kind"] == "vllm" and v["status"] == "up"
        assert abs(v["generation_tokens_per_s"] - 420.0) / 420.0 < 0.03
        assert abs(v["prompt_tokens_per_s"] - 1300.0) / 1300.0 < 0.03
        assert v["requests_running"] == 7 and v["requests_waiting"] == 2 and v["kv_cache_usage_pct"] == 42.0
        assert insts[down_port]["status"] in ("down", "error") and insts[down_port]["error"]
    finally:
        vllm.close()
        nothing.close()
