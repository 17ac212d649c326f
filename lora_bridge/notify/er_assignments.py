"""A collar's wearer on EarthRanger: when a field technician moves a collar to another animal, EarthRanger
is told that the collar's source is assigned to that animal's subject from the fitting on.

EarthRanger keeps fixes per source (the collar, by `manufacturer_id`) and draws a subject's track from the
fixes of each source assigned to it within that assignment's `assigned_range` (er-server's
`SubjectSource`). The generic sensor API names a subject only when it first hears a source; after a swap
it kept drawing the collar's new fixes on the first animal, and the rangers followed the wrong elephant.

What EarthRanger's API offers, read from er-server (`observations/urls.py`, `SubjectSourcesView.create`,
`SubjectSourceSerializer`, `SubjectSource.objects.ensure`, `SubjectsView`, `utils/drf.py`'s paginators) and
er-client (`get_source_by_manufacturer_id`, `get_source_assignments`, `post_subject`, `post_subjectsource`):
- `GET {url}/source/{manufacturer_id}/` → the source (`data.id`), 404 when the site never heard it;
- `GET {url}/subjectsources/?sources={source id}` → its assignments, each {id, subject, source,
  assigned_range {lower, upper}}, a DRF page {count, next, previous, results} (StandardResultsSetPagination:
  25 a page unless `page_size` asks otherwise);
- `GET {url}/subjects/?name=...&include_inactive=true` → subjects: a plain list, or with `page_size` a DRF
  page (OptionalResultsSetPagination); `name` matches a part of a name in any case (SubjectQuerySet's
  `by_name_search`: `name__icontains`), so the subjects holding a common name come a page at a time, the
  one named exactly may be on page 3, and only that one is taken. `POST {url}/subjects/` {name,
  subject_subtype, is_active} → 201 with the new subject (`data.id`), 409 when the site holds one that
  conflicts with it (er-server's IntegrityError);
- `POST {url}/subject/{subject id}/sources/` {source, assigned_range {lower[, upper]}, additional} → 201:
  a new assignment. er-server makes it with get_or_create on (subject, source, assigned_range), so the
  same post tried again makes no second one; a missing `upper` is open-ended (er-server stores
  datetime.max).
- No route edits, ends or deletes an assignment: `subject/{id}/source/{source_id}/` is a RetrieveAPIView,
  `subject/{id}/subjectsources/` and `subjectsources/` are ListAPIViews, and the POST above only makes
  one (a post with an `upper` makes a second assignment, get_or_create on its exact range, and
  leaves the open one open); er-client
  and ecoscope offer no call that changes one either. An assignment is ended in EarthRanger's admin. A
  source's earlier assignment that stays open past the fitting is reported in the log (a warning naming
  its id and the time to end it at) for the site's admin; nothing of it is changed or deleted.

Every list is read page by page through its `next` link, as far as it goes, by `er_pages.read_pages`: a
list that cannot be read to its end stops the try with a retryable error rather than take a partial list
for the whole, which would make a second subject for an animal the site already has.

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

from lora_bridge.notify.er_pages import answer_data, read_pages
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


class AssignmentSender:
    """Moves a collar's source to its new wearer's subject on EarthRanger (see the module's docstring)."""

    def __init__(self, client: httpx.Client, root: str, headers: Callable[[], dict[str, str]],
                 request: Callable[..., httpx.Response]) -> None:
        self.client = client
        self.root = root
        self.headers = headers
        self.request = request  # channels._post: errors as DeliveryError, retryable or not

    def send(self, payload: dict[str, Any]) -> str | None:
        """Start the assignment of payload's collar to its animal at its time; the assignment's id, or None
        when there was nothing to assign (EarthRanger never heard the collar, or it went into stock) or
        EarthRanger's answer to the assignment it made named no id."""
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
                                        f"{payload['animal']}: {error}", retryable=True, status_code=404) from error
                if not error.retryable:  # refused: kept failed, with what and why, for the administrator
                    raise DeliveryError(f"EarthRanger refused to assign collar {device_id} to {payload['animal']} "
                                        f"from {payload['time']}: {error}", retryable=False,
                                        status_code=error.status_code) from error
                raise
            answer = answer_data(response)
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
        data = answer_data(response)
        if not isinstance(data, dict) or not data.get("id"):
            raise DeliveryError(f"EarthRanger's source of {device_id} has no id")
        return str(data["id"])

    def _assignments(self, source_id: str) -> list[dict[str, Any]]:
        return self._every(f"{self.root}/subjectsources/", {"sources": source_id})

    def _every(self, url: str, params: dict[str, str]) -> list[dict[str, Any]]:
        """Every item of a list EarthRanger answers a page at a time (at most LOOKUP_MAX_PAGES); see
        `er_pages` for the answers that stop the try instead."""
        def get(asked: dict[str, str]) -> httpx.Response:
            return self.request(self.client, "GET", url, params=asked, headers=self.headers())

        return [item for page in read_pages(get, url.removeprefix(self.root), params, LOOKUP_MAX_PAGES)
                for item in page]

    def _subject_id(self, payload: dict[str, Any]) -> str:
        """The id of the subject named after payload's animal, made when the site has none."""
        name = payload["animal"]
        found = [s for s in self._every(f"{self.root}/subjects/", {"name": name, "include_inactive": "true",
                                                                   "page_size": str(SUBJECT_PAGE)})
                 if s.get("name") == name]
        if found:
            if not found[0].get("id"):
                raise DeliveryError(f"EarthRanger lists subject {name!r} without its id")
            return str(found[0]["id"])
        body = {"name": name, "subject_subtype": subtype_of(payload.get("species")), "is_active": True}
        try:
            response = self.request(self.client, "POST", f"{self.root}/subjects/", json=body, headers=self.headers())
        except DeliveryError as error:
            if error.status_code == 409:  # made meanwhile, or one the account cannot see: look again next try
                raise DeliveryError(f"EarthRanger holds a subject that conflicts with {name!r} but did not list it "
                                    f"(made meanwhile, or in a group Tembo's account cannot see): {error}",
                                    retryable=True, status_code=409) from error
            raise
        data = answer_data(response)
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
