"""The dispatch package's error hierarchy."""


class DispatchError(Exception):
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


class TransitionError(DispatchError):
    """An incident or offer cannot make the requested move from its current state."""


class NotYoursError(DispatchError):
    """An offer or incident that the caller may not act on (reported as not found)."""
