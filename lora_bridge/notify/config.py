"""Who gets what, and how to reach them: the `[notify]` table of the rules file.

    [notify.earthranger]
    url = "https://reserve.pamdas.org/api/v1.0"   # the site's API root
    token = "..."                                  # a bearer token of an EarthRanger service account
    provider_key = "tembo"                         # the source provider of the collars' observations
    [notify.webhook]
    url = "https://control-room.example/tembo"
    secret = "..."                                 # HMAC-SHA256 key, shared with the receiver
    [notify.smtp]
    host = "127.0.0.1"
    port = 25
    sender = "tembo@reserve.example"
    [notify.sms]
    url = "https://sms-gateway.example/send"
    token = "..."
    [[notify.routes]]
    name = "duty-officer-sms"
    channel = "sms"
    to = ["+254700000001"]
    types = ["poaching_risk", "mortality"]
    min_priority = 300
    hours = "night"            # "any", "night" or "day" (the collar's night, at the alert's place)
    timezone = "Africa/Nairobi"  # optional: the time the messages give (else the collar's own offset)

Nothing leaves the machine unless configured: a channel without its section is off, and there are no
default secrets. A route to a channel that is not configured is refused when the file is read, and so
is an SMS recipient that is not an international number (E.164; spaces, dashes, a "(0)" and a leading
00 are taken and dropped) or an e-mail recipient without its @.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from lora_bridge.errors import InvalidRequest

CHANNELS = ("earthranger", "webhook", "email", "sms")
# What a recipient of each addressed channel must look like, checked when the file is read: a duty
# officer's number typed without its country code ("0700 000 001") had been taken, and the first
# anyone heard of it was the SMS gateway refusing the poaching alert at night.
RECIPIENT_FORMS = {
    "sms": (re.compile(r"\+[1-9][0-9]{6,14}"), "an international number (E.164: + country code and number, "
                                               "no spaces, e.g. +254700000001)"),
    "email": (re.compile(r"[^@\s<>,;]+@[^@\s<>,;]+"), "an e-mail address (name@domain)"),
}
ALERT_ACTIONS = ("raised", "escalated", "acknowledged", "resolved", "auto_resolved")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EarthRangerConfig(_Strict):
    """An EarthRanger site: alerts become events, positions become sensor observations."""

    url: str
    token: SecretStr
    provider_key: str = "tembo"
    event_type_prefix: str = "tembo_"
    send_positions: bool = True
    # Fixes go as a JSON list of observations in one POST (the generic sensor API takes a list).
    observations_per_post: int = Field(default=100, ge=1, le=1000)


class WebhookConfig(_Strict):
    """A generic HTTP receiver; every body is signed with HMAC-SHA256 over timestamp + body."""

    url: str
    secret: SecretStr = Field(min_length=1)


class SmtpConfig(_Strict):
    """An SMTP relay for e-mail (the control room's own, or the reserve's)."""

    host: str
    port: int = Field(default=25, ge=1, le=65535)
    sender: str
    starttls: bool = False
    username: str | None = None
    password: SecretStr | None = None
    timeout_s: float = Field(default=10.0, gt=0)


def international_number(typed: str) -> str:
    """A phone number as written by hand in an international form ('+254 700 000 001', '+254-700-000-001',
    '+254 (0)700 000 001', '00254 700 000 001') as E.164 ('+254700000001'); what is not one (a national
    number without its country code) is returned as typed, for the settings to refuse by its own words."""
    compact = re.sub(r"[\s\-./()\u00a0]", "", typed.replace("(0)", ""))
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    return compact if RECIPIENT_FORMS["sms"][0].fullmatch(compact) else typed


# What a phone network shows as an SMS's sender when it is not an international number: an alphanumeric
# sender id of 1 to 11 ASCII letters, digits and spaces, at least one letter (Twilio's, Telnyx's documented
# rules), or a short code of 3 to 8 digits.
ALPHANUMERIC_SENDER = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}|[0-9]{3,8}")


class SmsConfig(_Strict):
    """A generic HTTP SMS gateway: POST {"to", "from", "text"} with a bearer token. `sender` is an
    alphanumeric sender id (1 to 11 letters, digits, spaces), a short code or an international number: a longer name
    ("Tembo Control Room") had been taken, and the gateway refused every alert of the night for it."""

    url: str
    token: SecretStr
    sender: str = "Tembo"

    @model_validator(mode="after")
    def _sender_a_network_shows(self) -> SmsConfig:
        number = international_number(self.sender)
        if not (ALPHANUMERIC_SENDER.fullmatch(self.sender) or number.startswith("+")):
            raise ValueError(f"sms sender {self.sender!r} is neither an alphanumeric sender id (1 to 11 letters, "
                             "digits and spaces, one letter at least), a short code (3 to 8 digits) nor an "
                             "international number (+254700000001)")
        if number != self.sender and number.startswith("+"):
            object.__setattr__(self, "sender", number)
        return self


class Route(_Strict):
    """Send alert steps of these types, at or above min_priority, in these hours, over one channel.

    SMS recipients are kept in E.164 whatever the spacing they were typed with (`international_number`),
    each once: the same duty officer typed twice in two spellings gets one message."""

    name: str
    channel: Literal["earthranger", "webhook", "email", "sms"]
    to: list[str] = Field(default_factory=list)
    types: list[str] | None = None
    min_priority: int = Field(default=0, ge=0, le=300)
    hours: Literal["any", "night", "day"] = "any"
    actions: list[str] = Field(default_factory=lambda: ["raised", "escalated"])
    escalation_only: bool = False
    # The recipients' own time zone (IANA, "Europe/Berlin"): the SMS and e-mail give the alert's time in
    # it, summer time and all. None: the collar's local time (its fixed `utc_offset_min`).
    timezone: str | None = None

    @model_validator(mode="after")
    def _timezone_known(self) -> Route:
        if self.timezone is not None:
            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"route {self.name!r}: unknown time zone {self.timezone!r} "
                                 "(an IANA name, e.g. Africa/Nairobi or Europe/Berlin)") from None
        return self

    @model_validator(mode="before")
    @classmethod
    def _numbers_in_e164(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("channel") == "sms" and isinstance(data.get("to"), list):
            numbers = [international_number(n) if isinstance(n, str) else n for n in data["to"]]
            data = {**data, "to": list(dict.fromkeys(numbers))}
        return data


class RetryConfig(_Strict):
    """How hard the outbox tries: attempts, and backoff doubling from backoff_s up to backoff_max_s."""

    max_attempts: int = Field(default=8, ge=1)
    backoff_s: float = Field(default=30.0, gt=0)
    backoff_max_s: float = Field(default=3600.0, gt=0)
    lease_s: float = Field(default=300.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)


class NotifyConfig(_Strict):
    """Every channel (all optional) and the routes over them."""

    earthranger: EarthRangerConfig | None = None
    webhook: WebhookConfig | None = None
    smtp: SmtpConfig | None = None
    sms: SmsConfig | None = None
    routes: list[Route] = Field(default_factory=list)
    retry: RetryConfig = RetryConfig()

    @model_validator(mode="after")
    def _routes_have_channels(self) -> NotifyConfig:
        configured = {
            "earthranger": self.earthranger,
            "webhook": self.webhook,
            "email": self.smtp,
            "sms": self.sms,
        }
        for route in self.routes:
            if configured[route.channel] is None:
                section = "smtp" if route.channel == "email" else route.channel
                raise ValueError(f"route {route.name!r} uses {route.channel} but [notify.{section}] is not configured")
            if route.channel in ("email", "sms") and not route.to:
                raise ValueError(f"route {route.name!r} has no recipients (to = [...])")
            for recipient in route.to if route.channel in ("email", "sms") else ():
                pattern, form = RECIPIENT_FORMS[route.channel]
                if not pattern.fullmatch(recipient):
                    raise ValueError(f"route {route.name!r}: recipient {recipient!r} is not {form}")
            unknown = set(route.actions) - set(ALERT_ACTIONS)
            if unknown:
                raise ValueError(f"route {route.name!r}: unknown actions {sorted(unknown)}; use {list(ALERT_ACTIONS)}")
        return self

    @property
    def active(self) -> bool:
        """True when anything at all is configured to leave the machine."""
        return bool(self.routes) or bool(self.earthranger and self.earthranger.send_positions)


def notify_config_of(document: dict[str, Any], path: str | Path) -> NotifyConfig:
    """NotifyConfig from the `[notify]` table of the rules file at path, already read as document."""
    try:
        return NotifyConfig(**document.get("notify", {}))
    except (ValidationError, TypeError) as error:
        raise InvalidRequest(f"notification settings in {path}: {error}") from error
