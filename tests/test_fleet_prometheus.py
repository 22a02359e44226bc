"""Real parts: a real Prometheus server (the distribution's binary) on loopback scraping two
``gpuwatch serve --demo`` subprocesses; the fleet JSON and the fleet source must show what each
simulated box reports. Skipped where the ``prometheus`` binary is not installed."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import httpx
import pytest

from _instances_servers import free_port
from conftest import ROOT, run_cli

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="the prometheus binary is not installed "
                                "(Debian/Ubuntu: apt-get install prometheus); .ci/run installs it")
SECRET = "sk-fleet-it-SECRET-0815"


def _start_serve(demo: str, label: str, extra=(), env=None):
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.update(env or {})
    p = subprocess.Popen([sys.executable, "-m", "gpuwatch", "serve", "--demo", demo, "--host-label", label,
                          "--listen", "127.0.0.1:0", "--interval", "0.5", *extra],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=e)
    line = p.stderr.readline()
    m = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", line)
    assert m, f"serve did not start: {line!r}"
    return p, int(m.group(1))


def _stop(p, sig=signal.SIGTERM, timeout=10):
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return p.returncode


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fleet")
    cfg = tmp / "gpuwatch.toml"
    cfg.write_text('[[backends]]\nurl = "http://127.0.0.1:9"\nname = "keyed"\napi_key_env = "GW_IT_KEY"\n')
    a, port_a = _start_serve("h100x8", "box-a", ["--config", str(cfg)], env={"GW_IT_KEY": SECRET})
    b, port_b = _start_serve("rtx4090x2", "box-b")
    prom_port = free_port()
    (tmp / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n"
        "scrape_configs:\n  - job_name: gpuwatch\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{port_a}', '127.0.0.1:{port_b}']\n")
    prom = subprocess.Popen([PROMETHEUS, f"--config.file={tmp / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=subprocess.DEVNULL, stderr=open(tmp / "prometheus.log", "w"))
    url = f"http://127.0.0.1:{prom_port}"
    procs = {"a": a, "b": b, "prom": prom}
    try:
        deadline = time.monotonic() + 30
        while True:
            assert prom.poll() is None, (tmp / "prometheus.log").read_text()[-2000:]
            try:
                # every one of the 10 GPUs with a PCIe rate, both boxes' instances known, tokens
                # flowing: each count on its own (a sum let extra instances stand in for a GPU)
                counts = []
                for q in ("count(rate(gpuwatch_gpu_pcie_tx_bytes_total[1m]))",
                          'count(count by (host) (gpuwatch_instance_info))',
                          "count(rate(gpuwatch_instance_generation_tokens_total[1m]) > 0)"):
                    res = httpx.post(f"{url}/api/v1/query", data={"query": q}, timeout=2).json()["data"]["result"]
                    counts.append(float(res[0]["value"][1]) if res else 0.0)
                if counts[0] >= 10 and counts[1] >= 2 and counts[2] >= 1:
                    break
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            assert time.monotonic() < deadline, "Prometheus never scraped both exporters"
            time.sleep(0.5)
        yield {"url": url, "ports": {"box-a": port_a, "box-b": port_b}, "procs": procs}
    finally:
        for p in (a, b, prom):
            _stop(p)


def _exporter(port):
    from prometheus_client.parser import text_string_to_metric_families
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return text, out


def test_fleet_json_matches_each_box(fleet):
    r = run_cli("snapshot", "--json", "--prometheus", fleet["url"], timeout=30)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema_version"] == 1 and doc["error"] is None and doc["prometheus"] == fleet["url"]
    hosts = {h["host"]: h for h in doc["hosts"]}
    assert set(hosts) == {"box-a", "box-b"}
    expect = {"box-a": (8, "H100"), "box-b": (2, "RTX 4090")}
    for host, (n, model) in expect.items():
        h = hosts[host]
        assert h["source"] == "prometheus" and len(h["gpus"]) == n
        assert all(model in g["name"] for g in h["gpus"])
        _, direct = _exporter(fleet["ports"][host])
        util = {int(lab["gpu"]): v * 100 for lab, v in direct["gpuwatch_gpu_utilization_ratio"]}
        uuids = {int(lab["gpu"]): lab["uuid"] for lab, v in direct["gpuwatch_gpu_utilization_ratio"]}
        for g in h["gpus"]:
            assert g["uuid"] == uuids[g["index"]]
            assert g["utilization_gpu_pct"] == pytest.approx(util[g["index"]], abs=25)
            assert g["pcie"]["tx_bytes_per_s"] is not None
        assert h["instances"]
    assert any(i["generation_tokens_per_s"] for i in hosts["box-a"]["instances"])  # counters -> rate() -> tok/s
    keyed = [i for i in hosts["box-a"]["instances"] if i["name"] == "keyed"]
    assert keyed and keyed[0]["status"] != "up"


def test_exporter_exposes_no_secrets_or_command_lines(fleet):
    text, _ = _exporter(fleet["ports"]["box-a"])
    assert SECRET not in text
    assert "Worker_TP" not in text and "cmdline" not in text and "127.0.0.1:9" not in text
    h = httpx.get(f"http://127.0.0.1:{fleet['ports']['box-a']}/healthz", timeout=5)
    assert h.status_code == 200 and h.text.strip() == "ok"


def test_fleet_source_and_a_box_that_stops(fleet):
    from gpuwatch.fleet.source import FleetSource

    src = FleetSource(fleet["url"], timeout_s=3)
    try:
        r = src.refresh()
        assert r.error is None and r.queries == 3  # gauges, rates and the GPUs' static properties
        assert {s.host: len(s.gpus) for s in r.hosts} == {"box-a": 8, "box-b": 2}
        # the next refresh asks for the gauges and rates only; the static properties are kept
        _, direct = _exporter(fleet["ports"]["box-a"])
        slowdown = {int(lab["gpu"]): v for lab, v in direct["gpuwatch_gpu_temperature_slowdown_celsius"]}
        total = {int(lab["gpu"]): v for lab, v in direct["gpuwatch_gpu_memory_total_bytes"]}
        r = src.refresh()
        assert r.error is None and r.queries == 2
        a = r.host("box-a")
        assert [(g.temperature_slowdown_c, g.memory_total_bytes) for g in a.gpus] == \
            [(slowdown[g.index], total[g.index]) for g in a.gpus]
        assert all("H100" in g.name for g in a.gpus) and all(g.pcie.max_gen for g in a.gpus)
        assert _stop(fleet["procs"]["b"], signal.SIGINT) == 0  # clean exit on SIGINT
        deadline = time.monotonic() + 15
        while True:
            r = src.refresh()
            b = r.host("box-b")
            if b is not None and not b.gpus:
                break
            assert time.monotonic() < deadline, "Prometheus kept box-b's series after it stopped"
            time.sleep(0.5)
        assert "box-b is down" in b.nvml_error and b.status.state == "down" and len(r.host("box-a").gpus) == 8
    finally:
        src.close()


def test_prometheus_down_is_an_error_document_not_a_traceback():
    r = run_cli("snapshot", "--json", "--prometheus", f"http://127.0.0.1:{free_port()}", timeout=30)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    doc = json.loads(r.stdout)
    assert doc["hosts"] == [] and "unreachable" in doc["error"]
