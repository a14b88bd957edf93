"""``hotline deadletters list|show|replay``: the gateway's refused and parked messages."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime

import pydantic
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devices import deadletters
from devices.errors import DeviceError
from hotline.api.models import PeriodQuery
from hotline.api.registry import validation_error
from hotline.config import Settings
from hotline.core import wire
from hotline.core.vocab import DeadLetterDisposition, values
from hotline.errors import HotlineError
from hotline.storage.db import make_engine, make_sessionmaker
from hotline.storage.models import DeadLetter

REPLAY_POLL_S = 0.25


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dl = sub.add_parser("deadletters", help="messages the device gateway refused or parked")
    dl_sub = dl.add_subparsers(dest="deadletters_command", required=True)
    ls = dl_sub.add_parser("list", help="newest first")
    ls.add_argument("--device", help="only this device")
    ls.add_argument("--reason", help="only reasons containing this text")
    ls.add_argument("--disposition", choices=values(DeadLetterDisposition))
    ls.add_argument("--since", help="ISO 8601 time, e.g. 2026-12-01T08:00:00Z")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true", help="one JSON object a line")
    show = dl_sub.add_parser("show", help="one dead letter with its payload and error")
    show.add_argument("id", type=int)
    replay = dl_sub.add_parser(
        "replay", help="send the exact payload through the gateway's normal path again (idempotent)"
    )
    replay.add_argument("id", type=int)
    replay.add_argument("--wait", type=float, default=15.0, help="seconds to wait for a running backend to replay it")


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return asyncio.run(_run(args, settings))
    except DeviceError as exc:
        raise HotlineError(str(exc)) from exc


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    engine = make_engine(settings.database_url)
    sm = make_sessionmaker(engine)
    try:
        if args.deadletters_command == "list":
            try:
                since = PeriodQuery.model_validate({"since": args.since}).since
            except pydantic.ValidationError as exc:
                raise validation_error(exc) from exc
            f = deadletters.LetterFilter(
                device_id=args.device, reason=args.reason, disposition=args.disposition, since=since
            )
            async with sm() as session:
                rows = (await session.scalars(deadletters.query(f).limit(max(1, min(args.limit, 10_000))))).all()
            for letter in rows:
                view = wire.DeadLetter.of(letter).wire()
                if args.json:
                    print(json.dumps(view, ensure_ascii=False))
                else:
                    print(
                        f"{view['id']:>8}  {view['received_at']}  {view['disposition']:<10} "
                        f"{view['device_id'] or '-':<16} {view['event_id'] or '-':<20} {view['reason']}"
                    )
            return 0
        if args.deadletters_command == "show":
            async with sm() as session:
                letter = await session.get(DeadLetter, args.id)
            if letter is None:
                raise HotlineError(f"dead letter {args.id} does not exist")
            print(json.dumps(wire.DeadLetterDetail.of(letter).wire(), ensure_ascii=False, indent=2))
            return 0
        return await _replay(sm, args.id, args.wait)
    finally:
        await engine.dispose()


async def _replay(sm: async_sessionmaker[AsyncSession], letter_id: int, wait_s: float) -> int:
    requested = datetime.now(UTC)
    await deadletters.request_replay(sm, letter_id, requested)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        await asyncio.sleep(REPLAY_POLL_S)
        async with sm() as session:
            letter = await session.get(DeadLetter, letter_id)
        if letter is not None and letter.replay_result not in (None, "replaying"):
            print(f"dead letter {letter_id} replayed: {letter.replay_result}")
            return 0
    print(f"dead letter {letter_id}: replay requested; no running backend took it within {wait_s:.0f} s")
    return 3
