"""The admin's `tembo notifications retry` reaches a running bridge: the failed alert goes out in the
next few seconds, with the settings the admin has just put right, without anyone restarting the bridge."""

from __future__ import annotations

import json
import time

import bridge_builders as b
import httpx
import pytest
from bridge_process import bridge_process
from conftest import free_port
from notify_standins import SmsGateway

from lora_bridge.server import serve_app_in_thread

pytestmark = pytest.mark.slow

EXPIRED = "sms-token-of-last-month"
RENEWED = "sms-token-paid-this-morning"


def rules(sms_url: str, token: str) -> str:
    """One duty officer's SMS route; a refused message fails at its first try (so the night ends fast)."""
    return (f'[notify.sms]\nurl = "{sms_url}/send"\ntoken = "{token}"\n'
            '[notify.retry]\nmax_attempts = 1\n'
            '[[notify.routes]]\nname = "duty-sms"\nchannel = "sms"\nto = ["+254700000001"]\n')


def wait_for(condition, what: str, timeout_s: float = 60.0, every_s: float = 0.1):
    """condition() once it is truthy (asked every every_s); AssertionError naming `what` if it is not
    within timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def failed_rows(url: str) -> list[str]:
    from lora_bridge.service import open_bridge
    from tembo.accounts import console_actor

    with open_bridge(url) as bridge:
        return [n.state for n in bridge.notifications(viewer=console_actor(), state="failed")]


def test_the_duty_officer_gets_the_alert_the_admin_retried_from_the_running_bridge_with_the_renewed_token(
    store_url, tmp_path, monkeypatch, capsys
):
    # The SMS gateway refused the bridge's token all night: the poaching alert's SMS failed. In the morning
    # the admin pays the gateway, writes its new token into the rules file and runs `tembo notifications
    # retry`. The bridge keeps running: it reads the renewed settings and the duty officer gets the SMS.
    from tembo.cli import main

    gateway = SmsGateway(token=RENEWED)
    rules_path = tmp_path / "rules.toml"
    with serve_app_in_thread(gateway.app()) as sms:
        rules_path.write_text(rules(sms.url, EXPIRED))
        monkeypatch.setenv("TEMBO_RULES_PATH", str(rules_path))
        with bridge_process(store_url, free_port()) as bridge:
            answer = httpx.post(f"{bridge.url}/uplinks/tts", headers=b.HEADERS, timeout=30,
                                content=b.tts_uplink(b.alert("poaching_risk", seq=1), f_cnt=1))
            assert answer.status_code == 200
            wait_for(lambda: failed_rows(store_url), "the night's SMS failed on the expired token", every_s=1.0)

            rules_path.write_text(rules(sms.url, RENEWED))
            assert main(["notifications", "retry", "--database-url", store_url]) == 0
            assert len(json.loads(capsys.readouterr().out)["requeued"]) == 1
            wait_for(lambda: gateway.messages, "the retried SMS at the duty officer's phone")

    (message,) = gateway.messages
    assert message["to"] == "+254700000001" and message["text"].startswith("HIGH Possible poaching: ")
