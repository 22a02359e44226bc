"""Running a real ``gpuwatch meter`` subprocess in front of loopback upstreams."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
from _instances_servers import free_port
from conftest import ROOT


class MeterProcess:
    def __init__(self, upstreams: list[str], drain_s: float | None = None, extra: tuple[str, ...] = ()) -> None:
        self.listen_ports = [free_port() for _ in upstreams]
        self.metrics_port = free_port()
        args = [sys.executable, "-m", "gpuwatch", "meter"]
        for port, up in zip(self.listen_ports, upstreams):
            args += ["--route", f"127.0.0.1:{port}={up}"]
        args += ["--metrics", f"127.0.0.1:{self.metrics_port}"]
        if drain_s is not None:
            args += ["--drain", str(drain_s)]
        args += list(extra)
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
                                     cwd=ROOT)
        self.stderr_lines: list[str] = []
        ready = threading.Event()

        def read():
            for line in self.proc.stderr:
                self.stderr_lines.append(line)
                if "metrics on" in line:
                    ready.set()
            ready.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not ready.wait(30) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("gpuwatch meter did not start: " + "".join(self.stderr_lines))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listen_ports[0]}"

    def route_url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.listen_ports[i]}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def metrics_text(self) -> str:
        return httpx.get(self.metrics_url, timeout=10).text

    def sample(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` whose labels include ``labels``."""
        from prometheus_client.parser import text_string_to_metric_families
        total = 0.0
        for fam in text_string_to_metric_families(self.metrics_text()):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> int | None:
        self.terminate()
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)
        finally:
            self._reader.join(5)


@contextlib.contextmanager
def meter(upstreams, **kw):
    m = MeterProcess(list(upstreams), **kw)
    try:
        yield m
    finally:
        m.stop()


def wait_until(pred, timeout: float = 10.0, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()
