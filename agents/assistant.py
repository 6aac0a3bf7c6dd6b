"""The default agent: a general assistant that shows each kind of tool, all working offline.

- ``current_time``: a plain tool.
- ``remember_note``: a tool whose data lives in the session. The notes are kept in ``session.state``
  under the :class:`Notes` context provider's ``source_id``; the provider shows them to the model on every
  turn, and because they are session state they are saved in the session document and survive restarts.
- ``schedule_reminder``: a tool that needs a person's approval. It runs only once approved, so the
  reminder is recorded in the session only then.
- The tools of a remote MCP server, when ``MCP_SERVER_URL`` is set (streamable HTTP, through the framework's
  ``MCPStreamableHTTPTool``). ``MCP_SERVER_HEADERS`` (a JSON object, for example an API key from Key Vault)
  is sent with every request. Every MCP tool needs approval unless ``MCP_TOOLS_REQUIRING_APPROVAL`` names the
  ones that do (comma-separated, or ``none``): a remote tool's effects are not this app's to vouch for.

Try it with the offline model: ``/current_time {"time_zone": "Europe/Lisbon"}``,
``/remember_note {"note": "Ada likes tea"}`` or ``/schedule_reminder {"text": "call Ada", "at": "2026-12-01T09:00"}``.
"""

# Annotations stay objects (no ``from __future__ import annotations``): the framework reads each tool's at start-up,
# and a string annotation costs a compile there (bench/optimisations.md).
import json
import os
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent_framework import (
    Agent,
    AgentSession,
    ContextProvider,
    FunctionInvocationContext,
    MCPStreamableHTTPTool,
    SessionContext,
    tool,
)

NOTES = "notes"
"""The ``session.state`` key (and context provider ``source_id``) of the notes."""
MAX_NOTES = 50


@tool
def current_time(time_zone: Annotated[str, "An IANA time zone, such as Europe/Lisbon or UTC."]) -> str:
    """The current date and time in a time zone."""
    try:
        zone = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        return f"Unknown time zone {time_zone!r}; use an IANA name such as Europe/Lisbon or UTC."
    return datetime.now(zone).isoformat(timespec="seconds")


@tool
def remember_note(
    note: Annotated[str, "A short fact to remember for the rest of this conversation."], ctx: FunctionInvocationContext
) -> str:
    """Remember a note in this conversation; remembered notes are shown to you on every later turn."""
    if ctx.session is None:
        return "Notes need a session; nothing was remembered."
    notes = ctx.session.state.setdefault(NOTES, {}).setdefault("items", [])
    notes.append(note.strip()[:500])
    del notes[:-MAX_NOTES]
    return f"Remembered. {len(notes)} note(s) kept."


@tool(approval_mode="always_require")
def schedule_reminder(
    text: Annotated[str, "What to remind the person of."],
    at: Annotated[str, "When, as an ISO 8601 date and time."],
    ctx: FunctionInvocationContext,
) -> str:
    """Schedule a reminder for the person (asks the person to approve first)."""
    if ctx.session is None:
        return "Reminders need a session; nothing was scheduled."
    reminders = ctx.session.state.setdefault("reminders", [])
    reminders.append({"text": text, "at": at})
    return f"Reminder {len(reminders)} scheduled for {at}."


class Notes(ContextProvider):
    """Shows the session's notes to the model before each run (they live in the session's state)."""

    def __init__(self) -> None:
        super().__init__(NOTES)

    async def before_run(
        self, *, agent: Any, session: AgentSession, context: SessionContext, state: dict[str, Any]
    ) -> None:
        notes = state.get("items") or []
        if notes:
            context.extend_instructions(NOTES, "Notes you remember from this conversation:\n- " + "\n- ".join(notes))


def mcp_servers() -> list[MCPStreamableHTTPTool]:
    """The remote MCP server the settings name, if any (connected on the agent's first run)."""
    url = os.environ.get("MCP_SERVER_URL")
    if not url:
        return []
    headers = json.loads(os.environ.get("MCP_SERVER_HEADERS") or "{}")
    return [
        MCPStreamableHTTPTool(
            name="mcp",
            url=url,
            description="Tools of the configured MCP server.",
            static_headers=headers,
            approval_mode=mcp_approval_mode(os.environ.get("MCP_TOOLS_REQUIRING_APPROVAL")),
            load_prompts=False,
        )
    ]


def mcp_approval_mode(setting: str | None) -> Any:
    """All tools need approval by default; ``none`` or a list of names narrows it."""
    if not setting or setting.strip() == "all":
        return "always_require"
    if setting.strip() == "none":
        return "never_require"
    return {"always_require_approval": [name.strip() for name in setting.split(",") if name.strip()]}


def create_agent(client: Any) -> Agent:
    return Agent(
        client=client,
        name="assistant",
        description="A helpful general assistant that can tell the time, remember notes and schedule reminders.",
        instructions="You are a helpful assistant. Answer concisely. Use your tools when they help.",
        tools=[current_time, remember_note, schedule_reminder, *mcp_servers()],
        context_providers=[Notes()],
    )
