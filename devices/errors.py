"""The devices package's error hierarchy, under the one root :class:`hotline.errors.HotlineError`."""

from hotline.errors import HotlineError


class DeviceError(HotlineError):
    """Base of every error the devices package raises on purpose."""


class ContractError(DeviceError):
    """A message breaks the device contract.

    ``event_id`` is set whenever it could still be read, so the device can be told
    which of its events was rejected.
    """

    def __init__(self, reason: str, *, event_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.event_id = event_id


class UnknownTopicError(DeviceError):
    """A topic outside the contract's tree."""


class BrokerUnavailableError(DeviceError):
    """The MQTT broker cannot be reached right now."""


class UnknownDeviceError(DeviceError):
    """The device id is not registered."""


class UnknownIncidentError(DeviceError):
    """A command names an incident that does not exist."""
