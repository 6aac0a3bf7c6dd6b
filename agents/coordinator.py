"""An agent that delegates: it hands tasks to the ``assistant`` agent, which works in a child session.

Each delegation is a turn of ``assistant`` in a session of its own (``GET /api/sessions/{id}`` lists it under
``children``). When ``assistant`` needs an approval, this agent's turn waits for it too, and the caller answers
it through this session's approvals. Try it with the offline model:
``/ask_assistant {"task": "/schedule_reminder {\\"text\\": \\"call Ada\\", \\"at\\": \\"2026-12-01T09:00\\"}"}``.
"""

from __future__ import annotations

from typing import Any

from agent_framework import Agent

from cosmos_history.agents import delegate


def create_agent(client: Any) -> Agent:
    return Agent(
        client=client,
        name="coordinator",
        description="Plans a task and hands its parts to the assistant agent.",
        instructions=(
            "You coordinate. Hand each concrete task to the assistant with ask_assistant, in full sentences, "
            "then tell the person what was done."
        ),
        tools=[delegate("assistant")],
    )
