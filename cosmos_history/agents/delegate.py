"""``delegate("assistant")``: another agent of the app as a tool, for an agent module's ``tools``.

The framework's ``Agent.as_tool()`` runs the other agent in memory, in a session nobody keeps, and does not
carry its approvals to the caller. This tool instead marks the call for the turn's delegation middleware
(:mod:`cosmos_history.domain.delegation`), which runs the other agent's turn through the turn service in a
child session: stored, linked from the parent, retried and approved exactly as any session is.
"""

from __future__ import annotations

from typing import Any

from agent_framework import FunctionTool

from cosmos_history.domain.delegation import DELEGATE_TO, TASK
from cosmos_history.domain.tool_journal import IDEMPOTENCY_KEY


def delegate(agent: str, *, name: str | None = None, description: str | None = None) -> FunctionTool:
    """A tool (named ``ask_<agent>`` unless ``name`` says otherwise) that hands a task to ``agent``.

    The app checks at start-up that ``agent`` is one of its agents.
    """
    return FunctionTool(
        name=name or f"ask_{agent}".replace("-", "_"),
        description=description or f"Ask the {agent} agent to do a task; it answers in its own conversation.",
        func=_outside_the_app,
        input_model={
            "type": "object",
            "properties": {TASK: {"type": "string", "description": f"What to ask the {agent} agent, in full."}},
            "required": [TASK],
            "additionalProperties": False,
        },
        # A key stable across a turn's attempts: the child's turn is replayed, not run again, on a retry.
        additional_properties={DELEGATE_TO: agent, IDEMPOTENCY_KEY: True},
    )


def _outside_the_app(**_: Any) -> str:
    """Runs only when the agent is used outside the app's turn service, which handles delegation calls."""
    return "Error: delegation to another agent works only inside the cosmos-history app."
