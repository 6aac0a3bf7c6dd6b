"""One conversation turn: claim and read the session, run the agent once, commit it conditionally.

Callers reach it only through the turn service (:class:`cosmos_history.domain.service.Turns`): a plain
and a streamed turn share the same preparation (:func:`prepare_turn`: the lease's claim with the read,
checks, replay), the same model call (:func:`execute_turn`) and the same ending (:meth:`PreparedTurn.finish`:
one commit of the session with the turn's other items and the lease's release, see :class:`TurnItems`).

The store and agents are parameters, so unit tests pass fakes and integration tests the real
Cosmos store. Nothing is written unless the model succeeded, and the write is conditional on
the etag read at the start: two turns racing on one session cannot both land, so no turn
silently overwrites another. A lease (when given) rejects the second of two racing turns
before it pays for a model call; a steady turn makes two requests (docs/adr-turn-storage.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent_framework import AgentResponse, Message

from cosmos_history import telemetry
from cosmos_history.domain.approvals import (
    approval_answers,
    pending_approvals,
    requested_approvals,
    tool_calls,
    with_unknown,
)
from cosmos_history.domain.budget import fit_to_budget
from cosmos_history.domain.client_tools import check_outputs, client_calls, remember_client_calls
from cosmos_history.domain.compaction import refresh_summary
from cosmos_history.domain.delegation import ChildTurns, Delegations
from cosmos_history.domain.errors import (
    ApprovalPendingError,
    ModelCallError,
    NotLatestResponseError,
    SessionConflictError,
    SessionExistsError,
    SessionNotFoundError,
    TurnNotReachedError,
)
from cosmos_history.domain.heartbeat import Pause, keep_renewed
from cosmos_history.domain.policy import HistoryPolicy
from cosmos_history.domain.records import (
    ReplayEntry,
    SessionRecord,
    TurnItems,
    first_text,
    key_digest,
    title_from,
    utc_now,
)
from cosmos_history.domain.results import ResponseKeeper, TurnRequest, TurnResult, usage_of
from cosmos_history.domain.tool_journal import ToolJournal
from cosmos_history.domain.turn_session import agent_of, load_or_new, stored_or_new

if TYPE_CHECKING:
    # What only a streamed, cancelled, failed or keyed turn runs is imported where it does (a cold start's plain
    # first turn needs none of it: bench/optimisations.md); the ports only annotate.
    from cosmos_history.domain.cancel import TurnControl
    from cosmos_history.domain.events import EventSink
    from cosmos_history.domain.ports import AgentCatalog, ReplayCache, SessionRepository, TurnLease

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TurnGuards:
    """The optional protections of a turn; all off in unit tests of the bare turn logic."""

    lease: TurnLease | None = None
    replays: ReplayCache | None = None
    model_timeout_seconds: float | None = None
    pause: Pause = asyncio.sleep
    """How the lease's heartbeat waits between renewals (tests pass one that moves their clock)."""


NO_GUARDS = TurnGuards()


async def execute_turn(
    store: SessionRepository,
    agents: AgentCatalog,
    request: TurnRequest,
    *,
    guards: TurnGuards,
    policy: HistoryPolicy,
    sink: EventSink | None = None,
    delegate: ChildTurns | None = None,
    control: TurnControl | None = None,
    keep: ResponseKeeper | None = None,
) -> TurnResult:
    """The one turn skeleton: prepare (claim and read, checks, replay), call the model, commit.

    With a ``sink`` the model's reply streams into it as typed events as it is written; the session is
    saved the same way. ``delegate`` runs the turns of the agent's delegation tools (sub-agents). A ``control``
    can stop the turn while the model and its tools work (:mod:`.cancel`). ``keep`` makes the response object
    the turn commits with its session. ``policy`` gives a new session its mode and the document its budget.
    """
    turn = await prepare_turn(store, agents, request, guards=guards, policy=policy, keep=keep)
    if isinstance(turn, TurnResult):
        if sink is not None:
            from cosmos_history.domain.events import ModelAnswering, TextDelta, TurnStarted

            await sink.publish(TurnStarted(turn.session_id, turn.turn, turn.mode, turn.agent, replayed=True))
            await sink.publish(ModelAnswering())
            if turn.reply:
                await sink.publish(TextDelta(turn.reply))
        return turn
    working = control.working() if control is not None else contextlib.nullcontext()
    try:
        if sink is not None:
            from cosmos_history.domain.events import SIGNALS_REQUEST_SENT, TurnStarted

            record = turn.record
            signalled = getattr(turn.agent.client, SIGNALS_REQUEST_SENT, False) is True
            started = TurnStarted(record.id, record.turns + 1, record.mode, record.agent, request_signalled=signalled)
            await sink.publish(started)
        with telemetry.phase("model"):
            async with turn.holding_lease(), asyncio.timeout(guards.model_timeout_seconds):
                with working:
                    if turn.record.mode == "local":
                        await refresh_summary(
                            turn.record, store.archive, turn.agent.client, agents.compaction, turn.summary_prompt
                        )
                    response = await _call_model(turn, sink, delegate)
    except BaseException as error:  # any failure of the model call: nothing has been written
        if control is not None and control.stopped(error):
            from cosmos_history.domain.cancel import stop_turn

            raise await stop_turn(turn) from None
        await turn.abandon()
        from cosmos_history.domain.model_errors import model_call_error

        raise model_call_error(error, turn.record) from error
    telemetry.note_model_response(response)
    return await turn.finish(response)


async def _call_model(turn: PreparedTurn, sink: EventSink | None, delegate: ChildTurns | None) -> AgentResponse:
    """One agent run on the session; streamed into ``sink`` when there is one."""
    request = turn.request
    run: dict[str, Any] = {"session": turn.record.session, "options": dict(request.options or {})}
    if request.client_tools:
        run["tools"] = [tool.declaration() for tool in request.client_tools]
    middleware: list[Any] = [turn.journal] if turn.journal is not None else []
    if delegate is not None:  # after the journal, which hands a delegation its idempotency key
        record, caller = turn.record, turn.store.user_id
        children = Delegations(delegate, parent_id=record.id, session=record.session, caller=caller, mode=record.mode)
        middleware.append(children)
    if middleware:
        run["middleware"] = middleware
    if sink is None:
        return await turn.agent.run(turn.message, **run)
    from cosmos_history.domain.events import ModelAnswering, TextDelta
    from cosmos_history.domain.streaming import TextDeltas, ToolEvents

    text, tools = TextDeltas(), ToolEvents(turn.message)
    stream = turn.agent.run(turn.message, stream=True, **run)
    answering = False
    async for update in stream:
        if not answering:
            answering = True
            await sink.publish(ModelAnswering())
        for event in [*(TextDelta(piece) for piece in text.feed(update.contents)), *tools.feed(update.contents)]:
            await sink.publish(event)
    return await stream.get_final_response()


@dataclass
class PreparedTurn:
    """A turn that passed every check and holds its lease; the model may now be called."""

    store: SessionRepository
    record: SessionRecord
    agent: Any
    message: str | Message | list[Message]
    guards: TurnGuards
    request: TurnRequest
    fingerprint: str
    lease_etag: str | None
    policy: HistoryPolicy
    """The budget the commit fits the document to (and the cancel's save)."""
    summary_prompt: str | None = None
    journal: ToolJournal | None = None
    """Notes each call with side effects before it runs, and hands keyed tools their key."""
    keep: ResponseKeeper | None = None
    """Makes the response object stored with the turn (in the same commit)."""

    async def finish(self, response: AgentResponse) -> TurnResult:
        """Write the session the agent just advanced, conditional on the etag it was read with."""
        try:
            waiting, handed_out = requested_approvals(response), client_calls(response)
            if not response.text.strip() and not waiting and not handed_out:
                raise ModelCallError("The model returned no text; the session was left unchanged.")
            record, replays, key = self.record, self.guards.replays, self.request.idempotency_key
            remember_client_calls(record.session, handed_out)
            unmet = self.journal.settle() if self.journal is not None else []
            record.turns += 1
            record.updated_at = utc_now()
            if record.title is None and record.mode == "local":
                record.title = title_from(first_text(self.message))
            result = TurnResult(
                record.id,
                response.text,
                record.turns,
                record.mode,
                agent=record.agent,
                tool_calls=with_unknown(
                    tool_calls(response, self.message if isinstance(self.message, Message) else None), unmet
                ),
                approvals=tuple(waiting),
                client_calls=tuple(handed_out),
                usage=usage_of(response),
            )
            if not self.request.store:
                await self.abandon()
                return result
            entry = None
            if key and replays:
                # The key, its answer and the turn land in one commit: a key is replayed only when the
                # document holds it, and then its answer is there too.
                from cosmos_history.domain import result_codec

                key_hash = key_digest(key)
                record.commit_key(key_hash, self.fingerprint, ttl_seconds=replays.ttl_seconds)
                entry = ReplayEntry(key_hash, record.turns, result_codec.encode(result), replays.ttl_seconds)
            stored_response = await self.keep(result) if self.keep is not None else None
            await self._save(TurnItems(self.lease_etag, entry, stored_response))
            return result
        except BaseException:
            await self.abandon()
            raise

    @contextlib.asynccontextmanager
    async def holding_lease(self) -> AsyncIterator[None]:
        """Keep the lease renewed while the model (and its tools) work; the commit releases its latest etag."""
        if self.guards.lease is None or self.lease_etag is None:
            yield
            return
        renewing = keep_renewed(
            self.guards.lease, self.record.id, self.store.user_id, self.lease_etag, pause=self.guards.pause
        )
        async with renewing as hold:
            try:
                yield
            finally:
                self.lease_etag = hold.etag

    async def abandon(self) -> None:
        """Give the lease back at once, so the next turn need not wait for it to expire (once committed,
        the commit released it)."""
        lease_etag, self.lease_etag = self.lease_etag, None
        if self.guards.lease is not None and lease_etag is not None:
            await self.guards.lease.release(self.record.id, self.store.user_id, lease_etag)

    async def _save(self, items: TurnItems) -> None:
        """One commit: the session (conditional on the etag it was read, or last noted, with) and ``items``."""
        try:
            with telemetry.phase("save"):
                await fit_to_budget(self.store, self.record, self.policy.budget)  # the domain decides what moves
                await self.store.save(self.record, etag=self.record.etag, items=items)
            self.lease_etag = None  # released by the commit
        except SessionExistsError:
            # A first turn raced another request of the same caller creating the same id (another
            # user's session with this id lives under another partition key and never collides).
            raise SessionConflictError(
                "The session was created by another request at the same time. Retry.", retry_after=1
            ) from None


async def prepare_turn(
    store: SessionRepository,
    agents: AgentCatalog,
    request: TurnRequest,
    *,
    guards: TurnGuards = NO_GUARDS,
    policy: HistoryPolicy,
    keep: ResponseKeeper | None = None,
) -> PreparedTurn | TurnResult:
    """Every step before the model call: claim the lease and read the session (one request), check the
    mode, replay a retried request's stored result. A replay is returned as the final result.

    A keyed request first reads without claiming (its retry is answered from the session and the replay
    cache, even while another turn holds the lease); everything after the claim is decided on the
    session as the claim read it, so nothing can change it between the checks and the model call. A
    request refused after its claim releases it at once.
    """
    served = agents.resolve(request.agent)
    fingerprint = request.fingerprint()
    keyed = bool(request.idempotency_key and guards.replays)
    record: SessionRecord | None = None
    if guards.lease is None or keyed:
        with telemetry.phase("load"):
            record = await load_or_new(store, request.session_id, request.mode, served.name, policy)
        telemetry.note_session(record.mode, record.turns)
        if keyed and (replayed := await _replayed(store, record, request, guards.replays, fingerprint)):
            return replayed
    if guards.lease is None:
        assert record is not None
        return _prepared(store, agents, record, request, guards, policy, fingerprint, None, keep)
    with telemetry.phase("load"):  # the lease's claim and the session's read are one request
        claim = await guards.lease.claim(request.session_id, store.user_id)
    try:
        record = stored_or_new(claim.record, store, request.session_id, request.mode, served.name, policy)
        if keyed and (replayed := await _replayed(store, record, request, guards.replays, fingerprint)):
            await guards.lease.release(request.session_id, store.user_id, claim.etag)
            return replayed
        return _prepared(store, agents, record, request, guards, policy, fingerprint, claim.etag, keep)
    except BaseException:
        await guards.lease.release(request.session_id, store.user_id, claim.etag)
        raise


async def _replayed(
    store: SessionRepository, record: SessionRecord, request: TurnRequest, replays: ReplayCache | None, fingerprint: str
) -> TurnResult | None:
    assert replays is not None and request.idempotency_key is not None
    from cosmos_history.domain.replay import replay

    return await replay(record, replays, store.user_id, request.idempotency_key, fingerprint)


def _prepared(
    store: SessionRepository,
    agents: AgentCatalog,
    record: SessionRecord,
    request: TurnRequest,
    guards: TurnGuards,
    policy: HistoryPolicy,
    fingerprint: str,
    lease_etag: str | None,
    keep: ResponseKeeper | None,
) -> PreparedTurn:
    """The turn on ``record``, once the request is checked against it.

    Raises:
        SessionNotFoundError, TurnNotReachedError, NotLatestResponseError: the request does not fit the session.
        ApprovalPendingError, ApprovalUnknownError, ValidationError: see :func:`turn_input`.
    """
    telemetry.note_session(record.mode, record.turns)
    agent = agent_of(agents, record, named=request.agent)
    if (request.approvals is not None or request.expected_turn) and record.etag is None:
        raise SessionNotFoundError()
    if request.expected_turn is not None and request.expected_turn > record.turns:
        turns = f"{record.turns} turn" + ("" if record.turns == 1 else "s")
        raise TurnNotReachedError(
            f"The conversation has {turns}; it has not reached turn {request.expected_turn}.",
            param="expected_turn",
        )
    if request.expected_turn is not None and request.expected_turn != record.turns:
        raise NotLatestResponseError(
            f"The conversation has moved on to turn {record.turns}; continue from its latest response "
            "(branching from an older one is not supported).",
            param="expected_turn",
        )
    message = turn_input(record, request)
    return PreparedTurn(
        store,
        record,
        agent,
        message,
        guards,
        request,
        fingerprint,
        lease_etag,
        policy,
        agents.resolve(record.agent or agents.default).summary_prompt,
        ToolJournal(store, record, durable=request.store),
        keep,
    )


def turn_input(record: SessionRecord, request: TurnRequest) -> str | Message:
    """What the agent runs on: the client's message, or its answers to the pending approvals.

    Raises:
        ApprovalPendingError: a new message while the session waits for approvals.
        ApprovalUnknownError, ValidationError: answers that do not match what is pending.
    """
    if request.approvals is None:
        if waiting := pending_approvals(record.session):
            raise ApprovalPendingError(
                "This session is waiting for tool approvals; answer them before sending a message.",
                session_id=record.id,
                pending=[approval.id for approval in waiting],
            )
        check_outputs(record.session, request.inputs)
        if not request.inputs:
            return request.message
        return [*([Message(role="user", contents=[request.message])] if request.message else []), *request.inputs]
    return approval_answers(record.session, request.approvals, session_id=record.id)
