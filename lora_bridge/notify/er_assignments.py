"""A collar's wearer on EarthRanger: when a field technician moves a collar to another animal, EarthRanger
is told that the collar's source is assigned to that animal's subject from the fitting on.

EarthRanger keeps fixes per source (the collar, by `manufacturer_id`) and draws a subject's track from the
fixes of each source assigned to it within that assignment's `assigned_range` (er-server's
`SubjectSource`). The generic sensor API names a subject only when it first hears a source; after a swap
it kept drawing the collar's new fixes on the first animal, and the rangers followed the wrong elephant.

What EarthRanger's API offers, read from er-server (`observations/urls.py`, `SubjectSourcesView.create`,
`SubjectSourceSerializer`, `SubjectSource.objects.ensure`) and er-client (`get_source_by_manufacturer_id`,
`get_source_assignments`, `post_subject`, `post_subjectsource`):
- `GET {url}/source/{manufacturer_id}/` → the source (`data.id`), 404 when the site never heard it;
- `GET {url}/subjectsources/?sources={source id}` → its assignments, each {id, subject, source,
  assigned_range {lower, upper}} (a list, or DRF's page {count, next, previous, results});
- `GET {url}/subjects/?name=...&include_inactive=true` → subjects; `POST {url}/subjects/` {name,
  subject_subtype, is_active} → 201 with the new subject (`data.id`);
- `POST {url}/subject/{subject id}/sources/` {source, assigned_range {lower[, upper]}, additional} → 201:
  a new assignment. er-server makes it with get_or_create on (subject, source, assigned_range), so the
  same post tried again makes no second one; a missing `upper` is open-ended (er-server stores
  datetime.max).
- No route edits or deletes an assignment (`subject/{id}/source/{source_id}/` only reads): an assignment
  is ended in EarthRanger's admin. A source's earlier assignment that stays open past the fitting is
  reported in the log (a warning naming its id and the time to end it at) for the site's admin.

So Tembo starts the new wearer's assignment at the fitting (the assignment with the latest start is the
one EarthRanger's own handlers take for a fix, `get_for_source_at_time`); a collar taken off to stock
starts none (its fixes go nowhere: `Bridge._queue_steps`). Each change is one outbox row
(`KIND_ASSIGNMENT`), retried and kept as every EarthRanger call is, ordered so the collar's fixes dated
from the change wait for it (`outbox.held_fixes`), and it waits for the fixes of the collar queued before it
(the old wearer's, which must reach EarthRanger under her assignment first).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

from lora_bridge.notify.outbox import DeliveryError

log = logging.getLogger(__name__)

# Pages of subjects (or of a source's assignments) read at most while looking for one.
LOOKUP_MAX_PAGES = 20
SUBJECT_PAGE = 100


def subtype_of(species: str | None) -> str:
    """The EarthRanger subject subtype an animal of `species` gets (as its fixes name it)."""
    return "elephant" if species == "Loxodonta africana" else "wildlife"


def _when(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _data(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        raise DeliveryError(f"EarthRanger's answer to {response.request.url.path} is not JSON") from None
    return body.get("data") if isinstance(body, dict) and "data" in body else body


def _results(data: Any) -> tuple[list[dict[str, Any]], Any]:
    """The items of a list answer and its `next` link (a plain list has none)."""
    if isinstance(data, dict):
        items = data.get("results")
        return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else [], data.get("next")
    return [i for i in data if isinstance(i, dict)] if isinstance(data, list) else [], None


class AssignmentSender:
    """Moves a collar's source to its new wearer's subject on EarthRanger (see the module's docstring)."""

    def __init__(self, client: httpx.Client, root: str, headers: Callable[[], dict[str, str]],
                 request: Callable[..., httpx.Response], next_page: Callable[[Any], tuple[str, str] | None]) -> None:
        self.client = client
        self.root = root
        self.headers = headers
        self.request = request  # channels._post: errors as DeliveryError, retryable or not
        self.next_page = next_page  # channels.next_page: the page a `next` link names, asked of the root

    def send(self, payload: dict[str, Any]) -> str | None:
        """Start the assignment of payload's collar to its animal at its time; the assignment's id, or None
        when there was nothing to assign (EarthRanger never heard the collar, or it went into stock)."""
        device_id, at = payload["device_id"], _when(payload["time"])
        context = {"device_id": device_id, "animal": payload.get("animal"), "at": payload["time"]}
        source_id = self._source_id(device_id)
        if source_id is None:
            # Its first fix will make the source and a subject named after the animal wearing it then.
            log.info("EarthRanger has no source for device_id=%s yet: nothing to move", device_id, extra=context)
            return None
        assignments = self._assignments(source_id)
        if payload.get("animal") is None:
            self._report_left_open(assignments, None, at, context)
            return None
        subject_id = self._subject_id(payload)
        made = next((a for a in assignments if str(a.get("subject")) == subject_id
                     and _when((a.get("assigned_range") or {}).get("lower")) == at), None)
        if made is None:
            body = {"source": source_id, "assigned_range": {"lower": payload["time"]},
                    "additional": {"tembo_device_id": device_id, "tembo_animal_id": payload.get("animal_id")}}
            try:
                response = self.request(self.client, "POST", f"{self.root}/subject/{subject_id}/sources/",
                                        json=body, headers=self.headers())
            except DeliveryError as error:
                if error.status_code == 404:  # the subject was removed since it was looked up: look again
                    raise DeliveryError(f"EarthRanger no longer knows subject {subject_id} of "
                                        f"{payload['animal']}: {error}", retryable=True) from error
                raise
            answer = _data(response)
            made = answer if isinstance(answer, dict) else {}
        self._report_left_open(assignments, subject_id, at, context)
        log.info("EarthRanger source of device_id=%s assigned to %s from %s", device_id, payload["animal"],
                 payload["time"], extra={**context, "subject_id": subject_id, "assignment_id": made.get("id")})
        return str(made["id"]) if made.get("id") else None

    def _source_id(self, device_id: str) -> str | None:
        try:
            response = self.request(self.client, "GET", f"{self.root}/source/{device_id}/", headers=self.headers())
        except DeliveryError as error:
            if error.status_code == 404:
                return None
            raise
        data = _data(response)
        if not isinstance(data, dict) or not data.get("id"):
            raise DeliveryError(f"EarthRanger's source of {device_id} has no id")
        return str(data["id"])

    def _assignments(self, source_id: str) -> list[dict[str, Any]]:
        return self._every(f"{self.root}/subjectsources/", {"sources": source_id})

    def _every(self, url: str, params: dict[str, str]) -> list[dict[str, Any]]:
        """Every item of a list EarthRanger answers a page at a time (at most LOOKUP_MAX_PAGES)."""
        items: list[dict[str, Any]] = []
        for _ in range(LOOKUP_MAX_PAGES):
            page, following = _results(_data(self.request(self.client, "GET", url, params=params,
                                                          headers=self.headers())))
            items.extend(page)
            named = self.next_page(following) if following else None
            if named is None:
                return items
            params = {**params, named[0]: named[1]}
        raise DeliveryError(f"EarthRanger's list at {url} runs past {LOOKUP_MAX_PAGES} pages")

    def _subject_id(self, payload: dict[str, Any]) -> str:
        """The id of the subject named after payload's animal, made when the site has none."""
        name = payload["animal"]
        found = [s for s in self._every(f"{self.root}/subjects/", {"name": name, "include_inactive": "true",
                                                                   "page_size": str(SUBJECT_PAGE)})
                 if s.get("name") == name and s.get("id")]
        if found:
            return str(found[0]["id"])
        body = {"name": name, "subject_subtype": subtype_of(payload.get("species")), "is_active": True}
        data = _data(self.request(self.client, "POST", f"{self.root}/subjects/", json=body, headers=self.headers()))
        if not isinstance(data, dict) or not data.get("id"):
            raise DeliveryError(f"EarthRanger made subject {name!r} but gave no id")
        log.info("EarthRanger subject made for %s", name, extra={"subject_id": data["id"]})
        return str(data["id"])

    @staticmethod
    def _report_left_open(assignments: list[dict[str, Any]], subject_id: str | None, at: datetime | None,
                          context: dict[str, Any]) -> None:
        """Log each assignment of the source to another subject that still runs past `at`: EarthRanger's API
        cannot end it, and until its admin does, that subject's track shows the collar's new fixes too."""
        for assignment in assignments:
            window = assignment.get("assigned_range") or {}
            lower, upper = _when(window.get("lower")), _when(window.get("upper"))
            if str(assignment.get("subject")) == subject_id or at is None:
                continue
            if (lower is None or lower < at) and (upper is None or upper > at):
                log.warning("EarthRanger assignment %s of subject %s runs past %s: end it in EarthRanger's admin "
                            "at that time", assignment.get("id"), assignment.get("subject"), at.isoformat(),
                            extra={**context, "assignment_id": assignment.get("id")})
