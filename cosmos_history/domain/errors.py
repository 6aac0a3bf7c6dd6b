"""The app's exception hierarchy: each error knows what kind of failure it is, in no protocol's words.

Errors are raised where the problem is found and mapped at each edge: to an HTTP status and problem+json in
exactly one place (:mod:`cosmos_history.http.responses`), to OpenAI's error body by the OpenAI-compatible
adapter, to JSON-RPC errors by the protocol adapters, to a retry or a drop by the queue trigger. So routes never
repeat guards, and the domain speaks no HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, ClassVar


class ErrorKind(StrEnum):
    """What went wrong, for every edge to map to its own protocol."""

    INVALID = "invalid"
    """The request is malformed: fixing it is the caller's job."""
    UNAUTHENTICATED = "unauthenticated"
    NOT_FOUND = "not_found"
    NOT_SUPPORTED = "not_supported"
    """The operation exists, not in the form asked (a method a route does not serve)."""
    CONFLICT = "conflict"
    """The request is well formed, but the session's state refuses it now (another turn, another version)."""
    UNPROCESSABLE = "unprocessable"
    """The request is well formed, but its content cannot be used."""
    GONE = "gone"
    """What was asked for existed and has passed its retention."""
    TOO_LARGE = "too_large"
    UNSUPPORTED_MEDIA = "unsupported_media"
    UPSTREAM_FAILED = "upstream_failed"
    """The model failed; nothing was saved."""
    UNAVAILABLE = "unavailable"
    """A dependency (the store, the agents) cannot serve now."""
    INTERNAL = "internal"

    @property
    def caller_fault(self) -> bool:
        """Whether the caller must change something: repeating the same request unchanged cannot succeed
        (unless the error says when to retry)."""
        return self not in (ErrorKind.UPSTREAM_FAILED, ErrorKind.UNAVAILABLE, ErrorKind.INTERNAL)


class SettingsError(ValueError):
    """A setting is missing or malformed; raised at start-up, never per request."""


class ProblemError(Exception):
    """Base of every error a client may see; ``detail`` must be safe to show."""

    kind: ClassVar[ErrorKind] = ErrorKind.INTERNAL
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
    kind = ErrorKind.INVALID
    title = "Bad request"
    slug = "bad-request"


class InvalidSessionIdError(BadRequestError, ValueError):
    """Also a ``ValueError``, as the framework's ``SessionStore.validate_session_id`` contract expects."""

    title = "Invalid session id"
    slug = "invalid-session-id"


class UnauthorizedError(ProblemError):
    kind = ErrorKind.UNAUTHENTICATED
    title = "Unauthorized"
    slug = "unauthorized"


class SessionNotFoundError(ProblemError):
    """No such session for this caller (another user's sessions are never reached: ids are per user); the
    detail is the same whatever the cause."""

    kind = ErrorKind.NOT_FOUND
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

    kind = ErrorKind.NOT_FOUND
    title = "No such route"
    slug = "route-not-found"


class MethodNotAllowedError(ProblemError):
    """A route of the API, asked with a method it does not serve."""

    kind = ErrorKind.NOT_SUPPORTED
    title = "Method not allowed"
    slug = "method-not-allowed"


class AgentNotFoundError(ProblemError):
    """A request names an agent the app does not serve."""

    kind = ErrorKind.NOT_FOUND
    title = "Agent not found"
    slug = "agent-not-found"


class AgentMismatchError(ProblemError):
    """A turn names another agent than the one its session belongs to."""

    kind = ErrorKind.CONFLICT
    title = "Session belongs to another agent"
    slug = "agent-mismatch"


class ResponseNotFoundError(ProblemError):
    """No stored response has this id for this caller (unknown, deleted, never stored, or another user's)."""

    kind = ErrorKind.NOT_FOUND
    title = "Response not found"
    slug = "response-not-found"


class TurnNotReachedError(ResponseNotFoundError):
    """A turn is continued from that its session has not reached: the id names a turn ahead of the session."""


class NotLatestResponseError(ProblemError):
    """A turn continues from an older response than the session's latest: branching is not supported."""

    kind = ErrorKind.CONFLICT
    title = "Not the latest response"
    slug = "not-latest-response"


class ClientCallPendingError(ProblemError):
    """The session waits for the outputs of calls to the client's own tools."""

    kind = ErrorKind.INVALID
    title = "Function call output missing"
    slug = "function-output-missing"


class _ApprovalProblem(ProblemError):
    """A request that does not fit the approvals a session waits for: the problem lists the pending ids
    (``pendingApprovals``) and says where to read and answer them."""

    kind = ErrorKind.CONFLICT

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

    kind = ErrorKind.CONFLICT
    title = "Concurrent modification"
    slug = "session-conflict"


class TurnInProgressError(SessionConflictError):
    """Another turn holds the session's lease; rejected before any model call."""

    title = "Turn in progress"
    slug = "turn-in-progress"


class IdempotencyKeyReusedError(ProblemError):
    """The same Idempotency-Key came with a different request body."""

    kind = ErrorKind.UNPROCESSABLE
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

    kind = ErrorKind.CONFLICT
    title = "Thread expired"
    slug = "thread-expired"


class PayloadTooLargeError(ProblemError):
    kind = ErrorKind.TOO_LARGE
    title = "Request body too large"
    slug = "payload-too-large"


class UnsupportedMediaTypeError(ProblemError):
    kind = ErrorKind.UNSUPPORTED_MEDIA
    title = "Unsupported media type"
    slug = "unsupported-media-type"


class ValidationError(ProblemError):
    kind = ErrorKind.UNPROCESSABLE
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

    kind = ErrorKind.UPSTREAM_FAILED
    title = "Model call failed"
    slug = "model-error"


class TurnTooLargeError(ModelCallError):
    """Even this turn alone does not fit one session item (an enormous reply): a storage limit, not a
    model failure, answered like one (nothing saved) because the client cannot shrink the reply."""


class StoreUnavailableError(ProblemError):
    """Cosmos DB could not be reached or kept throttling after the SDK's retries."""

    kind = ErrorKind.UNAVAILABLE
    title = "Session store unavailable"
    slug = "store-unavailable"


class AgentsUnavailableError(ProblemError):
    """The app's agents could not be built at start-up (a broken agent module, a ``DEFAULT_AGENT`` that names
    none), or its workflows at their first use: every request that needs them is refused as unavailable, with the
    cause, so a misconfigured deployment can be diagnosed from outside. Retrying cannot mend it (no ``Retry-After``);
    it is logged once, when the build failed."""

    kind = ErrorKind.UNAVAILABLE
    title = "Agents unavailable"
    slug = "agents-unavailable"
    log_each: ClassVar[bool] = False


class StoreAccessError(StoreUnavailableError):
    """The app has no credential Cosmos DB accepts: a configuration problem that retrying cannot mend,
    so it carries no ``Retry-After``; the detail names the fix. Logged once per cause, not per request."""

    title = "Session store access denied"
    slug = "store-access-denied"
    log_each: ClassVar[bool] = False


class TurnNotFoundError(ProblemError):
    """The caller's session has no such turn (or keeps no record of what was asked about it)."""

    kind = ErrorKind.NOT_FOUND
    title = "Turn not found"
    slug = "turn-not-found"


class TurnFinishedError(ProblemError):
    """A cancel arrived for a turn that had already ended: nothing is left to stop."""

    kind = ErrorKind.CONFLICT
    title = "Turn already finished"
    slug = "turn-finished"


class TurnCancelledError(ProblemError):
    """The turn was stopped by a cancel request: its number is used up, the conversation is as before it."""

    kind = ErrorKind.CONFLICT
    title = "Turn cancelled"
    slug = "turn-cancelled"


class EventsGoneError(ProblemError):
    """The turn's stored events passed their retention (``EVENTS_TTL_SECONDS``); the turn itself is still readable."""

    kind = ErrorKind.GONE
    title = "Turn events expired"
    slug = "events-gone"


class TurnLostError(ProblemError):
    """A turn's process stopped (a crash, a scale-in) before the turn ended: nothing of it was saved."""

    kind = ErrorKind.UNAVAILABLE
    title = "Turn lost"
    slug = "turn-lost"


class QueueUnavailableError(StoreUnavailableError):
    """The queue of background turns could not be reached: nothing was queued, a retry may succeed."""

    title = "Background queue unavailable"
    slug = "queue-unavailable"


class BackgroundNotConfiguredError(ProblemError):
    """The app has no queue for background turns (no host storage connection): a configuration problem no retry
    can mend (no ``Retry-After``), like :class:`AgentsUnavailableError`."""

    kind = ErrorKind.UNAVAILABLE
    title = "Background turns not configured"
    slug = "background-not-configured"
    log_each: ClassVar[bool] = False


class BackgroundTurnFailedError(ProblemError):
    """A background turn could not run: the queue gave up on it, or a turn queued before it was not saved."""

    kind = ErrorKind.INTERNAL
    title = "Background turn failed"
    slug = "background-turn-failed"
