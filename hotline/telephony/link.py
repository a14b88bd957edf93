"""The AMI link: panoramisk's Manager and protocol, with its 1.4 defects fixed at our boundary.

What we change, and why (each has a test in ``tests/test_ami_link.py`` that shows the
upstream behaviour next to ours):

1. Bytes are split into frames before decoding (:mod:`hotline.telephony.frames`), so UTF-8
   names cut across TCP reads survive.
2. ``Originate`` always goes out with ``Async: true`` and completes on its first response;
   upstream raises ``KeyError`` inside ``data_received`` without it and drops the connection.
3. Every frame is handled inside ``try``, and every event handler is isolated: one bad
   frame or handler is logged and counted and never kills the connection.
4. Actions asked for while the link is down wait (up to their deadline) and go out after
   the next login and resync. Actions in flight when the link drops are failed, not parked:
   idempotent ones are retried by :meth:`AmiLink.action`, an Originate never is, so a call
   never rings twice.
5. ``OriginateResponse`` carries the Originate's ActionID; upstream feeds it to the pending
   action and no handler sees it. We always dispatch it as an event.
6. Our own watchdog sends ``Ping`` and drops a connection whose answer does not come, so a
   half-open TCP connection is noticed in seconds. We open connections ourselves, with
   jittered back-off, instead of upstream's fixed-delay reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from panoramisk import Manager
from panoramisk.actions import Action
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from hotline.backoff import backoff_delay
from hotline.core.targets import AmiTarget
from hotline.tasks import cancel_and_wait, raise_if_cancelling
from hotline.tasks import wait_event as _wait
from hotline.telephony.errors import (
    AmiActionError,
    AmiAuthError,
    AmiNotConnectedError,
    AmiOutcomeUnknownError,
)
from hotline.telephony.events import AmiEvent, parse_event
from hotline.telephony.frames import FrameReader, encode_frame

log = logging.getLogger(__name__)

EventHandler = Callable[[AmiEvent], None]
UpHook = Callable[[], Awaitable[None]]


class _Dropped(ConnectionError):
    """The connection closed while an action waited for its answer."""


class SafeProtocol(AMIProtocol):  # type: ignore[misc]
    """panoramisk's protocol with byte-level framing and no silent action resend."""

    version: str | None
    closed: bool

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.reader = FrameReader()
        self.frame_errors = 0

    def data_received(self, data: bytes) -> None:
        for headers in self.reader.feed(data):
            if self.version is None and self.reader.banner is not None:
                self.version = self.reader.banner.partition("/")[2].strip()
            try:
                if "ActionID" not in headers and "Event" in headers:
                    # The hot path: a plain event needs no response lookup.
                    self.factory.dispatch_headers(headers)
                else:
                    self.handle_message(Message(headers))
            except Exception:
                self.frame_errors += 1
                log.exception("AMI frame handling failed; frame dropped, connection kept")

    def handle_message(self, message: Message) -> None:
        if message.get("Event") == "OriginateResponse":
            self.factory.dispatch_headers(dict(message.items()))
            return
        super().handle_message(message)

    def close(self) -> None:
        for action in {id(a): a for a in self.responses.values()}.values():
            if not action.future.done():
                action.future.set_exception(_Dropped("AMI connection closed before the answer"))
        self.responses.clear()
        if not self.closed:
            try:
                self.transport.close()
            finally:
                self.closed = True


class _Manager(Manager):  # type: ignore[misc]
    def __init__(self, link: AmiLink, **config: Any) -> None:
        super().__init__(**config)
        self._link = link

    def dispatch_headers(self, headers: dict[str, str]) -> None:
        self._link._dispatch(parse_event(headers))

    def dispatch(self, event: Message) -> list[str]:
        # Events that carried an ActionID nobody waits for (a late answer) end up here.
        self._link._dispatch(parse_event(dict(event.items())))
        return []

    def login(self, future: asyncio.Future[Any]) -> bool:
        if future.cancelled() or future.exception() is not None:
            return False
        return bool(super().login(future))

    def ping(self) -> None:
        """Upstream's ping never checks the answer; :meth:`AmiLink._watchdog` replaces it."""

    def connection_lost(self, exc: BaseException | None) -> None:
        self._connected = False
        self._link._on_lost(exc)


class AmiLink:
    """One supervised AMI session. Owns its run task; :meth:`close` stops it."""

    def __init__(
        self,
        target: AmiTarget,
        *,
        ping_interval_s: float = 5.0,
        ping_timeout_s: float = 3.0,
        login_timeout_s: float = 5.0,
    ) -> None:
        self.target = target
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s
        self.login_timeout_s = login_timeout_s
        self._manager = _Manager(
            self,
            host=target.host,
            port=target.port,
            username=target.username,
            secret=target.secret,
            protocol_factory=SafeProtocol,
            ping_delay=3600,
            forgetable_actions=(),
        )
        self._handlers: list[EventHandler] = []
        self._up_hooks: list[UpHook] = []
        self._logged_in = asyncio.Event()
        self._ready = asyncio.Event()
        self._lost = asyncio.Event()
        self._protocol: SafeProtocol | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.connects = 0
        self.events = 0
        self.handler_errors = 0
        self.last_error: str | None = None

    # -- public --------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    @property
    def garbage(self) -> int:
        p = self._protocol
        return 0 if p is None else p.reader.garbage_lines + p.reader.garbage_frames + p.frame_errors

    def subscribe(self, handler: EventHandler) -> None:
        self._handlers.append(handler)

    def on_up(self, hook: UpHook) -> None:
        """Run ``hook`` after each login, before queued actions go out (resynchronisation)."""
        self._up_hooks.append(hook)

    def start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name="telephony.ami.link")

    async def close(self, *, grace_s: float = 5.0) -> None:
        """Stop the link from whatever state it is in (connecting, logging in, resyncing,
        up, reconnecting). Idempotent, and bounded by ``grace_s``."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task, grace_s=grace_s)
        self._drop()

    async def wait_ready(self, within_s: float) -> None:
        if not await _wait(self._ready, within_s):
            raise AmiNotConnectedError(f"AMI link not up within {within_s:.0f} s ({self.last_error})")

    async def action(
        self,
        headers: dict[str, str],
        *,
        as_list: bool = False,
        deadline_s: float = 10.0,
        idempotent: bool = True,
        _during_login: bool = False,
    ) -> Any:
        """Send an action and return its answer (a list of messages when ``as_list``).

        Waits for the link if it is down. An idempotent action whose connection drops is
        sent again on the next one; a non-idempotent one raises :class:`AmiOutcomeUnknownError`.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + deadline_s
        gate = self._logged_in if _during_login else self._ready
        headers = dict(headers)
        encode_frame(headers.items())  # refuses line breaks: a typed number must not inject headers
        if headers.get("Action", "").lower() == "originate":
            headers = _originate_headers(headers)
            as_list = False  # complete on "successfully queued"; the result comes as an event
        while True:
            if self._closed:
                raise AmiNotConnectedError(f"AMI link closed; {headers.get('Action')} not sent")
            remaining = deadline - loop.time()
            if remaining <= 0 or not await _wait(gate, remaining):
                raise AmiNotConnectedError(f"AMI link not up for {headers.get('Action')} ({self.last_error})")
            action = Action(headers, as_list=as_list)
            future = self._manager.send_action(action, as_list=as_list)
            try:
                async with asyncio.timeout(max(0.01, deadline - loop.time())):
                    answer = await asyncio.shield(future)
            except _Dropped as exc:
                if not idempotent:
                    raise AmiOutcomeUnknownError(f"link dropped after {headers.get('Action')} was sent") from exc
                continue
            except TimeoutError as exc:
                if not idempotent:
                    raise AmiOutcomeUnknownError(f"no answer to {headers.get('Action')} in time") from exc
                raise AmiNotConnectedError(f"no answer to {headers.get('Action')} within {deadline_s:.0f} s") from exc
            first = answer[0] if isinstance(answer, list) else answer
            if first.get("Response") == "Error":
                raise AmiActionError(f"{headers.get('Action')}: {first.get('Message', 'error')}")
            return answer

    # -- connection management --------------------------------------------------------

    async def _run(self) -> None:
        # Theory: every ``except`` here re-raises a cancellation that arrived while it was
        # handling something else (raise_if_cancelling). Before, a close() that landed while
        # the loop awaited the old watchdog in ``finally`` was swallowed by the suppress
        # around that await, and the loop reconnected forever: the test-teardown hang and
        # the SIGTERM that ``hotline serve`` ignored.
        attempt = 0
        loop = asyncio.get_running_loop()
        while not self._closed:
            try:
                await self._connect_once(loop)
                attempt = 0
                watchdog = asyncio.create_task(self._watchdog(), name="telephony.ami.watchdog")
                try:
                    await self._lost.wait()
                finally:
                    watchdog.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watchdog
                    raise_if_cancelling()
                log.warning("AMI connection to %s:%d lost (%s)", self.target.host, self.target.port, self.last_error)
            except (OSError, TimeoutError, AmiAuthError, AmiNotConnectedError, _Dropped) as exc:
                raise_if_cancelling()
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("AMI %s:%d: %s", self.target.host, self.target.port, self.last_error)
            except Exception as exc:  # a bug in a resync hook must not end the link for good
                raise_if_cancelling()
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("AMI session failed unexpectedly")
            self._drop()
            delay = backoff_delay(attempt, base=1.5, cap_exp=6)
            attempt += 1
            log.info("AMI reconnect in %.1f s", delay)
            await asyncio.sleep(delay)

    async def _connect_once(self, loop: asyncio.AbstractEventLoop) -> None:
        self._lost.clear()
        self._manager.loop = loop
        async with asyncio.timeout(self.login_timeout_s):
            transport, protocol = await loop.create_connection(SafeProtocol, self.target.host, self.target.port)
        self._protocol = protocol
        done: asyncio.Future[tuple[asyncio.BaseTransport, SafeProtocol]] = loop.create_future()
        done.set_result((transport, protocol))
        self._manager.connection_made(done)  # panoramisk wires the protocol and sends Login
        login = self._manager.authenticated_future
        # Wait for the login answer or the connection's end, whichever comes first: a PBX that
        # resets the connection before its banner is noticed at once, not at the login timeout.
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            async with asyncio.timeout(self.login_timeout_s):
                await asyncio.wait({login, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if not login.done():
            if self._lost.is_set():
                raise _Dropped("connection closed before the login answer")
            raise TimeoutError(f"no login answer within {self.login_timeout_s:.0f} s")
        answer = login.result()
        if answer.get("Response") != "Success":
            raise AmiAuthError(f"login refused: {answer.get('Message', 'no reason given')}")
        self.connects += 1
        self._logged_in.set()
        log.info("AMI logged in to %s:%d (%s)", self.target.host, self.target.port, protocol.version)
        for hook in self._up_hooks:
            await hook()
        self._ready.set()
        self.last_error = None

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(self.ping_interval_s)
            started = time.monotonic()
            try:
                await self.action(
                    {"Action": "Ping"}, deadline_s=self.ping_timeout_s, idempotent=False, _during_login=True
                )
            except AmiActionError as exc:
                # An answer, so the connection is alive (Asterisk shutting down answers
                # "Response: Error"); its Shutdown event or the socket closing ends the session.
                log.info("AMI ping answered with an error: %s", exc)
            except (AmiNotConnectedError, AmiOutcomeUnknownError):
                log.warning(
                    "AMI ping unanswered after %.1f s: treating the connection as dead", time.monotonic() - started
                )
                self.last_error = "ping timeout"
                if self._protocol is not None:
                    self._protocol.transport.abort()
                self._lost.set()
                return

    def _on_lost(self, exc: BaseException | None) -> None:
        self._logged_in.clear()
        self._ready.clear()
        self._lost.set()
        if exc is not None:
            self.last_error = f"connection lost: {exc}"

    def _drop(self) -> None:
        self._logged_in.clear()
        self._ready.clear()
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol.close()

    def _dispatch(self, event: AmiEvent) -> None:
        self.events += 1
        for handler in self._handlers:
            try:
                handler(event)
            except Exception:
                self.handler_errors += 1
                log.exception("AMI event handler failed on %s; connection kept", event.name)


def _originate_headers(headers: dict[str, str]) -> dict[str, str]:
    keys = {k.lower() for k in headers}
    if "async" not in keys:
        headers["Async"] = "true"
    return headers
