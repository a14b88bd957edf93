"""The hotline package's error hierarchy.

Foreign exceptions (SQLAlchemy, redis, paho) are translated into these at the edge,
so that API handlers and the CLI only ever deal with one small family.
"""


class HotlineError(Exception):
    """Base of every error the hotline package raises on purpose."""


class ConfigError(HotlineError):
    """A configuration value is missing or invalid; the message names the variable."""


class NotFoundError(HotlineError):
    """A requested resource does not exist (or is invisible to the caller)."""


class ValidationError(HotlineError):
    """A request body or parameter is invalid."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class AuthError(HotlineError):
    """Missing or invalid credentials."""


class ForbiddenError(HotlineError):
    """Valid credentials, but the caller's role may not do this."""


class ConflictError(HotlineError):
    """The request conflicts with existing state (duplicate id, ...)."""
