"""CPU time of the processes a load test runs on: the measured host, the local Cosmos DB, the load generator.

On this machine they share two cores, so turns per second measure the machine as much as the app: a
host that needs less CPU per turn still waits for the stand-in and the load generator to be scheduled.
CPU seconds per turn of the host process itself are what one instance pays wherever it runs (in Azure,
Cosmos DB's CPU is not the instance's), and ``1 / host CPU per turn`` is the throughput of an instance
bound by its own CPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlparse

import psutil


def pid_listening(url_or_port: str | int) -> int:
    """The process listening on 127.0.0.1 at the URL's port (or ``port``)."""
    port = url_or_port if isinstance(url_or_port, int) else urlparse(url_or_port).port
    for connection in psutil.net_connections(kind="tcp"):
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port and connection.pid:
            return connection.pid
    raise RuntimeError(f"no process listens on port {port}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` so far (its threads included)."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


@dataclass
class CpuShare:
    """CPU seconds spent during some cells by the host, the stand-in and the load generator, and their turns."""

    host: float = 0.0
    standin: float = 0.0
    generator: float = 0.0
    turns: int = 0

    def per_turn_ms(self, which: str) -> float:
        return 1000 * getattr(self, which) / max(1, self.turns)

    @property
    def bound_per_second(self) -> float:
        """Turns per second of one host process with a whole core to itself (its own CPU the only limit)."""
        return self.turns / self.host if self.host else 0.0


class CpuMeter:
    """Reads the CPU time of a host, a stand-in and this process around a cell."""

    def __init__(self, host_pid: int, standin_pid: int) -> None:
        self._pids = (host_pid, standin_pid)
        self._start = (0.0, 0.0, 0.0)

    def start(self) -> None:
        self._start = (*(cpu_seconds(pid) for pid in self._pids), time.process_time())

    def add_to(self, share: CpuShare, turns: int) -> None:
        host, standin, generator = (
            *(cpu_seconds(pid) for pid in self._pids),
            time.process_time(),
        )
        share.host += host - self._start[0]
        share.standin += standin - self._start[1]
        share.generator += generator - self._start[2]
        share.turns += turns
