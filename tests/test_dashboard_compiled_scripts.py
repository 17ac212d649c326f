"""A lone ranger coming back to the dashboard does not wait for its pages to be compiled again: the
server keeps their bytecode when the last session disconnects (`ranger_dashboard.compiled_scripts`),
and still picks up a page whose file was edited."""

from __future__ import annotations

import os

from ranger_dashboard.compiled_scripts import KeptScriptCache


def run(bytecode) -> dict:
    """The names a compiled page script leaves once run."""
    scope: dict = {}
    exec(bytecode, scope)
    return scope


def test_page_script_is_not_compiled_again_when_the_last_ranger_disconnects(tmp_path):
    page = tmp_path / "live_map.py"
    page.write_text("animals = 500\n")
    cache = KeptScriptCache()
    first = cache.get_bytecode(str(page))
    cache.clear()  # what Streamlit does when the last browser session goes away
    assert cache.get_bytecode(str(page)) is first
    assert run(first)["animals"] == 500


def test_edited_page_script_is_compiled_again_after_the_last_ranger_left(tmp_path):
    page = tmp_path / "live_map.py"
    page.write_text("animals = 5\n")
    cache = KeptScriptCache()
    first = cache.get_bytecode(str(page))
    cache.clear()
    page.write_text("animals = 500\n")
    stat = page.stat()
    os.utime(page, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a later edit, however fine the clock
    again = cache.get_bytecode(str(page))
    assert again is not first and run(again)["animals"] == 500
    assert cache.get_bytecode(str(page)) is again  # and kept from then on


def test_forget_drops_every_compiled_page(tmp_path):
    page = tmp_path / "alerts.py"
    page.write_text("queue = []\n")
    cache = KeptScriptCache()
    first = cache.get_bytecode(str(page))
    cache.forget()
    assert cache.get_bytecode(str(page)) is not first


def test_dashboard_server_starts_streamlit_with_the_kept_script_cache():
    import streamlit.runtime.runtime as streamlit_runtime

    import ranger_dashboard.dashboard_server  # noqa: F401  (what `streamlit run` imports)

    assert streamlit_runtime.ScriptCache is KeptScriptCache
