"""The pool panel on the dashboard: members side by side with share against weight, tok/s,
running and GPUs; a member that is down marked; no panel without pools; pool names from the
config are never markup."""

from __future__ import annotations

from conftest import until
from test_dashboard import FakeSource, make_snapshot, visible_text

from gpuwatch.frontends.tui.app import GpuWatchApp
from gpuwatch.frontends.tui.pools import PoolCard
from gpuwatch.model import Instance, ModelInfo, Pool, PoolMember


def pooled_snapshot(third_down=False, name="llm_backends"):
    snap = make_snapshot(n=4)
    snap.instances = [
        Instance(name=f"ollama-{i}", kind="ollama", url=f"http://127.0.0.1:{11434 + i}", status="up", gpus=gpus,
                 generation_tokens_per_s=tps, requests_running=run, models=[ModelInfo(name="qwen2.5:32b")],
                 settings={"OLLAMA_NUM_PARALLEL": "4", "CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus))})
        for i, (gpus, tps, run) in enumerate((([0], 121.5, 4.0), ([1], 58.0, 2.0), ([2, 3], 60.2, 2.0)))]
    if third_down:
        third = snap.instances[2]
        third.status, third.error = "down", "connection refused"
    snap.pools = [Pool(name=name, source="/etc/nginx/conf.d/llm.conf:2", method="least_conn", window_s=60.0,
                       members=[PoolMember(url=f"http://127.0.0.1:{11534 + i}", weight=w, instance=f"ollama-{i}",
                                           via=f"http://127.0.0.1:{11534 + i}", weight_share=ws, running_share=rs)
                                for i, (w, ws, rs) in enumerate(((2, 0.5, 0.5), (1, 0.25, 0.25), (1, 0.25, 0.25)))])]
    return snap


async def test_pool_panel_shows_members_side_by_side():
    app = GpuWatchApp(FakeSource(pooled_snapshot()), interval=0.05)
    async with app.run_test(size=(200, 60)) as pilot:
        await pilot.pause(0.3)
        text = visible_text(app)
        assert "pool llm_backends · least_conn" in text and "3/3 up" in text
        assert "running reqs: share / weight (60 s)" in text
        lines = [line for line in text.splitlines() if "ollama-0" in line and "50%/50%" in line]
        assert lines, text
        assert "gen 121.5 tok/s  run 4  GPU 0" in text and "GPU 2,3" in text
        assert "parallel 4" in text  # the Ollama card shows its serving settings


async def test_a_member_down_is_marked_and_no_pools_no_panel():
    state = {"pools": True}
    down, plain = pooled_snapshot(third_down=True), make_snapshot(n=4)
    app = GpuWatchApp(FakeSource(lambda n: down if state["pools"] else plain), interval=0.05)
    async with app.run_test(size=(200, 60)) as pilot:
        await until(pilot, lambda: "2/3 up" in visible_text(app), "the pool on screen")
        text = visible_text(app)
        assert "2/3 up" in text and "DOWN" in text and "connection refused" in text
        state["pools"] = False  # nginx config gone: the panel goes too
        await until(pilot, lambda: not app.query(PoolCard) and "pool llm_backends" not in visible_text(app),
                    "the pools panel gone from the screen")


async def test_pool_names_are_not_markup():
    app = GpuWatchApp(FakeSource(pooled_snapshot(name="[b]x[/b]")), interval=0.05)
    async with app.run_test(size=(200, 60)) as pilot:
        await until(pilot, lambda: "pool [b]x[/b]" in visible_text(app), "the pool's name as written")


async def test_small_terminal_puts_each_member_on_one_line():
    app = GpuWatchApp(FakeSource(pooled_snapshot()), interval=0.05)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        text = visible_text(app)
        rows = [line for line in text.splitlines() if "ollama-0" in line and "50%/50%" in line]
        assert rows and "gen 121.5 tok/s" in rows[0] and "GPU 0" in rows[0], text
