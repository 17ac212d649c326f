"""A collar's new wearer reaches EarthRanger however its site answers: a reserve with hundreds of subjects
read page by page, a site whose `next` links loop or name nothing, and every answer broken in turn (not
JSON, fields missing, 401/403/404/409/5xx, no answer in time). The sender talks to the EarthRanger stand-in
(`notify_standins.EarthRangerStandIn`, written from er-server's views and paginators), one for the module.
The outbox around it (retries, holding the collar's fixes, an administrator's retry) is told in
`tests/test_rules_notifications.py`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from notify_standins import EarthRangerStandIn

from lora_bridge.notify.channels import EarthRangerSender
from lora_bridge.notify.config import EarthRangerConfig, NotifyConfig
from lora_bridge.notify.outbox import DeliveryError
from lora_bridge.server import serve_app_in_thread

TOKEN = "er-service-token"
SWAP = datetime(2026, 12, 6, 1, 30, tzinfo=UTC).isoformat()
KITO = {"device_id": "collar-01", "animal": "Kito", "animal_id": 7, "species": "Loxodonta africana",
        "previous": "Naserian", "time": SWAP}
TIMEOUT_S = 1.0  # the client's: ample for a loaded machine; the stand-in's "hang" answers later still


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[EarthRangerStandIn, EarthRangerSender]]:
    stand_in = EarthRangerStandIn(token=TOKEN, provider_key="tembo")
    with serve_app_in_thread(stand_in.app()) as server, httpx.Client(timeout=TIMEOUT_S) as client:
        config = NotifyConfig(earthranger=EarthRangerConfig(url=f"{server.url}/api/v1.0", token=TOKEN))
        yield stand_in, EarthRangerSender(config, client)


@pytest.fixture
def reserve(site) -> Iterator[tuple[EarthRangerStandIn, EarthRangerSender]]:
    """The site as it was before the swap: collar-01 heard on Naserian, and Kito's own collar-02 on her."""
    stand_in, sender = site
    stand_in.reset()
    stand_in.hang_s = 2 * TIMEOUT_S
    stand_in.heard("collar-01", "Naserian")
    stand_in.heard("collar-02", "Kito")
    yield stand_in, sender
    stand_in.reset()


def _herd_of(stand_in: EarthRangerStandIn, before_kito: int, after_kito: int = 0, named: str = "Kito's kin") -> None:
    """The reserve's other elephants, `named` and numbered, listed (as er-server lists them, by id here)
    before and after Kito. EarthRanger's `name` filter matches a part of a name in any case, so it lists
    Kito's kin with her, and leaves out elephants of other names."""
    (kito,) = [s for s in stand_in.subjects.values() if s["name"] == "Kito"]
    del stand_in.subjects[kito["id"]]
    for number in range(before_kito):
        stand_in._new_subject(f"{named} {number:03d}", "elephant")
    stand_in.subjects[kito["id"]] = kito
    for number in range(before_kito, before_kito + after_kito):
        stand_in._new_subject(f"{named} {number:03d}", "elephant")


def _kito_assignments(stand_in: EarthRangerStandIn) -> list[dict]:
    source = stand_in.sources["collar-01"]["id"]
    kito = {s["id"] for s in stand_in.subjects.values() if s["name"] == "Kito"}
    return [a for a in stand_in.subject_sources if a["source"] == source and a["subject"] in kito]


def _asked(stand_in: EarthRangerStandIn, method: str, path: str) -> list[dict]:
    return [r for r in stand_in.requests if r["method"] == method and r["path"] == f"/api/v1.0/{path}"]


def test_kitos_subject_is_asked_for_by_name_not_looked_for_among_the_reserves_every_subject(reserve):
    # The reserve has 250 other elephants: Tembo asks EarthRanger for subjects named Kito and reads one
    # page, rather than every subject of the site, 100 a page.
    stand_in, sender = reserve
    _herd_of(stand_in, 250, named="Elephant")

    made = sender.assignments.send(KITO)

    (asked,) = _asked(stand_in, "GET", "subjects/")
    assert asked["query"]["name"] == "Kito" and asked["query"].get("include_inactive") == "true"
    (assignment,) = _kito_assignments(stand_in)
    assert made == assignment["id"] and _asked(stand_in, "POST", "subjects/") == []


def test_kitos_collar_goes_to_her_subject_found_on_page_three_of_a_reserve_with_hundreds_of_subjects(reserve):
    # EarthRanger's `name` holds Kito's 250 kin too (a part of a name matches), and the site lists them and
    # Kito 100 a page: Kito is on page 3. Until 6 December a list was taken whole from its first page, and
    # Kito would have got a second subject.
    stand_in, sender = reserve
    _herd_of(stand_in, 250)

    made = sender.assignments.send(KITO)

    pages = [r["query"].get("page", "1") for r in _asked(stand_in, "GET", "subjects/")]
    assert pages == ["1", "2", "3"]
    assert _asked(stand_in, "POST", "subjects/") == [] and [s["name"] for s in stand_in.subjects.values()].count(
        "Kito") == 1
    (assignment,) = _kito_assignments(stand_in)
    assert made == assignment["id"] and assignment["assigned_range"]["lower"] == SWAP
    assert stand_in.drawn_on("collar-01", SWAP) == ["Kito", "Naserian"] and stand_in.problems == []


def test_a_collar_with_a_long_history_finds_kitos_assignment_on_its_second_page_and_makes_no_second(reserve):
    # collar-01 was worn by 30 animals before (25 assignments a page): a retried row finds Kito's assignment,
    # made by the try whose answer was lost, on page 2, and posts nothing.
    stand_in, sender = reserve
    source = stand_in.sources["collar-01"]["id"]
    for number in range(30):
        subject = stand_in._new_subject(f"Elephant {number:03d}", "elephant")
        stand_in.subject_sources.append({"id": f"past-{number}", "subject": subject["id"], "source": source,
                                         "assigned_range": {"lower": f"2025-01-{number % 28 + 1:02d}T00:00:00+00:00",
                                                            "upper": f"2025-01-{number % 28 + 1:02d}T12:00:00+00:00"},
                                         "additional": {}})
    first = sender.assignments.send(KITO)
    stand_in.requests.clear()

    again = sender.assignments.send(KITO)

    assert again == first and len(_kito_assignments(stand_in)) == 1
    assert [r["query"].get("page", "1") for r in _asked(stand_in, "GET", "subjectsources/")] == ["1", "2"]
    assert _asked(stand_in, "POST", f"subject/{_kito_assignments(stand_in)[0]['subject']}/sources/") == []


@pytest.mark.parametrize("page_style, says", [("repeat", "page already read"), ("broken", "names no page"),
                                              ("missing", "next page was not linked")])
def test_kito_gets_no_second_subject_when_the_sites_list_cannot_be_read_to_its_end(reserve, page_style, says):
    # A site whose every `next` names page 2 again, whose `next` names no page, or that gives no `next` at
    # all though it counts more: the try stops, is retried later, and asks no page forever.
    stand_in, sender = reserve
    _herd_of(stand_in, 250)
    stand_in.page_style = page_style

    with pytest.raises(DeliveryError, match=says) as failed:
        sender.assignments.send(KITO)

    assert failed.value.retryable
    assert len(_asked(stand_in, "GET", "subjects/")) <= 3
    assert _asked(stand_in, "POST", "subjects/") == [] and _kito_assignments(stand_in) == []
    stand_in.page_style = "page"
    assert sender.assignments.send(KITO) == _kito_assignments(stand_in)[0]["id"]


def test_kito_gets_no_second_subject_when_a_subject_is_removed_while_the_list_is_read(reserve):
    # Kito heads page 2. An admin removes an elephant of page 1 while Tembo reads it: Kito moves up onto the
    # page already read, and page 2 no longer holds her. The list gives fewer than it counted: the try stops
    # and the next one reads it again, rather than make Kito a second subject.
    stand_in, sender = reserve
    _herd_of(stand_in, 99, after_kito=150)

    def remove_an_elephant() -> None:  # once page 1 of the subjects is answered
        if not stand_in.requests[-1]["path"].endswith("/subjects/"):
            return
        stand_in.after_page = None
        del stand_in.subjects[next(s["id"] for s in stand_in.subjects.values() if s["name"] == "Kito's kin 000")]

    stand_in.after_page = remove_an_elephant
    with pytest.raises(DeliveryError, match="changed while it was read"):
        sender.assignments.send(KITO)

    assert _asked(stand_in, "POST", "subjects/") == []
    assert sender.assignments.send(KITO) == _kito_assignments(stand_in)[0]["id"]
    assert [s["name"] for s in stand_in.subjects.values()].count("Kito") == 1


# Each route broken in each way: (retryable, words the kept error says); None: the try goes through.
CREDENTIALS = (True, "credentials were refused")
FAILING = (True, "HTTP 5")
NO_ANSWER = (True, "Timeout")
NOT_JSON = (True, "is not JSON")
BROKEN = {
    "source": {401: CREDENTIALS, 403: CREDENTIALS, 404: "never heard", 409: (False, "HTTP 409"), 500: FAILING,
               503: FAILING, "not-json": NOT_JSON, "bare": (True, "has no id"), "hang": NO_ANSWER},
    "subjectsources": {401: CREDENTIALS, 403: CREDENTIALS, 404: (False, "HTTP 404"), 409: (False, "HTTP 409"),
                       500: FAILING, 503: FAILING, "not-json": NOT_JSON, "bare": (True, "not a list"),
                       "hang": NO_ANSWER},
    "subjects": {401: CREDENTIALS, 403: CREDENTIALS, 404: (False, "HTTP 404"), 409: (False, "HTTP 409"),
                 500: FAILING, 503: FAILING, "not-json": NOT_JSON, "bare": (True, "not a list"), "hang": NO_ANSWER},
    "post_subject": {401: CREDENTIALS, 403: CREDENTIALS, 404: (False, "HTTP 404"),
                     409: (True, "did not list it"), 500: FAILING, 503: FAILING, "not-json": NOT_JSON,
                     "bare": (True, "gave no id"), "hang": NO_ANSWER},
    "post_subject_source": {401: CREDENTIALS, 403: CREDENTIALS, 404: (True, "no longer knows subject"),
                            409: (False, "refused to assign collar collar-01 to Kito"), 500: FAILING,
                            503: FAILING, "not-json": NOT_JSON, "bare": None, "hang": NO_ANSWER},
}
CASES = [(route, fault, outcome) for route, faults in BROKEN.items() for fault, outcome in faults.items()]


@pytest.mark.parametrize("route, fault, outcome", CASES, ids=[f"{r}-{f}" for r, f, _ in CASES])
def test_every_broken_answer_leaves_a_clear_error_and_the_next_try_gives_kito_one_subject_and_one_assignment(
    reserve, route, fault, outcome
):
    stand_in, sender = reserve
    if route == "post_subject":  # Kito's subject is made only when the site has none
        del stand_in.subjects[next(s["id"] for s in stand_in.subjects.values() if s["name"] == "Kito")]
    stand_in.faults[route] = [fault]

    if outcome == "never heard":  # a collar the site never heard: its first fix makes it, nothing to move
        assert sender.assignments.send(KITO) is None
        assert _asked(stand_in, "POST", "subjects/") == [] and _kito_assignments(stand_in) == []
        return
    if outcome is None:  # the assignment is made; its id was lost with the answer
        assert sender.assignments.send(KITO) is None
    else:
        retryable, says = outcome
        with pytest.raises(DeliveryError) as failed:
            sender.assignments.send(KITO)
        assert failed.value.retryable is retryable and says in str(failed.value)
        assert TOKEN not in str(failed.value)

    assert sender.assignments.send(KITO) == _kito_assignments(stand_in)[0]["id"]
    assert [s["name"] for s in stand_in.subjects.values()].count("Kito") == 1
    assert len(_kito_assignments(stand_in)) == 1 and stand_in.problems == []


def test_naserians_open_assignment_is_named_for_the_admin_and_nothing_of_her_history_is_changed(reserve, caplog):
    # EarthRanger's API offers no way to end an assignment: Naserian's stays open, and the warning names it
    # and the time to end it at in EarthRanger's admin. Tembo only reads and adds, never edits or deletes.
    stand_in, sender = reserve
    source = stand_in.sources["collar-01"]["id"]
    (naserians,) = [a for a in stand_in.subject_sources if a["source"] == source]
    before = dict(naserians)

    with caplog.at_level(logging.WARNING, logger="lora_bridge.notify.er_assignments"):
        sender.assignments.send(KITO)

    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert naserians["id"] in warning.getMessage() and SWAP in warning.getMessage()
    assert "EarthRanger's admin" in warning.getMessage() and warning.assignment_id == naserians["id"]
    assert naserians == before and {r["method"] for r in stand_in.requests} == {"GET", "POST"}
