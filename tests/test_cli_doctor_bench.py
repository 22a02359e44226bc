"""`gpuwatch doctor` and `gpuwatch bench` as a user runs them."""

from __future__ import annotations

import json

from conftest import run_cli


def test_doctor_passes_a_healthy_box_and_fails_a_lost_gpu():
    r = run_cli("doctor", "--demo", "h100x8:none", "--interval", "0.2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASS" in r.stdout and "FAIL" not in r.stdout
    assert "topology" in r.stdout and "NV18" in r.stdout
    assert "PCIe GPU 7               Gen5 x16 (max Gen5 x16)" in r.stdout  # an idle H100 holds its link
    r = run_cli("doctor", "--demo", "h100x8:lost=3", "--interval", "0.2", "--json")
    assert r.returncode == 1
    d = json.loads(r.stdout)
    assert any(c["status"] == "fail" and "GPU 3" in (c["name"] + c["detail"]) for c in d["checks"])


def test_snapshot_reports_alerts_seen_in_its_window():
    r = run_cli("snapshot", "--json", "--demo", "h100x8:hot=2,pcie=1", "--interval", "0.3")
    d = json.loads(r.stdout)
    kinds = {(a["kind"], a["subject"]) for a in d["alerts"]}
    assert ("thermal_throttle", "GPU 2") in kinds
    assert ("pcie_degraded", "GPU 1") in kinds
    r = run_cli("snapshot", "--json", "--demo", "h100x8:none", "--interval", "0.3")
    assert json.loads(r.stdout)["alerts"] == []


def test_bench_against_an_unreachable_server_is_one_line():
    r = run_cli("bench", "http://127.0.0.1:9", "--runs", "1")
    assert r.returncode == 1 and "Traceback" not in r.stderr + r.stdout
    assert len((r.stdout + r.stderr).strip().splitlines()) == 1


def test_bad_alert_threshold_in_config_is_one_line(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[alerts.thermal_throttle]\nmargin_c = \"hot\"\n")
    r = run_cli("snapshot", "--demo", "--config", str(cfg))
    assert r.returncode == 2 and "margin_c" in r.stderr and len(r.stderr.strip().splitlines()) == 1
