"""Sans-IO AMI framing, shared by the backend's link and the Asterisk simulator.

AMI is ``Key: Value`` lines ending in CRLF, one blank line after each frame, after a
single banner line. We split the *byte* stream on the blank line before decoding: a frame
boundary cannot fall inside a UTF-8 sequence, so a Chinese name cut across two TCP reads
decodes whole (panoramisk 1.4 decodes each read on its own and silently drops the pieces).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from hotline.telephony.errors import AmiFrameError

log = logging.getLogger(__name__)

EOL = b"\r\n"
END = b"\r\n\r\n"
BANNER_PREFIX = b"Asterisk Call Manager/"
# A frame bigger than this without a terminator is garbage (or an attack); drop it.
MAX_FRAME = 256 * 1024

Headers = dict[str, str]


class FrameReader:
    """Feed bytes, get complete frames as ``{header: value}`` dicts (first value wins)."""

    def __init__(self, *, expect_banner: bool = True, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._want_banner = expect_banner
        self._max = max_frame
        self.banner: str | None = None
        self.garbage_lines = 0
        self.garbage_frames = 0
        self.frames = 0

    def feed(self, data: bytes) -> list[Headers]:
        self._buf += data
        out: list[Headers] = []
        if self._want_banner:
            nl = self._buf.find(EOL)
            if nl < 0:
                self._check_size()
                return out
            line = bytes(self._buf[:nl])
            del self._buf[: nl + 2]
            self._want_banner = False
            if line.startswith(BANNER_PREFIX):
                self.banner = line.decode("utf-8", "replace")
            else:
                self._garbage_line(line)
        start = 0
        while True:
            end = self._buf.find(END, start)
            if end < 0:
                break
            frame = self.parse(bytes(self._buf[start:end]))
            start = end + 4
            if frame is not None:
                out.append(frame)
        if start:
            del self._buf[:start]
        self._check_size()
        return out

    def parse(self, raw: bytes) -> Headers | None:
        """One frame's bytes (without the blank line) to headers; ``None`` for garbage."""
        text = raw.decode("utf-8", "replace")
        headers: Headers = {}
        for line in text.split("\r\n"):
            if not line:
                continue
            key, sep, value = line.partition(": ")
            if not sep:
                # "Key:" with an empty value is legal AMI (AccountCode: ).
                if line.endswith(":") and " " not in line:
                    headers.setdefault(line[:-1], "")
                    continue
                self._garbage_line(line.encode())
                continue
            headers.setdefault(key, value)
        if "Event" not in headers and "Response" not in headers and "Action" not in headers:
            if headers:
                self.garbage_frames += 1
                log.warning("AMI frame without Event, Response or Action dropped (%d headers)", len(headers))
            return None
        self.frames += 1
        return headers

    def _garbage_line(self, line: bytes) -> None:
        self.garbage_lines += 1
        if self.garbage_lines <= 10 or self.garbage_lines % 1000 == 0:
            log.warning("garbage AMI line #%d ignored: %r", self.garbage_lines, line[:80])

    def _check_size(self) -> None:
        if len(self._buf) > self._max:
            self.garbage_frames += 1
            log.warning("AMI frame over %d bytes without a terminator; dropped", self._max)
            self._buf.clear()


def encode_frame(headers: Iterable[tuple[str, object]]) -> bytes:
    """``[(key, value), ...]`` to wire bytes. Lists repeat the key (``Variable: a=1``).

    A CR or LF inside a value would let a caller-controlled string (a phone number typed
    into the API) inject AMI headers, so it is refused.
    """
    parts: list[str] = []
    for key, value in headers:
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            text = "" if item is None else str(item)
            if "\r" in text or "\n" in text or "\r" in key or "\n" in key or ":" in key:
                raise AmiFrameError(f"AMI header {key!r} has a line break or colon in it")
            parts.append(f"{key}: {text}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("utf-8")
