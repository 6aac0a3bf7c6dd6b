"""A second agent, added as the README's "Add your own agent" says: one file, one tool, a restart."""

from __future__ import annotations

from typing import Annotated, Any

from agent_framework import Agent, tool


@tool
def add(a: Annotated[int, "The first number."], b: Annotated[int, "The second number."]) -> int:
    """Add two numbers."""
    return a + b


@tool
def flaky() -> str:
    """A tool that always fails, as tools sometimes do."""
    raise RuntimeError("the flaky tool failed")


def create_agent(client: Any) -> Agent:
    return Agent(client=client, name="helper", description="Adds numbers.", tools=[add, flaky])
