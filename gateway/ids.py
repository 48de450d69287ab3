"""Unique, sortable ids for published records: 48-bit milliseconds + 80 random bits in 26 Crockford base32 characters.

Ids from one process are strictly increasing even within a millisecond, so ordering by id is ordering by creation.
The 128 bits are encoded most significant first (the two spare bits at the end), so string order is number order.
"""

from __future__ import annotations

import base64
import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_lock = threading.Lock()
_last_ms = -1
_last_rand = 0


_RFC4648 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
# base64's encoder (in C) with its alphabet mapped onto Crockford's, which keeps the order of the values.
_TO_CROCKFORD = bytes.maketrans(_RFC4648, _ALPHABET.encode())
_FROM_CROCKFORD = bytes.maketrans(_ALPHABET.encode(), _RFC4648)


def _encode(value: int) -> str:
    return base64.b32encode(value.to_bytes(16, "big"))[:26].translate(_TO_CROCKFORD).decode()


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
    return _encode((ms << 80) | (rand & ((1 << 80) - 1)))


def id_time(ident: str) -> float:
    """The creation time (seconds since the epoch) encoded in an id."""
    raw = base64.b32decode(ident.encode().translate(_FROM_CROCKFORD) + b"======")
    return (int.from_bytes(raw, "big") >> 80) / 1000.0
