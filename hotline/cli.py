"""The ``hotline`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from hotline.config import Settings, load_settings
from hotline.errors import ConfigError, HotlineError
from hotline.storage.db import make_engine, make_sessionmaker, upgrade
from hotline.storage.models import ROLES
from hotline.users import add_user, set_password


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hotline", description="12349 elderly-care hotline backend")
    p.add_argument("--config", help="TOML file under the environment variables")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("serve", help="run the backend (HTTP API, device gateway, outbox)")
    openapi = sub.add_parser("openapi", help="print the OpenAPI document (the console's API types come from it)")
    openapi.add_argument("--out", help="write it to this file instead")

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply migrations up to the newest")

    user = sub.add_parser("user", help="users and tokens")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    add = user_sub.add_parser("add", help="create a user and print a bearer token")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--extension", help="queue member extension of an operator, e.g. op1001")
    add.add_argument("--elder", help="the elder a family user may see")
    add.add_argument("--provider", help="the provider a provider user acts for")
    _password_args(add)
    passwd = user_sub.add_parser("password", help="set or change a user's console password")
    passwd.add_argument("name")
    _password_args(passwd)

    seed = sub.add_parser("seed", help="synthetic data")
    seed_sub = seed.add_subparsers(dest="seed_command", required=True)
    demo_seed = seed_sub.add_parser("demo", help="a synthetic district")
    demo_seed.add_argument("--elders", type=int, default=200)
    demo_seed.add_argument("--providers", type=int, default=40)
    demo_seed.add_argument("--family-webhook", help="deliver family alerts to this URL (default: SMS channel)")
    demo_seed.add_argument("--seed", type=int, default=12349)

    dev = sub.add_parser("devices", help="device fleet tools")
    dev_sub = dev.add_subparsers(dest="devices_command", required=True)
    auth = dev_sub.add_parser("mosquitto-auth", help="write a Mosquitto password file and ACL for every device")
    auth.add_argument("--out", required=True, help="directory for passwd, acl and mosquitto-auth.conf")
    auth.add_argument("--backend-user", help="the backend's broker user (default: the user in HOTLINE_MQTT_URL)")
    auth.add_argument("--backend-password", help="its password (default: the password in HOTLINE_MQTT_URL)")
    check = dev_sub.add_parser("check", help="watch a device's traffic and report what it does against the contract")
    check.add_argument("device_id")
    check.add_argument("--seconds", type=float, default=120, help="how long to watch")
    check.add_argument("--probe", action="store_true", help="also send it a locate command and expect a result")
    check.add_argument("--json", action="store_true", help="print the report as JSON")

    from hotline import cli_deadletters

    cli_deadletters.add_parser(sub)

    demo = sub.add_parser("demo", help="run everything on this machine with simulators")
    demo.add_argument("--elders", type=int, default=200)
    demo.add_argument("--providers", type=int, default=40)
    demo.add_argument("--devices", type=int, default=30, help="how many seeded devices the fleet simulator plays")
    demo.add_argument("--sos-every", type=float, default=4.0, help="mean seconds between simulated alarms")
    demo.add_argument("--call-every", type=float, default=8.0, help="mean seconds between simulated calls to 12349")
    demo.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0: until Ctrl-C)")
    demo.add_argument("--workdir", default="var/demo", help="where the demo database and child-process files go")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(config_path=args.config)
    except ConfigError as exc:
        print(f"hotline: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return _dispatch(args, settings)
    except HotlineError as exc:
        print(f"hotline: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "serve":
        from hotline.app import serve

        asyncio.run(serve(settings))
        return 0
    if args.command == "openapi":
        import json

        from hotline.app import openapi_document

        text = json.dumps(openapi_document(), ensure_ascii=False, indent=1) + "\n"
        if args.out:
            with open(args.out, "w", encoding="utf-8") as f:
                f.write(text)
        else:
            sys.stdout.write(text)
        return 0
    if args.command == "db":
        upgrade(settings.database_url)
        print("database is at the newest revision")
        return 0
    if args.command == "user":
        password = _read_password(args)
        if args.user_command == "password":
            if password is None:
                raise ConfigError("give the new password with --password or --password-stdin")
            asyncio.run(set_password(settings, args.name, password))
            print(f"password of {args.name} set; their console sessions are ended")
            return 0
        print(
            asyncio.run(
                add_user(
                    settings,
                    args.name,
                    args.role,
                    extension=args.extension,
                    elder_id=args.elder,
                    provider_id=args.provider,
                    password=password,
                )
            )
        )
        return 0
    if args.command == "seed":
        from hotline.seed import seed_demo

        async def _seed() -> str:
            engine = make_engine(settings.database_url)
            try:
                r = await seed_demo(
                    make_sessionmaker(engine, phone_area_code=settings.phone_area_code),
                    elders=args.elders,
                    providers=args.providers,
                    family_webhook=args.family_webhook,
                    seed=args.seed,
                )
            finally:
                await engine.dispose()
            return f"seeded {r.elders} elders, {len(r.devices)} devices, {r.providers} providers"

        print(asyncio.run(_seed()))
        return 0
    if args.command == "devices":
        return _devices(args, settings)
    if args.command == "deadletters":
        from hotline import cli_deadletters

        return cli_deadletters.run(args, settings)
    if args.command == "demo":
        from hotline.demo import run_demo

        return asyncio.run(run_demo(settings, args))
    raise AssertionError(args.command)


def _devices(args: argparse.Namespace, settings: Settings) -> int:
    if args.devices_command == "mosquitto-auth":
        from pathlib import Path

        from devices.brokerauth import write_auth_files
        from devices.brokersync import active_credentials

        user = args.backend_user or settings.mqtt.username
        password = args.backend_password or settings.mqtt.password
        if not user or not password:
            raise ConfigError(
                "the backend needs its own broker user: put it in HOTLINE_MQTT_URL "
                "(mqtt://hotline-backend:SECRET@host:1883) or pass --backend-user and --backend-password"
            )

        async def rows() -> list[tuple[str, str]]:
            engine = make_engine(settings.database_url)
            try:
                return await active_credentials(make_sessionmaker(engine))
            finally:
                await engine.dispose()

        files = write_auth_files(
            Path(args.out),
            prefix=settings.mqtt_prefix,
            backend_user=user,
            backend_password=password,
            devices=asyncio.run(rows()),
        )
        print(f"wrote {files.passwd}, {files.acl} and {files.conf} for {files.devices} devices")
        print(f"then copy the lines of {files.conf} into mosquitto.conf (or put it in its include_dir)")
        return 0
    from devices.conformance import run_check

    return asyncio.run(
        run_check(
            settings.mqtt,
            settings.mqtt_prefix,
            settings.database_url,
            args.device_id,
            seconds=args.seconds,
            probe=args.probe,
            as_json=args.json,
        )
    )


def _password_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--password", help="a console password (visible in the process list: prefer --password-stdin)")
    group.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")


def _read_password(args: argparse.Namespace) -> str | None:
    if getattr(args, "password_stdin", False):
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise ConfigError("--password-stdin read no password")
        return line
    password: str | None = getattr(args, "password", None)
    return password
