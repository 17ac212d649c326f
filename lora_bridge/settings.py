"""The bridge's one typed settings object.

Values come, strongest first, from keyword arguments, `TEMBO_*` environment variables, an optional
TOML file (`TEMBO_CONFIG` or the `toml_path` argument of `load_settings`), then the defaults below,
which run the embedded mode out of the box: a SQLite file under `./var/`, the webhook on
127.0.0.1:8000, no network-server downlinks.

No secret has a default that silently works: the webhook refuses to start without
TEMBO_WEBHOOK_SECRET, or with one shorter than 16 characters (see `check_webhook_secret`), unless TEMBO_ALLOW_DEMO_SECRET=1 opts in to
the well-known demo secret for a local demo, which it then warns about loudly at every start.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings import SettingsError as EnvironmentParseError
from sqlalchemy.engine import make_url

from collar_firmware.config import DEFAULTS as COLLAR_DEFAULTS

DEFAULT_DATABASE_URL = "sqlite:///var/tembo.db"
# The webhook secret of a local demo, only with allow_demo_secret; anyone can read it here.
DEMO_WEBHOOK_SECRET = "tembo-demo-secret"
# Secrets that shipped as defaults once, or are published here: never accepted without the opt-in.
PUBLISHED_SECRETS = frozenset({DEMO_WEBHOOK_SECRET, "tembo-dev-secret"})
MIN_SECRET_CHARS = 16
MULTICAST_ADDR_PATTERN = "^[0-9a-fA-F]{8}$"  # a TS005 McAddr: 8 hex digits, as the bridge and `tembo keys multicast` read it
# The Receive Maximum an MQTT worker asks of the broker (the messages sent to it before the first is
# acknowledged; Mosquitto sends on as PUBACKs leave). A worker fed by a bridge hands every message that
# came while its previous batch was written in as one batch of at most `ingest_max_batch`; a worker fed
# by another ingest callable calls it from this many threads (`adapters.mqtt_hand_in`; `tembo bench
# bridge`: `mqtt_one_worker_by_threads`; docs/bridge-scale.md).
MQTT_THREADS = 128
# How long a connection to a PostgreSQL store may take to open before the store counts as unavailable
# (libpq's connect_timeout: whole seconds, 2 at least). Shorter than the webhook's answer time, so a
# host that drops packets is answered 503 and not left to hang past the network server's 10 s.
DATABASE_CONNECT_TIMEOUT_S = 5

log = logging.getLogger(__name__)


class InsecureSettings(ValueError):
    """A setting that would leave Tembo open (an empty or published webhook secret, ...)."""


class InvalidSettings(ValueError):
    """Settings Tembo cannot use: a settings file that does not read, a name it does not know, a value of
    the wrong type or out of range. The message names each setting and where it came from (the
    command line, a TEMBO_* variable, the TOML file), never a secret's value."""


# Settings whose values may hold a password or key: an error about one never shows the value.
SECRET_SETTINGS = frozenset({
    "webhook_secret", "network_server_api_key", "mqtt_password", "database_url", "mqtt_url", "mqtt_more_urls",
})


class BridgeSettings(BaseSettings):
    """Configuration of one Tembo bridge process (webhook, store, rules, downlinks)."""

    model_config = SettingsConfigDict(env_prefix="TEMBO_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    sqlite_busy_timeout_ms: int = Field(default=10_000, ge=0)
    # FULL: every commit fsyncs, so a 2xx answer means the body survives a crash of the machine.
    sqlite_synchronous: str = Field(default="FULL", pattern="^(?i:off|normal|full|extra)$")
    # PostgreSQL: a connection not opened in this many seconds fails (libpq counts whole seconds, 2 at least).
    database_connect_timeout_s: int = Field(default=DATABASE_CONNECT_TIMEOUT_S, ge=2, le=60)

    webhook_secret: SecretStr | None = None
    allow_demo_secret: bool = False  # local demo only: accept the published DEMO_WEBHOOK_SECRET
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: str = "info"
    session_hours: float = Field(default=12.0, gt=0)  # how long a dashboard sign-in lasts

    network_server_url: str | None = None
    network_server_api_key: SecretStr | None = None
    tts_webhook_id: str | None = None
    # Short: the outbox worker, not a webhook request, waits for the network server.
    downlink_timeout_s: float = Field(default=3.0, gt=0)
    # The Things Network's fair-use policy: about 10 downlinks per device per day.
    downlinks_per_device_per_day: int = Field(default=10, ge=1)
    # A pushed command or setting with no word of its delivery (no port-31 ack from the collar, nothing
    # from the network server but queued / sent) is `unconfirmed` after this many uplinks of the collar
    # since its push, or after one uplink and downlink_unconfirmed_after_s (domain/downlinks.mark_unconfirmed).
    downlink_unconfirmed_after_uplinks: int = Field(default=3, ge=1)
    downlink_unconfirmed_after_s: float = Field(default=86400.0, gt=0)
    # A push holds its downlink this long; a bridge that dies mid-push leaves it to expire.
    downlink_lease_s: float = Field(default=60.0, gt=0)
    # Push downlinks from a background thread started on first need (False: only flush_downlinks()).
    outbox_worker: bool = True
    # The outbox worker's pace when idle (it wakes at once when ingest queues a downlink).
    outbox_every_s: float = Field(default=30.0, gt=0)
    # Over-the-air delivery: the multicast group's device id at the network server (a TTS multicast end
    # device the technician creates); None: campaigns are tracked but no image is delivered.
    fuota_multicast_group: str | None = None
    # TS005 group set-up by the bridge: the collars' root keys (GenAppKey / AppKey per DevEUI and the
    # bridge's multicast root; a TOML file the technician provisions, mode 0600, never in the store)
    # and the McAddr of the group each delivery sets up. Unset: the collars' factory group is used.
    # On ChirpStack with no TEMBO_FUOTA_MULTICAST_GROUP the bridge creates the group itself.
    collar_keys_file: str | None = None
    # The release keys the collars hold: the key file (`collar_firmware/release_keys.bin` records) of the
    # firmware they run, which every campaign image's key id and signature are checked against before
    # anything is sent. None: the file of the firmware built from this checkout. A fleet handed over to
    # another key file (`tembo release firmware --ship-keys`) points this at that file.
    release_keys_file: str | None = None
    fuota_multicast_addr: str | None = Field(default=None, pattern=MULTICAST_ADDR_PATTERN)
    # A collar's downlink loss before any delivery measured it (sizes the first parity).
    fuota_prior_loss: float = Field(default=0.1, ge=0, lt=0.9)
    # A collar that answered its set-up and then says nothing of the update fails ("no answer") this many
    # times the delivery's planned time (set-up lead + class C window) after its set-up, once nothing is
    # still queued for it: silent, it would stay "sending" and, as a canary, hold the fleet back. A collar
    # heard but without a result fails ("no result in ...") this many planned times after its set-up (a
    # week more when served by unicast). Paused time counts toward neither (docs/updates.md).
    fuota_no_answer_factor: float = Field(default=3.0, ge=1)
    # A delivery asks a collar whose TS004 fragmentation version it does not know (PackageVersionReq, port 201;
    # 200 too when it sets up its own group) before its set-up, and waits this many seconds of the campaign's
    # running time for the answer; silent, the collar is set up as its firmware says. 0: never asked.
    fuota_version_wait_s: float = Field(default=1800.0, ge=0)
    # A collar a campaign held at a gate (battery, link, spreading factor) this many days of its running
    # time is skipped with its gate, and in a campaign the bridge only tracks (no delivery) a collar
    # sending that long without a result fails: neither keeps a campaign open for ever (docs/updates.md).
    campaign_collar_days: float = Field(default=14.0, gt=0)
    # A collar still repeating an alert after its ack was pushed this long ago gets the ack again.
    ack_resend_after_s: float = Field(default=3600.0, gt=0)
    # A network server's reception time further ahead of our clock than this is not believed: the
    # uplink is dated at its arrival (the original kept). The live demo's simulated clock runs ahead.
    max_clock_ahead_s: float = Field(default=300.0, gt=0)
    # Bodies whose processing met a store error are retried by the timer after this many seconds.
    retry_pending_after_s: float = Field(default=5.0, ge=0)

    rules_every_s: float = Field(default=300.0, gt=0)
    notify_every_s: float = Field(default=5.0, gt=0)
    # Rule profiles and notification routes (TOML, tables [rules] and [notify]); None: the defaults,
    # and no notification goes out of the machine.
    rules_path: str | None = None
    alert_evidence_positions: int = Field(default=5, ge=0)

    # The researchers' model registry (`tembo models`): class names of each model version. Same
    # default as models.registry.DEFAULT_REGISTRY and the same variable, TEMBO_MODEL_REGISTRY.
    model_registry: str = "var/models"

    # Raw bodies of applied uplinks are kept this long, then compacted (lora_bridge.store.retention).
    raw_retention_days: float = Field(default=30.0, gt=0)
    # Dead letters replayed after a fix are deleted this long after their replay; a letter still waiting is
    # never deleted, but beyond this budget of its bodies' bytes the largest are trimmed to their first bytes,
    # the fact written in the letter's reason (lora_bridge.store.retention, `tembo bridge compact`).
    dead_letter_retention_days: float = Field(default=90.0, gt=0)
    dead_letter_body_budget_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    # Audit lines (who saw which positions, sign-ins, account changes) are kept this long, then deleted.
    audit_retention_days: float = Field(default=400.0, gt=0)

    # MQTT ingest (lora_bridge.adapters.mqtt): off unless a broker URL is given.
    mqtt_url: str | None = None
    # Further MQTT logins, one URL each with its own credentials: The Things Stack's MQTT server takes
    # one application per login (username `{app}@{tenant}`, the application's API key), so a bridge
    # that takes several applications by MQTT holds one login per application.
    mqtt_more_urls: list[str] = Field(default_factory=list)
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_topics: list[str] = Field(default_factory=lambda: ["v3/+/devices/+/#", "application/+/device/+/event/+"])
    mqtt_share_group: str | None = None
    mqtt_client_id: str | None = None
    # Workers of one share group split the collars between them (lora_bridge.collar_shares); without it
    # two workers wait on each other's collar rows and are no faster than one (docs/bridge-scale.md).
    mqtt_collar_shares: bool = True
    # The messages in flight the broker may send a worker (its Receive Maximum; `MQTT_THREADS`).
    mqtt_threads: int = Field(default=MQTT_THREADS, ge=1, le=1024)
    # At most this many bodies kept and applied in one transaction (lora_bridge.group_commit).
    ingest_max_batch: int = Field(default=256, ge=1, le=10_000)
    # When the webhook answers: "applied" (decoded, stored, rules run: the answer says what happened)
    # or "durable" (202 once the raw body is committed; decoding and rules follow in batches,
    # lora_bridge.durable_intake). Either way 2xx only once the body is durable.
    webhook_ack: Literal["applied", "durable"] = "applied"
    # How long a webhook body waits for the store's write lock at most, when another program holds it
    # (a backup), before it is answered 503: The Things Stack ends a request after 10 s (docs:
    # integrations/webhooks/retries) and never sees an answer that comes later. "durable": how long a body
    # waits behind a full backlog of kept bodies the store has not applied (its journal is the bridge's).
    webhook_answer_within_s: float = Field(default=8.0, gt=0, le=60)
    # Where the durable intake applies what it kept (a SQLite store's journal, a PostgreSQL store's raw
    # rows): "thread" (a thread of the webhook's process), "process" (a process of its own that the
    # webhook's process starts and supervises, so applying does not share the answering process's GIL;
    # lora_bridge.intake_applier), or "auto":
    # a process when this process may run on two cores or more, else a thread (docs/bridge-scale.md).
    intake_applier: Literal["auto", "thread", "process"] = "auto"

    @field_validator("mqtt_url")
    @classmethod
    def _broker_url_reads(cls, url: str | None) -> str | None:
        if url:
            check_broker_url(url)
        return url

    @field_validator("mqtt_more_urls")
    @classmethod
    def _broker_urls_read(cls, urls: list[str]) -> list[str]:
        for url in urls:
            check_broker_url(url)
        return urls

    @field_validator("network_server_url")
    @classmethod
    def _network_server_url_reads(cls, url: str | None) -> str | None:
        # Without a scheme every downlink push had failed later ("unreachable: UnsupportedProtocol"),
        # and no collar got its alert's ack.
        if url:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                shown = password_masked(url)
                raise ValueError(f"the network server's URL is https://HOST (The Things Stack: "
                                 f"https://eu1.cloud.thethings.network), not {shown!r}")
        return url

    @field_validator("mqtt_topics")
    @classmethod
    def _topic_filters_read(cls, topics: list[str]) -> list[str]:
        # MQTT 5 (4.7.1): "#" alone and last, "+" alone in its level. paho refuses any other filter inside
        # its network thread: the worker had never subscribed, and was reported as a broker not reached.
        for topic in topics:
            levels = topic.split("/")
            bad = (not topic or "\x00" in topic or any(("#" in level and (level != "#" or i != len(levels) - 1))
                                                        or ("+" in level and level != "+")
                                                        for i, level in enumerate(levels)))
            if bad:
                raise ValueError(f"{topic!r} is no MQTT topic filter: '#' stands alone as the last level, '+' "
                                 "alone in a level (e.g. v3/+/devices/+/up)")
        if not topics:
            raise ValueError("no topic filter: the worker would receive nothing")
        return topics

    @field_validator("mqtt_share_group")
    @classmethod
    def _share_group_is_a_share_name(cls, group: str | None) -> str | None:
        # MQTT 5 (4.8.2): a ShareName is at least one character and holds no "/", "+" or "#"; the broker
        # refuses the subscription otherwise, and the worker would wait for it in vain.
        if group is not None and (not group or any(c in group for c in "/+#")):
            raise ValueError("an MQTT share group is a name without '/', '+' or '#'")
        return group

    @model_validator(mode="after")
    def _store_answers_before_the_webhook_is_due(self) -> BridgeSettings:
        # A connection that may take longer to open than the webhook may take to answer leaves the network
        # server without its 503: it ends the request (The Things Stack: 10 s) and its retries pile up.
        # A SQLite store opens no connection to wait for: its waits are the busy timeout's, bounded apart.
        if _names_postgresql(self.database_url) and self.database_connect_timeout_s >= self.webhook_answer_within_s:
            raise ValueError(f"database_connect_timeout_s ({self.database_connect_timeout_s} s) must be shorter "
                             f"than webhook_answer_within_s ({self.webhook_answer_within_s:g} s), or the network "
                             "server gives up on a store that does not answer before the webhook says 503")
        return self

    def applier_in_process(self) -> bool:
        """Whether the durable intake applies in a process of its own."""
        if self.intake_applier == "auto":
            return usable_cores() >= 2
        return self.intake_applier == "process"

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self._masked_items())
        return f"BridgeSettings({shown})"

    __str__ = __repr__

    def _masked_items(self) -> list[tuple[str, Any]]:
        items: list[tuple[str, Any]] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name == "database_url":
                value = masked_database_url(value)
            elif name == "mqtt_url":
                value = masked_mqtt_url(value)
            elif name == "mqtt_more_urls":
                value = [masked_mqtt_url(url) for url in value]
            items.append((name, value))
        return items

    def webhook_secret_bytes(self) -> bytes:
        """The webhook secret in force as bytes, for a constant-time compare: the configured one,
        else the demo secret when allowed, else b'' (which the webhook never accepts)."""
        configured = self.webhook_secret.get_secret_value() if self.webhook_secret is not None else ""
        if not configured and self.allow_demo_secret:
            return DEMO_WEBHOOK_SECRET.encode()
        return configured.encode()

    @property
    def low_battery_mv(self) -> int:
        """The collar firmware's default low-battery level (one threshold: the collar's)."""
        return int(COLLAR_DEFAULTS["low_battery_mv"])

    @property
    def downlinks_configured(self) -> bool:
        """True when a network server is configured to receive downlink pushes."""
        return bool(self.network_server_url)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)


def _names_postgresql(database_url: str) -> bool:
    """Whether database_url reads as a PostgreSQL store's (one that does not read is refused when opened)."""
    try:
        return make_url(database_url).get_backend_name().startswith("postgres")
    except Exception:  # noqa: BLE001 - any URL that does not read
        return False


def check_webhook_secret(settings: BridgeSettings) -> None:
    """Refuse (InsecureSettings) a webhook secret that is empty, missing, published (unless the demo
    opt-in is set), shorter than MIN_SECRET_CHARS, or that no HTTP header can carry (surrounding
    spaces, control characters); warn loudly while the demo secret is in use."""
    secret = settings.webhook_secret_bytes().decode()
    how_to = (
        "set TEMBO_WEBHOOK_SECRET to a long random string (python -c 'import secrets; "
        "print(secrets.token_urlsafe(32))') and the same value as the X-Tembo-Secret header of the "
        "network server's webhook; for a local demo only, TEMBO_ALLOW_DEMO_SECRET=1"
    )
    if not secret.strip():
        raise InsecureSettings(f"no webhook secret: the webhook would accept nobody or anybody; {how_to}")
    if secret in PUBLISHED_SECRETS:
        if not settings.allow_demo_secret:
            raise InsecureSettings(f"the webhook secret {secret!r} is published in Tembo's source; {how_to}")
        for line in (
            "*" * 78,
            f"INSECURE: the webhook accepts uplinks with the published demo secret {secret!r}.",
            "Anyone who can reach this port can inject positions and alerts. Local demo only:",
            "set TEMBO_WEBHOOK_SECRET and unset TEMBO_ALLOW_DEMO_SECRET before real collars.",
            "*" * 78,
        ):
            log.warning(line)
        return
    if secret != secret.strip() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in secret):
        # An HTTP header carries neither (a server strips surrounding spaces): the webhook had started
        # and answered every uplink 401, a secret read from a Windows-edited file ending in "\r".
        raise InsecureSettings("the webhook secret begins or ends with a space, or holds a control character "
                               "(a line end from the file it came from?), which no X-Tembo-Secret header can "
                               f"carry: every uplink would be refused; {how_to}")
    if len(secret) < MIN_SECRET_CHARS:
        # It had only been warned of: a secret of a few characters is guessed in as many requests, and
        # whoever guesses it injects positions and alerts.
        raise InsecureSettings(f"the webhook secret has {len(secret)} characters, fewer than {MIN_SECRET_CHARS}: "
                               f"anyone could guess it; {how_to}")


def password_masked(url: str) -> str:
    """url with the password of its user part replaced by ***, read as text: it need not parse as a
    URL (a mistyped one is shown back to the operator in the error that refuses it). The password runs
    to the last '@': one holding '@', '/' or '#' (not percent-encoded) had been shown from that
    character on."""
    return re.sub(r"(//[^/:@]*):.*@", r"\1:***@", url)


def masked_database_url(url: str) -> str:
    """The database URL with any password replaced by ***."""
    try:
        parsed = make_url(url)
    except Exception:
        return "<unparseable database url>"
    if "@" in (parsed.host or ""):  # a password with an '@' not percent-encoded: its end read as the host
        return password_masked(url)
    return parsed.render_as_string(hide_password=True)


def masked_mqtt_url(url: str | None) -> str | None:
    """The MQTT broker URL with any password replaced by ***."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def check_broker_url(url: str) -> None:
    """ValueError unless url reads as an MQTT broker: mqtt:// or mqtts:// (tcp://, ssl://), a host, a
    numeric port if any. The message shows the URL with its password masked."""
    parts = urlsplit(url)
    shown = password_masked(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(f"an MQTT broker URL starts with mqtt:// or mqtts://, not {parts.scheme or 'nothing'}:// "
                         f"({shown})")
    if not parts.hostname:
        raise ValueError(f"the MQTT broker URL names no host ({shown})")
    try:
        parts.port  # noqa: B018 - urlsplit reads the port only when asked
    except ValueError:
        raise ValueError(f"the MQTT broker URL's port is not a number 0..65535 ({shown})") from None


def load_settings(toml_path: str | Path | None = None, **overrides: Any) -> BridgeSettings:
    """Settings from overrides, TEMBO_* environment, an optional TOML file, then defaults.

    The TOML file may hold the keys at top level or under a `[bridge]` table. InvalidSettings when
    the file does not read, names a setting that does not exist, or a value does not fit its setting.
    """
    path = toml_path or os.environ.get("TEMBO_CONFIG")
    _refuse_mistyped_variables()
    file_values = _read_settings_file(Path(path)) if path else {}
    from_env = {name for name in BridgeSettings.model_fields if f"TEMBO_{name.upper()}" in os.environ}
    # Environment beats the file: drop file keys that the environment sets.
    values = {key: value for key, value in file_values.items() if key not in from_env}
    values.update(overrides)
    try:
        return BridgeSettings(**values)
    except ValidationError as error:
        problems = [_problem(item, path, from_env, overrides) for item in error.errors(include_url=False)]
        raise InvalidSettings("; ".join(problems)) from None
    except EnvironmentParseError as error:  # a list setting whose variable is not JSON
        named = re.search(r'field "(\w+)"', str(error))
        variable = f"TEMBO_{named.group(1).upper()}" if named else "a TEMBO_* variable"
        raise InvalidSettings(f"{variable} does not read: a list setting is a JSON list, "
                              'e.g. ["mqtt://host:1883"]') from None


# TEMBO_* variables that are not bridge settings: other parts of Tembo read them.
OTHER_VARIABLES = frozenset({
    "TEMBO_CONFIG", "TEMBO_BENCH_CACHE", "TEMBO_DASHBOARD_CLOCK", "TEMBO_DASHBOARD_REFRESH_S", "TEMBO_DASHBOARD_ROLE",
    "TEMBO_WASM_CACHE",
})


def _refuse_mistyped_variables() -> None:
    """InvalidSettings for a TEMBO_* variable that is no setting but nearly names one: TEMBO_DATABASE for
    TEMBO_DATABASE_URL had left the bridge on the embedded SQLite store without a word."""
    known = {f"TEMBO_{name.upper()}" for name in BridgeSettings.model_fields}
    mistyped = []
    for variable in sorted(os.environ):
        if not variable.startswith("TEMBO_") or variable in known or variable in OTHER_VARIABLES:
            continue
        near = difflib.get_close_matches(variable, known, n=1, cutoff=0.8)
        if near:
            mistyped.append(f"{variable} is no setting (did you mean {near[0]}?)")
    if mistyped:
        raise InvalidSettings("; ".join(mistyped))


def _read_settings_file(path: Path) -> dict[str, Any]:
    """The bridge's settings in the TOML file at path: its `[bridge]` table, else its top level."""
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except OSError as error:
        raise InvalidSettings(f"the settings file {path} (TEMBO_CONFIG) cannot be read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise InvalidSettings(f"the settings file {path} is not TOML: {error}") from None
    known = BridgeSettings.model_fields
    if "bridge" in document:
        if not isinstance(document["bridge"], dict):
            raise InvalidSettings(f"{path}: 'bridge' is a table of settings ([bridge]), not a value")
        outside = sorted(key for key in document if key in known)
        if outside:  # read from [bridge] only: these had been ignored without a word
            raise InvalidSettings(f"{path}: {', '.join(outside)} outside the [bridge] table, which holds the "
                                  "settings when the file has one: move them into it")
        values = dict(document["bridge"])
    else:
        # Other tables ([rules], [notify] when TEMBO_RULES_PATH names the same file) are not the bridge's
        # settings: no setting is a table.
        values = {key: value for key, value in document.items() if key in known or not isinstance(value, dict)}
    unknown = [key for key in values if key not in known]
    if unknown:
        raise InvalidSettings(f"{path}: " + "; ".join(_unknown_setting(key) for key in unknown))
    return values


def _unknown_setting(name: str) -> str:
    """What to tell of a setting name that does not exist, with the nearest one that does."""
    near = difflib.get_close_matches(name.lower(), BridgeSettings.model_fields, n=1)
    return f"unknown setting {name!r}" + (f" (did you mean {near[0]!r}?)" if near else "")


def _problem(item: Any, path: str | Path | None, from_env: set[str], overrides: dict[str, Any]) -> str:
    """One validation error as an operator reads it: the setting, where its value came from, what is
    wrong, and the value unless it may hold a secret."""
    name = str(item["loc"][0]) if item["loc"] else "settings"
    if name in overrides:
        source = "given on the command line"
    elif name in from_env:
        source = f"TEMBO_{name.upper()}"
    else:
        source = f"in {path}" if path else "default"
    shown = "" if name in SECRET_SETTINGS else f", got {item['input']!r}"
    return f"{name} ({source}): {item['msg'].removeprefix('Value error, ')}{shown}"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system tells it, a container's
    pinning included), else the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
