"""The shipped default agent, unchanged."""

from agents.assistant import create_agent

__all__ = ["create_agent"]
