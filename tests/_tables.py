"""A process table with nothing in it (the ProcessTable interface the instance collector asks)."""

from __future__ import annotations


class EmptyProcessTable:
    """Nothing runs and nothing listens: discovery finds only what it probes (the default ports
    when ``probe_default_ports``) and what else tells it (containers, nginx)."""

    discovered_source = "discovered"

    def __init__(self, probe_default_ports: bool = True) -> None:
        self.probe_default_ports = probe_default_ports

    def server_name(self, pid):
        return None

    def processes(self):
        return []

    def listeners(self):
        return []

    def info(self, pid):
        return None

    def children(self, pid):
        return []

    def environ(self, pid):
        return None


class StubServers:
    """The instance collector's interface (pipeline.InstanceSource) with nothing behind it;
    subclasses give ``collect``."""

    notes: list[str] = []

    def collect(self):
        return []

    def probe(self, urls) -> None:
        pass

    def wake(self) -> None:
        pass

    def close(self) -> None:
        pass
