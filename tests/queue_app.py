"""An app with one queue function for the local host's queue tests: each run is written to ``LEDGER_DIR``.

A message ``{"ref": ..., "fail": n}`` raises on its first ``n`` runs; ``{"ref": ..., "hang": true}`` waits
forever on its first run (the test kills the process), then succeeds."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from cosmos_history import create_app
from cosmos_history.triggers import Job, QueueTrigger


def runs(ref: str, directory: Path | None = None) -> list[dict[str, object]]:
    path = (directory or Path(os.environ["LEDGER_DIR"])) / f"{ref}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def record(job: Job) -> None:
    """Write this run down, then fail or hang as the message asks."""
    ref = job.body["ref"]
    earlier = len(runs(ref))
    line = json.dumps({"message": job.message_id, "dequeueCount": job.dequeue_count}) + "\n"
    with (Path(os.environ["LEDGER_DIR"]) / f"{ref}.jsonl").open("a", encoding="utf-8") as file:
        file.write(line)
    if earlier < int(job.body.get("fail", 0)):
        raise RuntimeError("failing on purpose")
    if job.body.get("hang") and earlier == 0:
        await asyncio.Event().wait()


app = create_app([], triggers=[QueueTrigger("record", os.environ.get("TEST_QUEUE", "records"), record)])
