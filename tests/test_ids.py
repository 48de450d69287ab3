"""Record ids: unique, strictly increasing in creation order, carrying their creation time."""

from __future__ import annotations

import re
import threading

from gateway.ids import id_time, new_id

PATTERN = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")  # the pattern of the payload schemas


def test_ids_are_unique_increasing_and_well_formed() -> None:
    ids = [new_id() for _ in range(50_000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(PATTERN.match(i) for i in ids[:100])


def test_string_order_is_time_order_across_milliseconds() -> None:
    earlier, later = new_id(1_700_000_000.001), new_id(1_700_000_000.002)
    assert earlier < later
    assert id_time(new_id(4_000_000_000.25)) == 4_000_000_000.25  # a time after every id made so far


def test_ids_from_many_threads_never_collide() -> None:
    out: list[list[str]] = [[] for _ in range(4)]

    def make(k: int) -> None:
        out[k].extend(new_id() for _ in range(10_000))

    threads = [threading.Thread(target=make, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for part in out for i in part]
    assert len(set(everything)) == 40_000
    assert all(part == sorted(part) for part in out)
