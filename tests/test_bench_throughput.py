"""The load test's machinery (``bench/loadclient.py``, ``bench/cpu.py``, its report row): no timing assertions."""

from __future__ import annotations

import os
import socket
import time

import pytest
from aiohttp import web

from bench.cpu import CpuMeter, CpuShare, pid_listening
from bench.loadclient import CLIENTS, LoadClient, load_session, timed_post
from bench.measure import Latencies, ThroughputRow
from bench.report import Results, standard_notes
from bench.report import render as render_report


def _lat(*ms: float) -> Latencies:
    return Latencies([m / 1000 for m in ms])


def test_the_throughput_target_reports_the_host_cpu_per_turn_and_the_cpu_bound_ratio() -> None:
    """A load test cell carries the CPU its host, the local Cosmos DB and the load generator spent on it."""
    local = CpuShare(host=0.5, standin=0.8, generator=0.1, turns=100)
    provider = CpuShare(host=1.0, standin=0.3, generator=0.1, turns=100)
    throughput = [
        ThroughputRow("local", 1, 8, 100, 1.0, _lat(100), local),
        ThroughputRow("provider", 1, 8, 100, 1.0, _lat(100), provider),
    ]
    notes = standard_notes(real_account=False, scale=1, total=1)
    report = render_report(Results(False, [100], [], {}, {}, throughput, None, 0.0, notes))

    assert "1.00x (100.0 vs 100.0 turns/s; p95 100.0 vs 100.0 ms; host CPU 5.0 vs 10.0 ms a turn, so 2.00x" in report
    assert "| 5.00 | 8.00 | 1.00 | 200.0 |" in report and "| 10.00 | 3.00 | 1.00 | 100.0 |" in report


def test_the_cpu_meter_finds_a_listening_process_and_reads_its_cpu_time() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        pid = pid_listening(listening.getsockname()[1])
        assert pid == os.getpid()
        meter, share = CpuMeter([pid], None), CpuShare()
        meter.start()
        started = time.process_time()
        while time.process_time() - started < 0.05:  # spend CPU in the "host" (this process)
            sum(range(10_000))
        meter.add_to(share, turns=1)
    assert share.host > 0 and share.generator > 0 and share.standin == 0


@pytest.mark.parametrize("client", CLIENTS)
async def test_the_load_clients_post_json_and_refuse_an_answer_other_than_200(client: LoadClient) -> None:
    """Both load generators, against a real HTTP server on a socket."""
    received: list[object] = []

    async def handle(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({}, status=200 if request.path == "/ok" else 503)

    runner = web.AppRunner(web.Application())
    runner.app.router.add_post("/{name}", handle)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with load_session(client, 2) as post:
            elapsed = await timed_post(post, f"http://127.0.0.1:{port}/ok", {"message": "hi"}, {"X-User-Id": "u"})
            with pytest.raises(RuntimeError, match="answered 503"):
                await timed_post(post, f"http://127.0.0.1:{port}/down", {"message": "again"}, {})
    finally:
        await runner.cleanup()
    assert elapsed > 0 and received == [{"message": "hi"}, {"message": "again"}]
