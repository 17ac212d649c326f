"""The rules file a running bridge works by (`BridgeSettings.rules_path`, TEMBO_RULES_PATH): its rule
profiles (`[rules]`) and notification settings (`[notify]`), read at start and read again when the file
changes, so a warden's edit applies without a restart.

The file is applied whole or not at all: an edit that does not read (bad TOML, a misspelt key, a value
out of range, in either table) keeps the bridge on the version it had, with an error in the log naming
the file and the problem. `RulesFileWatch.in_force` says which version (its sha256) the bridge works by.

A bridge has one watch of its file (`Bridge.rules_file`): its rules, its notifications, the applier that
judges a collar's own fence report (`pipeline` -> `messages.apply_message`) and /metrics all read the
version that watch holds, so the file is read once per change and its reload logged once. A caller
without a bridge (a test, a bench) makes its own watch (`RulesFileWatch.of`) and passes it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import tomllib
from collections.abc import Callable
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
    """The version of the rules file in force, and whether the file's last change read; thread-safe.
    on_change(reading) is called with each new version as it is applied, in the order the edits were
    read (the bridge swaps its rule profiles and notification channels there)."""

    def __init__(self, path: str | None, first: RulesFile,
                 on_change: Callable[[RulesFile], None] | None = None) -> None:
        self.path = path
        self.in_force = first
        self.last_read_ok = True
        self.last_error: str | None = None
        self.on_change = on_change
        self._stamp = file_stamp(path)
        self._lock = threading.Lock()

    @classmethod
    def of(cls, path: str | None) -> RulesFileWatch:
        """A watch of the rules file at path, read now (InvalidRequest when it does not read): for a
        caller that applies uplinks without a bridge, which has its own (`Bridge.rules_file`)."""
        return cls(path, read_rules_file(path))

    def current(self) -> RulesFile:
        """The version in force now: the file looked at first (`poll`), read again only if it changed."""
        self.poll()
        return self.in_force

    def poll(self) -> RulesFile | None:
        """The file's new version when it changed since it was last looked at and reads (None otherwise:
        unchanged, changed to the same bytes, or broken; a broken one is logged once per change); each
        new version is handed to on_change before any other caller can see it in force."""
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
            if self.on_change is not None:
                self.on_change(reading)
            self.in_force = reading
            log.info("rules file %s applied (sha256 %s): rule profiles and notification settings from "
                     "the next evaluation", self.path, reading.sha256)
            return reading
