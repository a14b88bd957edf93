"""Every message type of the console feed (the Redis bus and the WebSocket), as pydantic models.

The bus checks each published message against :data:`CONSOLE_MESSAGE`, so a publisher that
drifts from its model is caught (in strict mode, as the test suite runs, it raises). The
OpenAPI document lists the union under ``ConsoleMessage``.

Routing fields (``to_user``, ``to_provider``, ``audience``, ``elder_id``) say who may see a
message; :func:`hotline.api.ws.visible` applies them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, TypeAdapter

from hotline.core.care import ServiceRequest
from hotline.core.wire import AgentState, Elder, ElderSummary, Incident, Offer


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seq: str | None = Field(None, description="position in the bus log; reconnect with ?since=SEQ")
    to_user: str | None = Field(None, description="only this user sees it (a screen pop)")
    to_provider: str | None = Field(None, description="this provider's accounts, and console staff")
    audience: list[str] | None = Field(None, description="only these roles")
    elder_id: str | None = Field(None, description="a family account sees messages about its own elder")


class IncidentCreated(Message):
    """A new incident, or a signal merged into an open one, with the elder at a glance."""

    type: Literal["incident.created", "incident.merged"]
    incident: Incident
    elder: ElderSummary


class IncidentUpdated(Message):
    """An incident changed: the whole incident, or (a device taken off) the change alone."""

    type: Literal["incident.updated"]
    incident: Incident | None = None
    incident_id: str | None = None
    change: str | None = None
    severity: str | None = None


class OfferedIncident(BaseModel):
    """What a provider needs to go: the address and the kind of help, not the medical file."""

    id: str
    type: str
    severity: str
    service: str | None
    address: str
    location: dict[str, Any]


class OfferedWork(BaseModel):
    """A work order as its offer shows it: the service, the time and the address."""

    id: str
    service: str
    quantity: float
    unit: str
    scheduled_for: str | None
    address: str
    location: dict[str, Any]


class OfferChanged(Message):
    type: Literal["offer.created", "offer.updated", "offer.closed"]
    offer: Offer
    incident: OfferedIncident | None = None
    service_request: OfferedWork | None = None


class ServiceRequestChanged(Message):
    """A work order was opened or moved (requested, dispatched, scheduled, completed, ...)."""

    type: Literal["service_request.created", "service_request.updated"]
    service_request: ServiceRequest


class ServiceAlert(Message):
    """The service loop asks dispatchers and supervisors to act: a no-show, a far check-in,
    no provider, an overdue follow-up or complaint, a low score, an elder who needs help."""

    type: Literal["service.alert"]
    kind: str
    message: str
    at: str | None
    service_request_id: str | None = None
    provider_id: str | None = None
    follow_up_id: str | None = None
    complaint_id: str | None = None


class EscalationAlert(Message):
    """A step of an escalation policy asks people on the console to act."""

    type: Literal["escalation.alert"]
    incident_id: str
    incident_type: str
    severity: str
    status: str
    message: str
    at: str | None
    notification_id: str | None = None


class DevicePresence(Message):
    type: Literal["device.online", "device.offline", "device.flapping"]
    device_id: str


class DeviceConditionChanged(Message):
    type: Literal["device.condition"]
    device_id: str
    condition: str
    state: Literal["opened", "cleared"]
    incident_id: str | None
    detail: dict[str, Any]


class DeviceCommandChanged(Message):
    type: Literal["device.command"]
    device_id: str
    command_id: str
    command: str
    status: str
    detail: str | None = None
    result: dict[str, Any] | None = None


class DeviceTest(Message):
    """A device's test button: shown, never an incident."""

    type: Literal["device.test"]
    device_id: str
    event_id: str
    elder: ElderSummary
    received_at: str


class ScreenPopOperator(BaseModel):
    id: str
    name: str
    member: str | None


class CallProfile(BaseModel):
    """Who is calling, looked up while the phone still rings."""

    elder: Elder
    devices: list[dict[str, Any]]
    recent_incidents: list[Incident]
    matched_by: dict[str, Any]
    other_elders: list[str]


class CallRinging(Message):
    """The screen pop: to the operator whose phone rings."""

    type: Literal["call.ringing"]
    call: dict[str, Any] = Field(description="the live call as the tracker sees it")
    operator: ScreenPopOperator
    profile: CallProfile | None


class CallChanged(Message):
    type: Literal["call.answered", "call.ring_stopped", "call.ended"]
    call: dict[str, Any]
    reason: str | None = None


class WallboardCall(Message):
    """Every change of every call, for the supervisors' wallboard."""

    type: Literal["wallboard.call"]
    change: str
    call: dict[str, Any]


class WallboardAgent(Message):
    """A queue member's state changed (paused, on a call, free, ...)."""

    type: Literal["wallboard.agent"]
    agent: AgentState


class Hello(BaseModel):
    """The first message on a new WebSocket."""

    type: Literal["hello"]
    user: str
    role: str


class Resync(BaseModel):
    """Missed messages are no longer kept: reload, then follow the feed again."""

    type: Literal["resync"]
    reason: str


class Pong(BaseModel):
    type: Literal["pong"]


class FeedError(BaseModel):
    type: Literal["error"]
    error: str


#: What the backend publishes on the bus.
BusMessage = Annotated[
    IncidentCreated
    | IncidentUpdated
    | OfferChanged
    | ServiceRequestChanged
    | ServiceAlert
    | EscalationAlert
    | DevicePresence
    | DeviceConditionChanged
    | DeviceCommandChanged
    | DeviceTest
    | CallRinging
    | CallChanged
    | WallboardCall
    | WallboardAgent,
    Field(discriminator="type"),
]
#: Everything a WebSocket client can receive.
ConsoleMessage = Annotated[BusMessage | Hello | Resync | Pong | FeedError, Field(discriminator="type")]
BUS_MESSAGE: TypeAdapter[Any] = TypeAdapter(BusMessage)
CONSOLE_MESSAGE: TypeAdapter[Any] = TypeAdapter(ConsoleMessage)


class ConsoleFeed(RootModel[ConsoleMessage]):
    """One message of the console feed (the WebSocket at /api/v1/ws), by ``type``."""
