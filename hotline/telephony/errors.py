"""The telephony package's error hierarchy."""

from hotline.errors import HotlineError


class TelephonyError(HotlineError):
    """Base of every error the telephony package raises on purpose."""


class AmiFrameError(TelephonyError):
    """An action could not be encoded (a value would inject a header line)."""


class AmiNotConnectedError(TelephonyError):
    """The AMI link was not up within the caller's deadline."""


class AmiAuthError(TelephonyError):
    """Asterisk refused our Login."""


class AmiActionError(TelephonyError):
    """Asterisk answered an action with ``Response: Error``."""


class AmiOutcomeUnknownError(TelephonyError):
    """The link dropped after a non-idempotent action was written and before its answer came.

    The action may or may not have run; it is never resent (an Originate would ring twice).
    """
