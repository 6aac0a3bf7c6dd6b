"""The turn service: the one way into a turn for every trigger and protocol.

The runtime builds one :class:`Turns` (store, agents, guards) at start-up; HTTP handlers, the
OpenAI-compatible adapter, the MCP server and any other trigger only build a
:class:`~cosmos_history.domain.results.TurnRequest` and hand it over with the caller's user id.
Nothing but this module calls into :mod:`cosmos_history.domain.turn`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cosmos_history import telemetry
from cosmos_history.domain.client_tools import ClientTool, check_tool_names
from cosmos_history.domain.events import EventSink, Fanout, TurnCompleted, TurnFailed
from cosmos_history.domain.modes import HistoryMode
from cosmos_history.domain.ports import AgentCatalog, SessionRepository
from cosmos_history.domain.results import TurnRequest, TurnResult
from cosmos_history.domain.streaming import TurnStream
from cosmos_history.domain.supervisor import TurnSupervisor
from cosmos_history.domain.turn import NO_GUARDS, TurnGuards, execute_turn


@dataclass(frozen=True)
class Turns:
    """Runs turns on the sessions of ``repository`` with the app's agents and guards.

    Every turn's events go to ``events`` too (with a streamed turn's live reader): the place for a durable
    event log. Streamed turns run under ``supervisor``, which the runtime drains as it shuts down.
    """

    repository: SessionRepository
    agents: AgentCatalog
    guards: TurnGuards = NO_GUARDS
    events: EventSink | None = None
    supervisor: TurnSupervisor = field(default_factory=TurnSupervisor)

    def sessions_of(self, caller: str) -> SessionRepository:
        """The caller's view of the sessions: the repository itself when it is already theirs."""
        return self.repository if self.repository.user_id == caller else self.repository.for_user(caller)

    def check_client_tools(self, agent: str | None, tools: Sequence[ClientTool]) -> None:
        """The client's tools may not shadow the agent's own (see :func:`check_tool_names`).

        Raises:
            AgentNotFoundError: no agent is called ``agent``. BadRequestError: a tool takes an own tool's name.
        """
        check_tool_names((tool.name for tool in self.agents.resolve(agent).tools()), tools)

    async def latest_turn(self, session_id: str, *, caller: str) -> int:
        """The number of the caller's session's latest turn (0 for a session that does not exist yet), for a
        client that names the turn it continues before it starts."""
        record = await self.sessions_of(caller).load(session_id)
        return record.turns if record is not None else 0

    async def run(self, request: TurnRequest, *, caller: str) -> TurnResult:
        """Run exactly one turn for ``caller`` and answer with the whole reply.

        Raises:
            ModeConflictError: ``mode`` differs from the existing session's mode.
            AgentNotFoundError: no agent is called ``agent``. AgentMismatchError: the session has another agent.
            TurnInProgressError: another turn holds the session's lease (no model call was made).
            ModelCallError: the model failed, timed out or returned nothing; the stored session is unchanged.
            ThreadExpiredError: the service no longer knows the session's thread; the session is unchanged.
            SessionConflictError: another request changed the session during this turn.
        """
        return await self._turn(request, caller, self.events, streamed=False)

    async def stream(self, request: TurnRequest, *, caller: str) -> TurnStream:
        """Start exactly one turn whose reply streams; return once the model has started answering.

        Everything :meth:`run` checks is checked before the model is called, and a turn that fails before
        the model's first update raises here, so callers can still answer with a plain error. The session
        is written once, after the stream completed. A replayed turn streams its stored reply as one piece.
        """
        stream = TurnStream()
        sink = stream if self.events is None else Fanout([stream, self.events])
        stream.start(self._turn(request, caller, sink, streamed=True), self.supervisor, session_id=request.session_id)
        await stream.started()
        return stream

    async def _child(self, request: TurnRequest, caller: str) -> TurnResult:
        """A sub-agent's turn in its child session (see :mod:`cosmos_history.domain.delegation`)."""
        return await self.run(request, caller=caller)

    async def _turn(self, request: TurnRequest, caller: str, sink: EventSink | None, *, streamed: bool) -> TurnResult:
        """One traced turn; ``sink`` hears its events (all of them when ``streamed``, else how it ended)."""
        store = self.sessions_of(caller)
        async with telemetry.traced_turn(session_id=request.session_id, user_id=caller) as trace:
            try:
                result = await execute_turn(
                    store,
                    self.agents,
                    request,
                    guards=self.guards,
                    sink=sink if streamed else None,
                    delegate=self._child,
                )
            except BaseException as error:
                if sink is not None:
                    await sink.publish(TurnFailed(error))
                raise
            trace.completed(result)
        if sink is not None:
            await sink.publish(TurnCompleted(result))
        return result


async def run_turn(
    store: SessionRepository,
    agents: AgentCatalog,
    *,
    session_id: str,
    message: str,
    mode: HistoryMode | None = None,
    agent: str | None = None,
    idempotency_key: str | None = None,
    approvals: Sequence[tuple[str, bool]] | None = None,
    guards: TurnGuards = NO_GUARDS,
) -> TurnResult:
    """One turn on ``store``'s user's session, for scripts and the library API (:meth:`Turns.run`)."""
    request = TurnRequest(session_id, message, mode, agent, idempotency_key, approvals)
    return await Turns(store, agents, guards).run(request, caller=store.user_id)


async def run_turn_stream(
    store: SessionRepository,
    agents: AgentCatalog,
    *,
    session_id: str,
    message: str,
    mode: HistoryMode | None = None,
    agent: str | None = None,
    idempotency_key: str | None = None,
    approvals: Sequence[tuple[str, bool]] | None = None,
    guards: TurnGuards = NO_GUARDS,
) -> TurnStream:
    """One streamed turn, for scripts and the library API (:meth:`Turns.stream`)."""
    request = TurnRequest(session_id, message, mode, agent, idempotency_key, approvals)
    return await Turns(store, agents, guards).stream(request, caller=store.user_id)
