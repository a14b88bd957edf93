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
