"""The shipped default agent, unchanged: its tools are the app's tools a YAML agent names."""

from agents.assistant import create_agent

__all__ = ["create_agent"]
