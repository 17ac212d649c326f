"""Local stand-ins for the services Tembo notifies, each checking every request against the owner's
documented shape, written from their documentation and clients (not from Tembo's sender):

- EarthRanger (er-server's DRF serializers and er-client's calls): `POST /api/v1.0/activity/events`
  (event_type, time, priority in 0/100/200/300, state new/active/resolved, location {latitude,
  longitude}) answering 201 {"data": {"id": ...}, "status": {...}}; `GET /api/v1.0/activity/events` (event_type,
  filter JSON with date_range {lower, upper}, include_details, page_size) answering {"data": {"count",
  "next", "previous", "results"}}; `PATCH /api/v1.0/activity/event/{id}`;
  `POST /api/v1.0/sensors/generic/{provider_key}/status` (SensorPostParameters: location dict with
  lat/lon, recorded_at, manufacturer_id required) with one observation or a JSON list of them (er-server's
  generic sensor handler tests post ten and three hundred in one list, and observations of two sources
  in one list; er-client's post_sensor_observation sends a list as is), answering 201 when any is new,
  or 200 when every one was seen before (same source and second); a list with one bad observation is
  refused whole (400) and none of it kept, as a serializer with many=True refuses; bearer token on
  every call; while `busy`, every call answered 429 (DRF's throttle) or 503 (maintenance) with a
  `Retry-After` of seconds or an HTTP-date, as er-client's tests answer them.
  Sources, subjects and their assignments as er-server keeps them (`observations` models and views): the
  first observation of a manufacturer_id makes its source, a subject named by its `subject_name` (or
  found by that name) and an assignment over all time (DEFAULT_ASSIGNED_RANGE); `GET source/{manufacturer_id}/`
  (404 unknown), `GET subjectsources/?sources=` (SubjectSourcesAssignmentView with
  StandardResultsSetPagination: a DRF page {count, next, previous, results} of 25 unless `page_size` says
  otherwise, `next` an absolute link naming `page=N`, a page past the end 404 "Invalid page."),
  `GET subjects/` (SubjectsView with OptionalResultsSetPagination: a plain list, or that same DRF page when
  `page_size` is asked; `name` applied as er-server applies it, `SubjectQuerySet.by_name_search`'s
  case-insensitive `name__icontains`, so a client that forgets it reads the reserve's every subject,
  and one that asks gets every subject whose name holds the one asked for, not only that name),
  `POST subjects/` {name, subject_subtype, is_active},
  `POST subject/{id}/sources/` {source, assigned_range {lower, upper?}, additional} made with
  get_or_create on (subject, source, range) as `SubjectSource.objects.ensure` does (404 for an unknown
  subject, 400 for a bad body); no route edits, ends or deletes an assignment (er-server's
  `subject/{id}/source/{source_id}/` is a RetrieveAPIView: any other method is 405). `drawn_on` answers
  which subjects' tracks show a fix: those with an assignment of its source whose range holds its time.
  `faults` breaks the next answers of a route, one each: a status (401, 403, 404, 409, 5xx: nothing done,
  DRF's error body), "not-json" (done, answered 200 with an HTML page, as a captive portal or a proxy),
  "bare" (done, answered without the fields the route documents), "hang" (done, answered `hang_s` late:
  the client's timeout runs out first).
- a webhook receiver that recomputes HMAC-SHA256 over "<t>." + raw body as Tembo's docs describe;
- an SMS gateway taking {"to", "from", "text"} with a bearer token;
- an SMTP server (aiosmtpd) that keeps what it receives.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from aiosmtpd.controller import Controller
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ER_PRIORITIES = (0, 100, 200, 300)
# er-server's DEFAULT_ASSIGNED_RANGE: datetime.min and datetime.max in UTC, as its serializer writes them.
ER_ALL_TIME = ("0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59.999999+00:00")
ER_STATES = ("new", "active", "resolved")
# DRF's details of the error answers a fault gives (er-server wraps them in {"status": {...}}).
ER_ERROR_DETAILS = {401: "Authentication credentials were not provided.",
                    403: "You do not have permission to perform this action.", 404: "Not found.",
                    409: "duplicate key value violates unique constraint", 500: "Internal Server Error",
                    502: "Bad Gateway", 503: "Service Unavailable"}
# The page size of er-server's StandardResultsSetPagination (utils/drf.py).
ER_PAGE_SIZE = 25


def _iso(value: Any) -> bool:
    try:
        datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return True
    except ValueError:
        return False


@dataclass
class EarthRangerStandIn:
    """Records every request and every deviation from EarthRanger's documented shape."""

    token: str
    provider_key: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    observations: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    refuse_sources: set[str] = field(default_factory=set)  # manufacturer ids this site refuses (400)
    # How `next` names the following page: "page", "cursor", "broken" (not at all) or "missing" (no `next`).
    page_style: str = "page"
    link_root: str | None = None
    after_page: Callable[[], None] | None = None  # called as a page of events is answered (a test's hook)
    # Look-ups of events answered 400 as er-server answers a `filter` it cannot read (ParseError "Invalid
    # filter expression"): a server whose filter differs from the one Tembo knows, as during an upgrade.
    refuse_lookups: int = 0
    busy: tuple[int, str] | None = None  # (status, Retry-After) every request gets: a throttle, a maintenance  # the root written into `next` (a site behind a proxy: its inside address)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)  # by manufacturer_id
    subjects: dict[str, dict[str, Any]] = field(default_factory=dict)  # by id
    subject_sources: list[dict[str, Any]] = field(default_factory=list)
    # Posts of an assignment answered with this status (400: refused, 500: the site failing), then taken.
    refuse_assignments: list[int] = field(default_factory=list)
    # The next answers of a route broken, one fault each (see the module's docstring); routes: "source",
    # "subjectsources", "subjects", "post_subject", "post_subject_source".
    faults: dict[str, list[int | str]] = field(default_factory=dict)
    hang_s: float = 1.0

    def reset(self) -> None:
        """Forget every request, record and fault (a stand-in shared by a module's tests)."""
        for item in fields(self):
            if item.name not in ("token", "provider_key"):
                setattr(self, item.name, item.default_factory() if callable(item.default_factory)  # type: ignore[misc]
                        else item.default)

    def heard(self, manufacturer_id: str, subject_name: str) -> dict[str, Any]:
        """The site hears a collar for the first time under subject_name (as its first observation would)."""
        self._ensure_source({"manufacturer_id": manufacturer_id, "subject_name": subject_name})
        return self.sources[manufacturer_id]

    def _refusal(self, route: str) -> JSONResponse | None:
        """The error answer a status fault queued for route gives instead of doing anything, taken."""
        queue = self.faults.get(route)
        if not queue or not isinstance(queue[0], int):
            return None
        status = int(queue.pop(0))
        return JSONResponse({"status": {"code": status, "detail": ER_ERROR_DETAILS.get(status, "Error")}},
                            status_code=status)

    async def _spoilt(self, route: str, answer: JSONResponse, bare: dict[str, Any]) -> Response:
        """answer, or what a shape fault queued for route makes of it (the work is done either way)."""
        queue = self.faults.get(route)
        if not queue or isinstance(queue[0], int):
            return answer
        fault = queue.pop(0)
        if fault == "not-json":
            return Response("<html><body><h1>Welcome</h1>Sign in to continue.</body></html>",
                            media_type="text/html")
        if fault == "bare":
            return JSONResponse({"data": bare, "status": {"code": answer.status_code}}, status_code=answer.status_code)
        if fault == "hang":
            await asyncio.sleep(self.hang_s)
            return answer
        raise ValueError(f"unknown fault {fault!r}")

    def app(self) -> Starlette:
        async def when_busy(request: Request, call_next: Any) -> Any:
            """While `busy`, every request is answered with its status and Retry-After (DRF's throttle
            answers 429 "Request was throttled. Expected available in N seconds."; a site in maintenance
            503), and nothing is kept."""
            if self.busy is None:
                return await call_next(request)
            status, retry_after = self.busy
            self.requests.append({"method": request.method, "path": request.url.path, "busy": status})
            detail = "Request was throttled." if status == 429 else "Service Unavailable"
            return JSONResponse({"status": {"code": status, "detail": detail}}, status_code=status,
                                headers={"Retry-After": retry_after})

        return Starlette(routes=[
            Route("/api/v1.0/activity/events", self.post_event, methods=["POST"]),
            Route("/api/v1.0/activity/events", self.list_events, methods=["GET"]),
            Route("/api/v1.0/activity/event/{event_id}", self.patch_event, methods=["PATCH"]),
            Route("/api/v1.0/sensors/generic/{provider_key}/status", self.post_observation, methods=["POST"]),
            Route("/api/v1.0/source/{manufacturer_id}/", self.get_source, methods=["GET"]),
            Route("/api/v1.0/subjectsources/", self.list_subject_sources, methods=["GET"]),
            Route("/api/v1.0/subjects/", self.list_subjects, methods=["GET"]),
            Route("/api/v1.0/subjects/", self.post_subject, methods=["POST"]),
            Route("/api/v1.0/subject/{subject_id}/sources/", self.post_subject_source, methods=["POST"]),
            Route("/api/v1.0/subject/{subject_id}/source/{source_id}/", self.get_subject_source, methods=["GET"]),
        ], middleware=[Middleware(BaseHTTPMiddleware, dispatch=when_busy)])

    async def _body(self, request: Request) -> dict[str, Any] | None:
        self.requests.append({"method": request.method, "path": request.url.path})
        if request.headers.get("authorization") != f"Bearer {self.token}":
            self.problems.append(f"{request.url.path}: no bearer token")
            return None
        if not request.headers.get("content-type", "").startswith("application/json"):
            self.problems.append(f"{request.url.path}: not JSON")
        try:
            body = json.loads(await request.body())
        except ValueError:
            self.problems.append(f"{request.url.path}: body is not JSON")
            return None
        self.requests[-1]["body"] = body
        return body

    async def post_event(self, request: Request) -> JSONResponse:
        body = await self._body(request)
        if body is None:
            return JSONResponse({"status": {"code": 401}}, status_code=401)
        bad = []
        if not isinstance(body.get("event_type"), str) or not body["event_type"]:
            bad.append("event_type")
        if "time" in body and not _iso(body["time"]):
            bad.append("time")
        if body.get("priority", 0) not in ER_PRIORITIES:
            bad.append("priority")
        if body.get("state", "new") not in ER_STATES:
            bad.append("state")
        location = body.get("location")
        if location is not None and not (
            isinstance(location, dict)
            and set(location) == {"latitude", "longitude"}
            and -90 <= location["latitude"] <= 90
            and -180 <= location["longitude"] <= 180
        ):
            bad.append("location")
        if not isinstance(body.get("event_details", {}), dict):
            bad.append("event_details")
        if bad:
            self.problems.append(f"event: bad {bad}")
            return JSONResponse({"status": {"code": 400, "message": "Bad Request"}, "data": bad}, status_code=400)
        event_id = str(uuid.uuid4())
        self.events[event_id] = dict(body)
        data = {"id": event_id, "serial_number": len(self.events), **body}
        return JSONResponse({"data": data, "status": {"code": 201, "message": "Created"}}, status_code=201)

    async def list_events(self, request: Request) -> JSONResponse:
        """GET activity/events as er-server lists them: `event_type` (the type's value), `filter` (JSON;
        `date_range` {lower, upper} on the event's time), `include_details` (event_details only when
        true), `page_size`; answered {"data": {"count", "next", "previous", "results"}}, newest first.

        Paged as DRF pages a list: `next` is an absolute link to the following page (null on the last),
        naming it by `page=N` (er-client's fixtures: `...activity/events?filter=...&page=2&page_size=5`)
        or, with `page_style` "cursor", by an opaque `cursor=` (DRF's cursor paginator, which er-client
        asks for with `use_cursor=true`); a page past the end is 404 "Invalid page.". `link_root`
        is the root a site behind a reverse proxy writes into its links (its inside address);
        `page_style` "broken" is a site whose `next` names no page at all, "missing" one that gives none."""
        query = request.query_params
        self.requests.append({"method": "GET", "path": request.url.path, "query": dict(query)})
        if self.refuse_lookups > 0:
            self.refuse_lookups -= 1
            detail = f"Invalid filter expression. 'filter' = '{query.get('filter')}'"
            return JSONResponse({"status": {"code": 400, "detail": detail}}, status_code=400)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            self.problems.append(f"{request.url.path}: no bearer token")
            return JSONResponse({"status": {"code": 401}}, status_code=401)
        try:
            wanted = json.loads(query.get("filter", "{}"))
            int(query.get("page_size", "25")), int(query.get("page", "1"))  # a client's mistake: 400, not a 404 page
            if "cursor" in query:
                int(base64.urlsafe_b64decode(query["cursor"]).decode().removeprefix("o="))
        except ValueError:
            self.problems.append(f"events list: bad query {dict(query)}")
            return JSONResponse({"status": {"code": 400}}, status_code=400)
        window = wanted.get("date_range", {}) if isinstance(wanted, dict) else {}
        if not all(_iso(window[end]) for end in ("lower", "upper") if end in window):
            self.problems.append(f"events list: bad date_range {window}")
            return JSONResponse({"status": {"code": 400}}, status_code=400)

        def moment(value: str) -> datetime:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))

        types = query.getlist("event_type")
        results = []
        for event_id, event in reversed(self.events.items()):
            if types and event["event_type"] not in types:
                continue
            if "lower" in window and moment(event["time"]) < moment(window["lower"]):
                continue
            if "upper" in window and moment(event["time"]) > moment(window["upper"]):
                continue
            shown = {"id": event_id, **event}
            if query.get("include_details", "").lower() != "true":
                shown.pop("event_details", None)
            results.append(shown)
        return self._paged(request, results, 25)

    def _link(self, request: Request, start: int | None, page_size: int) -> str | None:
        """The absolute link to the page starting at `start` (None: no such page), as this site writes it."""
        if start is None or self.page_style == "missing":
            return None
        kept = [(k, v) for k, v in request.query_params.multi_items() if k not in ("page", "cursor")]
        if self.page_style == "cursor":
            kept.append(("cursor", base64.urlsafe_b64encode(f"o={start}".encode()).decode()))
        elif self.page_style == "page" and start > 0:
            kept.append(("page", str(start // page_size + 1)))
        elif self.page_style == "repeat":  # a site whose every `next` names page 2, never the end
            kept.append(("page", "2"))
        root = (self.link_root or str(request.base_url)).rstrip("/")
        return f"{root}{request.url.path}?{urlencode(kept)}"

    async def patch_event(self, request: Request) -> JSONResponse:
        body = await self._body(request)
        event_id = request.path_params["event_id"]
        if body is None:
            return JSONResponse({"status": {"code": 401}}, status_code=401)
        if event_id not in self.events:
            self.problems.append(f"patch of unknown event {event_id}")
            return JSONResponse({"status": {"code": 404}}, status_code=404)
        if body.get("state", "new") not in ER_STATES or body.get("priority", 0) not in ER_PRIORITIES:
            self.problems.append(f"patch: bad {body}")
            return JSONResponse({"status": {"code": 400}}, status_code=400)
        self.events[event_id].update(body)
        return JSONResponse({"data": {"id": event_id, **self.events[event_id]}, "status": {"code": 200}})

    async def post_observation(self, request: Request) -> JSONResponse:
        body = await self._body(request)
        if body is None:
            return JSONResponse({"status": {"code": 401}}, status_code=401)
        if request.path_params["provider_key"] != self.provider_key:
            self.problems.append(f"observation for provider {request.path_params['provider_key']}")
        items = body if isinstance(body, list) else [body]
        self.requests[-1]["observations"] = len(items)
        bad = [item for item in items if not self._valid_observation(item)]
        if bad or not items:
            self.problems.append(f"observations: bad {bad or 'empty list'}")
            return JSONResponse({"status": {"code": 400, "message": "Bad Request"}, "data": bad}, status_code=400)
        refused = [item for item in items if item["manufacturer_id"] in self.refuse_sources]
        if refused:  # a source this site does not accept: the whole list is refused
            return JSONResponse({"status": {"code": 400, "message": "Bad Request"}, "data": refused}, status_code=400)
        created = False
        for item in items:
            second = datetime.fromisoformat(item["recorded_at"]).replace(microsecond=0).isoformat()
            key = (str(item["manufacturer_id"]), second)
            if key not in self.observations:
                self.observations[key] = item
                self._ensure_source(item)
                created = True
        return JSONResponse({"data": {}, "status": {"code": 201 if created else 200}}, status_code=201 if created else 200)

    def _ensure_source(self, item: dict[str, Any]) -> None:
        """A source heard for the first time: made, with a subject named by the observation (found by that
        name, else made) assigned over all time, as er-server's generic handler does; a known source
        keeps its assignments whatever the observation's subject_name says."""
        manufacturer_id = str(item["manufacturer_id"])
        if manufacturer_id in self.sources:
            return
        source = self.sources[manufacturer_id] = {"id": str(uuid.uuid4()), "manufacturer_id": manufacturer_id}
        name = item.get("subject_name") or manufacturer_id
        subject = next((s for s in self.subjects.values() if s["name"] == name), None)
        if subject is None:
            subject = self._new_subject(name, item.get("subject_subtype") or "unassigned")
        self.subject_sources.append({"id": str(uuid.uuid4()), "subject": subject["id"], "source": source["id"],
                                     "assigned_range": {"lower": ER_ALL_TIME[0], "upper": ER_ALL_TIME[1]},
                                     "additional": {}})

    def _new_subject(self, name: str, subtype: str) -> dict[str, Any]:
        subject = {"id": str(uuid.uuid4()), "name": name, "subject_subtype": subtype, "is_active": True}
        self.subjects[subject["id"]] = subject
        return subject

    def drawn_on(self, manufacturer_id: str, at: str) -> list[str]:
        """The subjects whose track shows the source's fix at `at`: every subject with an assignment of the
        source whose range [lower, upper) holds the time, by name."""
        source = self.sources.get(manufacturer_id)
        when = datetime.fromisoformat(at)
        names = []
        for assignment in self.subject_sources:
            window = assignment["assigned_range"]
            if source is None or assignment["source"] != source["id"]:
                continue
            if datetime.fromisoformat(window["lower"]) <= when < datetime.fromisoformat(window["upper"]):
                names.append(self.subjects[assignment["subject"]]["name"])
        return sorted(names)

    def _authorised(self, request: Request) -> bool:
        self.requests.append({"method": request.method, "path": request.url.path, "query": dict(request.query_params)})
        if request.headers.get("authorization") != f"Bearer {self.token}":
            self.problems.append(f"{request.url.path}: no bearer token")
            return False
        return True

    async def get_source(self, request: Request) -> Response:
        """GET source/{manufacturer_id}/ (er-server's SourceView by manufacturer_id)."""
        if not self._authorised(request):
            return JSONResponse({"status": {"code": 401}}, status_code=401)
        if (refused := self._refusal("source")) is not None:
            return refused
        source = self.sources.get(request.path_params["manufacturer_id"])
        if source is None:
            return JSONResponse({"status": {"code": 404, "detail": "Not found."}}, status_code=404)
        answer = JSONResponse({"data": source, "status": {"code": 200, "message": "OK"}})
        return await self._spoilt("source", answer, {"manufacturer_id": source["manufacturer_id"]})

    async def list_subject_sources(self, request: Request) -> Response:
        """GET subjectsources/ (SubjectSourcesAssignmentView): `sources`, `subjects` comma lists; DRF pages."""
        if not self._authorised(request):
            return JSONResponse({"status": {"code": 401}}, status_code=401)
        if (refused := self._refusal("subjectsources")) is not None:
            return refused
        sources = {s.strip() for s in request.query_params.get("sources", "").split(",") if s.strip()}
        results = [a for a in self.subject_sources if not sources or a["source"] in sources]
        answer = self._paged(request, results, ER_PAGE_SIZE)
        return await self._spoilt("subjectsources", answer, {"count": len(results)})

    async def list_subjects(self, request: Request) -> Response:
        """GET subjects/: the subjects whose name holds `name`, any case (er-server's by_name_search), or every
        subject without it; a plain list (er-client's get_subjects reads `data` as a list), or DRF pages when
        `page_size` is asked."""
        if not self._authorised(request):
            return JSONResponse({"status": {"code": 401}}, status_code=401)
        if (refused := self._refusal("subjects")) is not None:
            return refused
        name = request.query_params.get("name", "").casefold()
        results = [s for s in self.subjects.values() if name in s["name"].casefold()]
        if "page_size" not in request.query_params:
            answer = JSONResponse({"data": results, "status": {"code": 200, "message": "OK"}})
        else:
            answer = self._paged(request, results, ER_PAGE_SIZE)
        return await self._spoilt("subjects", answer, {"count": len(results)})

    async def get_subject_source(self, request: Request) -> JSONResponse:
        """GET subject/{id}/source/{source_id}/ (SubjectSourceView, a RetrieveAPIView: the source, read only)."""
        if not self._authorised(request):
            return JSONResponse({"status": {"code": 401}}, status_code=401)
        source = next((s for s in self.sources.values() if s["id"] == request.path_params["source_id"]), None)
        if source is None or request.path_params["subject_id"] not in self.subjects:
            return JSONResponse({"status": {"code": 404, "detail": "Not found."}}, status_code=404)
        return JSONResponse({"data": source, "status": {"code": 200, "message": "OK"}})

    def _paged(self, request: Request, results: list[dict[str, Any]], default_size: int) -> JSONResponse:
        """One page of results as DRF's PageNumberPagination answers it (`page`, `page_size`; a page past the
        end, or not a number, 404 "Invalid page."), or by `cursor` when this site's links use one."""
        query = request.query_params
        try:
            page_size = int(query.get("page_size", str(default_size)))
            if "cursor" in query:
                start = int(base64.urlsafe_b64decode(query["cursor"]).decode().removeprefix("o="))
            else:
                start = (int(query.get("page", "1")) - 1) * page_size
        except ValueError:
            start, page_size = -1, default_size
        if start < 0 or page_size < 1 or (start >= len(results) and start > 0):
            return JSONResponse({"status": {"code": 404, "detail": "Invalid page."}}, status_code=404)
        following = start + page_size if start + page_size < len(results) else None
        earlier = start - page_size if start > 0 else None
        answer = JSONResponse({"data": {"count": len(results), "next": self._link(request, following, page_size),
                                        "previous": self._link(request, earlier, page_size),
                                        "results": results[start:start + page_size]},
                               "status": {"code": 200, "message": "OK"}})
        if self.after_page is not None:
            self.after_page()
        return answer

    async def post_subject(self, request: Request) -> Response:
        """POST subjects/ {name, subject_subtype, is_active} (er-client's post_subject)."""
        body = await self._body(request)
        if body is None:
            return JSONResponse({"status": {"code": 401}}, status_code=401)
        if (refused := self._refusal("post_subject")) is not None:
            return refused
        if not isinstance(body.get("name"), str) or not body["name"].strip() or \
                not isinstance(body.get("subject_subtype"), str):
            self.problems.append(f"subject: bad {body}")
            return JSONResponse({"status": {"code": 400, "message": "Bad Request"}}, status_code=400)
        subject = self._new_subject(body["name"], body["subject_subtype"])
        answer = JSONResponse({"data": subject, "status": {"code": 201, "message": "Created"}}, status_code=201)
        return await self._spoilt("post_subject", answer, {"name": subject["name"]})

    async def post_subject_source(self, request: Request) -> Response:
        """POST subject/{id}/sources/ (SubjectSourcesView.create → SubjectSourceSerializer → ensure)."""
        body = await self._body(request)
        if body is None:
            return JSONResponse({"status": {"code": 401}}, status_code=401)
        if self.refuse_assignments:
            status = self.refuse_assignments.pop(0)
            return JSONResponse({"status": {"code": status, "detail": "refused"}}, status_code=status)
        if (refused := self._refusal("post_subject_source")) is not None:
            return refused
        subject_id = request.path_params["subject_id"]
        if subject_id not in self.subjects:
            return JSONResponse({"status": {"code": 404, "detail": "Not found."}}, status_code=404)
        window = body.get("assigned_range")
        known_source = any(s["id"] == body.get("source") for s in self.sources.values())
        if not known_source or not isinstance(window, dict) or not _iso(window.get("lower")) or \
                (window.get("upper") is not None and not _iso(window["upper"])) or \
                not isinstance(body.get("additional", {}), dict):
            self.problems.append(f"assignment: bad {body}")
            return JSONResponse({"status": {"code": 400, "message": "Bad Request"}}, status_code=400)
        lower = datetime.fromisoformat(window["lower"].replace("Z", "+00:00")).isoformat()
        upper = datetime.fromisoformat(window["upper"].replace("Z", "+00:00")).isoformat() \
            if window.get("upper") is not None else ER_ALL_TIME[1]
        made = next((a for a in self.subject_sources if a["subject"] == subject_id and a["source"] == body["source"]
                     and a["assigned_range"] == {"lower": lower, "upper": upper}), None)
        if made is None:
            made = {"id": str(uuid.uuid4()), "subject": subject_id, "source": body["source"],
                    "assigned_range": {"lower": lower, "upper": upper}, "additional": body.get("additional", {})}
            self.subject_sources.append(made)
        answer = JSONResponse({"data": made, "status": {"code": 201, "message": "Created"}}, status_code=201)
        return await self._spoilt("post_subject_source", answer, {"subject": subject_id})

    @staticmethod
    def _valid_observation(item: Any) -> bool:
        if not isinstance(item, dict) or any(k not in item for k in ("location", "recorded_at", "manufacturer_id")):
            return False
        location = item["location"]
        return (
            isinstance(location, dict)
            and set(location) == {"lat", "lon"}
            and -90 <= float(location["lat"]) <= 90
            and -180 <= float(location["lon"]) <= 180
            and _iso(item["recorded_at"])
        )


@dataclass
class WebhookReceiver:
    """Checks the documented signature of every delivery; can refuse the first few (503) to force retries."""

    secret: bytes
    refuse_first: int = 0
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0
    refused: int = 0

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook", self.receive, methods=["POST"])])

    async def receive(self, request: Request) -> JSONResponse:
        raw = await request.body()
        header = request.headers.get("x-tembo-signature", "")
        parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
        expected = hmac.new(self.secret, parts.get("t", "").encode() + b"." + raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, parts.get("v1", "")):
            self.bad_signatures += 1
            return JSONResponse({"error": "bad signature"}, status_code=401)
        if self.refused < self.refuse_first:
            self.refused += 1
            return JSONResponse({"error": "busy"}, status_code=503)
        self.deliveries.append({"delivery": request.headers.get("x-tembo-delivery"), "body": json.loads(raw)})
        return JSONResponse({"ok": True})


@dataclass
class SmsGateway:
    """A generic HTTP SMS gateway: bearer token, JSON {"to", "from", "text"}; can refuse the first few
    (503, the gateway's mobile link down) to force retries."""

    token: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    refuse_first: int = 0
    refused: int = 0
    on_send: Callable[[], None] | None = None  # called as a message is taken (a test's hook)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/send", self.send, methods=["POST"])])

    async def send(self, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"error": "unauthorised"}, status_code=401)
        body = json.loads(await request.body())
        if set(body) != {"to", "from", "text"} or not body["to"].startswith("+"):
            return JSONResponse({"error": "bad request"}, status_code=400)
        if self.refused < self.refuse_first:
            self.refused += 1
            return JSONResponse({"error": "no mobile network"}, status_code=503)
        self.messages.append(body)
        if self.on_send is not None:
            self.on_send()
        return JSONResponse({"id": f"sms-{len(self.messages)}"})


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        self.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "data": envelope.content})
        return "250 Message accepted for delivery"


class SmtpStandIn:
    """A real SMTP server (aiosmtpd) on 127.0.0.1:port that keeps every message it receives."""

    def __init__(self, port: int) -> None:
        self.inbox = _Inbox()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=port)

    def __enter__(self) -> SmtpStandIn:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.inbox.messages
