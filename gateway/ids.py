"""Unique, sortable ids for published records (ULID layout: 48-bit milliseconds + 80 random bits, Crockford base32).

Ids from one process are strictly increasing even within a millisecond, so ordering by id is ordering by creation.
"""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_lock = threading.Lock()
_last_ms = -1
_last_rand = 0


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def new_id(now: float | None = None) -> str:
    """A new 26-character id, greater than every id this process made before."""
    global _last_ms, _last_rand
    ms = int((time.time() if now is None else now) * 1000)
    with _lock:
        if ms <= _last_ms:
            ms = _last_ms
            rand = _last_rand + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1  # leave room to increment
        _last_ms, _last_rand = ms, rand
    return _encode(ms, 10) + _encode(rand, 16)


def id_time(ident: str) -> float:
    """The creation time (seconds since the epoch) encoded in an id."""
    ms = 0
    for ch in ident[:10]:
        ms = ms * 32 + _ALPHABET.index(ch)
    return ms / 1000.0
