"""The real process table (psutil) that discovery reads every scan: what it keeps between scans
(listening sockets, the process list, the parent map) is read again as soon as the box changes,
so a server that starts listening, a process that starts and a child that exits all show at the
next scan."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from gpuwatch.collect.procs import ProcessTable, listening_sockets


def _ports(table: ProcessTable) -> set[int]:
    return {lst.port for lst in table.listeners() if lst.pid == os.getpid()}


def test_a_socket_that_starts_listening_shows_at_the_next_scan_and_goes_when_closed():
    table = ProcessTable()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    try:
        assert port not in _ports(table)
        s.listen(1)
        assert port in _ports(table)
        assert port in _ports(table)  # unchanged box: the same answer
    finally:
        s.close()
    assert port not in _ports(table)


def test_the_kernel_lists_listening_sockets_by_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        got = listening_sockets()
        assert got is not None  # Linux: sock_diag answers
        assert s.getsockname()[1] in {port for _, port, _, _ in got}
    finally:
        s.close()


def test_a_started_process_and_its_exit_show_in_the_process_list_and_children():
    table = ProcessTable()
    before = {pid for pid, *_ in table.processes()}
    p = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", "gpuwatch-test-marker"],
                         stdin=subprocess.PIPE)
    try:
        listed = {pid: argv for pid, _name, argv, _t in table.processes()}
        assert p.pid not in before and "gpuwatch-test-marker" in listed[p.pid]
        assert p.pid in table.children(os.getpid())
    finally:
        p.stdin.close()
        p.wait(10)
    assert p.pid not in {pid for pid, *_ in table.processes()}
    assert p.pid not in table.children(os.getpid())
