"""The rules file a running bridge works by (`BridgeSettings.rules_path`, TEMBO_RULES_PATH): its rule
profiles (`[rules]`) and notification settings (`[notify]`), read at start and read again when the file
changes, so a warden's edit applies without a restart.

The file is applied whole or not at all: an edit that does not read (bad TOML, a misspelt key, a value
out of range, in either table) keeps the bridge on the version it had, with an error in the log naming
the file and the problem. `RulesFileWatch.in_force` says which version (its sha256) the bridge works by.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import tomllib
from dataclasses import dataclass
from typing import Any

from lora_bridge.domain.rules_profiles import RulesConfig, rules_config_of
from lora_bridge.errors import InvalidRequest
from lora_bridge.notify.config import NotifyConfig, notify_config_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RulesFile:
    """One reading of the rules file: its rule profiles, its notification settings and the sha256 of
    the bytes they were read from (None without a file: every default)."""

    rules: RulesConfig
    notify: NotifyConfig
    sha256: str | None = None


def read_rules_file(path: str | None) -> RulesFile:
    """Both tables of the rules file at path, from one read of its bytes; InvalidRequest naming the file
    and the problem when it does not read or holds what they do not know."""
    if path is None:
        return RulesFile(RulesConfig(), NotifyConfig())
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        document: dict[str, Any] = tomllib.loads(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise InvalidRequest(f"rules file {path}: {error}") from error
    return RulesFile(rules_config_of(document, path), notify_config_of(document, path), hashlib.sha256(data).hexdigest())


def file_stamp(path: str | None) -> tuple[int, int, int] | None:
    """What changes when a file is written or replaced (inode, size, modification time), None without it."""
    if path is None:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns


def one_line(error: Exception) -> str:
    """A pydantic or TOML error in one line (without pydantic's link to its docs)."""
    return " ".join(line.strip() for line in str(error).splitlines()
                    if line.strip() and not line.strip().startswith("For further information"))


class RulesFileWatch:
    """The version of the rules file in force, and whether the file's last change read; thread-safe."""

    def __init__(self, path: str | None, first: RulesFile) -> None:
        self.path = path
        self.in_force = first
        self.last_read_ok = True
        self.last_error: str | None = None
        self._stamp = file_stamp(path)
        self._lock = threading.Lock()

    def poll(self) -> RulesFile | None:
        """The file's new version when it changed since it was last looked at and reads (None otherwise:
        unchanged, changed to the same bytes, or broken; a broken one is logged once per change)."""
        if self.path is None:
            return None
        with self._lock:
            stamp = file_stamp(self.path)
            if stamp == self._stamp:
                return None
            self._stamp = stamp
            try:
                reading = read_rules_file(self.path)
            except InvalidRequest as error:
                self.last_read_ok, self.last_error = False, one_line(error)
                log.error("rules file %s not applied, the bridge keeps the version it had (sha256 %s): %s",
                          self.path, self.in_force.sha256, self.last_error)
                return None
            self.last_read_ok, self.last_error = True, None
            if reading.sha256 == self.in_force.sha256:
                return None
            self.in_force = reading
            log.info("rules file %s applied (sha256 %s): rule profiles and notification settings from "
                        "the next evaluation", self.path, reading.sha256)
            return reading
