"""The A2A request handler (the ``a2a-sdk`` server's :class:`RequestHandler`) of one agent, for one caller.

It keeps nothing between requests: a message becomes a :class:`TurnRequest` for the one turn service (as the
native API's ``POST /api/sessions/{id}/messages`` and ``.../approvals`` do: the same session documents,
lease, etag and exactly-once approvals), and a task is read back from the caller's stored session
(:mod:`.tasks`). ``contextId`` is the session id: a message without one starts a new session, which the
caller's ``GET /api/sessions`` lists. A message's ``messageId`` is its ``Idempotency-Key`` (:func:`message_key`):
a retry replays the turn it made; a message without a context names its new session after its ``messageId``
too, so its retry finds that session.

The app's typed errors become A2A's JSON-RPC errors here (:func:`a2a_error`), with the native problem document
as their ``data``; nothing else of an exception reaches the caller.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import AsyncGenerator, Awaitable, Iterator
from dataclasses import replace
from typing import Any, NoReturn, TypeVar

from a2a.server.context import ServerCallContext
from a2a.server.events import Event
from a2a.server.request_handlers import RequestHandler
from a2a.server.request_handlers.request_handler import validate_request_params
from a2a.types import (
    AgentCard,
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetExtendedAgentCardRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTaskPushNotificationConfigsResponse,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    SendMessageRequest,
    SubscribeToTaskRequest,
    Task,
    TaskPushNotificationConfig,
)
from a2a.utils.errors import (
    A2AError,
    InternalError,
    InvalidParamsError,
    PushNotificationNotSupportedError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from a2a.utils.task import apply_history_length, validate_history_length

from cosmos_history.domain.approvals import pending_approvals
from cosmos_history.domain.errors import (
    NotLatestResponseError,
    ProblemError,
    SessionNotFoundError,
    StoreUnavailableError,
    TurnFinishedError,
    TurnNotFoundError,
)
from cosmos_history.domain.records import SessionRecord
from cosmos_history.domain.results import TurnRequest
from cosmos_history.http.a2a import stream, tasks
from cosmos_history.http.a2a.inputs import Answer, Ask, parse_message
from cosmos_history.http.bodies import parse_session_id
from cosmos_history.http.calls import Call
from cosmos_history.http.responses import problem_body

logger = logging.getLogger(__name__)

T = TypeVar("T")
NEW_CONTEXTS = uuid.UUID("6f1d8f8e-2b4a-4c1e-9a57-0a2a0c0a2a01")
"""The namespace of the session ids made from the ``messageId`` of a message that names no context."""


class SessionTaskHandler(RequestHandler):
    """Serves one agent's A2A methods for the caller of ``call``, on their own sessions.

    A store outage is noted in ``outages`` as well as answered: the route then answers as every route
    answers one (a 503 with Retry-After, and the runtime's chance to recreate a deleted container).
    """

    def __init__(self, call: Call, agent: str, outages: list[StoreUnavailableError]) -> None:
        self.call = call
        self.agent = agent
        self.outages = outages

    @validate_request_params
    async def on_message_send(self, params: SendMessageRequest, context: ServerCallContext) -> Task:
        validate_history_length(params.configuration)
        with self.translated():
            request, task = await self._turn(params.message)
            result = await self._fresh(self.call.turns.run(request, caller=self.call.user_id), params.message)
            answered = tasks.task_of_result(
                result, task=task or tasks.task_id(result.session_id, result.turn), request=params.message
            )
        return apply_history_length(answered, params.configuration)

    @validate_request_params
    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        """The turn's events as A2A events; everything found wrong before the model answers is a plain error."""
        with self.translated():
            request, task = await self._turn(params.message)
            if task is None and request.expected_turn is None:  # the next turn, if it still is when it runs
                latest = await self.call.turns.latest_turn(request.session_id, caller=self.call.user_id)
                request = replace(request, expected_turn=latest)
            turn = await self._fresh(self.call.turns.stream(request, caller=self.call.user_id), params.message)
            if task is None:  # a retried message replays the turn it made, whatever turn the session is at
                # The turn's number is known once it started (a replay's is the turn it replays).
                made = turn.turn if turn.turn is not None else (request.expected_turn or 0) + 1
                task = tasks.task_id(request.session_id, made)
        with self.translated():  # the stream began: a failure now ends it with a JSON-RPC error event
            async for event in stream.task_events(turn, task=task, context_id=request.session_id, sent=params.message):
                yield event

    @validate_request_params
    async def on_get_task(self, params: GetTaskRequest, context: ServerCallContext) -> Task:
        validate_history_length(params)
        with self.translated():
            recorded = await self._recorded(params.id)
            if recorded is not None:
                task = tasks.recorded_task(recorded)
            else:
                record, stored = await self._task_of(params.id)
                task = tasks.stored_task(stored, record)
        return apply_history_length(task, params)

    @validate_request_params
    async def on_cancel_task(self, params: CancelTaskRequest, context: ServerCallContext) -> Task:
        """A queued or running task is cancelled as ``POST /api/sessions/{id}/turns/{turn}/cancel`` cancels its
        turn (on any instance: through the runtime here, through the turn's record elsewhere), and answered
        ``canceled`` once it stopped (``working`` while it is still stopping). A task that ended is not
        cancelable, nor is one waiting on approvals (declining them ends it)."""
        with self.translated():
            recorded = await self._recorded(params.id)
            if recorded is None:
                record, stored = await self._task_of(params.id)
                if stored.latest and pending_approvals(record.session):
                    raise TaskNotCancelableError(
                        message="This task waits for approvals; decline them (approved: false) to end it."
                    )
                raise TaskNotCancelableError(message="The task is completed already.")
            if recorded["status"] not in ("queued", "in_progress"):
                raise TaskNotCancelableError(message=f"The task has ended ({recorded['status']}).")
            try:
                stopped = await self.call.turns.cancel(
                    recorded["sessionId"], recorded["turn"], caller=self.call.user_id
                )
            except TurnFinishedError:  # it ended between the read and the cancel
                raise TaskNotCancelableError(message="The task has ended.") from None
        return tasks.recorded_task(stopped)

    @contextlib.contextmanager
    def translated(self) -> Iterator[None]:
        """The app's errors as A2A's (see :func:`a2a_error`); anything unexpected as a bare internal error,
        logged by type only (an exception's text may quote the user's message)."""
        try:
            yield
        except A2AError:
            raise
        except ProblemError as error:
            if isinstance(error, StoreUnavailableError):
                self.outages.append(error)
            raise a2a_error(error) from None
        except Exception as error:
            logger.error("Unhandled %s in an A2A request", type(error).__name__)
            logger.debug("A2A request failure details", exc_info=error)
            raise InternalError(message="The server failed to handle this request.") from None

    async def _turn(self, message: Message) -> tuple[TurnRequest, str | None]:
        """The turn a message asks for, and the task it continues (``None``: it starts one)."""
        asked = parse_message(message, self.call.settings.max_message_chars)
        session_id = self._context_id(message.context_id)
        if not message.task_id:
            if isinstance(asked, Answer):
                raise InvalidParamsError(message="Approvals answer a task: name it in the message's taskId.")
            key = message_key(message.message_id)
            if session_id is None:  # a new session, named by the message: its retry lands on it (and only then)
                new = str(uuid.uuid5(NEW_CONTEXTS, message.message_id))
                return TurnRequest(new, asked.text, agent=self.agent, idempotency_key=key, expected_turn=0), None
            return TurnRequest(session_id, asked.text, agent=self.agent, idempotency_key=key), None
        record, stored = await self._task_of(message.task_id)
        if session_id is not None and session_id != record.id:
            raise InvalidParamsError(message="The message's contextId is not the context of its task.")
        waiting = pending_approvals(record.session) if stored.latest else []
        if not waiting:
            raise UnsupportedOperationError(
                message="The task is completed; send the next message on its context, without a taskId."
            )
        if isinstance(asked, Ask):
            raise InvalidParamsError(
                message='The task waits for approvals: answer them with a data part {"approvals": [...]}.'
            )
        return TurnRequest(record.id, "", agent=self.agent, approvals=asked.approvals), message.task_id

    async def _fresh(self, turn: Awaitable[T], message: Message) -> T:
        """``turn`` of ``message``; the session having moved on from the turn the message was to make is told
        as what it means here: a message without a context whose id started another conversation already, or
        (streamed) another message on the context answered meanwhile, which a retry gets past."""
        try:
            return await turn
        except NotLatestResponseError:
            if message.task_id:
                raise
            if message.context_id:
                raise InvalidParamsError(
                    message="Another message on this context was answered meanwhile: send this one again."
                ) from None
            raise InvalidParamsError(
                message="This messageId started another conversation already: give each message an id of its own."
            ) from None

    def _context_id(self, value: str) -> str | None:
        if not value:
            return None
        try:
            return parse_session_id(value)
        except ProblemError as error:
            raise InvalidParamsError(message=f"contextId: {error.detail}") from None

    async def _recorded(self, value: str) -> dict[str, Any] | None:
        """The turn that task ``value`` names, as its record tells it (:func:`read_turn
        <cosmos_history.domain.turn_reads.read_turn>`), when that record is where the task is read from: a turn
        still queued or running, cancelled, or failed without saving anything (:data:`tasks.RECORDED_STATES`);
        ``None`` for a turn the stored session holds. Only the caller's turns, of this agent, are found.
        """
        named = tasks.parse_task_id(value)
        if named is None:
            raise TaskNotFoundError
        session_id, turn = named
        found = await self.call.turns.read_turn(session_id, turn, caller=self.call.user_id)
        if found.get("status") not in tasks.RECORDED_STATES:
            return None
        agent = found.get("agent")
        if agent is None:  # a queued turn names no agent when its request named none: the session's
            session = await self.call.store.load(session_id)
            agent = session.agent if session is not None else None
        if (agent or self.call.agents.default) != self.agent:
            raise TaskNotFoundError
        return found

    async def _task_of(self, value: str) -> tuple[SessionRecord, tasks.StoredTask]:
        """The caller's stored session and the task ``value`` names in it (of this agent)."""
        named = tasks.parse_task_id(value)
        if named is None:
            raise TaskNotFoundError
        session_id, turn = named
        record = await self.call.store.load(session_id)
        if record is None or (record.agent or self.call.agents.default) != self.agent:
            raise TaskNotFoundError
        cancelled: set[int] = set()
        if record.mode != "service" and 1 <= turn <= record.turns:  # the history's turns, counted back, skip them
            cancelled = await self.call.turns.cancelled_turns(session_id, caller=self.call.user_id, after=turn - 1)
        if turn in cancelled:  # read from its record (see _recorded); nothing of it is left to continue
            return record, tasks.StoredTask(record.id, turn, None, latest=False)
        stored = await tasks.read_task(self.call.store, record, turn, cancelled=cancelled)
        if stored is None:
            raise TaskNotFoundError
        return record, stored

    async def on_list_tasks(self, params: ListTasksRequest, context: ServerCallContext) -> ListTasksResponse:
        _unsupported("Listing tasks is not supported; GET /api/sessions lists your contexts.")

    async def on_subscribe_to_task(
        self, params: SubscribeToTaskRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        _unsupported(
            "Resubscribing is not supported: get the task, or follow its turn's events at "
            "GET /api/sessions/{id}/turns/{turn}/events."
        )
        yield  # an async generator, as the interface declares

    async def on_create_task_push_notification_config(
        self, params: TaskPushNotificationConfig, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError

    async def on_get_task_push_notification_config(
        self, params: GetTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError

    async def on_list_task_push_notification_configs(
        self, params: ListTaskPushNotificationConfigsRequest, context: ServerCallContext
    ) -> ListTaskPushNotificationConfigsResponse:
        raise PushNotificationNotSupportedError

    async def on_delete_task_push_notification_config(
        self, params: DeleteTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> None:
        raise PushNotificationNotSupportedError

    async def on_get_extended_agent_card(
        self, params: GetExtendedAgentCardRequest, context: ServerCallContext
    ) -> AgentCard:
        _unsupported("There is no extended agent card: the public card is the whole card.")


def message_key(message_id: str) -> str:
    """The ``Idempotency-Key`` of an A2A message: a retry with the same ``messageId`` (the same text) replays
    the turn it made instead of running another. Hashed, so any id the protocol allows makes a valid key."""
    return "a2a:" + hashlib.sha256(message_id.encode()).hexdigest()[:40]


def _unsupported(message: str) -> NoReturn:
    raise UnsupportedOperationError(message=message)


def a2a_error(error: ProblemError) -> A2AError:
    """The app's error as A2A's: a session (and so task) not found is ``TaskNotFoundError``, the caller's other
    mistakes invalid params, the rest internal errors; ``data`` is the native problem document (with when to
    retry, where that helps)."""
    problem = problem_body(error)
    if error.retry_after is not None:
        problem["retryAfter"] = error.retry_after
    # The JSON-RPC error's data is a google.rpc.ErrorInfo, whose metadata maps strings to strings.
    problem = {key: value if isinstance(value, str) else json.dumps(value) for key, value in problem.items()}
    if isinstance(error, (SessionNotFoundError, TurnNotFoundError)):
        return TaskNotFoundError(data=problem)
    if not error.kind.caller_fault:
        if error.log_each and not isinstance(error, StoreUnavailableError):
            cause = type(error.__cause__).__name__ if error.__cause__ is not None else "-"
            logger.warning("A2A turn failed: %s (caused by %s)", error.title, cause)
        return InternalError(message=f"{error.title}: {error.detail}", data=problem)
    return InvalidParamsError(message=f"{error.title}: {error.detail}", data=problem)
