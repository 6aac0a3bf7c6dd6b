"""An agent inside a workflow calls a tool that needs a person's approval (``approval_mode="always_require"``).

The one step is the framework's ``AgentExecutor`` around an agent on the app's chat client with the tool
``charge``; start it with ``/charge {"amount": 5, "ref": "<ref>"}`` (the offline model calls the tool a message
names). Each run of ``charge`` adds a line to ``LEDGER_DIR/charges.jsonl`` (its effect outside the process).

Crash points for the tests, as for the crash agents (:mod:`tests.crash_agents.ledger`): ``tool-<ref>`` stops
inside ``charge`` after its effect; ``model-<ref>`` stops when the agent calls its model with the tool's result
(after the tool returned, before the superstep's checkpoint). Armed by the file ``armed-<point>-<ref>``, either
says so on the FIFO ``reached-<point>-<ref>`` and waits forever, so the test kills the process there.
"""

from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any

from agent_framework import Agent, AgentExecutor, ChatContext, ChatMiddleware, Workflow, WorkflowBuilder, tool

from tests.crash_agents.ledger import Ref, _append, _stop_here_if_armed


@tool(approval_mode="always_require")
async def charge(amount: Annotated[int, "How much to charge."], ref: Ref) -> str:
    """Charge an amount (asks for approval first)."""
    _append("charges.jsonl", {"ref": ref, "amount": amount})
    await _stop_here_if_armed(f"tool-{ref}")
    return f"Charged {amount}."


class StopAfterTheTool(ChatMiddleware):
    """The model call that carries the tool's result: the armed test's crash point after the tool returned."""

    async def process(self, context: ChatContext, call_next: Callable[[], Awaitable[None]]) -> None:
        calls = [c for m in context.messages for c in m.contents if c.type == "function_call"]
        if any(c.type == "function_result" for m in context.messages for c in m.contents) and calls:
            await _stop_here_if_armed(f"model-{calls[-1].parse_arguments().get('ref')}")
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
