"""The local store: every event and summary is written to an outbox before it is published.

:class:`~gateway.store.outbox.Outbox` keeps records with a delivery state per destination (the local
broker, the cloud) on a pluggable backend (SQLite or memory); a :class:`~gateway.store.delivery.Deliverer`
per destination sends them through a :class:`~gateway.store.delivery.Link` in order and marks them
delivered when the link acknowledges them.
"""

from gateway.store.config import CloudConfig, RetentionLimits, StoreConfig
from gateway.store.errors import StoreError, StoreUnavailableError

__all__ = ["CloudConfig", "RetentionLimits", "StoreConfig", "StoreError", "StoreUnavailableError"]
