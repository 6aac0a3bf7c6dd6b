"""A streamed turn as A2A events (``SendStreamingMessage``), encoded from the turn's typed events.

First the task (``working``, with the caller's message), then the reply as chunks of one artifact, tool calls
and results as ``working`` status updates that carry them in their metadata (no message, so clients never
mistake them for the reply), and last the task's state: ``completed``, ``input-required`` naming the
approvals, ``canceled`` when a cancel (``CancelTask``, or the native route's) stopped it, or ``failed`` with
the native problem document when the turn failed after it started (nothing of it was saved). Disconnecting
ends only this stream, never the turn (see :class:`TurnStream`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from a2a.server.events import Event
from a2a.types import (
    Artifact,
    Message,
    Part,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)

from cosmos_history.domain.errors import ProblemError, TurnCancelledError
from cosmos_history.domain.events import TextDelta, ToolCalled, ToolResult, TurnCompleted, TurnFailed
from cosmos_history.domain.streaming import TurnStream
from cosmos_history.http.a2a.tasks import (
    REPLY_ARTIFACT,
    agent_message,
    result_metadata,
    struct,
    task_status,
)
from cosmos_history.http.responses import problem_body

logger = logging.getLogger(__name__)


async def task_events(turn: TurnStream, *, task: str, context_id: str, sent: Message) -> AsyncIterator[Event]:
    """The events of ``turn`` for the task ``task`` of the context (session) ``context_id``."""
    message = Message()
    message.CopyFrom(sent)
    message.context_id, message.task_id = context_id, task
    yield Task(id=task, context_id=context_id, status=TaskStatus(state=TaskState.TASK_STATE_WORKING), history=[message])
    chunks = 0
    async for event in turn.events():
        match event:
            case TextDelta(text=text):
                chunks += 1
                artifact = Artifact(artifact_id=REPLY_ARTIFACT, name=REPLY_ARTIFACT, parts=[Part(text=text)])
                yield TaskArtifactUpdateEvent(task_id=task, context_id=context_id, artifact=artifact, append=chunks > 1)
            case ToolCalled(id=call_id, name=name, arguments=arguments):
                yield _working(task, context_id, {"toolCall": {"id": call_id, "tool": name, "arguments": arguments}})
            case ToolResult(id=call_id, result=result, status=status):
                yield _working(task, context_id, {"toolResult": {"id": call_id, "result": result, "status": status}})
            case TurnCompleted(result=result):
                yield TaskStatusUpdateEvent(
                    task_id=task,
                    context_id=context_id,
                    status=task_status(result.approvals, context_id=context_id, task=task),
                    metadata=struct(result_metadata(result)),
                )
            case TurnFailed(error=error):
                yield _failed(task, context_id, error)


def _working(task: str, context_id: str, metadata: dict[str, object]) -> TaskStatusUpdateEvent:
    status = TaskStatus(state=TaskState.TASK_STATE_WORKING)
    return TaskStatusUpdateEvent(task_id=task, context_id=context_id, status=status, metadata=struct(metadata))


def _failed(task: str, context_id: str, error: BaseException) -> TaskStatusUpdateEvent:
    if not isinstance(error, ProblemError):
        # Types only at the default level: an exception's text may quote the user's message.
        logger.error("Unhandled %s in a streamed A2A turn", type(error).__name__)
        logger.debug("Streamed A2A turn failure details", exc_info=error)
        error = ProblemError("The server failed to handle this request.")
    problem = problem_body(error)
    text = Part(text=f"{error.title}: {error.detail}")
    state = TaskState.TASK_STATE_CANCELED if isinstance(error, TurnCancelledError) else TaskState.TASK_STATE_FAILED
    status = TaskStatus(
        state=state,
        message=agent_message([text], context_id=context_id, task=task, message_id=f"{task}:ended"),
    )
    return TaskStatusUpdateEvent(
        task_id=task, context_id=context_id, status=status, metadata=struct({"error": problem})
    )
