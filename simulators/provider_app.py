"""A provider-app simulator: polls the provider API for offers and accepts, declines or
ignores each with configurable odds and delays, then reports en route, on scene and done
with a location moving towards the elder; a work order it checks in and out of at the
elder's door. It speaks only the public HTTP API.

    python -m simulators.provider_app --url http://127.0.0.1:8080 --token hl_... \\
        --accept 0.7 --decline 0.2 --delay 2 --travel 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass, field
from typing import Any

import aiohttp

log = logging.getLogger(__name__)


@dataclass
class Behaviour:
    accept: float = 0.8  # odds of accepting an offer
    decline: float = 0.1  # odds of declining; the rest are ignored until they expire
    delay_s: tuple[float, float] = (0.5, 2.0)  # before answering an offer
    travel_s: float = 3.0  # from en route to on scene
    work_s: float = 2.0  # from on scene to done
    finish: bool = True  # report done; False leaves accepted jobs on scene


@dataclass
class ProviderApp:
    url: str
    token: str
    behaviour: Behaviour = field(default_factory=Behaviour)
    poll_s: float = 0.5
    seed: int | None = None
    seen: set[str] = field(default_factory=set)
    accepted: list[str] = field(default_factory=list)
    declined: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._jobs: set[asyncio.Task[None]] = set()

    async def run(self, *, until: asyncio.Event | None = None) -> None:
        """Poll until cancelled (or ``until`` is set); each offer is handled in its own owned task."""
        headers = {"Authorization": f"Bearer {self.token}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            try:
                while until is None or not until.is_set():
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        for offer in await self._offers(http):
                            if offer["id"] not in self.seen:
                                self.seen.add(offer["id"])
                                task = asyncio.create_task(self._handle(http, offer))
                                self._jobs.add(task)
                                task.add_done_callback(self._jobs.discard)
                    await asyncio.sleep(self.poll_s)
            finally:
                for task in list(self._jobs):
                    task.cancel()
                await asyncio.gather(*self._jobs, return_exceptions=True)

    async def _offers(self, http: aiohttp.ClientSession) -> list[dict[str, Any]]:
        async with http.get(f"{self.url}/api/v1/provider/offers") as resp:
            resp.raise_for_status()
            return list((await resp.json())["items"])

    async def _post(self, http: aiohttp.ClientSession, offer_id: str, action: str, body: dict[str, Any]) -> bool:
        async with http.post(f"{self.url}/api/v1/offers/{offer_id}/{action}", json=body) as resp:
            if resp.status >= 400:
                self.errors.append(f"{action} {offer_id}: {resp.status} {(await resp.json())['error']['message']}")
                return False
            return True

    async def _handle(self, http: aiohttp.ClientSession, offer: dict[str, Any]) -> None:
        b = self.behaviour
        await asyncio.sleep(self._rng.uniform(*b.delay_s))
        roll = self._rng.random()
        if roll >= b.accept + b.decline:
            self.ignored.append(offer["id"])
            return
        if roll >= b.accept:
            if await self._post(http, offer["id"], "decline", {"reason": "simulated decline"}):
                self.declined.append(offer["id"])
            return
        if not await self._post(http, offer["id"], "accept", {}):
            return
        self.accepted.append(offer["id"])
        if not b.finish:
            return
        if offer.get("service_request_id"):
            await self._work_order(http, offer["service_request_id"])
            return
        await self._post(http, offer["id"], "en_route", {"lat": 30.0, "lon": 121.1})
        await asyncio.sleep(b.travel_s)
        await self._post(http, offer["id"], "on_scene", {"lat": 30.0, "lon": 121.1})
        await asyncio.sleep(b.work_s)
        if await self._post(http, offer["id"], "done", {}):
            self.finished.append(offer["id"])

    async def _work_order(self, http: aiohttp.ClientSession, order_id: str) -> None:
        """A work order: go to the door, check in, do the work, check out with what was done.
        When the elder's entitlement cannot cover it, the worker settles the rest as self-pay,
        as the elder agrees at the door."""
        b = self.behaviour
        async with http.get(f"{self.url}/api/v1/service-requests/{order_id}") as resp:
            if resp.status >= 400:
                self.errors.append(f"read {order_id}: {resp.status}")
                return
            order = await resp.json()
        site = {"lat": order["site"]["lat"], "lon": order["site"]["lon"]}
        await asyncio.sleep(b.travel_s)
        if not await self._order(http, order_id, "check-in", site):
            return
        await asyncio.sleep(b.work_s)
        out = {**site, "quantity": order["quantity"]}
        settled = await self._order(http, order_id, "check-out", out, quiet=(409,)) or await self._order(
            http, order_id, "check-out", {**out, "remainder_payer": "self_pay"}
        )
        if settled:
            self.finished.append(order_id)

    async def _order(
        self, http: aiohttp.ClientSession, order_id: str, action: str, body: dict[str, Any], quiet: tuple[int, ...] = ()
    ) -> bool:
        async with http.post(f"{self.url}/api/v1/service-requests/{order_id}/{action}", json=body) as resp:
            if resp.status >= 400:
                if resp.status not in quiet:
                    self.errors.append(f"{action} {order_id}: {resp.status} {(await resp.json())['error']['message']}")
                return False
            return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--token", required=True, help="a provider account's bearer token")
    parser.add_argument("--accept", type=float, default=0.8)
    parser.add_argument("--decline", type=float, default=0.1)
    parser.add_argument("--delay", type=float, default=2.0, help="longest wait before answering, seconds")
    parser.add_argument("--travel", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, default=0, help="stop after this long (0: until Ctrl-C)")
    args = parser.parse_args()
    if not 0 <= args.accept + args.decline <= 1:
        parser.error("--accept plus --decline must be between 0 and 1")
    logging.basicConfig(level=logging.INFO)
    app = ProviderApp(
        args.url, args.token, Behaviour(args.accept, args.decline, (0.1, max(0.1, args.delay)), args.travel)
    )

    async def go() -> None:
        stop = asyncio.Event()
        if args.seconds:
            asyncio.get_running_loop().call_later(args.seconds, stop.set)
        await app.run(until=stop)
        print(
            f"offers {len(app.seen)} accepted {len(app.accepted)} declined {len(app.declined)} "
            f"ignored {len(app.ignored)} finished {len(app.finished)} errors {len(app.errors)}"
        )

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(go())


if __name__ == "__main__":
    main()
