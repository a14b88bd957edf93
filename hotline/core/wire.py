"""The wire shapes of every resource: what the API answers, the WebSocket feed carries and the
notifications quote. Defined once, as pydantic models read straight from the ORM rows.

These models are both the serialisers and the documentation: the OpenAPI document is
generated from them. They sit in the foundation so that the domains can put a resource on
the bus without importing the shell. Relationship attributes must be loaded by the caller.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Generic, Self, TypeVar

from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator
from typing_extensions import TypedDict

from hotline.core.vocab import (
    Availability,
    CallDirection,
    CallOutcome,
    CallState,
    CareLevel,
    ContactChannel,
    DeadLetterDisposition,
    Degree,
    DeviceKind,
    EconomicCategory,
    EligibilityCategory,
    Gender,
    IncidentStatus,
    IncidentType,
    LivingSituation,
    OfferStatus,
    ProviderKind,
    Region,
    ServiceCode,
    Severity,
    TimerState,
    values,
)


def iso(value: datetime | None) -> str | None:
    """A time as the API writes it: UTC with a ``Z``."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def age(birth: date, today: date | None = None) -> int:
    today = today or datetime.now(UTC).date()
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


#: Always UTC on the wire (pydantic writes it with a ``Z``).
UtcTime = Annotated[datetime, AfterValidator(_utc)]
M = TypeVar("M", bound=BaseModel)


class Wire(BaseModel):
    """A response shape: read from ORM attributes, written as JSON."""

    model_config = ConfigDict(from_attributes=True, use_enum_values=True)

    def wire(self) -> dict[str, Any]:
        """The JSON-ready dict (for the bus and the notifications)."""
        return self.model_dump(mode="json")


def dump(model: type[Wire], row: object) -> dict[str, Any]:
    """``row`` in the wire shape of ``model``, as a JSON-ready dict."""
    return model.model_validate(row).wire()


class Page(Wire, Generic[M]):
    """One page of a listing; ``total`` counts every match, not only this page."""

    items: list[M]
    total: int = Field(ge=0)


class Eligibility(BaseModel):
    """The facts the entitlement rules read (set by an assessment, 能力评估)."""

    model_config = ConfigDict(extra="forbid", use_enum_values=True)

    local_hukou: bool = Field(True, description="本地户籍")
    resident: bool = Field(True, description="actually lives in the area (实际居住)")
    categories: list[EligibilityCategory] = Field(default_factory=list, max_length=8)
    disability: Degree = Degree.NONE
    dementia: Degree = Degree.NONE
    disability_nursing_subsidy: bool = Field(False, description="draws the 残疾人护理补贴")
    severe_chronic_disease: bool = False

    @classmethod
    def derived(cls, care_level: str, economic_category: str) -> Eligibility:
        """What the register's care level and economic category already say."""
        degree = {"mild": "mild", "moderate": "moderate", "severe": "severe", "partly_disabled": "moderate"}
        return cls.model_validate(
            {
                "categories": [economic_category] if economic_category in values(EligibilityCategory) else [],
                "disability": degree.get(care_level, "none"),
                "dementia": "moderate" if care_level == "dementia" else "none",
            }
        )


class Location(BaseModel):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class Contact(Wire):
    id: int
    name: str
    relation: str
    phone: str
    channel: ContactChannel
    webhook_url: str | None
    priority: int


class ContactBrief(Wire):
    name: str
    relation: str
    phone: str


class _ElderBase(Wire):
    id: str
    name: str
    gender: Gender
    age: int
    address: str
    phones: list[str]
    medical_notes: str
    care_level: CareLevel
    economic_category: EconomicCategory
    living_situation: LivingSituation

    @model_validator(mode="before")
    @classmethod
    def _with_age(cls, data: Any) -> Any:
        """The age, from the birth date, whether read from a row or from a dict."""
        if not isinstance(data, dict):
            data = {name: getattr(data, name) for name in cls.model_fields if hasattr(data, name)} | {
                "birth_date": data.birth_date
            }
        if "age" not in data and data.get("birth_date") is not None:
            birth = data["birth_date"]
            data = {**data, "age": age(birth if isinstance(birth, date) else date.fromisoformat(birth))}
        if "birth_date" not in cls.model_fields:
            data = {k: v for k, v in data.items() if k != "birth_date"}
        return data


class ElderSummary(_ElderBase):
    """What an operator needs at a glance when an alarm pops."""

    contacts: list[ContactBrief]


class Elder(_ElderBase):
    birth_date: date
    region: Region
    eligibility: Eligibility
    district: str | None
    lat: float
    lon: float
    home_radius_m: int
    hr_low: int | None
    hr_high: int | None
    inactivity_hours: float | None
    created_at: UtcTime
    contacts: list[Contact]


class Device(Wire):
    device_id: str
    kind: DeviceKind
    elder_id: str
    sim_number: str | None
    vendor: str | None
    model: str | None
    created_at: UtcTime
    retired_at: UtcTime | None = Field(None, description="retired devices are refused by the broker and the gateway")


class ElderDetail(Elder):
    devices: list[Device]


class DeviceCredentials(BaseModel):
    """Returned once, at registration: only a hash is kept."""

    username: str
    password: str


class RegisteredDevice(Device):
    credentials: DeviceCredentials


class DeviceConditionState(Wire):
    condition: str
    active: bool
    episodes: int
    opened_at: UtcTime | None
    cleared_at: UtcTime | None
    incident_id: str | None


class DeviceDetail(Device):
    heartbeat_interval_s: int | None
    conditions: list[DeviceConditionState]
    presence: dict[str, Any] | None = Field(description="online/offline state from Redis, or unavailable")


class Command(Wire):
    command_id: str = Field(validation_alias=AliasChoices("id", "command_id"))
    device_id: str
    type: str
    params: dict[str, Any]
    status: str
    detail: str | None
    result: dict[str, Any] | None
    created_by: str
    incident_id: str | None
    created_at: UtcTime
    expires_at: UtcTime
    finished_at: UtcTime | None


class PolicyRef(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    version: int


class Incident(Wire):
    id: str
    elder_id: str
    device_id: str | None
    type: IncidentType
    severity: Severity
    status: IncidentStatus
    source: str
    location: dict[str, Any] | None
    signals: list[dict[str, Any]]
    service: ServiceCode | None
    provider_id: str | None
    acknowledged_at: UtcTime | None
    acknowledged_by: str | None
    family_confirmed_at: UtcTime | None
    family_confirmed_by: str | None
    policy: PolicyRef | None
    created_at: UtcTime
    updated_at: UtcTime
    closed_at: UtcTime | None

    @field_validator("signals", mode="before")
    @classmethod
    def _signals(cls, value: Any) -> Any:
        return list(value or [])


class TimelineEntry(Wire):
    at: UtcTime
    kind: str
    actor: str
    data: dict[str, Any]


class Notification(Wire):
    id: str
    channel: str
    event_type: str
    status: str
    attempts: int
    last_error: str | None
    created_at: UtcTime
    delivered_at: UtcTime | None


class Offer(Wire):
    id: str
    incident_id: str | None = Field(description="the incident offered; null for a work order")
    service_request_id: str | None = Field(None, description="the work order offered; null for an incident")
    provider_id: str
    rank: int
    eta_min: float | None
    status: OfferStatus
    offered_at: UtcTime
    expires_at: UtcTime
    responded_at: UtcTime | None
    reason: str | None
    location: dict[str, Any] | None
    decision_id: int | None


class PendingStep(Wire):
    """A step of the escalation that has not run yet (console staff only)."""

    track: str
    step: int
    due_at: UtcTime
    state: TimerState
    runs: int


class IncidentDetail(Incident):
    timeline: list[TimelineEntry]
    notifications: list[Notification]
    offers: list[Offer]


class StaffIncidentDetail(IncidentDetail):
    """What console staff see; a family gets :class:`IncidentDetail`, without the machinery."""

    escalation: list[PendingStep] = Field(default_factory=list, description="console staff only")


class CreatedIncident(Incident):
    merged: bool = Field(description="true when the signal joined an open incident (HTTP 200)")


class IncidentWithOffers(Incident):
    offers: list[Offer]


class Provider(Wire):
    id: str
    name: str
    kind: ProviderKind
    services: list[ServiceCode]
    lat: float
    lon: float
    address: str
    service_radius_m: int
    capacity: int
    current_load: int
    availability: Availability
    rating: float
    bad_credit: bool = Field(description="a bad credit record: never offered government-paid work")
    phone: str | None
    working_hours: dict[str, Any] = Field(
        description='day ranges to spans in UTC+8, e.g. {"mon-fri": "08:00-18:00", "sat": ["09:00-12:00"]};'
        " empty means always"
    )
    last_offered_at: UtcTime | None
    updated_at: UtcTime


class CandidateKey(TypedDict):
    """A candidate's sort keys, in the order they count."""

    eta_band: int
    specialist: bool
    availability: str
    load_band: int
    rating_band: float
    last_offered_at: str


class RankedCandidate(TypedDict):
    provider_id: str
    name: str
    kind: str
    distance_m: int
    eta_min: float
    within_reach: bool
    key: CandidateKey
    reasons: list[str]
    rank: int


class Exclusion(TypedDict):
    provider_id: str
    name: str
    distance_m: int
    reason: str


class RoutingDecision(Wire):
    """A stored ranking. Each candidate has its sort keys (eta_band, specialist, availability,
    load_band, rating_band, last_offered_at) and readable reasons; excluded providers have a reason."""

    id: int
    incident_id: str | None = Field(description="the incident ranked for; null for a work order")
    service_request_id: str | None = Field(None, description="the work order ranked for")
    at: UtcTime
    service: str
    origin: dict[str, Any]
    estimator: str
    source: str
    chosen_provider_id: str | None
    reachable_in_time: bool
    candidates: list[RankedCandidate]
    excluded: list[Exclusion]


class Policy(Wire):
    name: str
    version: int
    description: str
    types: list[str]
    severities: list[Severity]
    priority: int
    active: bool
    tracks: list[dict[str, Any]]
    created_by: str
    created_at: UtcTime


class CallRecord(Wire):
    id: str
    linkedid: str = Field(description="Asterisk Linkedid (our ChannelId when we called out)")
    direction: CallDirection
    queue: str | None
    caller_num: str | None
    caller_name: str | None
    state: CallState
    outcome: CallOutcome | None
    elder_id: str | None
    matched_by: str | None
    operator_id: str | None
    member: str | None
    started_at: UtcTime
    answered_at: UtcTime | None
    ended_at: UtcTime | None
    hold_s: float | None
    ring_s: float | None
    talk_s: float | None
    end_reason: str | None
    transferred_to: str | None
    inferred: bool = Field(description="timings estimated after an AMI reconnect")
    attempts: list[dict[str, Any]]
    purpose: str | None
    incident_id: str | None
    service_request_id: str | None = None
    device_id: str | None
    digits: str | None = Field(None, description="keys the callee pressed in an automated check")
    requested_by: str | None
    detail: str | None
    placed_token: int | None = Field(
        None, description="the AMI lease token of the instance that sent the Originate; null while queued for it"
    )


class DeadLetter(Wire):
    id: int
    received_at: UtcTime
    topic: str
    device_id: str | None
    event_id: str | None
    reason: str
    disposition: DeadLetterDisposition
    size: int
    attempts: int
    replayable: bool
    replay_requested_at: UtcTime | None
    replayed_at: UtcTime | None
    replay_result: str | None

    @classmethod
    def of(cls, row: Any) -> Self:
        return cls.model_validate({**_columns(row), "replayable": row.raw is not None})


class DeadLetterDetail(DeadLetter):
    payload: str
    error: str | None


def _columns(row: Any) -> dict[str, Any]:
    return {c.key: getattr(row, c.key) for c in row.__mapper__.column_attrs}


class AgentState(Wire):
    """A queue member on the wallboard: free, ringing, on a call, paused or offline."""

    queue: str
    extension: str
    interface: str
    name: str
    state: str = Field(description="paused, on_call, ringing, free or offline")
    device_state: str = Field(description="Asterisk's device state: not_in_use, in_use, ringing, unavailable, ...")
    in_call: bool
    paused: bool
    paused_reason: str
    paused_since: UtcTime | None
    paused_for_s: float | None = Field(description="how long the pause has lasted, when this was read")
    calls_taken: int | None
    operator_id: str | None = Field(description="the console user with this extension")
    operator_name: str | None
