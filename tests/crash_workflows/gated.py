"""Three steps in a row, each yielding an output (``one``, ``two``, ``done`` and the run's ref). When the test
armed the run's ref (a file ``armed-<ref>`` in ``LEDGER_DIR``), the middle step, after yielding its output,
says so on the FIFO ``reached-<ref>`` and waits until the test writes to the FIFO ``gate-<ref>``: the test
follows the run meanwhile, or kills its process there (after the first superstep's checkpoint, and after an
output that no checkpoint holds yet)."""

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent_framework import Executor, Workflow, WorkflowBuilder, WorkflowContext, handler


def _dir() -> Path:
    return Path(os.environ["LEDGER_DIR"])


def _wait_at_gate(ref: str) -> None:
    with open(_dir() / f"reached-{ref}", "w", encoding="utf-8") as fifo:  # blocks until the test reads
        fifo.write("reached\n")
    with open(_dir() / f"gate-{ref}", encoding="utf-8") as fifo:  # blocks until the test opens the gate
        fifo.read()


class Step(Executor):
    def __init__(self, name: str, said: str, *, gated: bool = False, last: bool = False) -> None:
        super().__init__(id=name)
        self.said = said
        self.gated = gated
        self.last = last

    @handler
    async def step(self, ref: str, ctx: WorkflowContext[str, str]) -> None:
        await ctx.yield_output(f"{self.said} {ref}")
        if self.gated:
            try:
                (_dir() / f"armed-{ref}").unlink()
            except FileNotFoundError:
                pass
            else:
                await asyncio.to_thread(_wait_at_gate, ref)
        if not self.last:
            await ctx.send_message(ref)


def create_workflow(agents: Mapping[str, Any]) -> Workflow:
    first, second, third = Step("first", "one"), Step("second", "two", gated=True), Step("third", "done", last=True)
    return WorkflowBuilder(name="gated", start_executor=first).add_edge(first, second).add_edge(second, third).build()
