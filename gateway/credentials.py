"""Rules shared by every broker connection the config describes (the local broker, the cloud broker)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, model_validator


class BrokerLogin(BaseModel):
    """A password given inline or in a file, never both; a reconnect backoff whose bounds are in order.

    Mixed into config sections that declare ``password``, ``password_file``, ``reconnect_min_s`` and
    ``reconnect_max_s``.
    """

    @model_validator(mode="after")
    def _login(self) -> Any:
        if getattr(self, "password", None) is not None and getattr(self, "password_file", None) is not None:
            raise ValueError("give either password or password_file, not both")
        if getattr(self, "reconnect_min_s", 0) > getattr(self, "reconnect_max_s", float("inf")):
            raise ValueError("reconnect_min_s is larger than reconnect_max_s")
        return self

    def resolved_password(self) -> str | None:
        """The password from the config (or the environment), or from the password file; never logged."""
        password = getattr(self, "password", None)
        if password is not None:
            return str(password.get_secret_value())
        password_file = getattr(self, "password_file", None)
        if password_file is not None:
            return str(password_file.read_text(encoding="utf-8").strip())
        return None
