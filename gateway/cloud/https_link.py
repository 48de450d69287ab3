"""An HTTPS endpoint as a delivery link: each record is one POST, acknowledged by a 2xx response.

Requests are sent one at a time in order by a worker thread. A network error, a timeout, a 5xx, 408 or
429 marks the link disconnected; the same request is retried every ``retry_s`` and, once it succeeds, the
link is connected again. Any other 4xx means the endpoint will never take that record: it is logged,
counted in ``refused_by_endpoint`` and acknowledged so it does not block the ones behind it.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

from gateway.store.config import CloudHttps

log = logging.getLogger(__name__)

_RETRYABLE = {408, 425, 429}


class HttpsLink:
    """POSTs records to an HTTPS endpoint (implements ``Link``)."""

    def __init__(self, config: CloudHttps, *, content_type: str = "application/json") -> None:
        self.config = config
        self.content_type = content_type
        self._queue: queue.Queue[tuple[int, str, bytes] | None] = queue.Queue()
        self._mid = 0
        self._mid_lock = threading.Lock()
        self._connected = threading.Event()
        self._connected.set()
        self._stop = threading.Event()
        self._ack_listeners: list[Callable[[int], None]] = []
        self._connection_listeners: list[Callable[[bool], None]] = []
        self._thread: threading.Thread | None = None
        self.refused_by_endpoint = 0
        self._context: ssl.SSLContext | None = None
        if config.url.startswith("https://"):
            self._context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)

    @property
    def connected(self) -> bool:
        return self._connected.is_set() and not self._stop.is_set()

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> int | None:
        if not self.connected:
            return None
        with self._mid_lock:
            self._mid = self._mid % 2_000_000_000 + 1
            mid = self._mid
        self._queue.put((mid, topic, payload))
        return mid

    def add_ack_listener(self, cb: Callable[[int], None]) -> None:
        self._ack_listeners.append(cb)

    def add_connection_listener(self, cb: Callable[[bool], None]) -> None:
        self._connection_listeners.append(cb)

    def start(self) -> None:
        """Start the sending thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="cloud-https", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sending; what was not acknowledged stays pending in the outbox."""
        self._stop.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _headers(self, topic: str) -> dict[str, str]:
        headers = {"Content-Type": self.content_type, "X-Edge-Topic": topic}
        headers.update(self.config.headers)
        if self.config.token_file is not None:
            headers["Authorization"] = "Bearer " + self.config.token_file.read_text(encoding="utf-8").strip()
        return headers

    def _send(self, topic: str, payload: bytes) -> int:
        """POST once; the HTTP status (raises OSError on network errors)."""
        url = self.config.url.replace("{topic}", urllib.parse.quote(topic, safe="/"))
        request = urllib.request.Request(url, data=payload, headers=self._headers(topic), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s, context=self._context) as response:
                response.read()
                return int(response.status)
        except urllib.error.HTTPError as e:
            return int(e.code)

    def _set_connected(self, up: bool) -> None:
        if up == self._connected.is_set():
            return
        if up:
            self._connected.set()
            log.info("cloud endpoint reachable again")
        else:
            self._connected.clear()
        for cb in list(self._connection_listeners):
            cb(up)

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self._queue.get()
            if item is None:
                return
            mid, topic, payload = item
            while not self._stop.is_set():
                try:
                    status = self._send(topic, payload)
                    problem = (
                        None
                        if 200 <= status < 300 or (400 <= status < 500 and status not in _RETRYABLE)
                        else f"HTTP {status}"
                    )
                except OSError as e:
                    status, problem = 0, str(getattr(e, "reason", e))
                if problem is None:
                    break
                if self._connected.is_set():
                    log.warning("cloud endpoint failed (%s); retrying every %.0f s", problem, self.config.retry_s)
                self._set_connected(False)
                self._stop.wait(self.config.retry_s)
            else:
                return
            if not 200 <= status < 300:
                self.refused_by_endpoint += 1
                log.error("cloud endpoint refused a record with HTTP %d; it is not sent again", status)
            self._set_connected(True)
            for cb in list(self._ack_listeners):
                cb(mid)
