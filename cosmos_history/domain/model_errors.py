"""What the model providers' errors mean, told apart without importing any provider SDK."""

from __future__ import annotations

from agent_framework import MiddlewareFailure

from cosmos_history.domain.errors import ModelCallError, ProblemError, ThreadExpiredError
from cosmos_history.domain.records import SessionRecord

_UNKNOWN_THREAD_CODES = frozenset({"previous_response_not_found", "conversation_not_found"})
_THREAD_PARAMS = frozenset({"previous_response_id", "conversation"})


def is_unknown_thread(error: BaseException) -> bool:
    """Whether ``error`` (or an exception it wraps) is the OpenAI SDK's answer for an unknown
    ``previous_response_id``/``conversation``: 404 (or 400) with that code or parameter.

    Duck-typed on ``openai.APIStatusError``'s attributes so this module never imports a provider SDK.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        status = getattr(current, "status_code", None)
        if status in (400, 404):
            code = str(getattr(current, "code", None) or "")
            param = str(getattr(current, "param", None) or "")
            if code in _UNKNOWN_THREAD_CODES or param in _THREAD_PARAMS:
                return True
        current = current.__cause__ or current.__context__
    return False


def model_call_error(error: BaseException, record: SessionRecord) -> BaseException:
    """The client-facing error for a failed model call: a thread the service forgot is a 409 the client
    can act on (start over); a timeout or anything else is a 502. Exception text never reaches the client.
    Cancellation is passed through unchanged."""
    if isinstance(error, ProblemError) or not isinstance(error, Exception):
        return error
    if isinstance(error, MiddlewareFailure) and isinstance(error.__cause__, ProblemError):
        return error.__cause__  # a tool's journal write failed (a conflict, an outage): that is the answer
    if isinstance(error, TimeoutError):
        return ModelCallError("The model did not answer in time; the session was left unchanged.")
    if record.session.service_session_id and is_unknown_thread(error):
        return ThreadExpiredError(
            "The model service no longer keeps this session's thread (it expired or was deleted); "
            "the session was left unchanged. Start a new session, or DELETE this one and send the message again."
        )
    return ModelCallError("The model call failed; the session was left unchanged. Retry later.")
