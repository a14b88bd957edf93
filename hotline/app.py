"""App assembly: services are started and stopped in pairs through aiohttp's cleanup_ctx.

Order (and reverse order on shutdown): database -> Redis bus -> console hub -> outbox
worker -> MQTT link and device gateway. Each context owns the background task it starts
and cancels it on the way out, even if a later context failed to start.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram
from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError

from devices import contract
from devices.brokersync import BrokerAuthSync, BrokerUser
from devices.commands import CommandService
from devices.directory import DeviceDirectory
from devices.errors import BrokerUnavailableError, UnknownDeviceError
from devices.gateway import SYS_DROPPED, SYS_STORED, DeviceGateway, GatewayPolicy
from devices.monitor import PresenceMonitor
from devices.mqtt_link import MqttLink
from devices.presence_store import PresenceStore
from dispatch import hooks
from dispatch.errors import NotYoursError, PolicyError, SignatureError
from dispatch.escalation import WATCHES, EmergencyAction, EscalationEngine, Escalator
from dispatch.incidents import Incidents
from dispatch.notify.channels import ConsoleSender, SmsGatewaySender, VoiceSender
from dispatch.notify.links import FamilyLinks
from dispatch.notify.outbox import OutboxWorker, Sender, WebhookSender
from dispatch.policy import install_defaults
from dispatch.ranking import RoutingPolicy
from dispatch.routing import GeoIndex, GeoSync, Router
from dispatch.service import DispatchService
from hotline import __version__
from hotline.api import auth_routes, call_routes, care_routes, deadletter_routes, dispatch_routes, routes
from hotline.api.jsonutil import json_response
from hotline.api.keys import HUB, PRINCIPAL, SERVICES, Services
from hotline.api.registry import MAX_BODY_BYTES, Api
from hotline.api.ws import ConsoleHub
from hotline.auth import Principal, hash_token
from hotline.bus import EventBus
from hotline.care.entitlements import install_defaults as install_care_defaults
from hotline.care.orders import CareSettings
from hotline.care.service import CareService
from hotline.config import Settings
from hotline.core.lifecycle import TransitionError
from hotline.errors import (
    AuthError,
    ConflictError,
    ForbiddenError,
    HotlineError,
    NotFoundError,
    RateLimitedError,
    ValidationError,
)
from hotline.jsonlimits import JsonLimitError
from hotline.metrics import Sample, ServiceCollector, exposition, registry_for
from hotline.signin import CSRF_HEADER, SESSION_COOKIE, csrf_ok, session_user
from hotline.storage.db import make_engine, make_sessionmaker, unavailable
from hotline.storage.leases import Lease, Role
from hotline.storage.models import User
from hotline.storage.redisconn import close_redis, redis_client
from hotline.tasks import cancel_and_wait
from hotline.telephony.errors import TelephonyError
from hotline.telephony.service import TelephonyConfig, TelephonyService

log = logging.getLogger(__name__)
METRICS = web.AppKey("metrics", CollectorRegistry)

# /api/v1/family/confirm carries its own signature instead of a token (a link in an SMS).
PUBLIC_PATHS = frozenset(
    {
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/openapi.json",
        "/",
        "/console",
        "/api/v1/family/confirm",
        "/api/v1/auth/login",
    }
)
_STATUS = {
    TelephonyError: 503,
    ValidationError: 400,
    AuthError: 401,
    ForbiddenError: 403,
    NotFoundError: 404,
    ConflictError: 409,
    PolicyError: 400,
    SignatureError: 403,
    NotYoursError: 404,
    UnknownDeviceError: 404,
    BrokerUnavailableError: 503,
    RateLimitedError: 429,
}


#: Every operation under /api/v1, and so the OpenAPI document.
API = Api().include(
    auth_routes.api, routes.api, call_routes.api, dispatch_routes.api, care_routes.api, deadletter_routes.api
)
OPENAPI = web.AppKey("openapi", bytes)


def openapi_document() -> dict[str, Any]:
    return API.openapi(
        title="12349 elderly-care hotline",
        version=__version__,
        description="Generated from the route registry and its pydantic models (hotline/api/registry.py).",
    )


def _error(status: int, code: str, message: str, field: str | None = None, **extra: Any) -> web.Response:
    return json_response({"error": {"code": code, "message": message, "field": field, **extra}}, status=status)


@web.middleware
async def errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except JsonLimitError as exc:
        return _error(413 if exc.too_large else 400, "validation", f"request body {exc.reason}")
    except TransitionError as exc:
        return _error(409, "transition", str(exc), from_state=exc.from_state, event=exc.event)
    except HotlineError as exc:
        status = next((s for cls, s in _STATUS.items() if isinstance(exc, cls)), 400)
        code = type(exc).__name__.removesuffix("Error").lower() or "error"
        if isinstance(exc, ValidationError):
            extra = {"errors": exc.errors} if exc.errors else {}
            return _error(status, code, str(exc), exc.field, **extra)
        response = _error(status, code, str(exc))
        if isinstance(exc, RateLimitedError):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            response = _error(exc.status, "http", exc.reason)
            if "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
            return response
        raise
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if unavailable(exc):
            # The database is down, starting up or out of connections: say so, and when to come
            # back, rather than a 500 that reads like a bug. Nothing was stored; a retry is safe.
            log.warning("database unavailable method=%s path=%s (%s)", request.method, request.path, type(exc).__name__)
            response = _error(503, "unavailable", "the database is not answering; try again shortly")
            response.headers["Retry-After"] = "5"
            return response
        # Never a bare 500 page with a traceback: JSON, and a reference the log also carries.
        error_id = uuid.uuid4().hex[:12]
        log.exception("unexpected error error_id=%s method=%s path=%s", error_id, request.method, request.path)
        return _error(500, "internal", f"internal error (reference {error_id})", error_id=error_id)


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS or request.path.startswith(("/static/", "/console/")):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else None
    if token is None and request.path == "/api/v1/ws":
        # Browsers cannot set headers on a WebSocket; the query parameter is the standard escape.
        token = request.query.get("token")
    svc = request.app[SERVICES]
    if token:
        async with svc.sm() as session:
            user = await session.scalar(select(User).where(User.token_hash == hash_token(token)))
        if user is None or user.disabled:
            raise AuthError("invalid token")
    elif cookie := request.cookies.get(SESSION_COOKIE):
        async with svc.sm() as session:
            user = await session_user(session, cookie, datetime.now(UTC))
        if user is None or user.disabled:
            raise AuthError("session expired or signed out; sign in again")
        _check_cookie_request(request, cookie)
    else:
        raise AuthError("missing bearer token or session cookie")
    request[PRINCIPAL] = Principal.of(user)
    return await handler(request)


def _check_cookie_request(request: web.Request, cookie: str) -> None:
    """A browser attaches the cookie by itself, so a write needs the CSRF token too, and a
    WebSocket must come from our own origin (SameSite covers modern browsers; this covers
    the rest)."""
    if request.path == "/api/v1/ws":
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != request.host:
            raise ForbiddenError("the console feed accepts its own origin only")
    elif request.method not in ("GET", "HEAD", "OPTIONS") and not csrf_ok(cookie, request.headers.get(CSRF_HEADER)):
        raise ForbiddenError(f"a write with the session cookie needs the {CSRF_HEADER} header from sign-in")


async def healthz(_request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    checks: dict[str, str] = {}
    try:
        async with svc.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means "not ready"
        checks["database"] = f"error: {type(exc).__name__}"
    checks["redis"] = "ok" if svc.bus is not None and await svc.bus.ping() else "down"
    # The console fan-out: while it is down, events still reach this instance's consoles
    # (local delivery) but not the other instances'.
    checks["console_bus"] = "ok" if svc.bus is not None and svc.bus.subscribed.is_set() else "down"
    if svc.link is not None and svc.link.session_conflict:
        checks["mqtt"] = f"session taken over: another client uses client id {svc.link.client_id!r}"
    else:
        checks["mqtt"] = "ok" if svc.link is not None and svc.link.connected else "down"
    checks["devices"] = "ok" if svc.gateway is not None and svc.gateway.ready.is_set() else "starting"
    body: dict[str, Any] = {}
    if svc.telephony is None:
        checks["ami"] = "disabled"
    else:
        checks["ami"] = "ok" if svc.telephony.link.connected else "down"
        if (role := svc.telephony.role) is not None:
            # Not a check: a standby is as ready as the holder; it says who pops the calls.
            body["ami_role"] = {
                "instance": role.me,
                "holder": role.active,
                "current_holder": role.holder,
                "token": role.token,
            }
    ready = all(v in ("ok", "disabled") for v in checks.values())
    body = {"status": "ready" if ready else "not_ready", "checks": checks, **body}
    return json_response(body, status=200 if ready else 503)


def _samples(app: web.Application) -> Iterator[Sample]:
    """Every counter and gauge, read from the services at scrape time. No ids, names or numbers."""
    svc = app[SERVICES]
    if svc.gateway is not None:
        gw = svc.gateway
        for outcome, n in sorted(gw.metrics.items()):
            yield Sample(
                "hotline_gateway_messages_total", n, "Device messages by outcome", labels=(("outcome", outcome),)
            )
        yield Sample("hotline_conditions_opened_total", gw.conditions.opened, "Device condition episodes opened")
        # Both are the broker's own $SYS figures, for every client of the broker, not ours.
        if gw.broker_stored is not None:
            yield Sample(
                "hotline_broker_queued_messages",
                gw.broker_stored,
                "The broker's $SYS/broker/store/messages/count: messages queued for all its clients",
                "gauge",
            )
        if gw.broker_dropped is not None:
            yield Sample(
                "hotline_broker_sys_dropped_messages",
                gw.broker_dropped,
                "The broker's $SYS/broker/publish/messages/dropped: drops across all its clients since it started, "
                "not this backend's losses",
                "gauge",
            )
    if svc.link is not None:
        yield Sample("hotline_mqtt_connected", int(svc.link.connected), "1 when the MQTT link is up", "gauge")
        yield Sample("hotline_mqtt_reconnects_total", svc.link.reconnects, "MQTT reconnections")
        yield Sample("hotline_mqtt_dropped_qos0_total", svc.link.dropped_qos0, "QoS 0 messages dropped on a full inbox")
        yield Sample("hotline_mqtt_inbox_depth", svc.link.qsize(), "Messages waiting for a gateway worker", "gauge")
    if svc.outbox is not None:
        yield Sample("hotline_notifications_delivered_total", svc.outbox.delivered, "Notifications delivered")
        yield Sample("hotline_notifications_failed_total", svc.outbox.failed, "Notifications given up on")
    if svc.telephony is not None:
        tel = svc.telephony
        yield Sample(
            "hotline_ami_connected",
            int(tel.link.connected),
            "1 when the AMI link is logged in and resynchronised",
            "gauge",
        )
        yield Sample("hotline_ami_logins_total", tel.link.connects, "AMI logins (the first one and every reconnect)")
        yield Sample("hotline_ami_events_total", tel.link.events, "AMI events read")
        yield Sample("hotline_ami_garbage_total", tel.link.garbage, "Garbage AMI lines and frames on this connection")
        yield Sample("hotline_ami_handler_errors_total", tel.link.handler_errors, "AMI event handlers that raised")
        yield Sample("hotline_screen_pops_total", tel.pops, "call.ringing pops sent to an operator")
        if tel.role is not None:
            yield Sample(
                "hotline_ami_role_holder", int(tel.role.active), "1 while this instance holds the AMI role", "gauge"
            )
            yield Sample(
                "hotline_ami_lease_token", tel.role.token or 0, "This instance's AMI lease token (0: standby)", "gauge"
            )
            yield Sample("hotline_ami_role_gained_total", tel.role.gained, "Times this instance took the AMI role")
            yield Sample("hotline_ami_role_lost_total", tel.role.lost, "Times this instance gave the AMI role up")
        yield Sample("hotline_call_write_errors_total", tel.write_errors, "Failed call-record writes (retried)")
    if svc.dispatch is not None:
        engine = svc.dispatch.engine
        yield Sample(
            "hotline_escalation_fired_total", engine.fired, "Escalation timers fired (steps run and committed)"
        )
        yield Sample(
            "hotline_escalation_stale_total",
            engine.stale,
            "Wake-ups refused by the fencing token (duplicate, late, early)",
        )
        yield Sample("hotline_escalation_errors_total", engine.errors, "Timer firings that failed and stay due")
        yield Sample(
            "hotline_routing_fallbacks_total",
            svc.dispatch.escalator.router.fallbacks,
            "Rankings made from the database",
        )
    if svc.bus is not None:
        yield Sample(
            "hotline_console_local_deliveries_total",
            svc.bus.local_deliveries + svc.bus.fallbacks,
            "Console messages delivered to this instance's sockets directly (fan-out down or not subscribed)",
        )
        yield Sample(
            "hotline_console_resent_total",
            svc.bus.resent,
            "Console messages published late for the other instances, after Redis came back",
        )
        yield Sample(
            "hotline_console_caught_up_total",
            svc.bus.caught_up,
            "Console messages read back from the log after this instance's subscriber was away",
        )
    yield Sample("hotline_websocket_clients", app[HUB].size, "Connected console sockets", "gauge")


def _histograms(app: web.Application) -> Iterator[Histogram]:
    svc = app[SERVICES]
    if svc.gateway is not None:
        yield svc.gateway.ack_latency
    if svc.dispatch is not None:
        yield svc.dispatch.escalator.first_offer_latency
    if svc.telephony is not None:
        yield svc.telephony.pop_latency


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format, from this app's own registry."""
    body = exposition(request.app[METRICS])
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


CONSOLE_DIR = resources.files("hotline").joinpath("static", "console")


async def console(request: web.Request) -> web.StreamResponse:
    """The console's single-page app: its files, and index.html for every view's path
    (/console/wallboard, /console/incidents/ID) so a reload lands on the same view."""
    tail = request.match_info.get("tail", "")
    if tail.startswith("assets/") and ".." not in tail:
        asset = CONSOLE_DIR.joinpath(*tail.split("/"))
        if not asset.is_file():
            raise web.HTTPNotFound()
        # Vite names assets by content hash: they never change under the same name.
        return web.FileResponse(str(asset), headers={"Cache-Control": "public, max-age=31536000, immutable"})
    index = CONSOLE_DIR.joinpath("index.html")
    if not index.is_file():
        return web.Response(
            status=503,
            text="the console is not built: run ./dev build-console (or ./dev demo, which builds it)",
        )
    return web.Response(
        text=index.read_text(encoding="utf-8"), content_type="text/html", headers={"Cache-Control": "no-cache"}
    )


async def _to_console(_request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/console/")


def _task(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    task = asyncio.create_task(coro, name=name)

    def _done(t: asyncio.Task[None]) -> None:
        if not t.cancelled() and t.exception() is not None:
            log.error("background task %s died", name, exc_info=t.exception())

    task.add_done_callback(_done)
    return task


def build_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[errors_middleware, auth_middleware], client_max_size=MAX_BODY_BYTES)
    engine = make_engine(settings.database_url)
    app[SERVICES] = Services(
        settings=settings, engine=engine, sm=make_sessionmaker(engine, phone_area_code=settings.phone_area_code)
    )
    app[HUB] = ConsoleHub()
    app[METRICS] = registry_for(ServiceCollector(lambda: _samples(app), lambda: _histograms(app)))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/openapi.json", openapi)
    app.router.add_get("/", _to_console)
    app.router.add_get("/console", _to_console)
    app.router.add_get("/console/{tail:.*}", console)
    API.add_routes(app)
    app[OPENAPI] = json.dumps(openapi_document(), ensure_ascii=False).encode()
    app.cleanup_ctx.extend(
        [_database_ctx, _bus_ctx, _outbox_ctx, _dispatch_ctx, _telephony_ctx, _care_ctx, _devices_ctx]
    )
    app.on_shutdown.append(_close_websockets)
    return app


async def _database_ctx(app: web.Application) -> AsyncIterator[None]:
    svc = app[SERVICES]
    yield
    await svc.engine.dispose()


async def _bus_ctx(app: web.Application) -> AsyncIterator[None]:
    svc = app[SERVICES]
    redis = redis_client(svc.settings.redis_url, socket_connect_timeout=2, health_check_interval=15)
    svc.bus = EventBus(redis, prefix=svc.settings.redis_prefix, strict=svc.settings.strict_messages)
    svc.bus.add_listener(app[HUB].broadcast)
    svc.throttle.redis, svc.throttle.prefix = redis, svc.settings.redis_prefix
    task = _task(svc.bus.run(), "hotline.bus.subscriber")
    with contextlib.suppress(TimeoutError):
        # Subscribe before taking traffic, so the first alarm is not missed; if Redis is
        # down we start anyway (local fallback) and the loop keeps retrying.
        await asyncio.wait_for(svc.bus.subscribed.wait(), 3)
    yield
    await cancel_and_wait(task)
    svc.throttle.redis = None
    await close_redis(redis)


async def _outbox_ctx(app: web.Application) -> AsyncIterator[None]:
    svc = app[SERVICES]
    http = aiohttp.ClientSession()
    if svc.settings.webhook_secret_is_default:
        log.warning("HOTLINE_WEBHOOK_SECRET is not set: signing webhooks with the public development secret")
    assert svc.bus is not None
    senders: dict[str, Sender] = {
        "webhook": WebhookSender(http, svc.settings.webhook_secrets),
        "console": ConsoleSender(svc.bus.publish),
    }
    if svc.settings.sms_gateway_url:
        senders["sms"] = SmsGatewaySender(http, svc.settings.sms_gateway_url, token=svc.settings.sms_gateway_token)
    svc.outbox = OutboxWorker(svc.sm, senders)
    task = _task(svc.outbox.run(), "dispatch.outbox.worker")
    yield
    await cancel_and_wait(task)
    await http.close()


def instance_name(s: Settings) -> str:
    """HOTLINE_INSTANCE_ID, else the MQTT client id and the PID: unique among running instances."""
    return s.instance_id or f"{s.mqtt_client_id}/{os.getpid()}"


def link_secret(s: Settings) -> bytes:
    """HOTLINE_LINK_SECRET, else a key derived from the webhook secret (never the secret itself)."""
    if s.link_secret:
        return s.link_secret.encode()
    return hmac.new(base64.b64decode(s.webhook_secrets[0].removeprefix("whsec_")), b"family-links", "sha256").digest()


async def _dispatch_ctx(app: web.Application) -> AsyncIterator[None]:
    svc = app[SERVICES]
    s = svc.settings
    assert svc.bus is not None
    assert svc.outbox is not None
    redis = redis_client(s.redis_url, socket_connect_timeout=2, socket_timeout=5)
    geo = GeoIndex(redis, s.redis_prefix)
    router = Router(geo, svc.sm, policy=RoutingPolicy(reach_min=s.reach_minutes, min_rating=s.min_provider_rating))
    escalator = Escalator(
        router,
        emergency=EmergencyAction(s.emergency_number, s.emergency_webhook_url, s.emergency_call_deadline_s),
        links=FamilyLinks(link_secret(s), s.base_url),
        voice_enabled=s.ami is not None,
    )
    engine = EscalationEngine(
        svc.sm,
        redis,
        escalator,
        prefix=s.redis_prefix,
        sweep_s=s.timer_sweep_s,
        publish=svc.bus.publish,
        on_notifications=svc.outbox.wake,
    )
    sync = GeoSync(geo, svc.sm)
    hooks.install(svc.sm, WATCHES, timers=engine.on_commit, providers=sync.on_commit)
    await install_defaults(svc.sm)
    svc.dispatch = DispatchService(
        svc.sm, Incidents(escalator, merge_window=timedelta(seconds=s.merge_window_s)), engine
    )
    svc.geo_sync = sync
    tasks = [_task(sync.run(), "dispatch.geo_sync"), _task(engine.run(), "dispatch.escalation")]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(sync.synced.wait(), 5)  # rank from a complete index when Redis is up
    yield
    for task in tasks:
        await cancel_and_wait(task)
    await close_redis(redis)


async def _telephony_ctx(app: web.Application) -> AsyncIterator[None]:
    svc = app[SERVICES]
    s = svc.settings
    if s.ami is None:
        yield
        return
    assert svc.bus is not None
    config = TelephonyConfig(
        ami=s.ami,
        ami_queue=s.ami_queue,
        ami_dial=s.ami_dial,
        ami_operator_channel=s.ami_operator_channel,
        ami_alarm_callback=s.ami_alarm_callback,
        callback_number=s.callback_number,
        phone_area_code=s.phone_area_code,
        stale_s=s.ami_stale_s,
    )
    role = Role(Lease(svc.sm, "ami"), instance_name(s), failover_s=s.ami_failover_s)
    svc.telephony = TelephonyService(config, svc.sm, svc.bus, role=role)
    svc.bus.add_listener(svc.telephony.on_bus_message)
    with contextlib.suppress(SQLAlchemyError, OSError, TimeoutError):
        # One try before the link starts: a lone instance pops its very first call.
        async with asyncio.timeout(3):
            await role.step()
    svc.telephony.start()
    assert svc.outbox is not None
    svc.outbox.add_sender("voice", VoiceSender(svc.telephony))
    yield
    await svc.telephony.close()


async def _care_ctx(app: web.Application) -> AsyncIterator[None]:
    """The service loop: its timers and the campaign runner, both owned here."""
    svc = app[SERVICES]
    s = svc.settings
    assert svc.bus is not None
    assert svc.outbox is not None
    assert svc.dispatch is not None
    await install_care_defaults(svc.sm)
    svc.care = CareService.build(
        svc.sm,
        svc.dispatch.escalator.router,
        settings=CareSettings(
            checkin_radius_m=s.checkin_radius_m,
            no_show_minutes=s.no_show_minutes,
            offer_timeout_s=s.order_offer_s,
            followup_hours=s.followup_hours,
            complaint_days=s.complaint_days,
            review_bottom_pct=s.review_bottom_pct,
            unanswered_alert=s.unanswered_alert,
            region=s.region,
        ),
        publish=svc.bus.publish,
        on_queued=svc.outbox.wake,
        dialer=svc.telephony,
        sweep_s=s.timer_sweep_s,
        campaign_tick_s=s.campaign_tick_s,
    )
    await svc.care.start()
    tasks = [_task(svc.care.timers.run(), "care.timers"), _task(svc.care.campaigns.run(), "care.campaigns")]
    yield
    for task in tasks:
        await cancel_and_wait(task)


def device_subscriptions(s: Settings) -> list[tuple[str, int]]:
    """Uplink topics, as a shared subscription when several instances split the load."""
    share = f"$share/{s.mqtt_shared_group}/" if s.mqtt_shared_group else ""
    subs = [(share + t, 1) for t in contract.uplink_subscriptions(s.mqtt_prefix)]
    return [*subs, (SYS_DROPPED, 0), (SYS_STORED, 0)]


async def _devices_ctx(app: web.Application) -> AsyncIterator[None]:
    svc = app[SERVICES]
    s = svc.settings
    assert svc.bus is not None
    assert svc.outbox is not None
    link = MqttLink(
        s.mqtt,
        client_id=s.mqtt_client_id,
        subscriptions=device_subscriptions(s),
        receive_maximum=s.mqtt_receive_maximum,
        session_expiry_s=s.mqtt_session_expiry_s,
        is_bulk=lambda topic: topic.endswith("/telemetry"),
    )
    svc.link = link
    directory = DeviceDirectory(svc.sm)
    svc.commands = CommandService(
        svc.sm, link, prefix=s.mqtt_prefix, callback_number=s.callback_number, on_interval_change=directory.invalidate
    )
    # Presence gets its own client with a socket timeout, so no presence call can hang;
    # the bus's client has none, because a pub/sub connection is idle by design.
    presence_redis = redis_client(s.redis_url, socket_connect_timeout=2, socket_timeout=5)
    svc.gateway = DeviceGateway(
        sm=svc.sm,
        link=link,
        bus=svc.bus,
        prefix=s.mqtt_prefix,
        presence=PresenceStore(presence_redis, s.redis_prefix),
        commands=svc.commands,
        directory=directory,
        policy=GatewayPolicy(
            heartbeat_misses=s.heartbeat_misses,
            lw_grace_s=s.lw_grace_s,
            offline_incident_after_s=s.offline_incident_after_s,
            event_rate_per_s=s.device_event_rate,
            event_burst=s.device_event_burst,
        ),
        on_notifications=svc.outbox.wake,
        incidents=svc.dispatch.incidents if svc.dispatch else None,
    )
    monitor = PresenceMonitor(svc.gateway, svc.bus)
    await link.start()
    tasks = [_task(svc.gateway.run(), "devices.gateway"), _task(monitor.run(), "devices.presence_monitor")]
    if s.broker_auth_dir:
        # load_settings refuses the directory without them
        assert s.mqtt.username is not None
        assert s.mqtt.password is not None
        svc.broker_auth = BrokerAuthSync(
            svc.sm,
            Path(s.broker_auth_dir),
            BrokerUser(s.mqtt_prefix, s.mqtt.username, s.mqtt.password),
            sync_s=s.broker_auth_sync_s,
        )
        tasks.append(_task(svc.broker_auth.run(), "devices.broker_auth_sync"))
    yield
    for task in tasks:
        await cancel_and_wait(task)
    await link.close()
    await close_redis(presence_redis)


async def _close_websockets(app: web.Application) -> None:
    await app[HUB].close_all()


async def serve(
    settings: Settings,
    *,
    shutdown: asyncio.Event | None = None,
    on_ready: Callable[[web.Application, int], None] | None = None,
) -> None:
    """Run the backend until ``shutdown`` is set (or SIGINT/SIGTERM when not given).

    As a process (no ``shutdown`` given), stopping is bounded by HOTLINE_SHUTDOWN_TIMEOUT:
    what has not closed by then is logged and the process exits anyway, as a SIGKILL would.
    Nothing is lost that way: a message is acknowledged only once stored, so the broker
    redelivers what was in flight, and timers live in the database. A second signal exits at
    once.
    """
    app = build_app(settings)
    # Requests still running at a stop get half the bound; the services' close paths the rest.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=settings.shutdown_timeout_s / 2)
    await runner.setup()
    stop = shutdown or asyncio.Event()
    own_process = shutdown is None
    if own_process:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, _on_signal, stop)
    try:
        site = web.TCPSite(runner, settings.http_host, settings.http_port)
        await site.start()
        port = int(runner.addresses[0][1])
        log.info("listening on http://%s:%d", settings.http_host, port)
        print(json.dumps({"event": "ready", "http": f"http://{settings.http_host}:{port}"}), flush=True)
        if on_ready is not None:
            on_ready(app, port)
        await stop.wait()
    finally:
        started = time.monotonic()
        log.info("shutting down (at most %.0f s)", settings.shutdown_timeout_s)
        cleanup = asyncio.create_task(runner.cleanup(), name="hotline.shutdown")
        # asyncio.wait, not wait_for: wait_for waits for the cancelled task to finish, which
        # is exactly what a stuck close path never does.
        done, _ = await asyncio.wait({cleanup}, timeout=settings.shutdown_timeout_s)
        if own_process:
            left = max(0.0, settings.shutdown_timeout_s - (time.monotonic() - started))
            await _end_process(done=bool(done), left_s=left)
        elif not done:
            log.error("shutdown did not finish within %.0f s", settings.shutdown_timeout_s)


def _on_signal(stop: asyncio.Event) -> None:
    if stop.is_set():
        log.warning("second stop signal: exiting now")
        _hard_exit(130)
    stop.set()


async def _end_process(*, done: bool, left_s: float) -> None:
    """After the app's own cleanup: cancel whatever still runs and give it what is left of
    the bound; exit hard if the bound runs out (asyncio.run would wait for it forever)."""
    current = asyncio.current_task()
    rest = [t for t in asyncio.all_tasks() if t is not current]
    for t in rest:
        t.cancel()
    stuck: set[asyncio.Task[Any]] = set()
    if rest:
        _, stuck = await asyncio.wait(rest, timeout=max(left_s, 0.1))
    if not done or stuck:
        names = sorted(t.get_name() for t in stuck) or ["the app's cleanup"]
        log.error("shutdown bound reached; exiting with these still running: %s", ", ".join(names))
        _hard_exit(1)
    log.info("stopped")


def _hard_exit(code: int) -> None:
    logging.shutdown()  # flush the log lines that say why
    sys.stdout.flush()
    os._exit(code)
