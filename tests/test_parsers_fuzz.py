"""Property-based fuzzing of the parsers that read outside input (issue 15, item 6): the AMI frame
reader, the device payload parsers, the escalation-policy validator and the entitlement rule-set
validator. Any exception other than the parser's own typed error is a failure.

The suite runs a short, derandomised pass; ``python benchmarks/fuzz_parsers.py --examples N``
runs the same properties longer, with fresh randomness.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

import pydantic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices import contract
from devices.errors import ContractError
from dispatch.errors import PolicyError
from dispatch.policy import DEFAULT_POLICIES, parse_tracks
from hotline.care.builtin import HONGGU, YUYAO
from hotline.core.care import RuleSetIn
from hotline.telephony.errors import AmiFrameError
from hotline.telephony.events import parse_event
from hotline.telephony.frames import FrameReader

EXAMPLES = int(os.environ.get("HOTLINE_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=EXAMPLES <= 150,  # the suite's short pass is the same every run
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# JSON-like values, nested, with the odd huge number and odd string.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)
AMI_BITS = st.sampled_from(
    [
        b"Event: Newchannel\r\n",
        b"Uniqueid: 1.2\r\n",
        b"\r\n",
        b"\r\n\r\n",
        b"Key:\r\n",
        b": x\r\n",
        b"Timestamp: 1e309\r\n",
        b"\xff\xfe",
        b"Asterisk Call Manager/9.0\r\n",
        b"Response: Success\r\n",
        b"\n",
    ]
)


@FUZZ
@given(st.lists(AMI_BITS | st.binary(max_size=40), max_size=30), st.integers(min_value=1, max_value=7))
def test_the_ami_frame_reader_takes_any_bytes_in_any_chunks(parts: list[bytes], chunk: int) -> None:
    reader = FrameReader(max_frame=4096)
    data = b"".join(parts)
    for i in range(0, len(data), chunk):
        try:
            for frame in reader.feed(data[i : i + chunk]):
                parse_event(frame)  # typed events from whatever headers came
        except AmiFrameError:
            return  # an oversized frame: the link drops the connection, as documented


def _mutate(base: dict[str, Any], key: str, value: Any) -> bytes:
    return json.dumps({**base, key: value}, default=str).encode()


EVENT = {"event_id": "e1", "type": "sos", "ts": "2026-12-01T08:00:00Z", "seq": 1}


@FUZZ
@given(st.binary(max_size=300) | JSON.map(lambda v: json.dumps(v).encode()))
def test_device_payloads_are_refused_with_a_contract_error_only(payload: bytes) -> None:
    for parse in (contract.parse_event, contract.parse_telemetry, contract.parse_status, contract.parse_command_result):
        with contextlib.suppress(ContractError):
            parse(payload)


@FUZZ
@given(st.sampled_from([*sorted(EVENT), "location", "battery", "extra"]), JSON)
def test_a_device_event_with_any_field_value_is_parsed_or_refused(key: str, value: Any) -> None:
    with contextlib.suppress(ContractError):
        contract.parse_event(_mutate(EVENT, key, value))


TRACKS = DEFAULT_POLICIES[0]["tracks"]


@FUZZ
@given(JSON, st.integers(min_value=0, max_value=3), st.sampled_from(["do", "seconds", "to", "until", "steps", "name"]))
def test_the_policy_validator_refuses_with_a_policy_error_only(value: Any, where: int, key: str) -> None:
    tracks = json.loads(json.dumps(TRACKS))
    track = tracks[where % len(tracks)]
    if key in ("until", "steps", "name"):
        track[key] = value
    else:
        track["steps"][0][key] = value
    for candidate in (tracks, value):
        with contextlib.suppress(PolicyError):
            parse_tracks(candidate)


@FUZZ
@given(
    st.sampled_from([YUYAO, HONGGU]),
    st.sampled_from(["when", "tiers", "amount", "payers", "unless", "supersedes", "benefit", "name"]),
    JSON,
)
def test_the_rule_set_validator_refuses_with_a_validation_error_only(
    base: dict[str, Any], key: str, value: Any
) -> None:
    doc = json.loads(json.dumps(base))
    doc["rules"][0][key] = value
    with contextlib.suppress(pydantic.ValidationError):
        RuleSetIn.model_validate_json(json.dumps(doc), strict=True)
