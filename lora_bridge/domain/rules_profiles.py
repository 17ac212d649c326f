"""Thresholds of every server rule, in one place: a default profile, overridden per species and per animal.

A profile is data, kept apart from the algorithms that read it (as ecoscope keeps its ImmobilityProfile
apart from its Immobility). Values come from a TOML file (`BridgeSettings.rules_path`):

    [rules.default.immobility]
    radius_m = 100
    [rules.species."Loxodonta africana".speed]
    max_speed_kmh = 25
    [rules.animals."Naserian".immobility]   # an animal's name, id or collar id
    duration_h = 8

Each default names where it comes from, so a ranger reading an alert's evidence can judge it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from collar_firmware import risk
from collar_firmware.config import DEFAULTS as COLLAR_DEFAULTS
from lora_bridge.errors import InvalidRequest


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImmobilityProfile(_Strict):
    """Still: at least `min_share` of the fixes of the last `duration_h` within `radius_m` of their centre.

    The method is the immobility alert of Wall et al. 2014 (real-time elephant monitoring, Ecological
    Applications 24(4)) in the form ecoscope gives it (radius, time, share of fixes). The values are
    the collar's own: the mortality radius of `collar_firmware.risk` and the collar's `immobility_h`
    setting; the share 0.8 is ecoscope's default profile.

    Tembo adds the collar's accelerometer: a still spell is not raised when the collar's activity
    summaries, covering at least `activity_cover_min` of the spell, show the animal active (any class
    but rest) for more than `max_active_share` of the time they cover: an animal foraging in one patch
    for half a day is alive (a carcass or a collar on the ground reports rest). 1.0 turns that off.
    """

    radius_m: float = Field(default=float(risk.MORTALITY_RADIUS_M), gt=0)
    duration_h: float = Field(default=float(COLLAR_DEFAULTS["immobility_h"]), gt=0)
    min_share: float = Field(default=0.8, gt=0, le=1)
    min_fixes: int = Field(default=4, ge=2)
    max_active_share: float = Field(default=0.25, ge=0, le=1)
    activity_cover_min: float = Field(default=0.25, ge=0, le=1)


class SpeedProfile(_Strict):
    """A fix reached faster than `max_speed_kmh` from the last plausible one is a GPS outlier.

    20 km/h between fixes: elephants walk 2-6 km/h and charge at up to ~40 km/h for seconds only,
    so an hour's average above 20 km/h is a bad fix, not the animal.
    """

    max_speed_kmh: float = Field(default=20.0, gt=0)


class FenceProfile(_Strict):
    """A fence crossing is believed once a fix confirms it, the way trackers guard against a bad fix
    (several positions outside before an exit alert): `confirm_fixes` plausible fixes in a row on the
    far side of the line, or one fix at least `confirm_distance_m` past it.

    A collar's GNSS gives a bad fix now and then (multipath, few satellites: tens to a few hundred
    metres off; the twin's error model draws them up to 600 m), fast enough to pass the speed test
    while the collar tracks at 2-minute fixes. 800 m is past that; a second fix costs one fix
    interval (2 minutes once the collar tracks after its own crossing).
    """

    confirm_fixes: int = Field(default=2, ge=1)
    confirm_distance_m: float = Field(default=800.0, gt=0)
    # One visit, one alert: an animal back over the line for less than this (grazing along a field's edge,
    # a fix's error) is still on the visit its alert was about (rules_visits).
    rejoin_min: float = Field(default=10.0, ge=0)


class OfflineProfile(_Strict):
    """Offline after `missed_reports` of the collar's own status intervals (its reported
    `status_interval_s`, else the collar's default) plus `grace_min` for late delivery."""

    missed_reports: float = Field(default=2.0, gt=0)
    grace_min: float = Field(default=15.0, ge=0)


class BatteryProfile(_Strict):
    """Battery trend: a least-squares line through the readings of the last `window_days`; a forecast
    alert when it reaches the collar's critical level within `warn_days`. The low-battery level is
    the collar's (`low_battery_mv`), never a second number."""

    window_days: float = Field(default=14.0, gt=0)
    min_readings: int = Field(default=6, ge=2)
    min_span_days: float = Field(default=2.0, gt=0)
    warn_days: float = Field(default=30.0, gt=0)
    recover_mv: int = Field(default=int(risk.BATTERY_HYSTERESIS_MV), ge=0)


class CorroborationProfile(_Strict):
    """How a collar's poaching-risk or mortality alert is weighed against what the bridge knows.

    Each factor adds its weight (log-odds) for or against; the confidence is the logistic of the sum
    from a prior. Below `hold_below` the alert is kept but held at priority 0 (no one is woken)."""

    prior: float = Field(default=0.5, gt=0, lt=1)
    window_min: float = Field(default=120.0, gt=0)
    herd_radius_m: float = Field(default=2000.0, gt=0)
    flight_speed_kmh: float = Field(default=6.0, gt=0)
    run_share_pct: float = Field(default=20.0, ge=0, le=100)
    still_share_pct: float = Field(default=90.0, ge=0, le=100)
    hold_below: float = Field(default=0.35, ge=0, le=1)
    weight_positions: float = 1.5
    weight_behaviour: float = 1.0
    weight_herd: float = 1.0
    weight_night: float = 0.5


class EscalationProfile(_Strict):
    """Escalate a `new` alert nobody acknowledged after `after_min[priority]` minutes, up to `max_level` times."""

    after_min: dict[int, float] = Field(default_factory=lambda: {300: 10.0, 200: 60.0, 100: 240.0})
    max_level: int = Field(default=2, ge=0)


class RuleProfile(_Strict):
    """Every server rule's thresholds for one animal."""

    immobility: ImmobilityProfile = ImmobilityProfile()
    speed: SpeedProfile = SpeedProfile()
    fences: FenceProfile = FenceProfile()
    offline: OfflineProfile = OfflineProfile()
    battery: BatteryProfile = BatteryProfile()
    corroboration: CorroborationProfile = CorroborationProfile()
    escalation: EscalationProfile = EscalationProfile()


class RulesConfig(_Strict):
    """The default profile and the overrides per species and per animal (partial tables)."""

    default: RuleProfile = RuleProfile()
    species: dict[str, dict[str, Any]] = Field(default_factory=dict)
    animals: dict[str, dict[str, Any]] = Field(default_factory=dict)

    def profile_for(self, species: str | None = None, *names: str | None) -> RuleProfile:
        """The profile of an animal: default, then its species' overrides, then its own (by any of names)."""
        merged = self.default.model_dump()
        if species and species in self.species:
            merged = _deep_merge(merged, self.species[species])
        for name in names:
            if name and name in self.animals:
                merged = _deep_merge(merged, self.animals[name])
                break
        return _cached_profile(_freeze(merged))


def rules_config_of(document: dict[str, Any], path: str | Path) -> RulesConfig:
    """RulesConfig from the `[rules]` table of the rules file at path, already read as document."""
    try:
        config = RulesConfig(**document.get("rules", {}))
        for table in [*config.species.values(), *config.animals.values()]:
            RuleProfile(**_deep_merge(config.default.model_dump(), table))  # check overrides now, not at 3 am
    except (ValidationError, TypeError) as error:
        raise InvalidRequest(f"rules file {path}: {error}") from error
    return config


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "after_min":
            out[key] = _deep_merge(out[key], value)
        elif key == "after_min" and isinstance(value, dict):
            out[key] = {int(k): float(v) for k, v in value.items()}
        else:
            out[key] = value
    return out


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple) and all(isinstance(item, tuple) and len(item) == 2 for item in value):
        return {k: _thaw(v) for k, v in value}
    return value


@lru_cache(maxsize=256)
def _cached_profile(frozen: Any) -> RuleProfile:
    return RuleProfile(**_thaw(frozen))
