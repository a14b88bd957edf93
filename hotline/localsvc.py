"""Finding or starting local Redis and Mosquitto for the demo and the test harness.

If a server answers on the default port we use it; otherwise we start a child process
on a free loopback port and own it: the caller stops it by PID when done.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hotline.errors import HotlineError

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent() -> None:
    """``preexec_fn`` for our children: the kernel sends SIGTERM to the child when the process
    that started it dies, even by SIGKILL, so a killed demo or benchmark leaves no Redis or
    Mosquitto running. Linux only; elsewhere the children are stopped by ``Child.stop``."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM, and SIGKILL past ``grace_s``."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# Ports handed out below Linux's ephemeral range (32768-60999): a port chosen here and
# released cannot then be given by the kernel to a server that binds port 0, which
# happened in CI (an AMI simulator on port 0 took the backend's HTTP port).
_PORT_RANGE = (20000, 32000)
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback TCP port that was free just now and not handed out before in this process."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(*_PORT_RANGE)
        if port in _handed_out:
            continue
        with contextlib.closing(socket.socket()) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise HotlineError(f"no free loopback port in {_PORT_RANGE[0]}-{_PORT_RANGE[1]}")


async def port_open(host: str, port: int, wait_s: float = 0.5) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), wait_s)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _wait_port(port: int, child: Child, seconds: float = 10) -> None:
    for _ in range(int(seconds * 10)):
        if await port_open("127.0.0.1", port):
            return
        if child.proc.poll() is not None:
            break
        await asyncio.sleep(0.1)
    child.stop()
    raise HotlineError(f"{child.name} did not start on port {port}")


def _need(binary: str, package: str) -> str:
    path = shutil.which(binary) or (f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None)
    if path is None:
        raise HotlineError(f"{binary} is not installed (apt-get install {package}; ./dev demo does this)")
    return path


def _spawn(name: str, argv: list[str]) -> Child:
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl runs between fork and exec
    )
    return Child(name, proc)


async def start_redis(workdir: Path, port: int | None = None, *, replica_of: int | None = None) -> tuple[int, Child]:
    """A private redis-server on a free port (or on ``port``, to restart one in place);
    with ``replica_of``, a replica of the loopback server on that port."""
    port = port or free_port()
    argv = [_need("redis-server", "redis-server"), "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    argv += ["--appendonly", "no", "--dir", str(workdir), "--dbfilename", f"dump-{port}.rdb"]
    if replica_of is not None:
        argv += ["--replicaof", "127.0.0.1", str(replica_of)]
    child = _spawn("redis-server", argv)
    await _wait_port(port, child)
    return port, child


async def start_sentinel(
    workdir: Path, master_port: int, *, service: str = "mymaster", quorum: int = 2, down_after_ms: int = 1000
) -> tuple[int, Child]:
    """A private ``redis-sentinel`` watching the loopback master on ``master_port``. Sentinel
    rewrites its config file as it learns, so each one gets its own file in ``workdir``."""
    port = free_port()
    conf = workdir / f"sentinel-{port}.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {os.path.abspath(workdir)}\n"  # noqa: ASYNC240 - getcwd only
        f"sentinel monitor {service} 127.0.0.1 {master_port} {quorum}\n"
        f"sentinel down-after-milliseconds {service} {down_after_ms}\n"
        f"sentinel failover-timeout {service} {max(3000, 3 * down_after_ms)}\n"
        f"sentinel parallel-syncs {service} 1\n",
        encoding="utf-8",
    )
    child = _spawn("redis-sentinel", [_need("redis-sentinel", "redis-sentinel"), str(conf)])
    await _wait_port(port, child)
    return port, child


async def start_mosquitto(
    workdir: Path, extra_conf: str = "", *, port: int | None = None, persistent: bool = False
) -> tuple[int, Child]:
    """A private Mosquitto on a free port (or on ``port``, to restart one in place). With
    ``persistent`` it keeps sessions and queued messages in ``workdir`` across a restart, as
    deploy/mosquitto/mosquitto.conf does."""
    port = port or free_port()
    conf = workdir / f"mosquitto-{port}.conf"
    # max_queued_messages 0 (unlimited): the default of 1000 silently drops alarms for a
    # subscriber that falls behind.
    # Started as root, Mosquitto switches to the "mosquitto" user, which cannot read files in
    # a root-only work directory; this child is ours and local, so it keeps our user.
    keep_user = "user root\n" if os.geteuid() == 0 else ""
    where = os.path.abspath(workdir)  # noqa: ASYNC240 - no I/O but getcwd, once at start-up
    keep = (
        f"persistence true\npersistence_location {where}/\nautosave_interval 1\n"
        if persistent
        else "persistence false\n"
    )
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n{keep}{keep_user}{extra_conf}",
        encoding="utf-8",
    )
    child = _spawn("mosquitto", [_need("mosquitto", "mosquitto"), "-c", str(conf)])
    await _wait_port(port, child)
    return port, child
