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
    """Reads the CPU time of the host processes, the stand-in (if on this machine) and this process around a cell."""

    def __init__(self, host_pids: list[int], standin_pid: int | None) -> None:
        self._hosts = host_pids
        self._standin = standin_pid
        self._start = (0.0, 0.0, 0.0)

    def _now(self) -> tuple[float, float, float]:
        host = sum(cpu_seconds(pid) for pid in self._hosts)
        standin = cpu_seconds(self._standin) if self._standin is not None else 0.0
        return host, standin, time.process_time()

    def start(self) -> None:
        self._start = self._now()

    def add_to(self, share: CpuShare, turns: int) -> None:
        host, standin, generator = self._now()
        share.host += host - self._start[0]
        share.standin += standin - self._start[1]
        share.generator += generator - self._start[2]
        share.turns += turns


def merged_shares(shares: list[CpuShare | None]) -> CpuShare | None:
    """The sum of several cells' shares (``None`` when any is missing)."""
    if not shares or any(share is None for share in shares):
        return None
    total = CpuShare()
    for share in shares:
        assert share is not None
        total.host += share.host
        total.standin += share.standin
        total.generator += share.generator
        total.turns += share.turns
    return total


CPU_COLUMNS = ["Host CPU ms", "Cosmos DB CPU ms", "Generator CPU ms", "CPU-bound turns/s"]


def cpu_cells(share: CpuShare) -> list[str]:
    """A share as the report's cells: CPU ms per turn of each process, then the CPU-bound turns per second."""
    return [
        *(f"{share.per_turn_ms(which):.2f}" for which in ("host", "standin", "generator")),
        f"{share.bound_per_second:,.1f}",
    ]
