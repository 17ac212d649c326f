"""Logging of the dashboard process: INFO records of the dashboard and the bridge to stderr, with
their context (viewer, alert_id, ...) on the line, so the audit trail of who viewed live positions
and who handled which alert ends up in the service's log."""

from __future__ import annotations

import logging
import sys

LOGGERS = ("ranger_dashboard", "lora_bridge")
CONTEXT_FIELDS = (
    "viewer",
    "user",
    "animals",
    "focus",
    "alert_id",
    "animal_id",
    "verdict",
    "database_url",
    "device_id",
    "f_cnt",
)
FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class ContextFormatter(logging.Formatter):
    """The standard line plus `key=value` for each context field the record carries."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(f"{key}={getattr(record, key)}" for key in CONTEXT_FIELDS if hasattr(record, key))
        return f"{line} {context}" if context else line


class CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of the record (it may be replaced)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure(level: int = logging.INFO) -> None:
    """Route the dashboard's and the bridge's records at `level` and above to stderr; idempotent."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(h, CurrentStderrHandler) for h in logger.handlers):
            handler = CurrentStderrHandler()
            handler.setFormatter(ContextFormatter(FORMAT))
            logger.addHandler(handler)
        logger.setLevel(level)
