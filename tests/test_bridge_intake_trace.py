"""An operator measuring the time from a body's arrival to its alerts traces the applier process's stages."""

from __future__ import annotations

import io
import json
import sqlite3

from lora_bridge.intake_applier import ParentLink, _traced_sync, _tracer


def test_an_operator_tracing_the_applier_sees_each_commit_told_and_each_fsync_in_order(tmp_path):
    to = tmp_path / "applier.trace"
    trace = _tracer(str(to))
    assert trace is not None
    link = ParentLink(io.BytesIO(b"3\n7\n5\n"), trace)  # 5 after 7: an old id, not a new commit
    link.reader.join(timeout=5)
    store = tmp_path / "store.db"
    with sqlite3.connect(store) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (x)")
        db.execute("INSERT INTO t VALUES (1)")
    _traced_sync(store, trace)()
    trace("reported", ids=[3, 7])
    lines = [json.loads(line) for line in to.read_text().splitlines()]
    assert [(line["what"], line.get("id")) for line in lines] == [
        ("told", 3), ("told", 7), ("sync_start", None), ("synced", None), ("reported", None)]
    assert lines[-1]["ids"] == [3, 7]
    moments = [line["at"] for line in lines]
    assert moments == sorted(moments)


def test_without_a_trace_file_the_applier_writes_no_trace(tmp_path):
    assert _tracer(None) is None and _tracer("") is None
    store = tmp_path / "store.db"
    sqlite3.connect(store).close()
    _traced_sync(store, None)()  # the plain fsync
    assert list(tmp_path.iterdir()) == [store]
