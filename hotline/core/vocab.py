"""Every closed vocabulary, defined once.

Models, database columns, the device contract, the policy validator, the API checks and the
docs read their allowed values from here; a list of values typed out twice is a bug waiting to
happen. Members are ``StrEnum``s, so they compare equal to, and serialise as, their strings.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OPERATOR = "operator"
    DISPATCHER = "dispatcher"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"
    PROVIDER = "provider"
    FAMILY = "family"
    VENDOR = "vendor"


CONSOLE_ROLES = frozenset({Role.OPERATOR, Role.DISPATCHER, Role.SUPERVISOR, Role.ADMIN})


class Gender(StrEnum):
    FEMALE = "F"
    MALE = "M"


class DeviceKind(StrEnum):
    ONE_TOUCH_PHONE = "one_touch_phone"  # 一键通
    WATCH = "watch"
    PENDANT = "pendant"
    SENSOR = "sensor"


class CareLevel(StrEnum):
    SELF_CARE = "self_care"
    MILD = "mild"  # 轻度失能
    MODERATE = "moderate"  # 中度失能
    SEVERE = "severe"  # 重度失能
    PARTLY_DISABLED = "partly_disabled"  # 半失能
    DEMENTIA = "dementia"  # 失智


class EconomicCategory(StrEnum):
    NONE = "none"
    DIBAO = "dibao"  # 低保
    DIBAO_EDGE = "dibao_edge"  # 低保边缘
    SANWU = "sanwu"  # 三无
    WUBAO = "wubao"  # 五保
    FAMILY_PLANNING_SPECIAL = "family_planning_special"  # 计划生育特殊家庭


class LivingSituation(StrEnum):
    ALONE = "alone"  # 独居
    EMPTY_NEST = "empty_nest"  # 空巢
    WITH_FAMILY = "with_family"
    INSTITUTION = "institution"


class ContactChannel(StrEnum):
    WEBHOOK = "webhook"
    SMS = "sms"
    VOICE = "voice"
    NONE = "none"


class ProviderKind(StrEnum):
    SERVICE_STATION = "service_station"
    CAREGIVER = "caregiver"
    MEAL_KITCHEN = "meal_kitchen"
    CLINIC = "clinic"
    AMBULANCE = "ambulance"


class Availability(StrEnum):
    AVAILABLE = "available"
    BUSY = "busy"
    OFFLINE = "offline"
    SUSPENDED = "suspended"


class ServiceCode(StrEnum):
    """The service catalogue of the policy documents (names in :mod:`dispatch.catalogue`)."""

    MEALS = "meals"
    CLEANING = "cleaning"
    BATHING = "bathing"
    MEDICAL_ESCORT = "medical_escort"
    MOBILITY = "mobility"
    DAILY_CARE = "daily_care"
    REHAB_NURSING = "rehab_nursing"
    COMPANIONSHIP = "companionship"
    EMERGENCY_RESCUE = "emergency_rescue"
    LEGAL_AID = "legal_aid"
    HOME_ADAPTATION = "home_adaptation"
    ASSISTIVE_RENTAL = "assistive_rental"
    CAREGIVER_TRAINING = "caregiver_training"
    VISIT = "visit"  # 巡访上门: a wellbeing visit, opened by campaigns


class Severity(StrEnum):
    """In rising order: compare with :func:`severity_rank`."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


def severity_rank(severity: str) -> int:
    return list(Severity).index(Severity(severity))


class IncidentType(StrEnum):
    # alarms from devices
    SOS = "sos"
    FALL = "fall"
    # from a call or an operator
    EMERGENCY = "emergency"
    HEALTH = "health"
    SERVICE_REQUEST = "service_request"
    CONSULTATION = "consultation"
    COMPLAINT = "complaint"
    REFERRAL = "referral"
    FOLLOW_UP = "follow_up"
    # device conditions
    LOW_BATTERY = "low_battery"
    POWER_LOSS = "power_loss"
    GEOFENCE_EXIT = "geofence_exit"
    HEART_RATE_ABNORMAL = "heart_rate_abnormal"
    INACTIVITY = "inactivity"
    DEVICE_OFFLINE = "device_offline"


#: Types an operator may open through ``POST /api/v1/incidents``.
OPERATOR_INCIDENT_TYPES = (
    IncidentType.SOS,
    IncidentType.FALL,
    IncidentType.EMERGENCY,
    IncidentType.HEALTH,
    IncidentType.SERVICE_REQUEST,
    IncidentType.CONSULTATION,
    IncidentType.COMPLAINT,
    IncidentType.REFERRAL,
)
#: Types a 12349 call may open through ``POST /api/v1/calls/{id}/incident``.
CALL_INCIDENT_TYPES = (
    IncidentType.EMERGENCY,
    IncidentType.HEALTH,
    IncidentType.SERVICE_REQUEST,
    IncidentType.CONSULTATION,
    IncidentType.COMPLAINT,
    IncidentType.REFERRAL,
    IncidentType.FOLLOW_UP,
)
#: Someone may be in danger now: these merge per elder and default to emergency rescue.
URGENT_TYPES = frozenset(
    {
        IncidentType.SOS,
        IncidentType.FALL,
        IncidentType.EMERGENCY,
        IncidentType.HEALTH,
        IncidentType.HEART_RATE_ABNORMAL,
        IncidentType.INACTIVITY,
    }
)


class IncidentStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    DISPATCHED = "dispatched"
    ACCEPTED = "accepted"
    EN_ROUTE = "en_route"
    ON_SCENE = "on_scene"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"


OPEN_INCIDENT_STATUSES = tuple(s for s in IncidentStatus if s not in ("resolved", "cancelled"))
#: A provider has taken the job.
ACCEPTED_INCIDENT_STATUSES = (IncidentStatus.ACCEPTED, IncidentStatus.EN_ROUTE, IncidentStatus.ON_SCENE)


class OfferStatus(StrEnum):
    OFFERED = "offered"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"
    EN_ROUTE = "en_route"
    ON_SCENE = "on_scene"
    DONE = "done"


class TimerState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    CANCELLED = "cancelled"


class CallDirection(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class CallState(StrEnum):
    ORIGINATING = "originating"  # our row is written; the Originate is not yet accepted by Asterisk
    DIALING = "dialing"
    QUEUED = "queued"
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


class CallOutcome(StrEnum):
    ANSWERED = "answered"
    ABANDONED = "abandoned"  # the caller hung up in the queue
    TIMEOUT = "timeout"  # the queue gave up
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    CONGESTION = "congestion"
    FAILED = "failed"
    UNKNOWN = "unknown"  # ended while AMI was away, and nothing tells how
    PBX_SHUTDOWN = "pbx_shutdown"  # cut by an Asterisk stop or restart: not offered, not abandoned


class CallPurpose(StrEnum):
    CLICK_TO_CALL = "click_to_call"
    ELDER = "elder"
    CONTACT = "contact"
    ALARM_CALLBACK = "alarm_callback"
    WELLBEING = "wellbeing"
    FOLLOW_UP = "follow_up"  # 回访


class DeviceEventType(StrEnum):
    """The ``type`` of a device event (``devices/schemas/event.json`` lists the same, tested)."""

    SOS = "sos"
    FALL = "fall"
    LOW_BATTERY = "low_battery"
    POWER_LOSS = "power_loss"
    REMOVED = "removed"
    GEOFENCE_EXIT = "geofence_exit"
    GEOFENCE_ENTER = "geofence_enter"
    HEART_RATE_ABNORMAL = "heart_rate_abnormal"
    INACTIVITY = "inactivity"
    TEST = "test"


class CommandType(StrEnum):
    CALL_BACK = "call_back"
    LOCATE = "locate"
    PLAY_MESSAGE = "play_message"
    SET_HEARTBEAT_INTERVAL = "set_heartbeat_interval"
    SILENCE_ALARM = "silence_alarm"


class DeadLetterDisposition(StrEnum):
    REJECTED = "rejected"
    ACCEPTED_WITH_WARNING = "accepted_with_warning"
    PARKED = "parked"


# -- the service loop (hotline/care) ---------------------------------------------------


class Region(StrEnum):
    """The entitlement rule set an elder is assessed under (rules are data: see /entitlement-rules)."""

    YUYAO = "yuyao"  # 余姚
    HONGGU = "honggu"  # 红古


class EligibilityCategory(StrEnum):
    DIBAO = "dibao"  # 低保
    DIBAO_EDGE = "dibao_edge"  # 低保边缘
    SANWU = "sanwu"  # 三无
    WUBAO = "wubao"  # 五保
    FAMILY_PLANNING_SPECIAL = "family_planning_special"  # 计划生育特殊家庭
    ENTITLED_VETERAN = "entitled_veteran"  # 享受定期抚恤补助优抚对象
    BRAVERY_HONOUR = "bravery_honour"  # 见义勇为 (the elder or a child)
    LOW_INCOME = "low_income"  # 其他低收入家庭


class Degree(StrEnum):
    """In rising order: a disability or dementia as assessed (能力评估)."""

    NONE = "none"
    MILD = "mild"
    MODERATE = "moderate"
    SEVERE = "severe"


class Unit(StrEnum):
    HOUR = "hour"
    VISIT = "visit"
    MEAL = "meal"
    ITEM = "item"


class Payer(StrEnum):
    """Who pays for a work order's units."""

    SUBSIDY_HOURS = "subsidy_hours"  # the month's free home-care hours
    SUBSIDY_YUAN = "subsidy_yuan"  # the month's service subsidy in yuan
    LTC_INSURANCE = "ltc_insurance"  # 长期护理保险
    SELF_PAY = "self_pay"
    CHARITY = "charity"


class Benefit(StrEnum):
    HOME_CARE_HOURS = "home_care_hours"
    SUBSIDY_YUAN = "subsidy_yuan"
    FREE_ONE_TOUCH_PHONE = "free_one_touch_phone"


class ServiceRequestStatus(StrEnum):
    REQUESTED = "requested"
    ASSESSED = "assessed"
    DISPATCHED = "dispatched"
    ACCEPTED = "accepted"
    SCHEDULED = "scheduled"
    STARTED = "started"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    REFERRED = "referred"


class FollowUpStatus(StrEnum):
    DUE = "due"
    DONE = "done"
    OVERDUE = "overdue"


class ComplaintStatus(StrEnum):
    RECEIVED = "received"
    INVESTIGATING = "investigating"
    UPHELD = "upheld"
    REJECTED = "rejected"
    CLOSED = "closed"


class ReferralStatus(StrEnum):
    OPEN = "open"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    CLOSED = "closed"


class ContactMethod(StrEnum):
    """How a complaint or a request reached us."""

    PHONE = "phone"
    WEB = "web"
    VISIT = "visit"
    LETTER = "letter"
    FOLLOW_UP = "follow_up"


class WellbeingOutcome(StrEnum):
    ANSWERED_OK = "answered_ok"
    ANSWERED_NEED = "answered_need"
    NO_ANSWER = "no_answer"
    FAILED = "failed"


class CampaignMode(StrEnum):
    IVR = "ivr"  # the elder presses 1 (all well) or 2 (needs something) in the dialplan
    OPERATOR = "operator"  # the answered call joins the 12349 queue; the operator records it


class TargetState(StrEnum):
    PENDING = "pending"
    CALLING = "calling"
    RETRY = "retry"
    DONE = "done"


def values(vocabulary: type[StrEnum]) -> tuple[str, ...]:
    """The plain strings of a vocabulary, in definition order (for messages and schemas)."""
    return tuple(m.value for m in vocabulary)
