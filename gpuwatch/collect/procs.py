"""The process table: what the OS says about a pid (name, user, command line, CPU, RSS,
affinity, children, listening sockets).

NVML only knows pids and GPU memory; gpuwatch joins them with this table. The real table
is psutil; the simulated box supplies its own (``gpuwatch.sim.procs``) with the same
interface, so the join and discovery code is the same in the demo and on a real box.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

import psutil


@dataclass
class ProcInfo:
    pid: int
    name: str | None = None
    cmdline: list[str] = field(default_factory=list)
    user: str | None = None
    cpu_pct: float | None = None
    rss_bytes: int | None = None
    ppid: int | None = None
    cpu_affinity: list[int] | None = None
    environ: dict[str, str] | None = None


def listening_sockets() -> frozenset | None:
    """(family, port, address, inode) of every listening TCP socket, from the kernel's sock_diag
    netlink interface (Linux, ``ss -lt``'s source); None where it cannot be asked. Not
    /proc/net/tcp (psutil's source): the kernel builds that text by walking its whole connection
    hash table, 11 ms of CPU a read on the benchmark VM against 0.1 ms here, where the kernel
    filters for LISTEN itself. No maintained Python library asks sock_diag without bringing a
    netlink framework (pyroute2); the request and answer layouts are linux/inet_diag.h's."""
    try:
        return frozenset(_diag(socket.AF_INET) + _diag(socket.AF_INET6))
    except (OSError, AttributeError, struct.error):
        return None


def _diag(family: int) -> list[tuple]:
    """One SOCK_DIAG_BY_FAMILY dump of TCP sockets in state LISTEN (linux/inet_diag.h:
    inet_diag_req_v2 asks, inet_diag_msg answers: the inode at offset 68)."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 4)  # NETLINK_SOCK_DIAG
    try:
        s.settimeout(1.0)
        req = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 1 << 10) + bytes(48)  # states: TCP_LISTEN
        s.sendto(struct.pack("=IHHII", 16 + len(req), 20, 0x301, 1, 0) + req, (0, 0))  # REQUEST | DUMP
        out: list[tuple] = []
        for _ in range(10_000):
            data = s.recv(65536)
            off = 0
            while off + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, off)
                if kind == 3:  # NLMSG_DONE
                    return out
                if kind == 2 or length < 16:  # NLMSG_ERROR
                    raise OSError("sock_diag refused")
                port = struct.unpack_from(">H", data, off + 20)[0]
                addr = bytes(data[off + 24:off + 40])
                inode = struct.unpack_from("=I", data, off + 16 + 68)[0]
                out.append((family, port, addr, inode))
                off += (length + 3) & ~3
        raise OSError("sock_diag answer without an end")
    finally:
        s.close()


@dataclass
class Listener:
    pid: int
    port: int
    host: str = "127.0.0.1"


class ProcessTable:
    """psutil-backed process table. Keeps psutil.Process objects between calls so CPU %
    is measured over the refresh interval (psutil needs two calls for a CPU share)."""

    # what the instance collector asks of a process table (a simulated one answers otherwise):
    # whether to probe this machine's default engine ports, the ``source`` of a server found by
    # discovery, and a name for the server listening as a pid (None: named after kind and port)
    probe_default_ports = True
    discovered_source = "discovered"

    def server_name(self, pid: int) -> str | None:
        return None

    # what a process rarely changes (name, command line, user, parent, CPU affinity) is read again
    # at most this often; CPU % and RSS on every call. NVML's process list asks for every GPU
    # process on every tick: the full read cost ~0.6 ms a process (psutil, measured on the
    # benchmark box), the changing part ~0.15 ms. A command line can change (setproctitle), hence
    # a refresh rather than never.
    STATIC_S = 10.0

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self._procs: dict[int, psutil.Process] = {}
        self._static: dict[int, tuple[float, psutil.Process, ProcInfo]] = {}  # pid -> (when, process, fields)
        self._lock = threading.Lock()
        self._last_prune = time.monotonic()
        self._ppids: tuple[frozenset, dict[int, int]] | None = None  # (pids, pid -> parent)
        self._listening: tuple[frozenset, list[Listener]] | None = None  # (sock_diag's set, listeners)
        self._scan: tuple[frozenset, list] | None = None  # (pids, processes())

    PRUNE_EVERY_S = 60.0

    def _prune(self) -> None:
        """Drop processes that exited: a pid NVML no longer lists is never asked for again, so
        without this the cache would grow with every process the box ever ran."""
        now = time.monotonic()
        if now - self._last_prune < self.PRUNE_EVERY_S:
            return
        self._last_prune = now
        for pid, p in list(self._procs.items()):
            if not p.is_running():
                del self._procs[pid]
                self._static.pop(pid, None)

    def _proc(self, pid: int) -> psutil.Process | None:
        with self._lock:
            self._prune()
            p = self._procs.get(pid)
            if p is not None and p.is_running():
                return p
            try:
                p = psutil.Process(pid)
                p.cpu_percent(None)  # prime the CPU counter
            except (psutil.Error, ValueError):
                self._procs.pop(pid, None)
                self._static.pop(pid, None)
                return None
            self._procs[pid] = p
            return p

    def info(self, pid: int) -> ProcInfo | None:
        p = self._proc(pid)
        if p is None:
            return None
        now = self.clock()
        kept = self._static.get(pid)
        fresh = kept is None or kept[1] is not p or now - kept[0] >= self.STATIC_S
        out = ProcInfo(pid=pid)
        try:
            with p.oneshot():
                if fresh:
                    out.name = p.name()
                    out.ppid = p.ppid()
                    try:
                        out.cmdline = p.cmdline()
                    except psutil.Error:
                        pass
                    try:
                        out.user = p.username()
                    except (psutil.Error, KeyError):
                        pass
                    try:
                        out.cpu_affinity = p.cpu_affinity()
                    except (psutil.Error, AttributeError):
                        pass
                    with self._lock:
                        self._static[pid] = (now, p, ProcInfo(pid=pid, name=out.name, ppid=out.ppid,
                                                              cmdline=out.cmdline, user=out.user,
                                                              cpu_affinity=out.cpu_affinity))
                else:
                    st = kept[2]
                    out.name, out.ppid, out.cmdline, out.user = st.name, st.ppid, list(st.cmdline), st.user
                    out.cpu_affinity = None if st.cpu_affinity is None else list(st.cpu_affinity)
                try:
                    out.cpu_pct = p.cpu_percent(None)
                    out.rss_bytes = p.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.NoSuchProcess:
            return None
        except psutil.Error:
            pass
        return out

    def environ(self, pid: int) -> dict[str, str] | None:
        p = self._proc(pid)
        if p is None:
            return None
        try:
            return p.environ()
        except psutil.Error:
            return None

    def children(self, pid: int) -> list[int]:
        """Every descendant of ``pid``. The parent map is built from the whole process list,
        once for as long as the set of pids stays the same (discovery asks for each server)."""
        if self._proc(pid) is None:
            return []
        kids: dict[int, list[int]] = {}
        for child, parent in self._parents().items():
            kids.setdefault(parent, []).append(child)
        out, todo = [], list(kids.get(pid, ()))
        while todo and len(out) < 100_000:
            c = todo.pop()
            if c == pid or c in out:
                continue
            out.append(c)
            todo.extend(kids.get(c, ()))
        return out

    def _parents(self) -> dict[int, int]:
        pids = frozenset(psutil.pids())
        if self._ppids is None or self._ppids[0] != pids:
            got: dict[int, int] = {}
            for p in psutil.process_iter(["ppid"]):
                ppid = p.info.get("ppid")
                if ppid:
                    got[p.pid] = ppid
            self._ppids = (pids, got)
        return self._ppids[1]

    def listeners(self) -> list[Listener]:
        """Listening TCP sockets with their owning pid (pids we may not see are skipped). Which
        sockets listen is asked of the kernel through sock_diag (~0.2 ms); the owners are looked
        up (psutil: every process's open files, ~20 ms on the benchmark box) only when that set
        changed since the last call."""
        sig = listening_sockets()
        if sig is not None and self._listening is not None and sig == self._listening[0]:
            return list(self._listening[1])
        out = []
        try:
            conns = psutil.net_connections(kind="tcp")
        except (psutil.Error, PermissionError):
            return out
        for c in conns:
            if c.status != psutil.CONN_LISTEN or not c.laddr or c.pid is None:
                continue
            host = c.laddr.ip
            if host in ("0.0.0.0", "::", ""):
                host = "127.0.0.1"
            out.append(Listener(pid=c.pid, port=c.laddr.port, host=host))
        if sig is not None:
            self._listening = (sig, list(out))
        return out

    def processes(self) -> list[tuple[int, str, list[str], float]]:
        """(pid, name, command line, start time) of every process we may see. Used to tell a
        server that is still loading (process up, port not listening yet) from one that is down.
        Read again only when the set of pids changed (a process started or ended): a command
        line changed in place (exec without a new pid) shows at the next start of any process."""
        pids = frozenset(psutil.pids())
        if self._scan is not None and self._scan[0] == pids:
            return list(self._scan[1])
        out = []
        for p in psutil.process_iter(["pid", "name", "cmdline", "create_time"]):
            info = p.info
            out.append((info["pid"], info.get("name") or "", info.get("cmdline") or [], info.get("create_time") or 0.0))
        self._scan = (pids, out)
        return list(out)

    def forget_missing(self, alive: set[int]) -> None:
        with self._lock:
            for pid in list(self._procs):
                if pid not in alive:
                    del self._procs[pid]
                    self._static.pop(pid, None)

    @staticmethod
    def own_pid() -> int:
        return os.getpid()
