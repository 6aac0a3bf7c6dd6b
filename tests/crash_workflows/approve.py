"""An agent inside a workflow calls a tool that needs a person's approval (``approval_mode="always_require"``).

The one step is the framework's ``AgentExecutor`` around an agent on the app's chat client with the tool
``charge``; start it with ``/charge {"amount": 5, "ref": "<ref>"}`` (the offline model calls the tool a message
names). Each run of ``charge`` adds a line to ``LEDGER_DIR/charges.jsonl`` (its effect outside the process).

Crash points for the tests, armed by a file in ``LEDGER_DIR``: ``armed-tool-<ref>`` stops inside ``charge``
after its effect; ``armed-model-<ref>`` stops when the agent calls its model with the tool's result (after the
tool ran, before the superstep's checkpoint). Either says so on the FIFO ``reached-<ref>`` and waits forever,
so the test kills the process there.
"""

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

from agent_framework import Agent, AgentExecutor, ChatContext, ChatMiddleware, Workflow, WorkflowBuilder, tool


def _dir() -> Path:
    return Path(os.environ["LEDGER_DIR"])


def _record(charged: dict[str, Any]) -> None:
    with open(_dir() / "charges.jsonl", "a", encoding="utf-8") as file:
        file.write(json.dumps(charged) + "\n")
        file.flush()
        os.fsync(file.fileno())


def _tell_reached(ref: str) -> None:
    with open(_dir() / f"reached-{ref}", "w", encoding="utf-8") as fifo:  # blocks until the test reads
        fifo.write("stopped\n")


async def _stop_if_armed(point: str, ref: str) -> None:
    try:
        (_dir() / f"armed-{point}-{ref}").unlink()
    except FileNotFoundError:
        return
    await asyncio.to_thread(_tell_reached, ref)
    await asyncio.Event().wait()  # never set: this process is killed now


@tool(approval_mode="always_require")
async def charge(amount: Annotated[int, "How much to charge."], ref: Annotated[str, "The test's reference."]) -> str:
    """Charge an amount (asks for approval first)."""
    await asyncio.to_thread(_record, {"ref": ref, "amount": amount})
    await _stop_if_armed("tool", ref)
    return f"Charged {amount}."


class StopAfterTheTool(ChatMiddleware):
    """The model call that carries the tool's result: the armed test's crash point after the tool ran."""

    async def process(self, context: ChatContext, call_next: Callable[[], Awaitable[None]]) -> None:
        calls = [c for m in context.messages for c in m.contents if c.type == "function_call"]
        if any(c.type == "function_result" for m in context.messages for c in m.contents) and calls:
            await _stop_if_armed("model", str(calls[-1].parse_arguments().get("ref")))
        await call_next()


def create_workflow(agents: Mapping[str, Any]) -> Workflow:
    agent = Agent(
        client=next(iter(agents.values())).client,
        name="cashier",
        instructions="Charge what the person asks for with the charge tool.",
        tools=[charge],
        middleware=[StopAfterTheTool()],
    )
    return WorkflowBuilder(name="approve", start_executor=AgentExecutor(agent)).build()
