"""The MCP server's only calls into the turn: a message to an agent, and answers to pending approvals.

Both only build a request for the one turn service, so they run exactly the turn the native API runs
(``POST /api/sessions/{id}/messages`` and ``.../approvals``): same session documents, lease, etag and
exactly-once approvals.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from cosmos_history.domain.results import TurnRequest, TurnResult
from cosmos_history.http.calls import Call


async def ask(call: Call, agent: str, message: str, session_id: str | None) -> TurnResult:
    """One turn of ``agent`` on ``session_id``; without an id, on a new session with a server-made id
    (as ``POST /api/sessions`` without one makes), which the turn creates for the caller."""
    request = TurnRequest(session_id or str(uuid.uuid4()), message, agent=agent)
    return await call.turns.run(request, caller=call.user_id)


async def approve(call: Call, session_id: str, answers: Sequence[tuple[str, bool]]) -> TurnResult:
    """Continue the turn that waits on ``session_id``'s approvals: each pending call runs once, or is declined."""
    request = TurnRequest(session_id, "", approvals=tuple(answers))
    return await call.turns.run(request, caller=call.user_id)
