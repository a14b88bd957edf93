"""The dispatch package's error hierarchy, under the one root :class:`hotline.errors.HotlineError`.

An illegal status change is :class:`hotline.core.lifecycle.TransitionError`, shared by every
lifecycle.
"""

from hotline.errors import ConflictError, HotlineError, NotFoundError


class DispatchError(HotlineError):
    """Base of every error the dispatch package raises on purpose."""


class SignatureError(DispatchError):
    """A webhook signature or timestamp does not verify."""


class DeliveryError(DispatchError):
    """A notification could not be delivered on this attempt."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class PolicyError(DispatchError):
    """An escalation policy document is invalid; the message names the field's path."""


class DispatchConflictError(DispatchError, ConflictError):
    """The request cannot be carried out now (no provider can take it, a provider is full, ...)."""


class IncidentNotFoundError(DispatchError, NotFoundError):
    """No incident has this id."""


class NotYoursError(DispatchError):
    """An offer or incident that the caller may not act on (reported as not found)."""
