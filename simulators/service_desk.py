"""An operator-desk simulator for the service loop: it takes requests as callers would make
them (a bath, meals, cleaning), answers the follow-up calls that fall due with a score, and
starts a wellbeing campaign run. It speaks only the public HTTP API.

    python -m simulators.service_desk --url http://127.0.0.1:8080 --token hl_... --every 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp

log = logging.getLogger(__name__)
REQUESTS = (("bathing", 1.0), ("cleaning", 2.0), ("meals", 1.0), ("daily_care", 1.0), ("companionship", 1.0))
SCORES = (5, 5, 5, 4, 4, 3, 2)  # mostly satisfied; a 2 opens a quality review
LOCAL = timezone(timedelta(hours=8))


@dataclass
class ServiceDesk:
    url: str
    token: str
    every_s: float = 3.0
    seed: int | None = None
    elders: list[str] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)
    followed_up: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    async def run(self, *, until: asyncio.Event | None = None) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            if not self.elders:
                async with http.get(f"{self.url}/api/v1/elders", params={"limit": "500"}) as r:
                    self.elders = [e["id"] for e in (await r.json())["items"]]
            while until is None or not until.is_set():
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    await self._request(http)
                    await self._follow_ups(http)
                await asyncio.sleep(self.every_s)

    async def _request(self, http: aiohttp.ClientSession) -> None:
        service, quantity = self._rng.choice(REQUESTS)
        body: dict[str, Any] = {"elder_id": self._rng.choice(self.elders), "service": service, "quantity": quantity}
        if self._rng.random() < 0.5:
            # Booked for tomorrow between 09:00 and 16:00 local time; the rest are wanted now.
            local = datetime.now(LOCAL) + timedelta(days=1)
            slot = local.replace(hour=self._rng.randrange(9, 16), minute=0, second=0, microsecond=0)
            body["scheduled_for"] = slot.isoformat()
        async with http.post(f"{self.url}/api/v1/service-requests", json=body) as r:
            out = await r.json()
            if r.status == 201:
                self.requested.append(out["id"])
            else:
                self.errors.append(f"request: {r.status} {out['error']['message']}")

    async def _follow_ups(self, http: aiohttp.ClientSession) -> None:
        async with http.get(f"{self.url}/api/v1/follow-ups", params={"status": "due", "limit": "20"}) as r:
            due: list[dict[str, Any]] = (await r.json())["items"]
        for fu in due:
            body = {"reached": True, "score": self._rng.choice(SCORES), "comment": "模拟回访"}
            async with http.post(f"{self.url}/api/v1/follow-ups/{fu['id']}/result", json=body) as r:
                if r.status == 200:
                    self.followed_up.append(fu["id"])
                else:
                    self.errors.append(f"follow-up: {r.status}")


async def start_campaign(url: str, token: str, *, name: str = "独居老人关怀（演示）") -> dict[str, Any]:
    """A weekly campaign for elders living alone, with one run started now."""
    headers = {"Authorization": f"Bearer {token}"}
    body = {
        "name": name,
        "target": {"living_situation": ["alone"], "min_age": 60},
        "rrule": "FREQ=WEEKLY;BYDAY=MO",
        "calling_hours": "00:00-23:59",
        "max_concurrent_calls": 3,
        "attempts": 2,
        "retry_after_min": 0.1,
    }
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{url}/api/v1/campaigns", json=body) as r:
            campaign: dict[str, Any] = await r.json()
            r.raise_for_status()
        async with http.post(f"{url}/api/v1/campaigns/{campaign['id']}/runs") as r:
            if r.status not in (201, 409):  # 409: the schedule started this moment's run itself
                r.raise_for_status()
    return campaign


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--token", required=True, help="an operator's bearer token")
    parser.add_argument("--every", type=float, default=3.0, help="seconds between requests")
    parser.add_argument("--seconds", type=float, default=0, help="stop after this long (0: until Ctrl-C)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    desk = ServiceDesk(args.url, args.token, every_s=args.every)

    async def go() -> None:
        stop = asyncio.Event()
        if args.seconds:
            asyncio.get_running_loop().call_later(args.seconds, stop.set)
        await desk.run(until=stop)
        print(f"requests {len(desk.requested)} follow-ups {len(desk.followed_up)} errors {len(desk.errors)}")

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(go())


if __name__ == "__main__":
    main()
