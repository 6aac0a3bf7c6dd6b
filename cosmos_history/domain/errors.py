"""The app's exception hierarchy: each error knows the HTTP status it becomes.

Errors are raised where the problem is found and turned into problem+json in
exactly one place (:mod:`cosmos_history.http.calls`), so routes never repeat guards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar


class SettingsError(ValueError):
    """A setting is missing or malformed; raised at start-up, never per request."""


class ProblemError(Exception):
    """Base of every error a client may see; ``detail`` must be safe to show."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    slug: ClassVar[str] = "internal-error"
    log_each: ClassVar[bool] = True
    """Whether a 5xx of this kind is logged for every request (off where its cause is logged once)."""

    def __init__(
        self,
        detail: str,
        *,
        retry_after: int | None = None,
        param: str | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after
        self.param = param
        """The request field at fault, where one is (OpenAI's error body names it)."""
        self.extensions = dict(extensions or {})
        """Extension members of the problem document (RFC 9457 §3.2): what a client needs to fix the request."""


class BadRequestError(ProblemError):
    status = 400
    title = "Bad request"
    slug = "bad-request"


class InvalidSessionIdError(BadRequestError, ValueError):
    """Also a ``ValueError``, as the framework's ``SessionStore.validate_session_id`` contract expects."""

    title = "Invalid session id"
    slug = "invalid-session-id"


class UnauthorizedError(ProblemError):
    status = 401
    title = "Unauthorized"
    slug = "unauthorized"


class SessionNotFoundError(ProblemError):
    """No such session for this caller (another user's sessions are never reached: ids are per user); the
    detail is the same whatever the cause."""

    status = 404
    title = "Session not found"
    slug = "session-not-found"

    def __init__(self, detail: str = "", **options: Any) -> None:
        super().__init__(
            detail
            or "No session with this id belongs to this caller. Start one with POST /api/sessions (or send a "
            "message to a new id); sessions belong to the user who created them (see the README's "
            "'Caller identity': the X-User-Id header or the signed-in user must be the same).",
            **options,
        )


class RouteNotFoundError(ProblemError):
    """No route of the API has this path."""

    status = 404
    title = "No such route"
    slug = "route-not-found"


class MethodNotAllowedError(ProblemError):
    """A route of the API, asked with a method it does not serve."""

    status = 405
    title = "Method not allowed"
    slug = "method-not-allowed"


class AgentNotFoundError(ProblemError):
    """A request names an agent the app does not serve."""

    status = 404
    title = "Agent not found"
    slug = "agent-not-found"


class AgentMismatchError(ProblemError):
    """A turn names another agent than the one its session belongs to."""

    status = 409
    title = "Session belongs to another agent"
    slug = "agent-mismatch"


class ResponseNotFoundError(ProblemError):
    """No stored response has this id for this caller (unknown, deleted, never stored, or another user's)."""

    status = 404
    title = "Response not found"
    slug = "response-not-found"


class TurnNotReachedError(ResponseNotFoundError):
    """A turn is continued from that its session has not reached: the id names a turn ahead of the session."""


class NotLatestResponseError(ProblemError):
    """A turn continues from an older response than the session's latest: branching is not supported."""

    status = 409
    title = "Not the latest response"
    slug = "not-latest-response"


class ClientCallPendingError(ProblemError):
    """The session waits for the outputs of calls to the client's own tools."""

    status = 400
    title = "Function call output missing"
    slug = "function-output-missing"


class _ApprovalProblem(ProblemError):
    """A request that does not fit the approvals a session waits for: the problem lists the pending ids
    (``pendingApprovals``) and says where to read and answer them."""

    status = 409

    def __init__(self, detail: str, *, session_id: str, pending: Sequence[str]) -> None:
        where = f"/api/sessions/{session_id}"
        listed = ", ".join(pending) or "none"
        super().__init__(
            f"{detail} Pending approvals: {listed}. GET {where} shows what each would run; "
            f"POST {where}/approvals answers them.",
            extensions={"pendingApprovals": list(pending)},
        )


class ApprovalPendingError(_ApprovalProblem):
    """A new message while the session waits for a person to answer tool approvals."""

    title = "Approval pending"
    slug = "approval-pending"


class ApprovalUnknownError(_ApprovalProblem):
    """An approval id that is not pending on the session: unknown, forged, or already answered."""

    title = "No such pending approval"
    slug = "approval-unknown"


class SessionConflictError(ProblemError):
    """The session changed since it was read (etag mismatch) or was created concurrently."""

    status = 409
    title = "Concurrent modification"
    slug = "session-conflict"


class TurnInProgressError(SessionConflictError):
    """Another turn holds the session's lease; rejected before any model call."""

    title = "Turn in progress"
    slug = "turn-in-progress"


class IdempotencyKeyReusedError(ProblemError):
    """The same Idempotency-Key came with a different request body."""

    status = 422
    title = "Idempotency key reused"
    slug = "idempotency-key-reused"


class IdempotentResultGoneError(SessionConflictError):
    """The key's turn is part of the session, but its cached answer expired: retrying cannot help."""

    title = "Request already applied"
    slug = "idempotent-result-gone"


class SessionExistsError(SessionConflictError):
    title = "Session already exists"
    slug = "session-exists"


class ModeConflictError(SessionConflictError):
    title = "History mode mismatch"
    slug = "history-mode-conflict"


class ThreadExpiredError(ProblemError):
    """The model service no longer knows the session's thread (``service`` mode): retrying cannot help,
    so this is not a :class:`SessionConflictError` and carries no ``Retry-After``."""

    status = 409
    title = "Thread expired"
    slug = "thread-expired"


class PayloadTooLargeError(ProblemError):
    status = 413
    title = "Request body too large"
    slug = "payload-too-large"


class UnsupportedMediaTypeError(ProblemError):
    status = 415
    title = "Unsupported media type"
    slug = "unsupported-media-type"


class ValidationError(ProblemError):
    status = 422
    title = "Invalid request content"
    slug = "validation-error"


class UnstorableStateError(ValidationError, ValueError):
    """The session's state holds a value JSON cannot keep faithfully (``nan``, ``inf``); nothing was written.
    A ``ValueError``, as the framework's stores raise for it."""

    title = "Session state cannot be stored"
    slug = "unstorable-state"


class UnstorableTypeError(ValidationError, TypeError):
    """The session (or a value in its state) has a type the store cannot keep; nothing was written.
    A ``TypeError``, as the framework's stores raise for it."""

    title = "Session state cannot be stored"
    slug = "unstorable-state"


class ModelCallError(ProblemError):
    """The model failed; the session was not written."""

    status = 502
    title = "Model call failed"
    slug = "model-error"


class TurnTooLargeError(ModelCallError):
    """Even this turn alone does not fit one session item (an enormous reply): a storage limit, not a
    model failure, answered like one (502, nothing saved) because the client cannot shrink the reply."""


class StoreUnavailableError(ProblemError):
    """Cosmos DB could not be reached or kept throttling after the SDK's retries."""

    status = 503
    title = "Session store unavailable"
    slug = "store-unavailable"


class AgentsUnavailableError(ProblemError):
    """The app's agents could not be built at start-up (a broken agent module, a ``DEFAULT_AGENT`` that names
    none): every request that needs them answers 503 with the cause, so a misconfigured deployment can be
    diagnosed from outside. Retrying cannot mend it (no ``Retry-After``); it is logged once, at start-up."""

    status = 503
    title = "Agents unavailable"
    slug = "agents-unavailable"
    log_each: ClassVar[bool] = False


class StoreAccessError(StoreUnavailableError):
    """The app has no credential Cosmos DB accepts: a configuration problem that retrying cannot mend,
    so it carries no ``Retry-After``; the detail names the fix. Logged once per cause, not per request."""

    title = "Session store access denied"
    slug = "store-access-denied"
    log_each: ClassVar[bool] = False
