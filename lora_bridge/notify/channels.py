"""One sender per channel. HTTP goes through one injectable httpx client, so tests point it at local
stand-in servers; e-mail goes through smtplib.

EarthRanger (its public API, as the EarthRanger client `er-client` and the server `er-server` use it):
- an alert raised → `POST {url}/activity/events` with a JSON event: `event_type`, `title`, `time`,
  `location` {latitude, longitude}, `priority` (0/100/200/300), `state` "new", `event_details`;
  the answer's `data.id` is kept (a row tried before first looks for the event an earlier try
  created, `GET {url}/activity/events` since the alert's time with `include_details`,
  by the `tembo_alert_id` and `device_id` in its `event_details`, every page of the answer read by
  the page its `next` names), and a later step of the same alert → `PATCH {url}/activity/event/{id}`
  with the new `state` ("active" when acknowledged, "resolved" when resolved) and `priority` (an
  escalation raises it one step, and the title with it; an alert corroboration held at 0 when its
  event was created and has let go since is raised again: `priority` and `title` only);
- fixes → `POST {url}/sensors/generic/{provider_key}/status` with a JSON list of observations (up to
  `observations_per_post` per request; the API takes one observation or a list, answering 201 when
  any is new and 200 when all were seen before), each with `manufacturer_id`, `source_type`,
  `subject_name`, `subject_subtype`, `recorded_at`, `location` {lat, lon}, `additional`. When
  EarthRanger refuses a list (400), each fix of it is sent alone, so one bad fix holds up no other;
- a collar moved to another animal → its source assigned to that animal's subject from the fitting
  (`er_assignments`: `GET source/{manufacturer_id}/`, `GET subjectsources/`, `GET`/`POST subjects/`,
  `POST subject/{id}/sources/`);
- all with `Authorization: Bearer <token>`.

Signed webhook: `POST` of the JSON payload with
    X-Tembo-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
    X-Tembo-Delivery: <notification id>   (the same on a retry: receivers drop repeats by it)
A receiver recomputes the HMAC over the raw body and refuses a timestamp older than a few minutes.

SMS gateway: `POST {url}` with {"to", "from", "text"} and `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import time
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from lora_bridge.call_deadline import DeadlinePassed, request_within
from lora_bridge.domain import alerts
from lora_bridge.notify.config import NotifyConfig
from lora_bridge.notify.er_assignments import AssignmentSender
from lora_bridge.notify.er_pages import read_pages
from lora_bridge.notify.outbox import (
    KIND_ASSIGNMENT,
    KIND_POSITION,
    DeliveryError,
    sent_external_id,
    shown_url,
    was_tried,
)
from lora_bridge.notify.sms_text import sms_of
from lora_bridge.store.database import Database
from lora_bridge.store.tables import Notification

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Tembo-Signature"
DELIVERY_HEADER = "X-Tembo-Delivery"
PRIORITY_WORDS = {0: "INFO", 100: "LOW", 200: "MEDIUM", 300: "HIGH"}
# Events of one type since an alert's time read when looking for the event an earlier try created.
EVENT_LOOKUP_PAGE = 100
# Pages of them read at most (5 000 events since the alert's time, far beyond a reserve's hours).
EVENT_LOOKUP_MAX_PAGES = 50
CREDENTIALS_REFUSED = (401, 403)
ER_STATES = {"raised": "new", "escalated": "new", "acknowledged": "active", "resolved": "resolved",
             "auto_resolved": "resolved"}


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The X-Tembo-Signature value of body sent at timestamp."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: bytes, body: bytes, header: str, now: float | None = None, tolerance_s: float = 300) -> bool:
    """True when header is a valid signature of body under secret, made within tolerance_s of now."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (ValueError, KeyError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)


def title_of(payload: dict[str, Any]) -> str:
    """One line: priority, type in the ranger's words ('Possible poaching', not `poaching_risk`), animal,
    confidence."""
    parts = title_parts(payload)
    return f"{parts['priority']} {parts['label']}: {parts['animal']}{parts['confidence']}{parts['action']}"


def title_parts(payload: dict[str, Any]) -> dict[str, str]:
    """The pieces of title_of: priority word, type label, animal (or collar), " (confidence 0.93)" or "",
    " [acknowledged]" or "" (the SMS shortens some of them to fit one message)."""
    action = payload.get("action")
    return {
        "priority": PRIORITY_WORDS.get(int(payload.get("priority") or 0), str(payload.get("priority"))),
        "label": alerts.type_label(payload["alert_type"]),
        "animal": str(payload.get("animal") or payload["device_id"]),
        "confidence": f" (confidence {payload['confidence']:.2f})" if payload.get("confidence") is not None else "",
        "action": f" [{action}]" if action not in (None, "raised") else "",
    }


def text_of(payload: dict[str, Any]) -> str:
    """The e-mail's body: the title, who acted, when and where, the alert and collar, the rule's note."""
    lines = [title_of(payload), when_where_of(payload), f"alert #{payload['alert_id']} collar {payload['device_id']}"]
    who = who_acted(payload)
    if who:
        lines.insert(1, who)
    if payload.get("rule"):
        lines.append(f"rule: {payload['rule']}")
    return "\n".join(lines)


def sms_text_of(payload: dict[str, Any]) -> str:
    """The SMS: what the e-mail says but the rule's note, cut to one text message in its real encoding
    (`sms_text`), the place and the local time always whole."""
    return sms_of(payload, title_parts(payload), when_where_of(payload), who_acted(payload))


def when_where_of(payload: dict[str, Any]) -> str:
    """'at 2026-03-02 02:00 UTC+03:00 (-1.23456,36.12345)': the line no message ever cuts."""
    where = f"{payload['lat']:.5f},{payload['lon']:.5f}" if payload.get("lat") is not None else "position unknown"
    return f"at {local_time_of(payload)} ({where})"


def who_acted(payload: dict[str, Any]) -> str | None:
    """For an acknowledgement or a resolution, who did it (and the verdict): the duty officer told an
    alert was "[acknowledged]" needs to know which ranger is on it. None for the other steps, and for a
    row queued without the names."""
    action = payload.get("action")
    if action == "acknowledged" and payload.get("acknowledged_by"):
        return f"taken by {payload['acknowledged_by']}"
    if action == "resolved" and payload.get("resolved_by"):
        verdict = str(payload.get("verdict") or "").replace("_", " ")
        return f"resolved by {payload['resolved_by']}" + (f": {verdict}" if verdict else "")
    if action == "auto_resolved":  # a reason queued with the step (a collar taken off) is said
        return f"closed by Tembo: {payload.get('detail', {}).get('reason') or 'its condition cleared'}"
    return None


def local_time_of(payload: dict[str, Any]) -> str:
    """The alert's time as a ranger woken at night reads it: in the route's time zone when it names one
    (`timezone`, IANA: summer time included, so a message sent the night clocks change gives the hour
    the recipient's clock shows), else in the collar's local time (its `utc_offset_min`, the offset its
    night is reckoned by), '2026-03-02 02:00 UTC+03:00'; in UTC for a row queued without either. Until 5 December the message gave '2026-03-01T23:00:00+00:00', and a ranger in
    East Africa had to add three hours in her head to know the alert was two in the morning."""
    when = datetime.fromisoformat(payload["time"])
    zone = _zone(payload.get("timezone"))
    if zone is not None:  # the route's own zone: its summer time on the night it changes too
        local = when.astimezone(zone)
        offset_min = int((local.utcoffset() or timedelta()).total_seconds() // 60)
        sign, minutes = ("-" if offset_min < 0 else "+"), abs(offset_min)
        return f"{local:%Y-%m-%d %H:%M} UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    offset_min = payload.get("utc_offset_min")
    if not isinstance(offset_min, int) or isinstance(offset_min, bool):
        return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    local = when.astimezone(timezone(timedelta(minutes=offset_min)))
    sign, minutes = ("-" if offset_min < 0 else "+"), abs(offset_min)
    return f"{local:%Y-%m-%d %H:%M} UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _zone(name: Any) -> ZoneInfo | None:
    """The IANA zone a route names (checked when the settings were read), or None."""
    if not isinstance(name, str) or not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown time zone %r in a queued notification: the collar's offset is used", name)
        return None


def _post(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    shown = shown_url(url)
    try:
        # Bounded in all, not only each wait: a receiver answering a byte at a time held every later message
        # of the pass (the duty officer's SMS behind EarthRanger's trickle) for as long as it trickled.
        response = request_within(client, method, url, "notify-call", **kwargs)
    except httpx.HTTPError as error:
        raise DeliveryError(f"{method} {shown}: {type(error).__name__}: {shown_url(str(error))}") from error
    except DeadlinePassed as error:
        raise DeliveryError(f"{method} {shown}: {error}") from error
    if 300 <= response.status_code < 400:
        # A redirect is no delivery (httpx follows none, and a POST followed after a 301 or 302 becomes a GET):
        # a gateway moved to HTTPS had every SMS marked sent and none sent. The settings' URL is to be put
        # right; the row waits for that as for refused credentials.
        moved_to = shown_url(response.headers.get("location", "nowhere said"))
        raise DeliveryError(f"{method} {shown}: HTTP {response.status_code}, moved to {moved_to}: put that URL "
                            "in the notify settings", status_code=response.status_code)
    if response.status_code >= 400:
        # 401 and 403 refuse Tembo's credentials, not the message: a token that expired overnight or an
        # account whose permissions were changed, which an administrator puts right. The row waits for
        # that (and stops the channel's pass) rather than fail at once: until 5 December every poaching
        # alert of the night was failed for good on EarthRanger by its first 401.
        retryable = response.status_code in (*CREDENTIALS_REFUSED, 408, 425, 429) or response.status_code >= 500
        why = " (Tembo's credentials were refused: renew the token in the notify settings)" \
            if response.status_code in CREDENTIALS_REFUSED else ""
        raise DeliveryError(f"{method} {shown}: HTTP {response.status_code}{why} {response.text[:200]}",
                            retryable=retryable, retry_after_s=retry_after_s(response) if retryable else None,
                            status_code=response.status_code)
    return response


def retry_after_s(response: httpx.Response) -> float | None:
    """The seconds a receiver's `Retry-After` asks for (RFC 9110: a number of seconds or an HTTP-date),
    or None when it gives none or one that cannot be read (er-client reads it the same way)."""
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class EarthRangerSender:
    """Alerts as EarthRanger events (created, then patched), fixes as generic sensor observations, a collar's
    change of wearer as a new assignment of its source (`er_assignments`)."""

    def __init__(self, config: NotifyConfig, client: httpx.Client) -> None:
        if config.earthranger is None:
            raise ValueError("EarthRanger is not configured")
        self.er = config.earthranger
        self.client = client
        self.root = self.er.url.rstrip("/")
        self.assignments = AssignmentSender(client, self.root, self._headers, _post)

    def __repr__(self) -> str:
        return f"EarthRangerSender(url={self.root!r}, token=***)"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.er.token.get_secret_value()}", "Accept": "application/json"}

    def send(self, notification: Notification, db: Database) -> str | None:
        payload = notification.payload
        if notification.kind == KIND_POSITION:
            return self._observation(payload)
        if notification.kind == KIND_ASSIGNMENT:
            return self.assignments.send(payload)
        action = payload["action"]
        if action in ("raised", "escalated"):
            existing = sent_external_id(db, payload["alert_id"], "earthranger")
            if existing is None:
                # A row claimed before may have created its event already (EarthRanger's 201 came, and
                # the bridge died or lost the answer before marking the row sent): find it, never a second.
                # So may the alert's raise, when its escalation is the first to find no event sent.
                tried = was_tried(notification) or action == "escalated"
                found = self._event_created_for(payload) if tried else None
                if found is not None:
                    log.info("EarthRanger event of alert_id=%s found, created by an earlier try: not created again",
                             payload["alert_id"], extra={"alert_id": payload["alert_id"],
                                                         "notification_id": notification.id, "event_id": found})
                    return found
                return self._create_event(payload)
            if action == "raised" and not payload.get("detail", {}).get("released_from_hold"):
                return existing
            if action == "raised":  # created at INFO while held: now at the alert's own priority
                body = {"priority": int(payload["priority"]), "title": title_of(payload)}
                _post(self.client, "PATCH", f"{self.root}/activity/event/{existing}", json=body,
                      headers=self._headers())
                return existing
        event_id = sent_external_id(db, payload["alert_id"], "earthranger")
        if event_id is None:
            raise DeliveryError("the EarthRanger event of this alert is not created yet")
        body: dict[str, Any] = {"state": ER_STATES[action], "priority": int(payload["priority"])}
        if action == "escalated":  # the event is raised on EarthRanger's scale too, and says so
            body["title"] = title_of(payload)
        _post(self.client, "PATCH", f"{self.root}/activity/event/{event_id}", json=body, headers=self._headers())
        return event_id

    def _create_event(self, payload: dict[str, Any]) -> str | None:
        event: dict[str, Any] = {
            "event_type": self._event_type(payload),
            "title": title_of(payload),
            "time": payload["time"],
            "priority": int(payload["priority"]),
            "state": "new",
            "event_details": {
                "tembo_alert_id": payload["alert_id"],
                "device_id": payload["device_id"],
                "animal": payload.get("animal"),
                "confidence": payload.get("confidence"),
                "rule": payload.get("rule"),
                "source": payload.get("source"),
            },
        }
        if payload.get("lat") is not None and payload.get("lon") is not None:
            event["location"] = {"latitude": payload["lat"], "longitude": payload["lon"]}
        response = _post(self.client, "POST", f"{self.root}/activity/events", json=event, headers=self._headers())
        try:
            data = response.json().get("data") or {}
        except ValueError:
            data = {}
        return str(data["id"]) if isinstance(data, dict) and data.get("id") else None

    def _event_created_for(self, payload: dict[str, Any]) -> str | None:
        """The id of the event Tembo created on EarthRanger for this alert, if any: `GET
        {url}/activity/events` since the alert's time (`filter` `date_range` lower, the filter EarthRanger's
        client documents), with `include_details`, and the one whose `event_details` name this alert
        (`tembo_alert_id` and `device_id`, which every event Tembo creates carries). Not narrowed by event
        type: a server that took the type's name for an id would refuse every lookup, and so every
        retried alert.

        EarthRanger answers a page at a time, newest first, so the event an earlier try created (dated at
        the alert, the oldest the filter lets in) is on the last page once a busy site has had a page of
        events since: every page is read, following `next` (`EVENT_LOOKUP_MAX_PAGES` at most, by
        `er_pages.read_pages`). A lookup that fails, or cannot read the list to its end (`er_pages` says
        when), raises DeliveryError: the row is tried again later rather than create a second event, and so
        is one EarthRanger refuses (its 400 to a filter it cannot read, which waits for EarthRanger to read
        it)."""
        params = {
            "filter": json.dumps({"date_range": {"lower": payload["time"]}}),
            "include_details": "true",
            "page_size": str(EVENT_LOOKUP_PAGE),
        }
        pages_read = 0
        try:
            for events in read_pages(self._get_events, "/activity/events", params, EVENT_LOOKUP_MAX_PAGES):
                pages_read += 1
                for event in events:
                    details = event.get("event_details")
                    if (isinstance(details, dict) and details.get("tembo_alert_id") == payload["alert_id"]
                            and details.get("device_id") == payload["device_id"] and event.get("id")):
                        return str(event["id"])
        except DeliveryError as error:
            if error.retryable:
                raise
            if pages_read:
                # A page its own `next` named is gone (404 "Invalid page.": events deleted or merged into
                # an incident while the list was read): the list changed under the lookup, not the alert.
                raise DeliveryError(f"EarthRanger's list of events changed while it was read: {error}") from error
            # EarthRanger refuses the look-up itself: er-server answers 400 only to a query it cannot
            # read (ParseError "Invalid filter expression", a bad `updated_since` or `bbox`), never for
            # a passing reason, so the same look-up is refused until its server reads the filter
            # Tembo's client documents (an upgrade finished, a proxy put right). That refuses Tembo's
            # question, not the alert: the row waits for an answer, as for refused credentials, rather
            # than be failed at once (until 5 December the warden never saw a retried poaching alert
            # on EarthRanger) or create a second event.
            raise DeliveryError(f"EarthRanger refused the look-up of the event an earlier try may have "
                                f"created (tried again, no second event is created): {error}") from error
        return None

    def _get_events(self, params: dict[str, str]) -> httpx.Response:
        """One page of EarthRanger's events, asked with `params`."""
        return _post(self.client, "GET", f"{self.root}/activity/events", params=params, headers=self._headers())

    def _event_type(self, payload: dict[str, Any]) -> str:
        return f"{self.er.event_type_prefix}{payload['alert_type']}"

    @property
    def batch_size(self) -> int:
        """How many fixes go in one POST."""
        return self.er.observations_per_post

    def send_batch(self, notifications: list[Notification], db: Database) -> None:
        """Post the fixes of these outbox rows as one list of observations."""
        body = [_observation_of(n.payload) for n in notifications]
        url = f"{self.root}/sensors/generic/{self.er.provider_key}/status"
        _post(self.client, "POST", url, json=body, headers=self._headers())

    def _observation(self, payload: dict[str, Any]) -> str | None:
        url = f"{self.root}/sensors/generic/{self.er.provider_key}/status"
        _post(self.client, "POST", url, json=_observation_of(payload), headers=self._headers())
        return None


def _observation_of(payload: dict[str, Any]) -> dict[str, Any]:
    """One fix as an EarthRanger generic sensor observation."""
    return {
        "manufacturer_id": payload["device_id"],
        "source_type": "tracking-device",
        "subject_name": payload.get("animal") or payload["device_id"],
        "subject_subtype": "elephant" if payload.get("species") == "Loxodonta africana" else "wildlife",
        "model_name": "tembo-collar",
        "recorded_at": payload["time"],
        "location": {"lat": payload["lat"], "lon": payload["lon"]},
        "additional": {k: payload[k] for k in ("battery_mv", "behaviour") if payload.get(k) is not None},
    }


class WebhookSender:
    """The payload as JSON, signed with HMAC-SHA256 over timestamp + body."""

    def __init__(self, config: NotifyConfig, client: httpx.Client) -> None:
        if config.webhook is None:
            raise ValueError("the webhook is not configured")
        self.url = config.webhook.url
        self.secret = config.webhook.secret.get_secret_value().encode()
        self.client = client

    def __repr__(self) -> str:
        return f"WebhookSender(url={self.url!r}, secret=***)"

    def send(self, notification: Notification, db: Database) -> str | None:
        body = json.dumps(notification.payload, sort_keys=True, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.secret, body, int(time.time())),
            DELIVERY_HEADER: str(notification.id),
        }
        _post(self.client, "POST", self.url, content=body, headers=headers)
        return None


class SmsSender:
    """A generic HTTP SMS gateway."""

    def __init__(self, config: NotifyConfig, client: httpx.Client) -> None:
        if config.sms is None:
            raise ValueError("the SMS gateway is not configured")
        self.sms = config.sms
        self.client = client

    def __repr__(self) -> str:
        return f"SmsSender(url={self.sms.url!r}, token=***)"

    def send(self, notification: Notification, db: Database) -> str | None:
        # One text message in its real encoding (GSM-7: 160, UCS-2 once a name has an emoji: 70): a long
        # type or name had made two or three parts, and on a weak network at night a phone may show one
        # part alone. The rule's note ("decided on the collar ...") is for whoever reads the code.
        text = sms_text_of(notification.payload)
        body = {"to": notification.recipient, "from": self.sms.sender, "text": text}
        headers = {"Authorization": f"Bearer {self.sms.token.get_secret_value()}", DELIVERY_HEADER: str(notification.id)}
        response = _post(self.client, "POST", self.sms.url, json=body, headers=headers)
        try:
            answer = response.json()
        except ValueError:
            return None
        return str(answer.get("id")) if isinstance(answer, dict) and answer.get("id") else None


class EmailSender:
    """Plain-text e-mail through an SMTP relay."""

    def __init__(self, config: NotifyConfig) -> None:
        if config.smtp is None:
            raise ValueError("SMTP is not configured")
        self.smtp = config.smtp

    def __repr__(self) -> str:
        return f"EmailSender(host={self.smtp.host!r}, port={self.smtp.port})"

    def send(self, notification: Notification, db: Database) -> str | None:
        message = EmailMessage()
        message["From"] = self.smtp.sender
        message["To"] = notification.recipient
        message["Subject"] = f"[Tembo] {title_of(notification.payload)}"
        message["Message-ID"] = f"<tembo-notification-{notification.id}@{self.smtp.sender.split('@')[-1]}>"
        message.set_content(text_of(notification.payload) + "\n")
        try:
            with smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=self.smtp.timeout_s) as server:
                if self.smtp.starttls:
                    server.starttls()
                if self.smtp.username and self.smtp.password:
                    server.login(self.smtp.username, self.smtp.password.get_secret_value())
                refused = server.send_message(message)
        except smtplib.SMTPRecipientsRefused as error:
            raise DeliveryError(f"SMTP refused {notification.recipient}: {error}", retryable=False) from error
        except (smtplib.SMTPException, OSError) as error:
            raise DeliveryError(f"SMTP {self.smtp.host}:{self.smtp.port}: {error}") from error
        if refused:
            raise DeliveryError(f"SMTP refused {refused}", retryable=False)
        return message["Message-ID"]


def senders_for(config: NotifyConfig, client: httpx.Client) -> dict[str, Any]:
    """A sender for every configured channel."""
    senders: dict[str, Any] = {}
    if config.earthranger is not None:
        senders["earthranger"] = EarthRangerSender(config, client)
    if config.webhook is not None:
        senders["webhook"] = WebhookSender(config, client)
    if config.sms is not None:
        senders["sms"] = SmsSender(config, client)
    if config.smtp is not None:
        senders["email"] = EmailSender(config)
    return senders
