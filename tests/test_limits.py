"""Pure checks of the input bounds and the event pacer (issue 10, items 1 and 2)."""

from __future__ import annotations

import itertools
import json
import math

import pytest

from devices import contract
from devices.errors import ContractError
from devices.ratelimit import EventPacer
from hotline.jsonlimits import JsonLimitError, loads_bounded, too_deep


def test_depth_counts_brackets_outside_strings_only() -> None:
    assert not too_deep(b'{"a": "[[[[[[[[[[[[[[[[[[[["}', 3)
    assert not too_deep(b'{"a": "\\"[[[[[[[[[[[[[[["}', 3)  # an escaped quote does not end the string
    assert too_deep(b'{"a": [[[1]]]}', 3)
    assert not too_deep(b'{"a": [[1]], "b": [[2]]}', 3)  # siblings do not add up


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"[" * 3000 + b"]" * 3000, "nested deeper"),
        (b'{"x": ' + b"[" * 50 + b"]" * 50 + b"}", "nested deeper"),
        (b"\xff", "not UTF-8"),
        (b"{", "not JSON"),
        (b"1" * 5000, "JSON not accepted"),  # past Python's int string-length limit: ValueError
        (b"x" * 2000, "exceeds"),
    ],
)
def test_every_parser_failure_is_one_error(data: bytes, reason: str) -> None:
    with pytest.raises(JsonLimitError, match=reason):
        loads_bounded(data, max_bytes=1500 if reason == "exceeds" else 100_000, max_depth=32)


def test_a_deep_event_is_a_contract_error_that_still_names_its_event() -> None:
    payload = b'{"event_id": "e-9", "type": "sos", "ts": 1, "extra": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    with pytest.raises(ContractError) as caught:
        contract.parse_event(payload)
    assert caught.value.event_id == "e-9"
    assert f"nested deeper than {contract.MAX_DEPTH}" in caught.value.reason


def test_ordinary_nesting_in_extra_is_accepted() -> None:
    body = {"event_id": "e-1", "type": "test", "ts": 1, "extra": {"a": {"b": {"c": [1, [2, [3]]]}}}}
    assert contract.parse_event(json.dumps(body).encode()).extra["a"]["b"]["c"] == [1, [2, [3]]]


def test_any_exception_inside_a_parser_becomes_a_contract_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(_name: str, _data: object, _event_id: object = None) -> None:
        raise KeyError("schema bug")

    monkeypatch.setattr(contract, "_validate", explode)
    with pytest.raises(ContractError, match="could not be parsed: KeyError"):
        contract.parse_event(b'{"event_id": "e-1", "type": "sos", "ts": 1}')


def test_the_retry_ack_carries_its_hint_and_validates() -> None:
    ack = contract.parse_ack(contract.build_ack("e-1", "retry", reason="rate limited", retry_after_s=7))
    assert (ack["status"], ack.get("retry_after_s")) == ("retry", 7)
    assert "retry_after_s" not in contract.parse_ack(contract.build_ack("e-2", "accepted"))


def test_the_pacer_admits_the_burst_then_spreads_the_rest_at_the_rate() -> None:
    pacer = EventPacer(rate_per_s=10, burst=100)
    waits = [pacer.admit("dev", 0.0) for _ in range(300)]
    assert waits[:100] == [0.0] * 100
    deferred = waits[100:]
    assert all(b > a for a, b in itertools.pairwise(deferred))  # each gets its own slot
    assert math.isclose(deferred[0], 0.1) and math.isclose(deferred[-1], 20.0)
    # Coming back at their slots, in order, every one is admitted.
    assert all(pacer.admit("dev", w) == 0.0 for w in deferred)
    assert pacer.admit("other", 0.0) == 0.0  # per device


def test_the_pacer_forgets_a_quiet_device() -> None:
    pacer = EventPacer(rate_per_s=1, burst=5, max_keys=2)
    for key in ("a", "b"):
        pacer.admit(key, 0.0)
    pacer.admit("c", 100.0)  # full: the quiet ones are pruned
    assert set(pacer._buckets) == {"c"}
