"""A private Mosquitto broker on a free local port, for the demo, tests and benchmarks.

It runs the ``mosquitto`` binary from the OS package with its own config in a temporary directory,
with queue limits high enough that QoS1 messages are not dropped for slow subscribers and, optionally,
persistence (so a restart keeps sessions and queued messages).
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def mosquitto_binary() -> str | None:
    """The mosquitto executable, if installed."""
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)), None
    )


class LocalBroker:
    """A Mosquitto process on 127.0.0.1:<port> with a config written for it."""

    def __init__(
        self,
        port: int | None = None,
        *,
        workdir: Path | None = None,
        persistence: bool = True,
        extra_config: str = "",
        tls: dict[str, str] | None = None,
        password_file: Path | None = None,
    ) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise FileNotFoundError("mosquitto is not installed (Debian/Ubuntu: apt-get install mosquitto)")
        self.binary = binary
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="edge-broker-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.persistence = persistence
        self.extra_config = extra_config
        self.tls = tls
        self.password_file = password_file
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "mosquitto.log"

    def _config(self) -> str:
        lines = [
            # Started as root, mosquitto drops to the `mosquitto` user, which cannot read private temp dirs.
            f"user {getpass.getuser()}",
            "per_listener_settings false",
            "allow_anonymous false" if self.password_file else "allow_anonymous true",
            *([f"password_file {self.password_file}"] if self.password_file else []),
            f"listener {self.port} {self.host}",
        ]
        if self.tls:
            lines += [
                f"cafile {self.tls['cafile']}",
                f"certfile {self.tls['certfile']}",
                f"keyfile {self.tls['keyfile']}",
            ]
            if self.tls.get("require_certificate"):
                lines += ["require_certificate true"]
        lines += [
            # A gateway's broker must not drop QoS1 messages to a subscriber that is briefly slow.
            "max_queued_messages 1000000",
            "max_inflight_messages 100",
            "max_packet_size 16777216",
            # Small packets (acknowledgements, sensor readings) go out at once instead of waiting for Nagle.
            "set_tcp_nodelay true",
            "persistent_client_expiration 1d",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.workdir}/", "autosave_interval 1"]
        lines.append(self.extra_config)
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> LocalBroker:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self._config())
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log_path.read_text()[-2000:]}")
            if port_open(self.host, self.port, 0.2):
                return self
            time.sleep(0.05)
        raise TimeoutError(f"mosquitto did not listen on {self.port} within {timeout} s")

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, no final persistence save."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
