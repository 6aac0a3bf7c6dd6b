"""An agent whose tools have effects outside the app process, recorded in files under ``LEDGER_DIR``.

- ``pay``: needs approval and takes an idempotency key; the "payment system" it calls (``payments.jsonl``)
  drops a payment whose key it already has, as real payment APIs do. Every attempt is in ``attempts.jsonl``.
- ``ring``: needs approval, takes no key: each run rings once more (``rings.jsonl``).
- ``notify``: needs no approval but is marked as having side effects; takes no key (``notifications.jsonl``).

Every call names a ``ref`` (the test's, to tell its calls apart). After its effect, a call stops for a crash
test when the test armed its ref (a file ``armed-<ref>``): it says so on the FIFO ``reached-<ref>`` and then
waits forever, so the test kills the process between the effect and the session's save.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Annotated, Any

from agent_framework import Agent, FunctionInvocationContext, tool

from cosmos_history.domain.tool_journal import IDEMPOTENCY_KEY, SIDE_EFFECTS

Ref = Annotated[str, "A reference for this call."]


def _dir() -> Path:
    return Path(os.environ["LEDGER_DIR"])


def lines(name: str, directory: Path | None = None) -> list[dict[str, Any]]:
    path = (directory or _dir()) / name
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _append(name: str, entry: dict[str, Any]) -> None:
    with open(_dir() / name, "a", encoding="utf-8") as file:
        file.write(json.dumps(entry) + "\n")
        file.flush()
        os.fsync(file.fileno())


def _tell_reached(ref: str) -> None:
    with open(_dir() / f"reached-{ref}", "w", encoding="utf-8") as fifo:  # blocks until the test reads
        fifo.write("effect recorded\n")


async def _stop_here_if_armed(ref: str) -> None:
    """The crash point: tell the test the effect happened, then wait (without blocking other turns) to be killed."""
    try:
        (_dir() / f"armed-{ref}").unlink()
    except FileNotFoundError:
        return
    await asyncio.to_thread(_tell_reached, ref)
    await asyncio.Event().wait()  # never set: this process is killed now


@tool(approval_mode="always_require", additional_properties={IDEMPOTENCY_KEY: True})
async def pay(amount: Annotated[int, "How much to pay."], ref: Ref, ctx: FunctionInvocationContext) -> str:
    """Pay an amount (asks for approval first)."""
    key = ctx.kwargs[IDEMPOTENCY_KEY]
    _append("attempts.jsonl", {"ref": ref, "key": key})
    if all(payment["key"] != key for payment in lines("payments.jsonl")):
        _append("payments.jsonl", {"ref": ref, "key": key, "amount": amount})
    await _stop_here_if_armed(ref)
    return f"Paid {amount}."


@tool(approval_mode="always_require")
async def ring(times: Annotated[int, "How many times to ring."], ref: Ref) -> str:
    """Ring the bell (asks for approval first)."""
    _append("rings.jsonl", {"ref": ref, "times": times})
    await _stop_here_if_armed(ref)
    return f"Rang {times} time(s)."


@tool(additional_properties={SIDE_EFFECTS: True})
async def notify(text: Annotated[str, "What to tell the person."], ref: Ref) -> str:
    """Send the person a notification."""
    _append("notifications.jsonl", {"ref": ref, "text": text})
    await _stop_here_if_armed(ref)
    return "Notified."


def create_agent(client: Any) -> Agent:
    return Agent(client=client, name="ledger", description="Pays, rings and notifies.", tools=[pay, ring, notify])
