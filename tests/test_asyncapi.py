"""docs/asyncapi.yaml, the device contract's AsyncAPI 3 document, agrees with the JSON Schemas
the gateway validates with and with the topics in devices/contract.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from devices import contract

DOCS = Path(__file__).resolve().parent.parent / "docs"
SCHEMAS = Path(contract.__file__).resolve().parent / "schemas"


def _doc() -> dict[str, Any]:
    return yaml.safe_load((DOCS / "asyncapi.yaml").read_text(encoding="utf-8"))


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [node["$ref"]] if "$ref" in node else [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_channel_is_a_contract_topic_and_every_topic_a_channel() -> None:
    doc = _doc()
    assert doc["asyncapi"].startswith("3.")
    topics = contract.topics("{prefix}", "{device_id}")
    assert {name: ch["address"] for name, ch in doc["channels"].items()} == topics


def test_directions_and_qos_follow_the_contract() -> None:
    doc = _doc()
    sent = {
        _resolve(doc, op["channel"]["$ref"])["address"] for op in doc["operations"].values() if op["action"] == "send"
    }
    received = {
        _resolve(doc, op["channel"]["$ref"])["address"]
        for op in doc["operations"].values()
        if op["action"] == "receive"
    }
    topics = contract.topics("{prefix}", "{device_id}")
    # The device sends on exactly what the backend subscribes to, and receives the rest.
    assert {s.replace("{prefix}", "X").replace("{device_id}", "+") for s in sent} == set(
        contract.uplink_subscriptions("X")
    )
    assert received == {topics["ack"], topics["commands"]}
    qos = {op["channel"]["$ref"]: op["bindings"]["mqtt"] for op in doc["operations"].values()}
    assert qos["#/channels/events"] == {"qos": 1, "retain": False}  # alarms: at least once, never retained
    assert qos["#/channels/status"] == {"qos": 1, "retain": True}  # presence is retained (and the Last Will)


def test_every_message_references_the_schema_the_gateway_validates_with() -> None:
    doc = _doc()
    used = set()
    for message in doc["components"]["messages"].values():
        ref = message["payload"]["schema"]["$ref"]
        path = (DOCS / ref).resolve()
        assert path.parent == SCHEMAS.resolve() or path.parent == (DOCS / "schemas").resolve()
        schema = json.loads(path.read_text(encoding="utf-8"))
        assert message["payload"]["schemaFormat"].endswith(schema["$schema"].rsplit("/", 2)[-2])
        used.add(path.name)
    assert used == {p.name for p in SCHEMAS.glob("*.json")}  # no schema left undocumented


def test_every_internal_reference_resolves() -> None:
    doc = _doc()
    internal = [r for r in _refs(doc) if r.startswith("#/")]
    assert internal, "the document references nothing"
    for ref in internal:
        assert _resolve(doc, ref) is not None, ref
