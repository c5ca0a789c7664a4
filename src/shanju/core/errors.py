"""Domain errors: a stable machine code, a human message and an HTTP status."""

from __future__ import annotations

from typing import Any

from shanju.core.i18n import Msg


class DomainError(Exception):
    """An error a user can cause; mapped to a 4xx JSON or form error, never a 500.

    ``message`` is an English msgid; values it shows go in ``params`` as ``%(name)s``
    placeholders (``InvalidInput("Attach at most %(n)s files.", params={"n": 5})``).
    ``exc.message`` is then the filled-in English text (the API's message) that still knows
    its msgid, so ``tr(request, exc.message)`` translates first and fills in after.
    """

    status_code = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status_code: int | None = None,
        field: str | None = None,
        details: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        if isinstance(message, Msg):
            self.message = Msg(message.msgid, {**message.params, **(params or {})})
        else:
            self.message = Msg(message, params)
        super().__init__(str(self.message))
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.field = field
        self.details = details or {}

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers the answer carries (e.g. ``Retry-After`` of a 429)."""
        return {}

    @property
    def params(self) -> dict[str, Any]:
        """The values filled into the message's ``%(name)s`` placeholders."""
        return self.message.params

    def to_dict(self) -> dict[str, Any]:
        """Render the error as the API's JSON error body."""
        body: dict[str, Any] = {"code": self.code, "message": str(self.message)}
        if self.field:
            body["field"] = self.field
        if self.details:
            body["details"] = self.details
        return {"error": body}


class NotFound(DomainError):
    """The thing asked for does not exist (or the actor may not know it does)."""

    status_code = 404
    code = "not_found"


class PermissionDenied(DomainError):
    """The actor may not do this."""

    status_code = 403
    code = "forbidden"


class NotAuthenticated(DomainError):
    """The actor must sign in first."""

    status_code = 401
    code = "not_authenticated"


class Conflict(DomainError):
    """The request conflicts with the current state."""

    status_code = 409
    code = "conflict"


class InvalidInput(DomainError):
    """The input is well-formed but not acceptable."""

    status_code = 422
    code = "invalid_input"


class BodyTooLarge(DomainError):
    """A raw request body (a provider's callback) larger than the platform reads."""

    status_code = 413
    code = "body_too_large"


class ServiceBusy(DomainError):
    """A passing refusal: nothing was done, and the same request may succeed in a moment.

    Answered ``503`` with ``Retry-After: RETRY_AFTER_SECONDS`` — so a provider retries its
    callback and a client knows when. Only errors that pass with time are ``ServiceBusy``;
    a 503 that does not (no payment provider configured) is a plain ``DomainError``.
    """

    status_code = 503
    code = "service_busy"
    RETRY_AFTER_SECONDS = 1

    @property
    def headers(self) -> dict[str, str]:
        """``Retry-After``, in seconds."""
        return {"Retry-After": str(self.RETRY_AFTER_SECONDS)}


class DatabaseBusy(ServiceBusy):
    """The database could not serve the request in time (a lock or time limit, a lost
    connection): nothing to fix in the request; retry after ``RETRY_AFTER_SECONDS``."""

    code = "database_busy"
