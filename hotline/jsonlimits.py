"""Parsing untrusted JSON within bounds: size and nesting depth, checked before ``json.loads``.

Python's ``json`` recurses once per nesting level and raises ``RecursionError`` (not
``ValueError``) on deep input, so a 6 KB payload of 3,000 brackets escapes every
``except ValueError``. We bound the depth before parsing:

* the fast path counts ``{`` and ``[`` bytes (one C-level pass each). A document cannot
  nest deeper than its number of brackets, so ordinary messages never need more;
* only a payload with more brackets than the limit is scanned byte by byte, skipping
  string contents, to find its real depth.

Every parser failure, whatever the exception, becomes :class:`JsonLimitError`.
"""

from __future__ import annotations

import json
from typing import Any

from hotline.errors import HotlineError

DEFAULT_MAX_DEPTH = 32


class JsonLimitError(HotlineError):
    """The input is not JSON we accept: too large, too deep, or not JSON at all.

    ``too_large`` tells a caller that answers HTTP to say 413 rather than 400.
    """

    def __init__(self, reason: str, *, too_large: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.too_large = too_large


def too_deep(data: bytes, limit: int) -> bool:
    """Whether ``data`` nests ``{``/``[`` deeper than ``limit``, ignoring brackets inside strings."""
    if data.count(b"{") + data.count(b"[") <= limit:
        return False  # cannot nest deeper than it has brackets
    depth = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):  # { [
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x7D, 0x5D):  # } ]
            depth -= 1
    return False


def loads_bounded(data: bytes, *, max_bytes: int, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """``json.loads`` for untrusted bytes. Raises :class:`JsonLimitError`, never anything else."""
    if len(data) > max_bytes:
        raise JsonLimitError(f"{len(data)} bytes exceeds the limit of {max_bytes}", too_large=True)
    if too_deep(data, max_depth):
        raise JsonLimitError(f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise JsonLimitError("not UTF-8") from exc
    except json.JSONDecodeError as exc:
        raise JsonLimitError(f"not JSON: {exc.msg} at position {exc.pos}") from exc
    except (RecursionError, ValueError, MemoryError) as exc:
        # ValueError also covers huge integer literals (int max str digits).
        raise JsonLimitError(f"JSON not accepted: {type(exc).__name__}: {exc}"[:200]) from exc
