"""Request bodies, query strings and API-only answers under /api/v1, as pydantic models.

Resource shapes that the domains also put on the bus are in :mod:`hotline.core.wire`. Every
allowed value comes from :mod:`hotline.core.vocab`; rules that span fields (a webhook contact
needs a URL, a service request a service) are checked by the handler and documented here.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from hotline.core import vocab
from hotline.core.care import ServiceRequestDetail
from hotline.core.messages import OfferedIncident, OfferedWork
from hotline.core.vocab import (
    Availability,
    CallPurpose,
    CareLevel,
    CommandType,
    ContactChannel,
    DeadLetterDisposition,
    DeviceKind,
    EconomicCategory,
    Gender,
    LivingSituation,
    ProviderKind,
    Region,
    ServiceCode,
    Severity,
)
from hotline.core.wire import AgentState, Eligibility, Incident, Offer, UtcTime

MAX_OFFSET = 1_000_000_000  # databases take 64-bit offsets; past this it is a mistake, not a page
PHONE_PATTERN = r"^\+?[0-9][0-9 ()-]{2,30}$"
ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def _text(max_len: int) -> Any:
    return StringConstraints(strip_whitespace=True, min_length=1, max_length=max_len)


# Trimmed, non-empty strings of at most N characters.
Text32 = Annotated[str, _text(32)]
Text64 = Annotated[str, _text(64)]
Text128 = Annotated[str, _text(128)]
Text200 = Annotated[str, _text(200)]
Text255 = Annotated[str, _text(255)]
Text500 = Annotated[str, _text(500)]
Note = Annotated[str, _text(1000)]
Id40 = Annotated[str, _text(40)]


def _plausible_birth(value: date) -> date:
    today = datetime.now(UTC).date()
    if value > today or today.year - value.year > 130:
        raise ValueError("is not a plausible birth date")
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL")
    return value


def _member_of(allowed: Iterable[str]) -> Any:
    values = [str(v) for v in allowed]

    def check(value: str) -> str:
        if value not in values:
            raise ValueError(f"must be one of {', '.join(values)}")
        return value

    return AfterValidator(check)


def _enum_schema(allowed: Iterable[str]) -> Any:
    return WithJsonSchema({"type": "string", "enum": [str(v) for v in allowed]}, mode="validation")


def _comma_list(allowed: Collection[str], *, also: str = "") -> Any:
    """A query value ``a,b,c`` whose parts are each one of ``allowed``."""
    alternatives = "|".join(re.escape(v) for v in allowed)
    pattern = rf"^({alternatives})(,({alternatives}))*$"
    if also:
        pattern = rf"^({re.escape(also)}|({alternatives})(,({alternatives}))*)$"
    return StringConstraints(pattern=pattern)


Phone = Annotated[str, StringConstraints(strip_whitespace=True, pattern=PHONE_PATTERN)]
HttpUrl = Annotated[str, StringConstraints(max_length=500), AfterValidator(_http_url)]
Lat = Annotated[float, Field(ge=-90, le=90)]
Lon = Annotated[float, Field(ge=-180, le=180)]
# Subsets of the incident types, listed as such in the document.
OperatorIncidentType = Annotated[
    str, _member_of(vocab.OPERATOR_INCIDENT_TYPES), _enum_schema(vocab.OPERATOR_INCIDENT_TYPES)
]
CallIncidentType = Annotated[str, _member_of(vocab.CALL_INCIDENT_TYPES), _enum_schema(vocab.CALL_INCIDENT_TYPES)]
# Comma-separated filters in query strings.
IncidentStatuses = Annotated[str, _comma_list(vocab.values(vocab.IncidentStatus))]
OfferStatuses = Annotated[str, _comma_list(vocab.values(vocab.OfferStatus), also="all")]
CallDirections = Annotated[str, _comma_list(vocab.values(vocab.CallDirection))]
CallOutcomes = Annotated[str, _comma_list(vocab.values(vocab.CallOutcome))]
CallStates = Annotated[str, _comma_list(vocab.values(vocab.CallState))]


class In(BaseModel):
    """A request body: unknown fields are refused and named (a typo must not pass in silence)."""

    model_config = ConfigDict(extra="forbid", use_enum_values=True)


class Query(BaseModel):
    model_config = ConfigDict(extra="ignore")


class PageQuery(Query):
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)


# -- elders and devices -------------------------------------------------------------------


class ContactIn(In):
    name: Text64
    relation: Text32
    phone: Phone
    channel: ContactChannel = ContactChannel.SMS
    webhook_url: HttpUrl | None = Field(None, description="required when channel is webhook")
    priority: int | None = Field(None, ge=1, le=99, description="1 is called first; defaults to the list order")


class ElderIn(In):
    name: Text64
    gender: Gender
    birth_date: Annotated[date, AfterValidator(_plausible_birth)]
    address: Text255
    district: Text64 | None = None
    lat: Lat
    lon: Lon
    phones: list[Phone] = Field(default_factory=list, max_length=5)
    medical_notes: Annotated[str, StringConstraints(strip_whitespace=True, max_length=4000)] = ""
    care_level: CareLevel
    economic_category: EconomicCategory = EconomicCategory.NONE
    living_situation: LivingSituation
    home_radius_m: int = Field(500, ge=50, le=50_000)
    hr_low: int | None = Field(None, ge=20, le=120)
    hr_high: int | None = Field(None, ge=60, le=250)
    inactivity_hours: float | None = Field(None, ge=0.0001, le=168)
    region: Region | None = Field(None, description="the entitlement rule set; HOTLINE_REGION when left out")
    eligibility: Eligibility | None = Field(
        None, description="when left out, derived from care_level and economic_category"
    )
    contacts: list[ContactIn] = Field(default_factory=list, max_length=10)


class ElderQuery(PageQuery):
    q: str | None = Field(None, max_length=64, description="part of the name")


class DeviceIn(In):
    device_id: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    elder_id: Id40
    kind: DeviceKind
    sim_number: Phone | None = None
    vendor: Text64 | None = None
    model: Text64 | None = None
    heartbeat_interval_s: int | None = Field(None, ge=1, le=86_400)


class DeviceQuery(PageQuery):
    elder_id: str | None = Field(None, max_length=40)


class CommandIn(In):
    type: CommandType
    params: dict[str, Any] = Field(default_factory=dict, description="checked against the device contract")
    ttl_s: int = Field(300, ge=5, le=86_400)
    incident_id: Id40 | None = None


# -- incidents, offers, policies ----------------------------------------------------------


class LocationIn(In):
    lat: Lat
    lon: Lon


class IncidentIn(In):
    """A service request needs ``service``; a signal inside the merge window joins the open incident."""

    type: OperatorIncidentType
    elder_id: Id40
    severity: Severity | None = None
    service: ServiceCode | None = Field(None, description="catalogue code; required for service_request")
    location: LocationIn | None = None
    note: Note | None = None


class IncidentQuery(PageQuery):
    status: IncidentStatuses | None = Field(None, description="statuses, comma-separated")
    elder_id: str | None = Field(None, max_length=40)


class DispatchIn(In):
    provider_id: Id40 | None = Field(default=None, description="offer to this provider; otherwise the nearest suitable")
    service: ServiceCode | None = None
    timeout_s: int = Field(60, ge=5, le=86_400)


class ResolveIn(In):
    note: Note | None = None


class CancelIn(In):
    note: Note = Field(description="why the incident is cancelled (a false alarm, ...)")


class FamilyConfirmed(BaseModel):
    id: str
    family_confirmed_at: UtcTime | None


class OfferQuery(PageQuery):
    status: OfferStatuses = Field("offered", description="offer statuses, comma-separated, or all")


class ProviderOffer(Offer):
    """An offer as the provider's app lists it, with what the provider needs to go."""

    incident: OfferedIncident | None = None
    service_request: OfferedWork | None = None


class ReasonIn(In):
    reason: Text500 | None = None


class ProgressIn(In):
    lat: Lat | None = None
    lon: Lon | None = None


class IncidentState(BaseModel):
    id: str
    status: vocab.IncidentStatus


class WorkOrderState(BaseModel):
    id: str
    status: str


class OfferAnswer(BaseModel):
    """The offer after the answer, and the state of what it offered: an incident, or a work order."""

    offer: Offer
    incident: IncidentState | None = None
    service_request: WorkOrderState | None = None


class ProviderIn(In):
    name: Text128
    kind: ProviderKind
    services: list[ServiceCode] = Field(min_length=1, description="catalogue codes")
    lat: Lat
    lon: Lon
    address: Annotated[str, StringConstraints(strip_whitespace=True, max_length=255)] = ""
    phone: Phone | None = None
    service_radius_m: int = Field(3000, ge=100, le=100_000)
    working_hours: dict[str, Any] = Field(
        default_factory=dict,
        description='day ranges to spans in UTC+8, e.g. {"mon-fri": "08:00-18:00", "sat": ["09:00-12:00"]};'
        " empty means always",
    )
    capacity: int = Field(1, ge=1, le=10_000)
    availability: Availability = Availability.AVAILABLE
    rating: float = Field(4.0, ge=0, le=5)


def _without_null(schema: dict[str, Any], model: type[BaseModel]) -> None:
    nullable: frozenset[str] = getattr(model, "NULLABLE", frozenset())
    for name, prop in schema.get("properties", {}).items():
        branches = prop.get("anyOf")
        if name in nullable or not branches:
            continue
        kept = [b for b in branches if b != {"type": "null"}]
        if len(kept) == 1:
            del prop["anyOf"]
            prop.update(kept[0])
            prop.pop("default", None)


class Patch(In):
    """A partial update: only the fields given change. Leaving a field out keeps it; null
    clears it only where ``NULLABLE`` says so (and the document says the same)."""

    model_config = ConfigDict(json_schema_extra=_without_null)
    NULLABLE: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _no_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls.NULLABLE:
            raise ValueError("may not be null (leave the field out to keep it)")
        return value


class ElderPatch(Patch):
    """Change an elder's record; contacts are not changed here."""

    NULLABLE = frozenset({"district", "hr_low", "hr_high", "inactivity_hours"})
    name: Text64 | None = None
    gender: Gender | None = None
    birth_date: Annotated[date, AfterValidator(_plausible_birth)] | None = None
    address: Text255 | None = None
    district: Text64 | None = Field(None, description="null clears it")
    lat: Lat | None = None
    lon: Lon | None = None
    phones: list[Phone] | None = Field(None, max_length=5)
    medical_notes: Annotated[str, StringConstraints(strip_whitespace=True, max_length=4000)] | None = None
    care_level: CareLevel | None = None
    economic_category: EconomicCategory | None = None
    living_situation: LivingSituation | None = None
    home_radius_m: int | None = Field(None, ge=50, le=50_000)
    hr_low: int | None = Field(None, ge=20, le=120, description="null: the default")
    hr_high: int | None = Field(None, ge=60, le=250, description="null: the default")
    inactivity_hours: float | None = Field(None, ge=0.0001, le=168, description="null: the default")
    region: Region | None = None
    eligibility: Eligibility | None = Field(None, description="replaces the whole eligibility")


class ProviderPatch(Patch):
    """A provider's own account may change only availability, lat and lon."""

    NULLABLE = frozenset({"phone"})
    name: Text128 | None = None
    kind: ProviderKind | None = None
    services: list[ServiceCode] | None = Field(None, min_length=1)
    lat: Lat | None = None
    lon: Lon | None = None
    address: Annotated[str, StringConstraints(strip_whitespace=True, max_length=255)] | None = None
    phone: Phone | None = Field(None, description="null clears it")
    service_radius_m: int | None = Field(None, ge=100, le=100_000)
    working_hours: dict[str, Any] | None = None
    capacity: int | None = Field(None, ge=1, le=10_000)
    availability: Availability | None = None
    rating: float | None = Field(None, ge=0, le=5)
    bad_credit: bool | None = Field(None, description="supervisors and admins only: no more government-paid work")


class ProviderQuery(PageQuery):
    kind: ProviderKind | None = None
    availability: Availability | None = None
    service: ServiceCode | None = None


class PolicyIn(In):
    """A new policy, or a new version of an existing one: running incidents keep their snapshot."""

    name: Text64
    tracks: list[dict[str, Any]] = Field(description="the escalation tracks; see docs/dispatch.md")
    types: list[Annotated[str, StringConstraints(max_length=32)]] = Field(default_factory=list, max_length=64)
    severities: list[Severity] = Field(default_factory=list)
    description: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] = ""
    priority: int = Field(0, ge=-1000, le=1000)
    active: bool = True


class PolicyQuery(PageQuery):
    name: str | None = Field(None, max_length=64)


# -- calls --------------------------------------------------------------------------------


class PeriodQuery(Query):
    """ISO 8601 times (UTC when they name no offset); the default is the last 24 hours."""

    since: UtcTime | None = None
    until: UtcTime | None = None

    def period(self) -> tuple[datetime, datetime]:
        until = self.until or datetime.now(UTC)
        since = self.since or until - timedelta(days=1)
        return since, until


class CallQuery(PageQuery, PeriodQuery):
    direction: CallDirections | None = Field(None, description="comma-separated")
    outcome: CallOutcomes | None = Field(None, description="comma-separated")
    state: CallStates | None = Field(None, description="comma-separated")
    elder_id: str | None = Field(None, max_length=40)
    operator_id: str | None = Field(None, max_length=40)
    linkedid: str | None = Field(None, max_length=64, description="the Asterisk Linkedid a live call carries")
    incident_id: str | None = Field(
        None, max_length=40, description="the calls made for an incident, or that opened it"
    )


class CallIn(In):
    """Give one of number, elder_id, contact_id or device_id. click_to_call rings the caller's
    own extension first, then the number."""

    purpose: CallPurpose = CallPurpose.CLICK_TO_CALL
    number: Phone | None = None
    elder_id: Id40 | None = None
    contact_id: int | None = Field(None, ge=1, le=2**31)
    device_id: Text64 | None = None
    incident_id: Id40 | None = None
    idempotency_key: Text200 | None = None


class CallIncidentIn(In):
    type: CallIncidentType
    severity: Severity | None = Field(None, description="critical for an emergency, medium otherwise")
    service: ServiceCode | None = Field(None, description="required for service_request")
    elder_id: Id40 | None = Field(None, description="required when the caller was not recognised")
    note: Note | None = None


class CallOpened(RootModel[Incident | ServiceRequestDetail]):
    """What a call opened: the incident (or the open one it joined), or for ``type:
    service_request`` the work order."""


class AgentList(BaseModel):
    items: list[AgentState]


class PauseIn(In):
    reason: Text64 | None = Field(None, description="shown on the wallboard: 午餐, 培训, 小休, ...")


class Target(BaseModel):
    within_s: int
    target: float
    standard: str
    actual: float | None
    met: bool


class OperatorStats(BaseModel):
    operator_id: str | None
    name: str | None
    member: str | None
    answered: int
    talk_s: float
    avg_talk_s: float | None


class AnsweredWithin(BaseModel):
    """The share of offered calls answered within 20, 60 and 180 seconds."""

    model_config = ConfigDict(validate_by_name=True, serialize_by_alias=True)
    s20: float | None = Field(alias="20")
    s60: float | None = Field(alias="60")
    s180: float | None = Field(alias="180")


class CallStats(BaseModel):
    """Service level of the inbound queue over a period (calls that entered the queue in it)."""

    since: str
    until: str
    offered: int
    answered: int
    abandoned: int
    timeout: int
    other: int
    in_progress: int
    pbx_shutdown: int = Field(description="calls cut by an Asterisk stop or restart: not offered, not abandoned")
    unmeasured: int = Field(
        description="offered calls whose wait is unknown (they ended, or were answered, while AMI was away):"
        " counted in offered, left out of the shares"
    )
    answered_within: AnsweredWithin
    abandon_rate: float | None
    avg_wait_s: float | None
    max_wait_s: float | None
    targets: list[Target]
    operators: list[OperatorStats]


# -- dead letters -------------------------------------------------------------------------


class DeadLetterQuery(PageQuery, PeriodQuery):
    device_id: str | None = Field(None, max_length=64)
    reason: str | None = Field(None, max_length=200)
    disposition: DeadLetterDisposition | None = None


class ReplayResult(BaseModel):
    id: int
    result: str


# -- probes -------------------------------------------------------------------------------


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str = Field(description="ready or not_ready (then HTTP 503)")
    checks: dict[str, str]
