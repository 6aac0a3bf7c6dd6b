"""Three steps in a row (a custom ``WorkflowBuilder`` graph), one superstep each; each records its run in
``LEDGER_DIR/steps.jsonl`` (its effect outside the process). The middle step stops for a crash test when the
test armed the run's ref (a file ``armed-<ref>``): it says so on the FIFO ``reached-<ref>`` and waits forever,
so the test kills the process after the first superstep's checkpoint and in the middle of the second."""

import asyncio
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent_framework import Executor, Workflow, WorkflowBuilder, WorkflowContext, handler


def _dir() -> Path:
    return Path(os.environ["LEDGER_DIR"])


def _record(step: str, ref: str) -> None:
    with open(_dir() / "steps.jsonl", "a", encoding="utf-8") as file:
        file.write(json.dumps({"step": step, "ref": ref}) + "\n")
        file.flush()
        os.fsync(file.fileno())


def _tell_reached(ref: str) -> None:
    with open(_dir() / f"reached-{ref}", "w", encoding="utf-8") as fifo:  # blocks until the test reads
        fifo.write("step started\n")


class Step(Executor):
    def __init__(self, name: str, *, stops: bool = False, last: bool = False) -> None:
        super().__init__(id=name)
        self.stops = stops
        self.last = last

    @handler
    async def step(self, ref: str, ctx: WorkflowContext[str, str]) -> None:
        _record(self.id, ref)
        if self.stops:
            try:
                (_dir() / f"armed-{ref}").unlink()
            except FileNotFoundError:
                pass
            else:
                await asyncio.to_thread(_tell_reached, ref)
                await asyncio.Event().wait()  # never set: this process is killed now
        if self.last:
            await ctx.yield_output(f"done {ref}")
        else:
            await ctx.send_message(ref)


def create_workflow(agents: Mapping[str, Any]) -> Workflow:
    first, second, third = Step("first"), Step("second", stops=True), Step("third", last=True)
    return WorkflowBuilder(name="steps", start_executor=first).add_edge(first, second).add_edge(second, third).build()
