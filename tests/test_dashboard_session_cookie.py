"""The dashboard's cookie routes: a one-time code becomes an HttpOnly, SameSite=Strict session cookie
once, never for another site; sign-out ends the session in the store and clears the cookie."""

from __future__ import annotations

import pytest
from access_builders import CONSOLE
from starlette.applications import Starlette
from starlette.testclient import TestClient

from lora_bridge.errors import AuthenticationFailed
from lora_bridge.service import open_bridge
from ranger_dashboard import cookie_routes, session_cookie

PASSWORD = "correct horse battery staple"
NAME = "tembo_session_8501"  # the dashboard is reached on port 8501 below


@pytest.fixture
def routes(sqlite_url, monkeypatch):
    """The dashboard's two cookie routes over a store with the account amina, and her session."""
    monkeypatch.setenv("TEMBO_DATABASE_URL", sqlite_url)
    monkeypatch.setattr("sys.argv", ["dashboard_server.py"])
    with open_bridge(sqlite_url) as bridge:
        bridge.add_user("amina", "ranger", PASSWORD, actor=CONSOLE)
        _, secret = bridge.sign_in("amina", PASSWORD)
    with TestClient(Starlette(routes=cookie_routes.routes()), base_url="http://127.0.0.1:8501") as client:
        client.secret = secret
        client.url = sqlite_url
        yield client


def test_a_sign_in_code_becomes_an_httponly_strict_cookie_once(routes):
    code = session_cookie.issue(routes.secret, 3600)
    answer = routes.post(session_cookie.HANDOFF_PATH, content=code, headers={"Origin": "http://127.0.0.1:8501"})
    assert answer.status_code == 204
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{NAME}={routes.secret};")
    assert {"HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=3600"} <= {p.strip() for p in cookie.split(";")}
    assert "Secure" not in cookie  # plain HTTP on the LAN; behind HTTPS it is Secure:
    again = routes.post(session_cookie.HANDOFF_PATH, content=code)
    assert again.status_code == 400, "a code works once"

    behind_https = routes.post(
        session_cookie.HANDOFF_PATH,
        content=session_cookie.issue(routes.secret, 60),
        headers={"X-Forwarded-Proto": "https"},
    )
    assert behind_https.headers["set-cookie"].endswith("Secure")


def test_another_site_cannot_use_a_code_or_sign_someone_out(routes):
    code = session_cookie.issue(routes.secret, 3600)
    for origin in ("http://poacher.example", "null"):
        refused = routes.post(session_cookie.HANDOFF_PATH, content=code, headers={"Origin": origin})
        assert refused.status_code == 403 and "set-cookie" not in refused.headers
        routes.cookies.set(NAME, routes.secret)
        out = routes.post(session_cookie.SIGN_OUT_PATH, headers={"Origin": origin})
        assert out.status_code == 403
    with open_bridge(routes.url) as bridge:
        assert bridge.viewer_for_session(routes.secret).username == "amina"


def test_each_port_of_a_host_keeps_its_own_sign_in():
    assert session_cookie.cookie_name("127.0.0.1:8501") == "tembo_session_8501"
    assert session_cookie.cookie_name("[::1]:8502") == "tembo_session_8502"
    assert session_cookie.cookie_name("rangers.example.org") == "tembo_session"
    assert session_cookie.cookie_name(None) == "tembo_session"


def test_codes_expire_and_broken_bodies_are_refused(routes):
    late = session_cookie.issue(routes.secret, 3600, now=0.0)
    assert session_cookie.redeem(late, now=session_cookie.HANDOFF_S + 1) is None
    for body in (b"", b"\xff\xfe", b"x" * 10_000, b"not-a-code"):
        assert routes.post(session_cookie.HANDOFF_PATH, content=body).status_code == 400


def test_sign_out_route_ends_the_session_in_the_store_and_clears_the_cookie(routes):
    routes.cookies.set(NAME, routes.secret)
    answer = routes.post(session_cookie.SIGN_OUT_PATH)
    assert answer.status_code == 204
    cleared = answer.headers["set-cookie"]
    assert cleared.startswith(f"{NAME}=;") and "Max-Age=0" in cleared
    with open_bridge(routes.url) as bridge:
        with pytest.raises(AuthenticationFailed):
            bridge.viewer_for_session(routes.secret)
        [ended] = bridge.sessions(viewer=CONSOLE, include_ended=True)
    assert ended.end_reason == "signed_out"
    assert routes.post(session_cookie.SIGN_OUT_PATH).status_code == 204  # without a cookie: nothing to end


def test_the_routes_the_sign_in_s_handoff_holds_back_are_the_live_map_s_tracks_and_name_tiles():
    from ranger_dashboard import name_tiles, session_cookie, track_routes

    prefix = session_cookie.COOKIE_ROUTES_PREFIX
    assert track_routes.TRACKS_PATH.startswith(prefix) and f"{name_tiles.NAMES_PATH}/".startswith(prefix)
    script = session_cookie.handoff_script("code")
    assert prefix in script and session_cookie.HANDOFF_PATH in script
    assert prefix not in session_cookie.sign_out_script(), "signing out holds nothing back"
