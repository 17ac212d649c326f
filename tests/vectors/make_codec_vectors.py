"""Write tests/vectors/codec_vectors.json: Tembo's wire-format examples, read by the Python and Node tests.

Run only when the wire format changes on purpose; the committed file is the golden record:
    .venv/bin/python tests/vectors/make_codec_vectors.py
"""

import json
from pathlib import Path

from collar_firmware import codec

NAIROBI_NP = {"lat": -1.3733, "lon": 36.8580}

EXAMPLES = [
    ("status of a resting elephant, fix 30 s old", "status", {
        "time_s": 1772323200, **NAIROBI_NP, "fix_age_s": 30, "battery_mv": 3612, "temperature_c": 24.5,
        "fw_version": "1.0.0", "model_version": 1, "uptime_h": 5, "reset_cause": "power_on",
        "behaviour": "rest", "flags": {}, "queue_depth": 0, "errors": 0}),
    ("status in tracking mode, outside the park, after a watchdog reset", "status", {
        "time_s": 1772409600, "lat": -2.65, "lon": 37.26, "fix_age_s": 65535, "battery_mv": 3301,
        "temperature_c": -3.2, "fw_version": "2.10.255", "model_version": 65535, "uptime_h": 0,
        "reset_cause": "watchdog", "behaviour": "run", "tracking": 1, "outside_park": 1,
        "queue_depth": 17, "errors": 3}),
    ("status version 2: model 0.0.2 refused as tampered", "status", {
        "time_s": 1772496000, **NAIROBI_NP, "fix_age_s": 120, "battery_mv": 3710, "temperature_c": 28.0,
        "fw_version": "1.1.0", "model_version": 1, "uptime_h": 48, "reset_cause": "software",
        "behaviour": "forage", "queue_depth": 1, "errors": 0, "update_kind": "model",
        "update_outcome": "refused", "update_version": "0.0.2", "update_reason": "tampered"}),
    ("status version 2: firmware 1.1.0 rolled back after its self-test failed", "status", {
        "time_s": 1772582400, **NAIROBI_NP, "fix_age_s": 60, "battery_mv": 3650, "temperature_c": 30.5,
        "fw_version": "1.0.0", "model_version": 1, "uptime_h": 0, "reset_cause": "software",
        "behaviour": "rest", "queue_depth": 0, "errors": 1, "update_kind": "firmware",
        "update_outcome": "rolled_back", "update_version": "1.1.0", "update_reason": "self_test_failed"}),
    ("activity summary of a quarter hour, four classes", "activity", {
        "time_s": 1772323200, "interval_min": 15, "model_version": 1, "vedba_mean_mg": 42,
        "vedba_max_mg": 611, "shares": [10.5, 60.0, 29.5, 0.0]}),
    ("activity summary with no class shares", "activity", {
        "time_s": 1772323200, "interval_min": 60, "model_version": 2, "vedba_mean_mg": 0,
        "vedba_max_mg": 0, "shares": []}),
    ("five hourly positions in one uplink", "positions", {
        "time_s": 1772323200, "fixes": [
            {"dt_s": 0, "lat": -1.3733, "lon": 36.858},
            {"dt_s": 3600, "lat": -1.3741, "lon": 36.8599},
            {"dt_s": 7200, "lat": -1.3802, "lon": 36.8622},
            {"dt_s": 10800, "lat": -1.3811, "lon": 36.8631},
            {"dt_s": 14400, "lat": -1.3815, "lon": 36.8640}]}),
    ("mortality alert, seq 3", "alert", {
        "alert_type": "mortality", "seq": 3, "time_s": 1772323200, **NAIROBI_NP}),
    ("poaching risk alert at the southern boundary, seq 7", "alert", {
        "alert_type": "poaching_risk", "seq": 7, "time_s": 1772337000, "lat": -89.5, "lon": -179.9}),
    ("settings report", "settings", {"gnss_interval_s": 3600, "summary_interval_s": 900, "accel_rate_hz": 25}),
    ("command acknowledged with an error", "ack", {"time_s": 1772323200, "on_port": 3, "cmd": 99,
                                                    "result": "unknown_setting"}),
    ("update refused: a firmware delta built against a version the collar does not run", "ack", {
        "time_s": 1772323200, "on_port": 201, "cmd": 8, "result": "wrong_base"}),
    ("downlink: acknowledge mortality alert seq 3", "ack_alert", {"alert_type": "mortality", "seq": 3}),
    ("downlink: track at high rate for 90 minutes", "tracking", {"minutes": 90}),
    ("downlink: send status now", "request_status", {}),
    ("downlink: report settings", "request_settings", {}),
    ("downlink: last part of farmland fence 2, points 7..9", "fence", {
        "fence_id": 2, "kind": "farmland", "last": 1, "first_index": 7, "points": [
            {"lat": 0.5012, "lon": 37.4401}, {"lat": 0.5099, "lon": 37.4505}, {"lat": 0.4987, "lon": 37.4523}]}),
]

ERRORS = [
    ("empty status payload", 1, ""),
    ("status of an unknown version", 1, "03" + "00" * 33),
    ("status version 2 without its update fields", 1, "02" + "00" * 28),
    ("truncated alert", 10, "2100e80f69"),
    ("alert one byte too long", 10, "23" + "00" * 11),
    ("unknown port", 99, "01"),
    ("positions with a partial fix", 4, "01" + "00" * 4 + "00" * 5),
    ("positions with six fixes", 4, "01" + "00" * 4 + "00" * 48),
    ("settings with an unknown id", 3, "630100"),
    ("settings with a wrong length", 3, "01020010"),
    ("settings value out of range", 3, "040101"),
    ("settings record cut short", 3, "0104100e"),
    ("unknown command", 32, "7f"),
]


def build() -> dict:
    """Return the vectors document."""
    vectors = []
    for description, name, values in EXAMPLES:
        payload = codec.encode(name, values)
        port = codec.port_of(name)
        vectors.append({"description": description, "message": name, "port": port,
                        "direction": codec.message(name)[3], "hex": payload.hex(),
                        "expected": codec.decode(port, payload)})
    errors = [{"description": d, "port": p, "hex": h} for d, p, h in ERRORS]
    return {"comment": "Tembo wire-format examples; generated by make_codec_vectors.py, golden once committed.",
            "vectors": vectors, "errors": errors}


if __name__ == "__main__":
    out = Path(__file__).with_name("codec_vectors.json")
    out.write_text(json.dumps(build(), indent=1) + "\n")
    print(out)
