"""A support desk: a triage agent hands the case to a specialist, who answers and asks the person for more.

A handoff (``agent-framework-orchestrations``' ``HandoffBuilder``) between two agents and one human-input step:
after the specialist's first answer the run waits (``awaiting_input``) for the person's reply, plain text; the
specialist answers it and the run completes. Both agents use the app's chat client (the one every agent of the
app shares, so it needs no particular agent), and it runs with the offline model: start it with
``{"input": "/handoff_to_specialist"}`` (the offline model calls the tool a message names) and answer the pending
request with any text. The specialist's ``refund`` tool needs a person's approval: answer
``/refund {"amount": 20}`` and the run waits again, on a ``ToolApprovalRequest``, until it is approved or rejected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from agent_framework import Agent, Message, Workflow, tool
from agent_framework_orchestrations import HandoffBuilder


def _answered(conversation: list[Message]) -> bool:
    """Done once the person replied and the specialist answered that reply."""
    return sum(1 for m in conversation if m.role == "user") >= 2 and conversation[-1].role == "assistant"


@tool(approval_mode="always_require")
def refund(amount: Annotated[int, "How much to refund, in euros."]) -> str:
    """Refund the customer (a person approves it first)."""
    return f"Refund of {amount} EUR issued."


def create_workflow(agents: Mapping[str, Agent]) -> Workflow:
    client = next(iter(agents.values())).client
    triage = Agent(
        client=client,
        name="triage",
        instructions="Read the case and hand it to the specialist with handoff_to_specialist.",
        require_per_service_call_history_persistence=True,
    )
    specialist = Agent(
        client=client,
        name="specialist",
        instructions="Answer the case, then ask the person whether anything else is needed. Refund with refund.",
        tools=[refund],
        require_per_service_call_history_persistence=True,
    )
    return (
        HandoffBuilder(name="support", participants=[triage, specialist])
        .with_start_agent(triage)
        .add_handoff(triage, [specialist])
        .with_termination_condition(_answered)
        .build()
    )
