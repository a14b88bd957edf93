"""The one error root of the whole backend, and its shared kinds.

Every error raised on purpose, in any package, is a :class:`HotlineError`: the devices,
dispatch and telephony packages put their own kinds beneath it, and an illegal status change
is :class:`hotline.core.lifecycle.TransitionError`. The HTTP middleware maps them to status
codes in one table. Foreign exceptions (SQLAlchemy, redis, paho, panoramisk) are translated
into these at the edge, so that API handlers and the CLI only ever deal with one family.
"""


class HotlineError(Exception):
    """Base of every error the hotline package raises on purpose."""


class ConfigError(HotlineError):
    """A configuration value is missing or invalid; the message names the variable."""


class NotFoundError(HotlineError):
    """A requested resource does not exist (or is invisible to the caller)."""


class ValidationError(HotlineError):
    """A request body or parameter is invalid."""

    def __init__(
        self, message: str, *, field: str | None = None, errors: list[dict[str, str | None]] | None = None
    ) -> None:
        super().__init__(message)
        self.field = field
        # Every bad field when a body had several (the first is ``field`` and the message).
        self.errors = errors


class AuthError(HotlineError):
    """Missing or invalid credentials."""


class ForbiddenError(HotlineError):
    """Valid credentials, but the caller's role may not do this."""


class ConflictError(HotlineError):
    """The request conflicts with existing state (duplicate id, ...)."""


class RateLimitedError(HotlineError):
    """Too many attempts; ``retry_after`` says when to try again (429 with Retry-After)."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
