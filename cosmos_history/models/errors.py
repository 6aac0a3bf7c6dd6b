"""What the model providers' errors mean, told apart without importing any provider SDK."""

from __future__ import annotations

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
