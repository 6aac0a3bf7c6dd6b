"""The turn service: the one way into a turn for every trigger and protocol.

The runtime builds one :class:`Turns` (store, agents, guards, history policy) at start-up; HTTP handlers, the
OpenAI-compatible adapter, the MCP server and any other trigger only build a
:class:`~cosmos_history.domain.results.TurnRequest` and hand it over with the caller's user id.
Nothing but this module calls into :mod:`cosmos_history.domain.turn`.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cosmos_history import telemetry
from cosmos_history.domain.client_tools import ClientTool, check_tool_names
from cosmos_history.domain.modes import HistoryMode
from cosmos_history.domain.policy import DEFAULT_POLICY, HistoryPolicy
from cosmos_history.domain.results import ResponseKeeper, TurnRequest, TurnResult
from cosmos_history.domain.supervisor import TurnSupervisor
from cosmos_history.domain.turn import NO_GUARDS, TurnGuards, execute_turn

if TYPE_CHECKING:
    # What only a streamed turn and the reads of a turn run is imported where they do (a cold start's plain first
    # turn needs none of it: bench/optimisations.md); the ports only annotate.
    from cosmos_history.domain.cancel import TurnControl
    from cosmos_history.domain.event_log import TurnRecorder
    from cosmos_history.domain.events import EventSink
    from cosmos_history.domain.ports import AgentCatalog, SessionRepository
    from cosmos_history.domain.streaming import TurnStream
    from cosmos_history.domain.turn_records import StoredEvent, TurnLog, TurnRecord


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
    log: TurnLog | None = None
    """Where streamed turns keep their records and events (``None``: nowhere; they are then not addressable)."""
    flush_seconds: float = 1.0
    """How often a streamed turn's buffered events are stored (and its cancel flag looked at)."""
    poll_seconds: float = 0.5
    """How often a follower of a turn running elsewhere looks for its next stored batch."""
    policy: HistoryPolicy = DEFAULT_POLICY
    """A new session's mode and the document's budget (the runtime's, from settings)."""

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

    async def run(self, request: TurnRequest, *, caller: str, keep: ResponseKeeper | None = None) -> TurnResult:
        """Run exactly one turn for ``caller`` and answer with the whole reply. ``keep`` makes the response
        object committed with the turn (never called for a replay, nor for a turn that stores nothing).

        Raises:
            ModeConflictError: ``mode`` differs from the existing session's mode.
            AgentNotFoundError: no agent is called ``agent``. AgentMismatchError: the session has another agent.
            TurnInProgressError: another turn holds the session's lease (no model call was made).
            ModelCallError: the model failed, timed out or returned nothing; the stored session is unchanged.
            ThreadExpiredError: the service no longer knows the session's thread; the session is unchanged.
            SessionConflictError: another request changed the session during this turn.
        """
        return await self._turn(request, caller, self.events, streamed=False, keep=keep)

    async def stream(
        self,
        request: TurnRequest,
        *,
        caller: str,
        queued: TurnRecord | None = None,
        keep: ResponseKeeper | None = None,
        subscriber: EventSink | None = None,
    ) -> TurnStream:
        """Start exactly one turn whose reply streams; return once the model has started answering.

        Everything :meth:`run` checks is checked before the model is called, and a turn that fails before
        the model's first update raises here, so callers can still answer with a plain error. The session
        is written once, after the stream completed. A replayed turn streams its stored reply as one piece.
        ``queued``: the record of the queued turn this runs (it keeps its attempt, so followers go on).
        ``subscriber`` hears every event in the turn's own task, before the commit (so ``keep`` can make the
        stored response from what it heard).
        """
        from cosmos_history.domain.cancel import TurnControl
        from cosmos_history.domain.events import Fanout
        from cosmos_history.domain.streaming import TurnStream

        control = TurnControl(self.supervisor)
        recorder = self._recorder(caller, control, queued) if self.log is not None and request.store else None
        stream = TurnStream(ready=recorder.stored if recorder is not None else None)
        sinks: list[EventSink] = [stream]
        if subscriber is not None:
            sinks.append(subscriber)
        if recorder is not None:
            sinks.append(recorder)
        if self.events is not None:
            sinks.append(self.events)
        sink = stream if len(sinks) == 1 else Fanout(sinks)
        turn = self._turn(request, caller, sink, streamed=True, control=control, keep=keep)
        stream.start(turn, self.supervisor, session_id=request.session_id)
        await stream.started()
        return stream

    async def _child(self, request: TurnRequest, caller: str) -> TurnResult:
        """A sub-agent's turn in its child session (see :mod:`cosmos_history.domain.delegation`)."""
        return await self.run(request, caller=caller)

    def _recorder(self, caller: str, control: TurnControl, queued: TurnRecord | None) -> TurnRecorder:
        from cosmos_history.domain.event_log import TurnRecorder

        assert self.log is not None
        timeout = self.guards.model_timeout_seconds or 0
        lease = self.guards.lease.seconds if self.guards.lease is not None else 0
        return TurnRecorder(
            self.log,
            user_id=caller,
            control=control,
            flush_seconds=self.flush_seconds,
            # Past this a turn still in progress was lost with its process (its lease ran out too).
            deadline_seconds=timeout + 2 * lease + 10 * self.flush_seconds + 30,
            queued=queued,
        )

    async def read_turn(self, session_id: str, turn: int, *, caller: str) -> dict[str, Any]:
        """The caller's turn in the turn answer's shape plus ``status`` (see :func:`turn_reads.read_turn`)."""
        from cosmos_history.domain import turn_reads

        return await turn_reads.read_turn(self.sessions_of(caller), self.log, session_id, turn)

    async def follow(self, session_id: str, turn: int, *, caller: str, after: int) -> AsyncIterator[StoredEvent]:
        """The turn's stored events after ``after``, then its live ones to its end (see :func:`turn_reads.follow`).

        Raises (before the first event): TurnNotFoundError, EventsGoneError, SessionNotFoundError."""
        from cosmos_history.domain import turn_reads

        record = await turn_reads.streamed_record(self.sessions_of(caller), self.log, session_id, turn)
        assert self.log is not None
        return turn_reads.follow(self.log, record, after=after, poll_seconds=self.poll_seconds)

    async def cancelled_turns(self, session_id: str, *, caller: str, after: int) -> set[int]:
        """The numbers after ``after`` of the caller's turns that a cancel stopped while they ran: each used its
        number up and left nothing in the history, so a reader counting the history's turns skips them."""
        if self.log is None:
            return set()
        return set(await self.log.cancelled_turns(session_id, caller, after=after))

    async def cancel(self, session_id: str, turn: int, *, caller: str) -> dict[str, Any]:
        """Stop the caller's queued or running turn (see :func:`turn_reads.cancel`).

        Raises: TurnNotFoundError, TurnFinishedError (it had ended)."""
        from cosmos_history.domain import turn_reads

        stop_here = functools.partial(self.supervisor.cancel_turn, (caller, session_id, turn))
        return await turn_reads.cancel(
            self.sessions_of(caller), self.log, session_id, turn, stop_here=stop_here, poll_seconds=self.poll_seconds
        )

    async def _turn(
        self,
        request: TurnRequest,
        caller: str,
        sink: EventSink | None,
        *,
        streamed: bool,
        control: TurnControl | None = None,
        keep: ResponseKeeper | None = None,
    ) -> TurnResult:
        """One traced turn; ``sink`` hears its events (all of them when ``streamed``, else how it ended)."""
        store = self.sessions_of(caller)
        async with telemetry.traced_turn(session_id=request.session_id, user_id=caller) as trace:
            try:
                result = await execute_turn(
                    store,
                    self.agents,
                    request,
                    guards=self.guards,
                    policy=self.policy,
                    sink=sink if streamed else None,
                    delegate=self._child,
                    control=control,
                    keep=keep,
                )
            except BaseException as error:
                if sink is not None:
                    from cosmos_history.domain.events import TurnFailed

                    await sink.publish(TurnFailed(error))
                raise
            trace.completed(result)
        if sink is not None:
            from cosmos_history.domain.events import TurnCompleted

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
    policy: HistoryPolicy = DEFAULT_POLICY,
) -> TurnResult:
    """One turn on ``store``'s user's session, for scripts and the library API (:meth:`Turns.run`)."""
    request = TurnRequest(session_id, message, mode, agent, idempotency_key, approvals)
    return await Turns(store, agents, guards, policy=policy).run(request, caller=store.user_id)


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
    policy: HistoryPolicy = DEFAULT_POLICY,
) -> TurnStream:
    """One streamed turn, for scripts and the library API (:meth:`Turns.stream`)."""
    request = TurnRequest(session_id, message, mode, agent, idempotency_key, approvals)
    return await Turns(store, agents, guards, policy=policy).stream(request, caller=store.user_id)
