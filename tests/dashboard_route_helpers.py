"""Set-up shared by the tests of the live map's own routes (tracks and name tiles): a store filled
with the bench's herd and two signed-in viewers, and a client of the dashboard's routes."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.testclient import TestClient

from lora_bridge.service import open_bridge
from ranger_dashboard import bench, name_routes

PASSWORD = "correct horse battery"


def filled_store(url: str, animals: int, days: int) -> tuple[str, str, str]:
    """Fill the store at `url` with the bench's herd of `animals` for `days` (no activity) and sign
    in a ranger and a researcher: (url, ranger's session secret, researcher's session secret)."""
    with open_bridge(url) as bridge:
        bench.fill_store(bridge, animals=animals, days=days, activity_days=0, batch=250)
        bridge.add_user("ranger.amani", "ranger", PASSWORD, actor=bench.BENCH_ADMIN)
        bridge.add_user("dr.wanjiru", "researcher", PASSWORD, actor=bench.BENCH_ADMIN)
        ranger = bridge.sign_in("ranger.amani", PASSWORD)[1]
        researcher = bridge.sign_in("dr.wanjiru", PASSWORD)[1]
    return url, ranger, researcher


def route_client(url: str, role: str, routes: list[Any], monkeypatch: Any) -> TestClient:
    """A client of `routes` on a dashboard of `role` serving the store at `url` (the routes' cache
    emptied first)."""
    monkeypatch.setenv("TEMBO_DATABASE_URL", url)
    monkeypatch.setenv("TEMBO_DASHBOARD_ROLE", role)
    monkeypatch.setattr("sys.argv", ["dashboard_server.py"])
    name_routes._cache.clear()
    return TestClient(Starlette(routes=routes), base_url="http://127.0.0.1:8501")
