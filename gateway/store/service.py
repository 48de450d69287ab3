"""The store as the gateway runs it: the outbox, its local deliverer and the optional cloud sync.

:class:`StoreService` is the publisher's result sink: ``submit`` stores events and summaries in the
outbox (for the local broker, and for the cloud when their kind is synced), and the deliverers publish
them from there. Store failures reach ``on_error`` so the gateway can report them on its errors topic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from gateway.store.config import CloudConfig, StoreConfig
from gateway.store.delivery import Deliverer, Link
from gateway.store.errors import StoreUnavailableError
from gateway.store.memory import MemoryBackend
from gateway.store.outbox import Outbox

log = logging.getLogger(__name__)

LOCAL = "local"
CLOUD = "cloud"


class StoredRecord(Protocol):
    """What the publisher hands over (``gateway.publisher.OutRecord`` has these fields)."""

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def pipeline(self) -> str | None: ...
    @property
    def topic(self) -> str: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def qos(self) -> int: ...
    @property
    def retain(self) -> bool: ...
    @property
    def created_at(self) -> float: ...


class StoreService:
    """Outbox + local delivery + cloud sync, started and stopped together.

    ``on_error(reason, detail)`` is called when the store becomes unwritable (``reason`` is e.g.
    ``store_disk_full``) and ``on_error("store_recovered", ...)`` when it recovers.
    """

    def __init__(
        self,
        store: StoreConfig,
        cloud: CloudConfig,
        gateway_id: str,
        local_link: Link,
        *,
        data_dir: Path | None = None,
        on_error: Callable[[str, str], None] | None = None,
        ack_timeout_s: float = 30.0,
    ) -> None:
        self.store_config = store
        self.cloud_config = cloud
        destinations: Sequence[str] = (LOCAL, CLOUD)
        self._on_error = on_error
        self.open_error: StoreUnavailableError | None = None
        try:
            self.outbox = Outbox.open(store, destinations, data_dir=data_dir)
        except StoreUnavailableError as e:
            # Documented degradation: keep running on a memory outbox (lost on restart) and say so.
            log.error("%s; results are kept in memory only until the gateway restarts", e)
            self.open_error = e
            self.outbox = Outbox(MemoryBackend(), store, destinations)
        self.outbox.add_health_listener(self._health)
        self.local = Deliverer(self.outbox, LOCAL, local_link, ack_timeout_s=ack_timeout_s)
        self.cloud: Any = None
        self._cloud_kinds: frozenset[str] = frozenset()
        if cloud.enabled:
            from gateway.cloud import CloudSync

            self.cloud = CloudSync(self.outbox, cloud, gateway_id, ack_timeout_s=ack_timeout_s)
            self._cloud_kinds = frozenset(cloud.kinds)

    # -- ResultSink

    def submit(self, records: Sequence[StoredRecord]) -> None:
        """Store records for delivery (returns once they are queued for the writer)."""
        for r in records:
            destinations = (LOCAL, CLOUD) if r.kind in self._cloud_kinds else (LOCAL,)
            self.outbox.put(
                r.kind,
                r.pipeline or "",
                r.topic,
                r.payload,
                qos=r.qos,
                retain=r.retain,
                destinations=destinations,
                record_id=r.id,
                created_at=r.created_at,
            )

    # -- lifecycle

    def start(self) -> StoreService:
        if self.open_error is not None and self._on_error is not None:
            self._on_error(
                f"store_{self.open_error.reason}", f"{self.open_error}; results are kept in memory until restart"
            )
        self.local.start()
        if self.cloud is not None:
            self.cloud.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop delivering, commit what is queued and close the database."""
        self.local.stop()
        if self.cloud is not None:
            self.cloud.stop()
        try:
            self.outbox.flush(timeout)
        except (StoreUnavailableError, TimeoutError) as e:
            log.error("stopping with writes not committed: %s", e)
        self.outbox.close(timeout)

    def stats(self) -> dict[str, Any]:
        """The ``store`` section of the metrics message."""
        doc = self.outbox.stats().as_dict()
        local = self.local.stats()
        doc["local"] = {
            "connected": local.connected,
            "published": local.published,
            "acknowledged": local.acknowledged,
            "in_flight": local.in_flight,
            "resent_after_timeout": local.resent_after_timeout,
            "unsendable": local.unsendable,
        }
        if self.cloud is not None:
            doc["cloud"] = self.cloud.stats()
        return doc

    def _health(self, error: StoreUnavailableError | None) -> None:
        if self._on_error is None:
            return
        if error is None:
            self._on_error("store_recovered", "the store is writable again; held records are being written")
        else:
            self._on_error(f"store_{error.reason}", str(error))
