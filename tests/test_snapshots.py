"""SVG snapshot tests of the dashboard (pytest-textual-snapshot): a deterministic box at the two
sizes operators use, so a layout regression shows up as a picture diff.
Update with `pytest tests/test_snapshots.py --snapshot-update` after an intended change."""

from __future__ import annotations

from test_dashboard import FakeSource, make_snapshot

from gpuwatch.frontends.tui.app import GpuWatchApp
from gpuwatch.model import Alert, Instance, ModelInfo


class StillApp(GpuWatchApp):
    show_self_cost = False  # the only value that changes from run to run


def _box():
    snap = make_snapshot(n=4)
    snap.gpus[1].temperature_c = 91.0
    snap.gpus[1].throttle_reasons = ["sw_thermal_slowdown", "hw_thermal_slowdown"]
    snap.gpus[2].pcie.width = 4
    snap.gpus[3].utilization_gpu_pct = None
    for g in snap.gpus:
        g.instances = ["vllm-tp4"]
    snap.instances = [Instance(name="vllm-tp4", kind="vllm", url="http://127.0.0.1:8000", status="up", version="0.11.0",
                               models=[ModelInfo(name="meta-llama/Llama-3.3-70B-Instruct")], gpus=[0, 1, 2, 3],
                               parallelism="tensor", parallel_size=4, generation_tokens_per_s=812.5,
                               prompt_tokens_per_s=2400.0, requests_running=24, requests_waiting=3,
                               kv_cache_usage_pct=57.0, ttft_p50_s=0.41, ttft_p95_s=0.9, itl_p50_s=0.021,
                               itl_p95_s=0.035)]
    snap.alerts = [Alert(kind="thermal_throttle", severity="critical", subject="GPU 1",
                         message="GPU 1 thermal slowdown: 91 °C (slowdown at 90 °C); check airflow")]
    return snap


def test_dashboard_200x60(snap_compare):
    assert snap_compare(StillApp(FakeSource(_box()), interval=60), terminal_size=(200, 60),
                        run_before=lambda pilot: pilot.pause(0.3))


def test_dashboard_80x24(snap_compare):
    assert snap_compare(StillApp(FakeSource(_box()), interval=60), terminal_size=(80, 24),
                        run_before=lambda pilot: pilot.pause(0.3))


def test_dashboard_120x40(snap_compare):
    assert snap_compare(StillApp(FakeSource(_box()), interval=60), terminal_size=(120, 40),
                        run_before=lambda pilot: pilot.pause(0.3))
