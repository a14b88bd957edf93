"""A small route registry on pydantic: each operation is one handler and its models, and the
OpenAPI 3.1 document is generated from the same registrations.

A handler is ``async def h(request, body: SomeIn, query: SomeQuery) -> SomeOut``; the
registry reads the models from the annotations of ``body`` and ``query``, validates the
request before the handler runs (every bad field is reported, not only the first), and
writes the returned model as JSON with the declared status. A handler that must choose its
status returns :class:`Reply`; one that answers HTML or upgrades to a WebSocket returns the
aiohttp response itself.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic
from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from hotline.api.keys import PRINCIPAL
from hotline.auth import PERMISSIONS, Principal, require
from hotline.errors import ValidationError
from hotline.jsonlimits import JsonLimitError, loads_bounded

BODY_MAX_DEPTH = 32
MAX_BODY_BYTES = 1024**2  # aiohttp answers 413 past it (client_max_size)
JSON = "application/json"
_PATH_PARAM = re.compile(r"{(\w+)}")
Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Reply:
    """A model with a status chosen at run time (201 created, 200 merged, ...)."""

    model: BaseModel
    status: int


def model_response(model: BaseModel, status: int = 200) -> web.Response:
    # pydantic writes UTF-8 as is: Chinese text stays readable.
    return web.Response(body=model.model_dump_json(), status=status, content_type=JSON)


@dataclass
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    responses: dict[int, type[BaseModel] | None]
    permission: str | None
    public: bool
    errors: tuple[int, ...]
    body: type[BaseModel] | None = None
    body_optional: bool = False
    query: type[BaseModel] | None = None
    media: str = JSON
    # Other content types the success answer may have (a report as CSV or XLSX), as binary strings.
    alt_media: tuple[str, ...] = ()

    @property
    def path_params(self) -> list[str]:
        return _PATH_PARAM.findall(self.path)

    @property
    def ok(self) -> int:
        return min(self.responses)

    def status_codes(self) -> list[int]:
        # Any operation may find the database not answering (503 with Retry-After).
        codes = set(self.responses) | set(self.errors) | {503}
        if not self.public:
            codes |= {401, 403}
        if self.body is not None or self.query is not None or self.path_params:
            codes.add(400)
        if self.body is not None:
            codes.add(413)
        if self.path_params:
            codes.add(404)
        return sorted(codes)


def field_name(loc: Sequence[int | str], *, unknown: bool = False) -> str:
    """A pydantic location as the API names fields: ``contacts[0].phone``; an item of a list
    of scalars is named by its list (``phones``), and an unknown key anywhere in a list by
    ``contacts[].fax``."""
    out = ""
    for n, part in enumerate(loc):
        if isinstance(part, int):
            if n == len(loc) - 1:
                break
            out += "[]" if unknown else f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def validation_error(exc: pydantic.ValidationError, known: Iterable[str] = ()) -> ValidationError:
    """Every error of ``exc``; the headline is an unknown field if there is one, else the first."""
    errors: list[dict[str, str | None]] = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = [p for p in err["loc"] if p not in ("body", "query")]
        unknown = err["type"] == "extra_forbidden"
        name = field_name(loc, unknown=unknown)
        if unknown:
            message = f"unknown field {name}" + (f" (known: {', '.join(sorted(known))})" if known else "")
        else:
            message = f"{name}: {err['msg']}" if name else err["msg"]
        errors.append({"field": name or None, "message": message, "type": err["type"]})
    # An unknown field first: it is usually a typo, and the reason for the other errors.
    errors.sort(key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    return ValidationError(str(first["message"]), field=first["field"], errors=errors)


def _model_of(hints: Mapping[str, Any], name: str) -> tuple[type[BaseModel] | None, bool]:
    hint = hints.get(name)
    if hint is None:
        return None, False
    args = typing.get_args(hint)
    optional = type(None) in args
    model = next((a for a in args if a is not type(None)), hint) if args else hint
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"{name} must be annotated with a pydantic model, not {hint!r}")
    return model, optional


async def read_body(request: web.Request, model: type[BaseModel], *, optional: bool) -> BaseModel:
    raw = await request.read() if request.can_read_body else b""
    if not raw.strip():
        if optional:
            raw = b"{}"
        else:
            raise ValidationError("a JSON request body is required")
    try:
        # Bounded first: pydantic's own parser would take the depth and size we refuse.
        loads_bounded(raw, max_bytes=MAX_BODY_BYTES, max_depth=BODY_MAX_DEPTH)
    except JsonLimitError as exc:
        if exc.too_large:
            raise
        raise ValidationError(f"request body is not valid JSON: {exc.reason}") from exc
    try:
        # Strict: "5" is not a number and true is not an integer; JSON strings still give
        # enums and dates.
        return model.model_validate_json(raw, strict=True)
    except pydantic.ValidationError as exc:
        raise validation_error(exc, model.model_fields) from exc


def read_query(request: web.Request, model: type[BaseModel]) -> BaseModel:
    try:
        return model.model_validate(dict(request.query))
    except pydantic.ValidationError as exc:
        raise validation_error(exc) from exc


class Api:
    def __init__(self) -> None:
        self.operations: list[Operation] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        response: type[BaseModel] | None = None,
        status: int = 200,
        also: Mapping[int, type[BaseModel] | None] | None = None,
        permission: str | None = None,
        public: bool = False,
        errors: Iterable[int] = (),
        tag: str,
        media: str = JSON,
        alt_media: Iterable[str] = (),
    ) -> Callable[[Handler], Handler]:
        """Register ``handler`` for ``method path``. ``permission`` is checked before the
        request is read; a handler with its own rule (a provider editing itself) passes None
        and calls :func:`require` itself."""

        def register(handler: Handler) -> Handler:
            hints = typing.get_type_hints(handler)
            body, body_optional = _model_of(hints, "body")
            query, _ = _model_of(hints, "query")
            doc = inspect.getdoc(handler) or handler.__name__.replace("_", " ")
            self.operations.append(
                Operation(
                    method=method,
                    path=path,
                    handler=handler,
                    summary=doc,
                    tag=tag,
                    responses={status: response, **(also or {})},
                    permission=permission,
                    public=public,
                    errors=tuple(errors),
                    body=body,
                    body_optional=body_optional,
                    query=query,
                    media=media,
                    alt_media=tuple(alt_media),
                )
            )
            return handler

        return register

    def get(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **kw)

    def patch(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **kw)

    def include(self, *others: Api) -> Api:
        for other in others:
            self.operations.extend(other.operations)
        return self

    def add_routes(self, app: web.Application) -> None:
        for op in self.operations:
            app.router.add_route(op.method, op.path, _endpoint(op), name=op.handler.__name__)

    def openapi(self, *, title: str, version: str, description: str = "") -> dict[str, Any]:
        return _document(self.operations, title=title, version=version, description=description)


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def _endpoint(op: Operation) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        if op.permission is not None:
            require(principal(request), op.permission)
        kwargs: dict[str, Any] = {}
        if op.query is not None:
            kwargs["query"] = read_query(request, op.query)
        if op.body is not None:
            kwargs["body"] = await read_body(request, op.body, optional=op.body_optional)
        result = await op.handler(request, **kwargs)
        if isinstance(result, web.StreamResponse):
            return result
        if isinstance(result, Reply):
            return model_response(result.model, result.status)
        return model_response(result, op.ok)

    endpoint.__name__ = op.handler.__name__
    return endpoint


# -- the document -------------------------------------------------------------------------

_REF = "#/components/schemas/{model}"
_OK_TEXT = {200: "OK", 201: "Created", 202: "Accepted: it goes on in the background", 101: "Switching to WebSocket"}
_ERROR_TEXT = {
    400: "Invalid input: the body names the field (and every other bad field in errors)",
    401: "Missing or invalid bearer token",
    403: "The caller's role may not do this",
    404: "Not found, or not visible to the caller",
    409: "Conflicts with the current state (an illegal status change names the from-state and the event)",
    413: "Request body over 1 MiB",
    503: "A service this needs is not running here, or the database is not answering (see Retry-After)",
}


class ErrorDetail(BaseModel):
    field: str | None
    message: str
    type: str


class ErrorInfo(BaseModel):
    code: str
    message: str
    field: str | None
    errors: list[ErrorDetail] | None = None
    from_state: str | None = None
    event: str | None = None
    error_id: str | None = None


class ErrorBody(BaseModel):
    """Every error answer: ``{"error": {"code", "message", "field", ...}}``."""

    error: ErrorInfo


def _document(ops: Sequence[Operation], *, title: str, version: str, description: str) -> dict[str, Any]:
    keyed: list[tuple[tuple[str, str], type[BaseModel], Any]] = [(("err", ""), ErrorBody, "serialization")]
    for op in ops:
        for model in (op.body, op.query):
            if model is not None:
                keyed.append(((op.path, op.method), model, "validation"))
        for status, model in op.responses.items():
            if model is not None:
                keyed.append(((op.path, str(status)), model, "serialization"))
    key_map, top = models_json_schema([(m, mode) for _, m, mode in keyed], ref_template=_REF)
    schemas: dict[str, Any] = top.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, key_map, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Error": {
                    "description": "An error",
                    "content": {JSON: {"schema": key_map[(ErrorBody, "serialization")]}},
                }
            },
        },
    }


def _operation(op: Operation, key_map: Mapping[Any, Any], schemas: Mapping[str, Any]) -> dict[str, Any]:
    summary, _, details = op.summary.partition("\n\n")
    out: dict[str, Any] = {
        "operationId": op.handler.__name__,
        "summary": summary.replace("\n", " "),
        "tags": [op.tag],
    }
    roles = sorted(PERMISSIONS[op.permission]) if op.permission else None
    notes = [details.replace("\n", " ")] if details else []
    if roles:
        notes.append(f"Roles: {', '.join(roles)}.")
        out["x-roles"] = roles
    if notes:
        out["description"] = " ".join(notes)
    if op.public:
        out["security"] = []
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in op.path_params
    ]
    if op.query is not None:
        query_schema = _resolve(key_map[(op.query, "validation")], schemas)
        required = set(query_schema.get("required", ()))
        for name, prop in query_schema.get("properties", {}).items():
            param = {"name": name, "in": "query", "required": name in required, "schema": prop}
            if "description" in prop:
                param["description"] = prop["description"]
            params.append(param)
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {
            "required": not op.body_optional,
            "content": {JSON: {"schema": key_map[(op.body, "validation")]}},
        }
    responses: dict[str, Any] = {}
    for status in op.status_codes():
        if status in op.responses:
            model = op.responses[status]
            entry: dict[str, Any] = {"description": _OK_TEXT.get(status, "OK")}
            if model is not None:
                entry["content"] = {op.media: {"schema": key_map[(model, "serialization")]}}
            elif op.media != JSON:
                entry["content"] = {op.media: {"schema": {"type": "string"}}}
            for media in op.alt_media if status == op.ok else ():
                entry.setdefault("content", {})[media] = {"schema": {"type": "string", "format": "binary"}}
            responses[str(status)] = entry
        else:
            # OpenAPI 3.1 lets a reference carry its own description.
            responses[str(status)] = {
                "$ref": "#/components/responses/Error",
                "description": _ERROR_TEXT.get(status, "An error"),
            }
    out["responses"] = responses
    return out


def _resolve(schema: Mapping[str, Any], schemas: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    return schemas[ref.rsplit("/", 1)[-1]] if ref else schema
