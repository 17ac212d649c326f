"""The dashboard's page scripts compiled once per change of their file, not once per lone visit.

Streamlit keeps the bytecode of app.py and of each page script in its `ScriptCache`, but empties
that cache whenever the last browser session disconnects (so that an edited script is read again
once nobody is connected). A ranger alone on the dashboard leaves and comes back: every visit then
paid for compiling app.py and the page again, with Streamlit's "magic" pass over their syntax tree
(40 to 50 ms of the server's run before the map, docs/dashboard.md). `KeptScriptCache` keeps the
bytecode through that emptying and compiles a script again only when its file changed (its
modification time or size), so an edited script is still picked up by the next run.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import streamlit.runtime.runtime as streamlit_runtime
from streamlit.runtime.scriptrunner.script_cache import ScriptCache

logger = logging.getLogger(__name__)


def file_stamp(path: str) -> tuple[int, int] | None:
    """The file's (modification time in ns, size in bytes), or None when it cannot be read."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


class KeptScriptCache(ScriptCache):
    """Streamlit's script cache whose `clear` (called when the last session disconnects) keeps the
    compiled scripts; a script is compiled again when its file's stamp (`file_stamp`) changed."""

    def __init__(self) -> None:
        super().__init__()
        self._stamps: dict[str, tuple[int, int] | None] = {}

    def get_bytecode(self, script_path: str) -> Any:
        """The bytecode of `script_path`, compiled again when the file changed since."""
        path = os.path.abspath(script_path)
        stamp = file_stamp(path)
        with self._lock:
            if path in self._stamps and self._stamps[path] != stamp:
                logger.info("page script changed: compiling it again", extra={"script": path})
                self._cache.pop(path, None)
        # Stamped before compiling: a file changed while being compiled is compiled again next time.
        bytecode = super().get_bytecode(path)
        with self._lock:
            self._stamps[path] = stamp
        return bytecode

    def clear(self) -> None:
        """Kept: nothing is dropped when the last session disconnects (changed files are caught by
        their stamps in `get_bytecode`)."""

    def forget(self) -> None:
        """Drop every compiled script (Streamlit's own `clear`)."""
        with self._lock:
            self._stamps.clear()
        super().clear()


def install() -> None:
    """Have the Streamlit runtime this process starts use `KeptScriptCache` (call before the server
    starts: `dashboard_server` does, as Streamlit imports it)."""
    streamlit_runtime.ScriptCache = KeptScriptCache  # type: ignore[misc]
