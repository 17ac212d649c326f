"""A message whose ingest fails for a reason that does not pass (the store refuses a value of it, a
bug) is kept for inspection, answered so that the network server does not retry it in vain, and
replayed once fixed; by MQTT it never holds back the messages behind it.

The store refusal is real: a SQLite trigger refuses raw rows whose topic ids name the poacher's
collar, as PostgreSQL refuses a value it cannot hold."""

from __future__ import annotations

import json
import logging

import bridge_builders as b
import pytest
from sqlalchemy import text
from starlette.testclient import TestClient
from test_bridge_mqtt import applied_once, publish_all, publisher, tts_topic, wait_until

from lora_bridge.adapters.mqtt import MqttIngest, parse_broker_url
from lora_bridge.adapters.webhook import create_app
from lora_bridge.errors import StoreUnavailable
from tembo.cli import main

REFUSED_COLLAR = "collar-refused"


def refuse_raw_rows_naming(bridge, collar: str) -> None:
    """The store refuses (a constraint, not a passing error) every raw row whose path ids name collar."""
    with bridge.db.write() as session:
        session.execute(text(
            "CREATE TRIGGER refuse_collar BEFORE INSERT ON raw_uplinks "
            f"WHEN NEW.path_ids LIKE '%{collar}%' BEGIN SELECT RAISE(ABORT, 'value refused by the store'); END"
        ))


def accept_every_raw_row(bridge) -> None:
    with bridge.db.write() as session:
        session.execute(text("DROP TRIGGER refuse_collar"))


def status_body(device: str, f_cnt: int, lat: float) -> bytes:
    return b.tts_uplink(b.status(lat=lat), device_id=device, f_cnt=f_cnt)


def test_a_webhook_body_the_store_refuses_is_kept_answered_200_and_replayed_once_fixed(sqlite_url, caplog):
    with b.fresh_bridge(sqlite_url) as bridge, TestClient(create_app(bridge)) as client:
        refuse_raw_rows_naming(bridge, REFUSED_COLLAR)
        with caplog.at_level(logging.ERROR, logger="lora_bridge.service"):
            reply = client.post(f"/uplinks/tts/tembo-test/{REFUSED_COLLAR}/up",
                                content=status_body(REFUSED_COLLAR, 1, -2.41),
                                headers={"X-Tembo-Secret": b.SECRET, "Content-Type": "application/json"})
        (letter,) = bridge.dead_letters()
        accept_every_raw_row(bridge)
        report = bridge.replay_dead_letters()
        latitudes = [round(p.lat, 2) for p in bridge.latest_positions(viewer=b.RANGER)]

    # 2xx: The Things Stack would otherwise send the same body seven more times, in vain.
    assert (reply.status_code, reply.json()["status"]) == (200, "dead_letter")
    assert reply.json()["error_id"] and "value refused by the store" not in reply.text  # the store's words: logged
    assert letter.stage == "apply" and "value refused by the store" in letter.reason
    assert REFUSED_COLLAR in letter.reason  # the ids it came with, as text
    logged = [r for r in caplog.records if "kept as a dead letter" in r.getMessage()]
    assert [(r.network, r.event, r.device) for r in logged] == [("tts", "uplink_message", REFUSED_COLLAR)]
    assert (report.attempted, report.processed) == (1, 1)
    assert latitudes == [-2.41]


@pytest.mark.mqtt
def test_an_mqtt_message_the_store_refuses_is_kept_acknowledged_and_the_collars_behind_it_still_arrive(
        mosquitto, sqlite_url):
    collars = ["collar-a", REFUSED_COLLAR, "collar-b", "collar-c"]
    messages = [(tts_topic(device), status_body(device, 1, -2.5 - n / 100)) for n, device in enumerate(collars)]
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        refuse_raw_rows_naming(bridge, REFUSED_COLLAR)
        with MqttIngest(bridge.ingest_network_message, parse_broker_url(mosquitto.url), client_id="bridge-refusing",
                        share_group="refusing", keep=bridge.keep_failed) as worker, \
                publisher(mosquitto, client_id="network-refusing") as client:
            publish_all(client, messages)
            flowed = wait_until(lambda: worker.acknowledged == len(messages) and applied_once(bridge) == (3, 3))
        dead = bridge.dead_letters()
        accept_every_raw_row(bridge)
        report = bridge.replay_dead_letters()
        arrived = applied_once(bridge)

    assert flowed, (worker.received, worker.acknowledged, applied_once(bridge))
    assert [(letter.stage, REFUSED_COLLAR in letter.reason) for letter in dead] == [("apply", True)]
    assert (report.processed, arrived) == (1, (4, 4))


@pytest.mark.mqtt
def test_an_mqtt_message_whose_ingest_hits_a_bug_is_kept_then_acknowledged_and_retried_while_the_store_is_down(
        mosquitto, sqlite_url, caplog):
    store_down = {"keep": 2}  # the store cannot keep the body twice, then it can

    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        def ingest_with_a_bug(network, event, body, **kwargs):
            if REFUSED_COLLAR.encode() in body:
                raise KeyError("rx_metadata")  # a bug in the bridge, hit by this one message
            return bridge.ingest_network_message(network, event, body, **kwargs)

        def keep(*args, **kwargs):
            if store_down["keep"]:
                store_down["keep"] -= 1
                raise StoreUnavailable("database is locked")
            return bridge.keep_failed(*args, **kwargs)

        messages = [(tts_topic(device), status_body(device, 1, -2.6)) for device in (REFUSED_COLLAR, "collar-d")]
        with caplog.at_level(logging.WARNING), \
                MqttIngest(ingest_with_a_bug, parse_broker_url(mosquitto.url), client_id="bridge-buggy",
                           share_group="buggy", keep=keep) as worker, \
                publisher(mosquitto, client_id="network-buggy") as client:
            publish_all(client, messages)
            flowed = wait_until(lambda: worker.acknowledged == 2, 30)
        (letter,) = bridge.dead_letters()

    assert flowed and store_down["keep"] == 0 and worker.kept == 1
    assert "KeyError('rx_metadata')" in letter.reason
    told = [(r.name, r.network, r.event, r.device) for r in caplog.records if "kept as a dead letter" in r.getMessage()]
    assert sorted(told) == [("lora_bridge.adapters.mqtt", "tts", "up", REFUSED_COLLAR),
                            ("lora_bridge.service", "tts", "up", REFUSED_COLLAR)]
    retried = [r.getMessage() for r in caplog.records if "not kept" in r.getMessage()]
    assert len(retried) == 2 and all("database is locked" in message for message in retried)


@pytest.mark.parametrize("applier", ["thread", "process"])
def test_a_body_the_store_refuses_after_its_durable_202_leaves_the_journal_as_a_dead_letter(sqlite_url, applier):
    with b.fresh_bridge(sqlite_url, webhook_ack="durable", intake_applier=applier) as bridge, \
            TestClient(create_app(bridge)) as client:
        refuse_raw_rows_naming(bridge, REFUSED_COLLAR)
        replies = [client.post(f"/uplinks/tts/tembo-test/{device}/up", content=status_body(device, 1, -2.5),
                               headers={"X-Tembo-Secret": b.SECRET, "Content-Type": "application/json"})
                   for device in (REFUSED_COLLAR, "collar-e")]
        # Tried again every second for ever, the refused body had stayed in the journal.
        settled = wait_until(lambda: len(bridge.dead_letters()) == 1 and bridge.durable_intake().backlog() == 0, 30)
        (letter,) = bridge.dead_letters()
        positions = [p.device_id for p in bridge.latest_positions(viewer=b.RANGER)]
        journal = list(bridge.durable_intake().journal.entries())

    assert [r.status_code for r in replies] == [202, 202]
    assert settled and journal == []
    assert letter.stage == "apply" and "value refused by the store" in letter.reason
    assert positions == ["collar-e"]


def test_an_operator_replays_what_was_kept_from_the_command_line(sqlite_url, capsys):
    undecodable = b.tts_uplink((1, b"\x09\x00"), device_id="collar-garbled")
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        refuse_raw_rows_naming(bridge, REFUSED_COLLAR)
        kept = bridge.ingest_network_message("tts", "up", status_body(REFUSED_COLLAR, 1, -2.43),
                                             path_ids={"application_id": "tembo-test", "device_id": REFUSED_COLLAR})
        garbled = bridge.ingest_tts_uplink(undecodable)
        letters = {letter.stage: letter.dead_letter_id for letter in bridge.dead_letters()}
    replayed = main(["bridge", "replay", "--id", str(letters["apply"]), "--database-url", sqlite_url])
    replayed_report = json.loads(capsys.readouterr().out)
    again = main(["bridge", "replay", "--id", str(letters["apply"]), "--database-url", sqlite_url])
    still_dead = main(["bridge", "replay", "--database-url", sqlite_url])
    still_dead_report = json.loads(capsys.readouterr().out)
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        latitudes = [round(p.lat, 2) for p in bridge.latest_positions(viewer=b.RANGER)]
        waiting = [letter.stage for letter in bridge.dead_letters()]

    assert (kept.status, garbled.status) == ("dead_letter", "dead_letter")
    assert (replayed, replayed_report["processed"], latitudes) == (0, 1, [-2.43])
    assert again == 2  # no dead letter waits under that id any more
    assert (still_dead, still_dead_report["still_dead"], waiting) == (1, 1, ["decode"])


def refuse_raw_rows_naming_on_postgres(bridge, collar: str) -> None:
    """The PostgreSQL store refuses (a check violation) every raw row whose path ids name collar."""
    with bridge.db.write() as session:
        session.execute(text(
            "CREATE FUNCTION refuse_collar() RETURNS trigger AS $$ BEGIN "
            f"IF NEW.path_ids::text LIKE '%{collar}%' THEN "
            "RAISE EXCEPTION 'value refused by the store' USING ERRCODE = 'check_violation'; END IF; "
            "RETURN NEW; END $$ LANGUAGE plpgsql"
        ))
        session.execute(text("CREATE TRIGGER refuse_collar BEFORE INSERT ON raw_uplinks "
                             "FOR EACH ROW EXECUTE FUNCTION refuse_collar()"))


@pytest.mark.postgres
@pytest.mark.parametrize("ack", ["applied", "durable"])
def test_on_postgres_a_body_the_store_refuses_is_a_dead_letter_answered_200_in_either_ack_mode(postgres_url, ack):
    with b.fresh_bridge(postgres_url, webhook_ack=ack, outbox_worker=False) as bridge, \
            TestClient(create_app(bridge)) as client:
        refuse_raw_rows_naming_on_postgres(bridge, REFUSED_COLLAR)
        replies = {device: client.post(f"/uplinks/tts/tembo-test/{device}/up", content=status_body(device, 1, -2.5),
                                       headers={"X-Tembo-Secret": b.SECRET, "Content-Type": "application/json"})
                   for device in (REFUSED_COLLAR, "collar-f")}
        # the other collar's uplink is applied (right away, or by the durable intake's applier)
        settled = wait_until(lambda: len(bridge.latest_positions(viewer=b.RANGER)) == 1, 30)
        (letter,) = bridge.dead_letters()

    refused = replies[REFUSED_COLLAR]
    assert (refused.status_code, refused.json()["status"]) == (200, "dead_letter")
    assert replies["collar-f"].status_code == (202 if ack == "durable" else 200)
    assert letter.stage == "apply" and "value refused by the store" in letter.reason
    assert settled


def test_a_kept_message_replayed_as_a_copy_of_the_other_integrations_still_lets_old_bodies_be_compacted(sqlite_url):
    # The webhook and MQTT both deliver (two integrations): MQTT's copy was refused and kept, the
    # webhook's was applied. Replayed after the fix the kept one is a copy; its dead letter keeps
    # pointing at it, and compaction had tried to delete the copy, failing on every timer tick since.
    from datetime import timedelta

    from lora_bridge.store.utc import utc_now

    body = status_body(REFUSED_COLLAR, 1, -2.43)
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        refuse_raw_rows_naming(bridge, REFUSED_COLLAR)
        kept = bridge.ingest_network_message("tts", "up", body,
                                             path_ids={"application_id": "tembo-test", "device_id": REFUSED_COLLAR})
        taken = bridge.ingest_tts_uplink(body)
        accept_every_raw_row(bridge)
        replayed = bridge.replay_dead_letters()
        compacted = bridge.compact_raw_bodies(now=utc_now() + timedelta(days=60))
        (letter,) = bridge.dead_letters(include_replayed=True)
        counts = bridge.counts()

    assert (kept.status, taken.status, replayed.duplicates) == ("dead_letter", "processed", 1)
    assert compacted.bodies_cleared == 2  # both rows kept, bodies cleared: the letter still names its row
    assert (letter.replay_result, counts["positions"]) == ("duplicate", 1)
