"""Typed application keys for the services the app owns."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from devices.brokersync import BrokerAuthSync
from devices.commands import CommandService
from devices.gateway import DeviceGateway
from devices.mqtt_link import MqttLink
from dispatch.notify.outbox import OutboxWorker
from dispatch.routing import GeoSync
from dispatch.service import DispatchService
from hotline.api.ws import ConsoleHub
from hotline.auth import Principal
from hotline.bus import EventBus
from hotline.care.service import CareService
from hotline.config import Settings
from hotline.signin import LoginThrottle
from hotline.telephony.service import TelephonyService


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    sm: async_sessionmaker[AsyncSession]
    bus: EventBus | None = None
    link: MqttLink | None = None
    gateway: DeviceGateway | None = None
    commands: CommandService | None = None
    outbox: OutboxWorker | None = None
    telephony: TelephonyService | None = None
    dispatch: DispatchService | None = None
    geo_sync: GeoSync | None = None
    care: CareService | None = None
    broker_auth: BrokerAuthSync | None = None
    throttle: LoginThrottle = field(default_factory=lambda: LoginThrottle(None))
    extras: dict[str, object] = field(default_factory=dict)


SERVICES = web.AppKey("services", Services)
HUB = web.AppKey("hub", ConsoleHub)
PRINCIPAL = web.RequestKey("principal", Principal)
