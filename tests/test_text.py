"""The words of the plain-text front ends: units, the snapshot table, the doctor, the fleet."""

from __future__ import annotations

from alerts_support import T0, gpu, inst, snap

from gpuwatch.analysis.doctor import FAIL, PASS, WARN, Check, DoctorReport
from gpuwatch.fleet.source import FleetReading
from gpuwatch.fleet.summary import summarize
from gpuwatch.frontends.text import render_doctor, render_fleet_text, render_text
from gpuwatch.frontends.units import fmt_bytes, fmt_pct, fmt_rate, na
from gpuwatch.model import Alert


def test_unknown_is_na_never_zero():
    assert (fmt_bytes(None), fmt_rate(None), fmt_pct(None), na(None)) == ("n/a",) * 4
    assert fmt_bytes(0) == "0B" and fmt_pct(0) == "0%"


def test_bytes_are_binary_and_rates_decimal_as_links_are_quoted():
    assert fmt_bytes(1536) == "1.5KiB"
    assert fmt_bytes(80 * 2**30) == "80.0GiB"
    assert fmt_bytes(143771 * 2**20) == "140GiB"
    assert fmt_rate(25e9) == "25.0GB/s"
    assert fmt_rate(96.5e6) == "96.5MB/s"
    assert fmt_rate(512) == "512B/s"


def test_snapshot_text_has_a_row_per_gpu_and_instance_and_words_a_lost_gpu():
    s = snap(T0, gpus=[gpu(0, utilization_gpu_pct=93.0), gpu(1, lost=True)],
             instances=[inst("vllm-a", [0], generation_tokens_per_s=812.5)],
             alerts=[Alert(kind="gpu_lost", severity="critical", subject="GPU 1", message="GPU 1 fell off the bus")])
    text = render_text(s)
    rows = text.splitlines()
    assert any(r.lstrip().startswith("0 ") and "93%" in r for r in rows)
    assert any(r.lstrip().startswith("1 ") and "LOST" in r for r in rows)
    assert any(r.startswith("vllm-a") and "812.5" in r for r in rows)
    assert "CRITICAL" in text and "GPU 1 fell off the bus" in text


def test_doctor_text_names_each_check_and_counts_them():
    report = DoctorReport("box", "2026-11-23T10:00:00Z", [
        Check("nvml", PASS, "8 GPUs"), Check("persistence mode", WARN, "off on GPU 3", ["run nvidia-smi -pm 1"]),
        Check("driver", FAIL, "different driver versions")])
    text = render_doctor(report)
    lines = text.splitlines()
    assert lines[0] == "gpuwatch doctor — box at 2026-11-23T10:00:00Z"
    assert any(line.startswith("WARN  persistence mode  off on GPU 3") for line in lines)
    assert any(line.strip() == "run nvidia-smi -pm 1" for line in lines)
    assert lines[-1] == "1 passed, 1 warning, 1 failed"


def test_fleet_summary_picks_the_gpu_nearest_its_own_slowdown_point():
    s = snap(T0, gpus=[gpu(0, utilization_gpu_pct=90.0, temperature_c=80.0, temperature_slowdown_c=87.0),
                       gpu(1, utilization_gpu_pct=10.0, temperature_c=84.0, temperature_slowdown_c=95.0),
                       gpu(2, lost=True)],
             instances=[inst("a", [0], generation_tokens_per_s=100.0), inst("b", [1], generation_tokens_per_s=50.0)],
             alerts=[Alert(kind="x", severity="warning", subject="GPU 0", message="m"),
                     Alert(kind="y", severity="critical", subject="GPU 2", message="m")])
    r = summarize(s)
    assert (r.gpus, r.lost) == (3, 1)
    assert (r.util_mean, r.util_max) == (50.0, 90.0)
    assert (r.hot_index, r.hot_margin_c) == (0, 7.0)  # 80/87 is closer to slowdown than 84/95
    assert (r.tok_s, r.alerts, r.worst) == (150.0, 2, "critical")


def test_fleet_text_has_one_line_per_host():
    a = snap(T0, gpus=[gpu(0, utilization_gpu_pct=50.0, temperature_c=60.0, temperature_slowdown_c=87.0)],
             instances=[inst("a", [0], generation_tokens_per_s=1234.0)])
    a.host = "box-a"
    b = snap(T0, gpus=[])
    b.host = "box-b"
    text = render_fleet_text(FleetReading(time=a.time, hosts=[a, b], refresh_ms=12.0), "http://prom:9090")
    lines = text.splitlines()
    assert lines[0] == "fleet via http://prom:9090: 2 hosts, 12 ms"
    assert lines[2].split() == ["box-a", "1", "50/50%", "60/87°C", "1,234", "ok", "0"]
    assert lines[3].split()[:2] == ["box-b", "0"] and "—" in lines[3]
