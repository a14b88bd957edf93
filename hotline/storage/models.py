"""ORM models. One module, because every package shares the same schema and migrations.

Timestamps are stored in UTC and always come back timezone-aware (SQLite drops the
offset, PostgreSQL keeps it); :class:`UTCDateTime` hides the difference.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql.expression import false

from hotline.core.vocab import (
    OPEN_INCIDENT_STATUSES,
    Availability,
    CallDirection,
    CallOutcome,
    CallState,
    CampaignMode,
    CareLevel,
    ComplaintStatus,
    ContactChannel,
    ContactMethod,
    DeadLetterDisposition,
    DeviceKind,
    EconomicCategory,
    FollowUpStatus,
    Gender,
    IncidentStatus,
    IncidentType,
    LivingSituation,
    OfferStatus,
    Payer,
    ProviderKind,
    ReferralStatus,
    Region,
    Role,
    ServiceRequestStatus,
    Severity,
    TargetState,
    TimerState,
    Unit,
    WellbeingOutcome,
    values,
)

# Column vocabularies, as plain strings (the enums themselves live in hotline.core.vocab).
ROLES = values(Role)
DEVICE_KINDS = values(DeviceKind)
CARE_LEVELS = values(CareLevel)
ECONOMIC_CATEGORIES = values(EconomicCategory)
LIVING_SITUATIONS = values(LivingSituation)
CONTACT_CHANNELS = values(ContactChannel)
PROVIDER_KINDS = values(ProviderKind)
INCIDENT_STATUSES = values(IncidentStatus)
OPEN_STATUSES = tuple(str(s) for s in OPEN_INCIDENT_STATUSES)
SEVERITIES = values(Severity)  # in rising order


def one_of(table: str, column: str, allowed: tuple[str, ...], *, nullable: bool = False) -> CheckConstraint:
    """The database's copy of a vocabulary: ``column`` holds one of ``allowed`` (or NULL)."""
    values = ", ".join("'" + v.replace("'", "''") + "'" for v in allowed)
    test = f"{column} IN ({values})"
    return CheckConstraint(f"{column} IS NULL OR {test}" if nullable else test, name=f"ck_{table}_{column}")


#: Every vocabulary column, and the vocabulary it holds (migration 0006 creates the same checks).
VOCABULARY_COLUMNS: dict[str, tuple[tuple[str, tuple[str, ...], bool], ...]] = {
    "elders": (
        ("gender", values(Gender), False),
        ("care_level", values(CareLevel), False),
        ("economic_category", values(EconomicCategory), False),
        ("living_situation", values(LivingSituation), False),
    ),
    "emergency_contacts": (("channel", values(ContactChannel), False),),
    "devices": (("kind", values(DeviceKind), False),),
    "providers": (("kind", values(ProviderKind), False), ("availability", values(Availability), False)),
    "incidents": (
        ("type", values(IncidentType), False),
        ("severity", values(Severity), False),
        ("status", values(IncidentStatus), False),
    ),
    "offers": (("status", values(OfferStatus), False),),
    "escalation_timers": (("state", values(TimerState), False),),
    "calls": (
        ("direction", values(CallDirection), False),
        ("state", values(CallState), False),
        ("outcome", values(CallOutcome), True),
    ),
    "users": (("role", values(Role), False),),
    "dead_letters": (("disposition", values(DeadLetterDisposition), False),),
    "services": (("unit", values(Unit), False),),
    "service_requests": (
        ("status", values(ServiceRequestStatus), False),
        ("payer", values(Payer), True),
        ("unit", values(Unit), False),
    ),
    "care_timers": (("state", values(TimerState), False),),
    "follow_ups": (("status", values(FollowUpStatus), False),),
    "complaints": (("status", values(ComplaintStatus), False), ("channel", values(ContactMethod), False)),
    "referrals": (("status", values(ReferralStatus), False),),
    "campaigns": (("mode", values(CampaignMode), False),),
    "campaign_targets": (("state", values(TargetState), False), ("outcome", values(WellbeingOutcome), True)),
    "settlement_lines": (("payer", values(Payer), False),),
}


def checks(table: str) -> tuple[CheckConstraint, ...]:
    return tuple(one_of(table, c, allowed, nullable=n) for c, allowed, n in VOCABULARY_COLUMNS[table])


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """Time-ordered, unguessable id: ``inc_018f3a...``."""
    return f"{prefix}_{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


class UTCDateTime(TypeDecorator[datetime]):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Elder(Base):
    __tablename__ = "elders"
    __table_args__ = checks("elders")
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("eld"))
    name: Mapped[str] = mapped_column(String(64))
    gender: Mapped[str] = mapped_column(String(8))  # "F" | "M"
    birth_date: Mapped[date] = mapped_column(Date)
    address: Mapped[str] = mapped_column(String(255))
    district: Mapped[str | None] = mapped_column(String(64), index=True)
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    phones: Mapped[list[Any]] = mapped_column(default=list)
    medical_notes: Mapped[str] = mapped_column(Text, default="")
    care_level: Mapped[str] = mapped_column(String(24))
    economic_category: Mapped[str] = mapped_column(String(32))
    living_situation: Mapped[str] = mapped_column(String(24))
    home_radius_m: Mapped[int] = mapped_column(Integer, default=500)
    # Per-elder alarm thresholds (a cardiologist may set them); NULL means the defaults.
    hr_low: Mapped[int | None] = mapped_column(Integer)
    hr_high: Mapped[int | None] = mapped_column(Integer)
    inactivity_hours: Mapped[float | None] = mapped_column(Float)
    # The entitlement rule set, and the facts the rules read (see hotline/care/eligibility.py).
    region: Mapped[str] = mapped_column(String(16), default=Region.YUYAO.value, server_default=Region.YUYAO.value)
    eligibility: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    contacts: Mapped[list[EmergencyContact]] = relationship(
        back_populates="elder", order_by="EmergencyContact.priority", cascade="all, delete-orphan"
    )
    devices: Mapped[list[Device]] = relationship(back_populates="elder")


class EmergencyContact(Base):
    __tablename__ = "emergency_contacts"
    __table_args__ = checks("emergency_contacts")
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    elder_id: Mapped[str] = mapped_column(ForeignKey("elders.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    relation: Mapped[str] = mapped_column(String(32))
    phone: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16), default="sms")
    webhook_url: Mapped[str | None] = mapped_column(String(500))
    priority: Mapped[int] = mapped_column(Integer, default=1)

    elder: Mapped[Elder] = relationship(back_populates="contacts")


class Device(Base):
    __tablename__ = "devices"
    __table_args__ = checks("devices")
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(24))
    elder_id: Mapped[str] = mapped_column(ForeignKey("elders.id"), index=True)
    sim_number: Mapped[str | None] = mapped_column(String(32))
    vendor: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(64))
    credential_hash: Mapped[str] = mapped_column(String(200))
    # NULL: the default interval of the device's kind.
    heartbeat_interval_s: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When its credential last changed (registered, rotated, retired): the broker's password
    # file is regenerated when the latest of these moves.
    credentials_changed_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    # Retired devices keep their history but are refused by the broker and the gateway.
    retired_at: Mapped[datetime | None] = mapped_column()

    elder: Mapped[Elder] = relationship(back_populates="devices")


class DeviceCondition(Base):
    """One row per (device, condition): an episode opens once and clears once, however many
    messages repeat it. ``active`` flips by compare-and-set, so instances never double-open."""

    __tablename__ = "device_conditions"
    __table_args__ = (UniqueConstraint("device_id", "condition", name="uq_device_conditions"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"))
    condition: Mapped[str] = mapped_column(String(24))
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    episodes: Mapped[int] = mapped_column(Integer, default=0)
    opened_at: Mapped[datetime | None] = mapped_column()
    cleared_at: Mapped[datetime | None] = mapped_column()
    incident_id: Mapped[str | None] = mapped_column(ForeignKey("incidents.id"))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class DeviceCommand(Base):
    __tablename__ = "device_commands"
    __table_args__ = (Index("ix_device_commands_open", "status", "expires_at"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("cmd"))
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"), index=True)
    type: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # sent -> done | failed | unsupported | expired
    status: Mapped[str] = mapped_column(String(16), default="sent")
    detail: Mapped[str | None] = mapped_column(String(500))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(64))
    incident_id: Mapped[str | None] = mapped_column(ForeignKey("incidents.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()


class Provider(Base):
    __tablename__ = "providers"
    __table_args__ = checks("providers")
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("prv"))
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(24))
    services: Mapped[list[Any]] = mapped_column(default=list)
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    address: Mapped[str] = mapped_column(String(255), default="")
    phone: Mapped[str | None] = mapped_column(String(32))
    service_radius_m: Mapped[int] = mapped_column(Integer, default=3000)
    working_hours: Mapped[dict[str, Any]] = mapped_column(default=dict)
    capacity: Mapped[int] = mapped_column(Integer, default=1)
    current_load: Mapped[int] = mapped_column(Integer, default=0)
    availability: Mapped[str] = mapped_column(String(16), default="available")
    rating: Mapped[float] = mapped_column(Float, default=4.0)
    # A bad credit record (信用): no more government-paid work, set by supervisors.
    bad_credit: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Equals take turns: among equally good candidates the one offered work longest ago goes first.
    last_offered_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Incident(Base):
    __tablename__ = "incidents"
    __table_args__ = (Index("ix_incidents_elder_status", "elder_id", "status"), *checks("incidents"))
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("inc"))
    elder_id: Mapped[str] = mapped_column(ForeignKey("elders.id"))
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.device_id"))
    type: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    source: Mapped[str] = mapped_column(String(32))
    location: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Every signal merged into this incident: [{"source": "device", "type": "sos", "at": ...}].
    signals: Mapped[list[Any]] = mapped_column(default=list)
    service: Mapped[str | None] = mapped_column(String(32))  # catalogue code to dispatch for
    provider_id: Mapped[str | None] = mapped_column(ForeignKey("providers.id"))
    acknowledged_at: Mapped[datetime | None] = mapped_column()
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    family_confirmed_at: Mapped[datetime | None] = mapped_column()
    family_confirmed_by: Mapped[str | None] = mapped_column(String(64))
    # The escalation policy as it was when the incident opened: edits never reach a running one.
    policy: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    closed_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    timeline: Mapped[list[IncidentEvent]] = relationship(
        back_populates="incident", order_by="IncidentEvent.id", cascade="all, delete-orphan"
    )


class IncidentEvent(Base):
    __tablename__ = "incident_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(48))
    actor: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)

    incident: Mapped[Incident] = relationship(back_populates="timeline")


class DeviceEventRecord(Base):
    """Every accepted device event, exactly once: the constraint is the deduplication."""

    __tablename__ = "device_events"
    __table_args__ = (UniqueConstraint("device_id", "event_id", name="uq_device_events_device_event"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"))
    event_id: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(32))
    device_ts: Mapped[datetime] = mapped_column()
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    clock_skew_s: Mapped[float | None] = mapped_column(Float)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    incident_id: Mapped[str | None] = mapped_column(ForeignKey("incidents.id"))


class DeadLetter(Base):
    __tablename__ = "dead_letters"
    __table_args__ = checks("dead_letters")
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    topic: Mapped[str] = mapped_column(String(255))
    device_id: Mapped[str | None] = mapped_column(String(64))
    event_id: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(500))
    # rejected: refused; accepted_with_warning: stored, but something is off (a device clock);
    # parked: handling failed after its retries, kept to be replayed
    disposition: Mapped[str] = mapped_column(String(24), default="rejected", server_default="rejected")
    payload: Mapped[str] = mapped_column(Text)  # truncated, undecodable bytes replaced
    size: Mapped[int] = mapped_column(Integer)
    # The exact bytes, for a replay (absent for payloads over the contract's size limit).
    raw: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)  # the exception of a parked message
    attempts: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    replay_requested_at: Mapped[datetime | None] = mapped_column(nullable=True)
    replayed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    replay_result: Mapped[str | None] = mapped_column(String(500), nullable=True)


class Notification(Base):
    """The outbox: written in the same transaction as the fact it announces."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_due", "status", "next_attempt_at"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("msg"))
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    channel: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(500))
    event_type: Mapped[str] = mapped_column(String(48))
    elder_id: Mapped[str | None] = mapped_column(ForeignKey("elders.id"))
    incident_id: Mapped[str | None] = mapped_column(ForeignKey("incidents.id"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("emergency_contacts.id"))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # pending -> sending -> delivered | (pending again with back-off) | failed
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column()


class User(Base):
    __tablename__ = "users"
    __table_args__ = checks("users")
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("usr"))
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # argon2id, for the console's sign-in; None for token-only (machine) users.
    password_hash: Mapped[str | None] = mapped_column(String(200))
    extension: Mapped[str | None] = mapped_column(String(32), index=True)
    elder_id: Mapped[str | None] = mapped_column(ForeignKey("elders.id"))
    provider_id: Mapped[str | None] = mapped_column(ForeignKey("providers.id"))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebSession(Base):
    """A signed-in browser: the cookie's token is never stored, only its SHA-256."""

    __tablename__ = "web_sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class AuditEntry(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class PhoneEntry(Base):
    """Normalised phone numbers of elders, their devices' SIMs and their contacts.

    The screen pop looks a caller up here by an indexed equality, never by scanning JSON.
    An ``after_flush`` hook in :mod:`hotline.phones` rewrites an elder's rows whenever any of the
    three changes, whoever the writer is.
    """

    __tablename__ = "phone_index"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(32), index=True)
    elder_id: Mapped[str] = mapped_column(ForeignKey("elders.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # elder | device | contact
    ref: Mapped[str | None] = mapped_column(String(64))  # device id or contact id


class CallRecord(Base):
    """One row per call on the 12349 line, inbound or placed by us; keyed by Asterisk's Linkedid."""

    __tablename__ = "calls"
    __table_args__ = (Index("ix_calls_direction_started", "direction", "started_at"), *checks("calls"))
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("call"))
    linkedid: Mapped[str] = mapped_column(String(64), unique=True)
    direction: Mapped[str] = mapped_column(String(8))  # inbound | outbound
    queue: Mapped[str] = mapped_column(String(32), default="")
    caller_num: Mapped[str] = mapped_column(String(32), default="")
    caller_name: Mapped[str] = mapped_column(String(64), default="")
    # inbound: queued | ringing | answered | ended; outbound adds originating | dialing
    state: Mapped[str] = mapped_column(String(16))
    # answered | abandoned | timeout | busy | no_answer | congestion | failed | unknown; NULL while live
    outcome: Mapped[str | None] = mapped_column(String(16), index=True)
    elder_id: Mapped[str | None] = mapped_column(ForeignKey("elders.id"), index=True)
    matched_by: Mapped[str | None] = mapped_column(String(16))
    operator_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), index=True)
    member: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column()
    answered_at: Mapped[datetime | None] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column()
    hold_s: Mapped[float | None] = mapped_column(Float)
    ring_s: Mapped[float | None] = mapped_column(Float)
    talk_s: Mapped[float | None] = mapped_column(Float)
    end_reason: Mapped[str | None] = mapped_column(String(32))
    transferred_to: Mapped[str | None] = mapped_column(String(64))
    inferred: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[list[Any]] = mapped_column(default=list)
    # Outbound only.
    purpose: Mapped[str | None] = mapped_column(String(24))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    incident_id: Mapped[str | None] = mapped_column(ForeignKey("incidents.id"), index=True)
    service_request_id: Mapped[str | None] = mapped_column(ForeignKey("service_requests.id"), index=True)
    device_id: Mapped[str | None] = mapped_column(String(64))
    # What the elder pressed in an automated wellbeing check (a UserEvent from the dialplan).
    digits: Mapped[str | None] = mapped_column(String(16))
    requested_by: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(String(500))
    # The AMI lease token of the instance that sent this call's Originate; NULL while no
    # holder has taken it: an outbound call asked for on any instance is placed by the holder.
    placed_token: Mapped[int | None] = mapped_column(Integer)
    # The Originate's Channel, Context and Exten, fixed when the call is asked for.
    dial_target: Mapped[dict[str, Any] | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ServiceLease(Base):
    """A role one instance holds at a time (the AMI consumer). ``token`` grows with every new
    holder, and each write the role makes checks it: a holder that lost the lease without
    knowing it cannot overwrite its successor's work."""

    __tablename__ = "service_leases"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128), default="")
    token: Mapped[int] = mapped_column(Integer, default=0)
    # Epoch seconds on the holder's clock: instances need synchronised clocks (NTP), well
    # inside the lease's length.
    expires_at: Mapped[float] = mapped_column(Float, default=0.0)
    acquired_at: Mapped[datetime | None] = mapped_column()


class EscalationPolicy(Base):
    """A versioned escalation policy. Rows are never edited: a change is a new version."""

    __tablename__ = "escalation_policies"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_escalation_policies_name_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(500), default="")
    types: Mapped[list[Any]] = mapped_column(default=list)
    severities: Mapped[list[Any]] = mapped_column(default=list)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    tracks: Mapped[list[Any]] = mapped_column(default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EscalationTimer(Base):
    """One durable timer per (incident, policy track).

    ``token`` is the fencing token: a wake-up carries the token it was scheduled with, and
    firing first bumps it with a conditional UPDATE, so a duplicate, late or stale wake-up
    changes nothing.
    """

    __tablename__ = "escalation_timers"
    __table_args__ = (
        UniqueConstraint("incident_id", "track", name="uq_escalation_timers_incident_track"),
        Index("ix_escalation_timers_due", "state", "due_at"),
        *checks("escalation_timers"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("tmr"))
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    track: Mapped[str] = mapped_column(String(32))
    step: Mapped[int] = mapped_column(Integer, default=0)  # the next step to run
    due_at: Mapped[datetime] = mapped_column()
    token: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[str] = mapped_column(String(12), default="pending")  # pending | done | cancelled
    repeats: Mapped[dict[str, Any]] = mapped_column(default=dict)  # repeat-step index -> times taken
    runs: Mapped[int] = mapped_column(Integer, default=0)  # steps run so far: the idempotency counter
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RoutingDecision(Base):
    """A stored ranking: who was considered for an incident, in what order, and why."""

    __tablename__ = "routing_decisions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str | None] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    service_request_id: Mapped[str | None] = mapped_column(
        ForeignKey("service_requests.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(default=utcnow)
    service: Mapped[str] = mapped_column(String(32))
    origin: Mapped[dict[str, Any]] = mapped_column(default=dict)
    estimator: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))  # redis | database
    candidates: Mapped[list[Any]] = mapped_column(default=list)
    excluded: Mapped[list[Any]] = mapped_column(default=list)
    chosen_provider_id: Mapped[str | None] = mapped_column(String(40))
    reachable_in_time: Mapped[bool] = mapped_column(Boolean, default=False)


class Offer(Base):
    """Work offered to one provider: an incident, or a work order (exactly one of the two).
    offered -> accepted | declined | expired | withdrawn; an accepted offer then moves
    en_route -> on_scene -> done."""

    __tablename__ = "offers"
    __table_args__ = (
        Index("ix_offers_provider_status", "provider_id", "status"),
        CheckConstraint("(incident_id IS NULL) <> (service_request_id IS NULL)", name="ck_offers_subject"),
        *checks("offers"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("ofr"))
    incident_id: Mapped[str | None] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    service_request_id: Mapped[str | None] = mapped_column(
        ForeignKey("service_requests.id", ondelete="CASCADE"), index=True
    )
    provider_id: Mapped[str] = mapped_column(ForeignKey("providers.id"))
    decision_id: Mapped[int | None] = mapped_column(ForeignKey("routing_decisions.id"))
    rank: Mapped[int] = mapped_column(Integer)
    eta_min: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(12), default="offered")
    offered_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()
    responded_at: Mapped[datetime | None] = mapped_column()
    reason: Mapped[str | None] = mapped_column(String(500))
    location: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


# -- the service loop (hotline/care) ---------------------------------------------------------


class Service(Base):
    """One entry of the service catalogue (养老服务包), with its unit, price and payers."""

    __tablename__ = "services"
    __table_args__ = checks("services")
    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name_zh: Mapped[str] = mapped_column(String(64))
    name_en: Mapped[str] = mapped_column(String(64))
    unit: Mapped[str] = mapped_column(String(8))
    price_yuan: Mapped[float] = mapped_column(Float)
    payers: Mapped[list[Any]] = mapped_column(default=list)
    needs_assessment: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class EntitlementRuleSet(Base):
    """A version of a region's entitlement rules. Rows are never edited: a change is a new version."""

    __tablename__ = "entitlement_rules"
    __table_args__ = (UniqueConstraint("region", "version", name="uq_entitlement_rules_region_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    region: Mapped[str] = mapped_column(String(16), index=True)
    version: Mapped[int] = mapped_column(Integer)
    effective_from: Mapped[str] = mapped_column(String(7))  # YYYY-MM
    description: Mapped[str] = mapped_column(String(500), default="")
    rules: Mapped[list[Any]] = mapped_column(default=list)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ServiceRequest(Base):
    """A work order (工单): from the request to the settlement. Its status moves only through
    ``hotline.care.lifecycle.SERVICE_REQUEST``."""

    __tablename__ = "service_requests"
    __table_args__ = (Index("ix_service_requests_status", "status", "scheduled_for"), *checks("service_requests"))
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("wo"))
    elder_id: Mapped[str] = mapped_column(ForeignKey("elders.id"), index=True)
    service: Mapped[str] = mapped_column(ForeignKey("services.code"))
    quantity: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(8))
    scheduled_for: Mapped[datetime | None] = mapped_column()
    payer: Mapped[str | None] = mapped_column(String(16))  # NULL until chosen (the default is computed)
    remainder_payer: Mapped[str | None] = mapped_column(String(16))  # self_pay: who pays past the balance
    status: Mapped[str] = mapped_column(String(16))
    provider_id: Mapped[str | None] = mapped_column(ForeignKey("providers.id"), index=True)
    call_id: Mapped[str | None] = mapped_column(String(40), index=True)
    consultation_id: Mapped[str | None] = mapped_column(String(40))
    campaign_target_id: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, default="")
    assessment: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    check_in: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    check_out: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    far_check_in: Mapped[bool] = mapped_column(Boolean, default=False)
    no_shows: Mapped[int] = mapped_column(Integer, default=0)
    settled_month: Mapped[str | None] = mapped_column(String(7))
    closed_reason: Mapped[str | None] = mapped_column(String(500))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column()


class ServiceRequestEvent(Base):
    __tablename__ = "service_request_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    service_request_id: Mapped[str] = mapped_column(ForeignKey("service_requests.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(48))
    actor: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class SettlementLine(Base):
    """What a completed work order cost, per payer (and per funder of a subsidy): the ledger the
    month's balance and the 资金划拨单 are read from."""

    __tablename__ = "settlement_lines"
    __table_args__ = (
        UniqueConstraint("service_request_id", "payer", "funder", name="uq_settlement_lines_order_payer"),
        Index("ix_settlement_lines_elder_month", "elder_id", "month"),
        *checks("settlement_lines"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    service_request_id: Mapped[str] = mapped_column(ForeignKey("service_requests.id", ondelete="CASCADE"))
    elder_id: Mapped[str] = mapped_column(ForeignKey("elders.id"))
    provider_id: Mapped[str] = mapped_column(ForeignKey("providers.id"), index=True)
    month: Mapped[str] = mapped_column(String(7))
    payer: Mapped[str] = mapped_column(String(16))
    funder: Mapped[str] = mapped_column(String(32), default="")  # a subsidy's level of government
    rule: Mapped[str | None] = mapped_column(String(64))
    hours: Mapped[float] = mapped_column(Float, default=0.0)
    quantity: Mapped[float] = mapped_column(Float, default=0.0)
    yuan: Mapped[float] = mapped_column(Float, default=0.0)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class CareTimer(Base):
    """A durable timer of the service loop: one per (kind, subject), fenced like the escalation
    timers (firing bumps ``token`` with a conditional UPDATE)."""

    __tablename__ = "care_timers"
    __table_args__ = (
        UniqueConstraint("kind", "subject_id", name="uq_care_timers_kind_subject"),
        Index("ix_care_timers_due", "state", "due_at"),
        *checks("care_timers"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(64))
    due_at: Mapped[datetime] = mapped_column()
    token: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[str] = mapped_column(String(12), default="pending")
    failures: Mapped[int] = mapped_column(Integer, default=0)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class FollowUp(Base):
    """A follow-up call (回访) after a service or a consultation."""

    __tablename__ = "follow_ups"
    __table_args__ = (Index("ix_follow_ups_status_due", "status", "due_at"), *checks("follow_ups"))
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("fu"))
    elder_id: Mapped[str] = mapped_column(ForeignKey("elders.id"), index=True)
    service_request_id: Mapped[str | None] = mapped_column(ForeignKey("service_requests.id"), index=True)
    consultation_id: Mapped[str | None] = mapped_column(String(40))
    provider_id: Mapped[str | None] = mapped_column(ForeignKey("providers.id"), index=True)
    status: Mapped[str] = mapped_column(String(12))
    due_at: Mapped[datetime] = mapped_column()
    call_key: Mapped[str | None] = mapped_column(String(200))
    reached: Mapped[bool | None] = mapped_column(Boolean)
    score: Mapped[int | None] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    done_by: Mapped[str | None] = mapped_column(String(64))
    done_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class QualityReview(Base):
    """A review opened against a provider (a low follow-up score, an upheld complaint)."""

    __tablename__ = "quality_reviews"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider_id: Mapped[str] = mapped_column(ForeignKey("providers.id"), index=True)
    source: Mapped[str] = mapped_column(String(16))  # follow_up | complaint
    ref_id: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(12), default="open")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Complaint(Base):
    """A complaint (投诉): received -> investigating -> upheld | rejected -> closed."""

    __tablename__ = "complaints"
    __table_args__ = checks("complaints")
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("cpl"))
    elder_id: Mapped[str | None] = mapped_column(ForeignKey("elders.id"), index=True)
    provider_id: Mapped[str | None] = mapped_column(ForeignKey("providers.id"), index=True)
    service_request_id: Mapped[str | None] = mapped_column(ForeignKey("service_requests.id"))
    category: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    handler: Mapped[str | None] = mapped_column(String(64))
    deadline_at: Mapped[datetime] = mapped_column()
    escalated_at: Mapped[datetime | None] = mapped_column()
    decision: Mapped[str | None] = mapped_column(String(16))  # upheld | rejected, kept once closed
    finding: Mapped[str | None] = mapped_column(Text)
    resolution: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column()
    closed_at: Mapped[datetime | None] = mapped_column()


class Referral(Base):
    """A request handed to an outside agency (转介), tracked until it is closed."""

    __tablename__ = "referrals"
    __table_args__ = checks("referrals")
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("ref"))
    elder_id: Mapped[str] = mapped_column(ForeignKey("elders.id"), index=True)
    service_request_id: Mapped[str | None] = mapped_column(ForeignKey("service_requests.id"))
    agency: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12))
    outcome: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column()


class ProviderRating(Base):
    """A provider's computed stars for a period, with every component (hotline/care/ratings.py)."""

    __tablename__ = "provider_ratings"
    __table_args__ = (UniqueConstraint("provider_id", "period", name="uq_provider_ratings_provider_period"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider_id: Mapped[str] = mapped_column(ForeignKey("providers.id"), index=True)
    period: Mapped[str] = mapped_column(String(7))  # YYYY-MM: the month the ratings cover, up to computed_at
    stars: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
    components: Mapped[dict[str, Any]] = mapped_column(default=dict)
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)


class Campaign(Base):
    """A wellbeing campaign (主动关怀/巡访): whom to call, on which RRULE, in which hours."""

    __tablename__ = "campaigns"
    __table_args__ = checks("campaigns")
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("cmp"))
    name: Mapped[str] = mapped_column(String(128))
    target: Mapped[dict[str, Any]] = mapped_column(default=dict)
    rrule: Mapped[str] = mapped_column(String(500))
    dtstart: Mapped[datetime] = mapped_column()
    calling_hours: Mapped[str] = mapped_column(String(200))
    max_concurrent_calls: Mapped[int] = mapped_column(Integer, default=2)
    attempts: Mapped[int] = mapped_column(Integer, default=3)
    retry_after_min: Mapped[float] = mapped_column(Float, default=30.0)
    mode: Mapped[str] = mapped_column(String(12), default="ivr")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CampaignRun(Base):
    __tablename__ = "campaign_runs"
    __table_args__ = (UniqueConstraint("campaign_id", "scheduled_for", name="uq_campaign_runs_campaign_time"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    scheduled_for: Mapped[datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(12), default="running")  # running | done
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()


class CampaignTarget(Base):
    """One elder in one run: pending -> calling -> (retry -> calling ...) -> done, with one outcome."""

    __tablename__ = "campaign_targets"
    __table_args__ = (
        UniqueConstraint("run_id", "elder_id", name="uq_campaign_targets_run_elder"),
        Index("ix_campaign_targets_state", "state", "next_attempt_at"),
        *checks("campaign_targets"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("campaign_runs.id", ondelete="CASCADE"), index=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    elder_id: Mapped[str] = mapped_column(ForeignKey("elders.id"), index=True)
    state: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column()
    call_key: Mapped[str | None] = mapped_column(String(200))
    outcome: Mapped[str | None] = mapped_column(String(16))
    recorded_by: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(String(500))
    visit_request_id: Mapped[str | None] = mapped_column(String(40))
    family_notified: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Consultation(Base):
    """A care-advisor consultation (养老顾问): the needs stated and the list given, as given."""

    __tablename__ = "consultations"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("cns"))
    elder_id: Mapped[str] = mapped_column(ForeignKey("elders.id"), index=True)
    needs: Mapped[list[Any]] = mapped_column(default=list)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    advisor: Mapped[str] = mapped_column(String(64))
    follow_up_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
