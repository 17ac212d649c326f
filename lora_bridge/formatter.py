"""Generate Tembo's JavaScript payload formatter from the codec table.

The Things Stack (v3 "custom JavaScript formatter") and ChirpStack v4 (codec "JavaScript functions")
both call `decodeUplink(input)` with `input.bytes` and `input.fPort`, and `encodeDownlink(input)` with
`input.data`. The generated file embeds the codec table as data and interprets it with the same rules
as `collar_firmware/codec.py`, so there is one source of truth and no hand-kept copy. Decode errors are
returned as values (`{errors: [...]}`), never thrown.

    python -m lora_bridge.formatter > formatters/tembo-formatter.js
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from collar_firmware import codec

FORMATTER_PATH = Path(__file__).resolve().parent.parent / "formatters" / "tembo-formatter.js"

_ENGINE = r"""
var SIZES = {u8: 1, u16: 2, u24: 3, u32: 4, i8: 1, i16: 2, i24: 3, i32: 4, lat: 3, lon: 3, enumeration: 1, ver: 3};
var SIGNED = {i8: 1, i16: 1, i24: 1, i32: 1, lat: 1, lon: 1};

function CodecError(message) { this.message = message; }

function kindOf(field) { return field[1] === "enum" ? "enumeration" : field[1]; }

function fieldSize(field) {
  var kind = kindOf(field), n = 0, i;
  if (kind === "bits") { for (i = 0; i < field[2].length; i++) n += field[2][i][1]; return n / 8; }
  if (kind === "list") { for (i = 0; i < field[2][1].length; i++) n += fieldSize(field[2][1][i]); return n; }
  return SIZES[kind];
}

function getInt(bytes, pos, size, signed) {
  var raw = 0, i;
  for (i = size - 1; i >= 0; i--) raw = raw * 256 + bytes[pos + i];
  var half = Math.pow(2, 8 * size - 1);
  if (signed && raw >= half) raw -= 2 * half;
  return raw;
}

function putInt(out, size, signed, raw, name) {
  var lo = signed ? -Math.pow(2, 8 * size - 1) : 0;
  var hi = signed ? Math.pow(2, 8 * size - 1) - 1 : Math.pow(2, 8 * size) - 1;
  if (raw < lo || raw > hi) throw new CodecError(name + "=" + raw + " out of range " + lo + ".." + hi);
  if (raw < 0) raw += Math.pow(2, 8 * size);
  for (var i = 0; i < size; i++) { out.push(raw % 256); raw = Math.floor(raw / 256); }
}

function enumName(names, raw) { return raw < names.length ? names[raw] : "unknown_" + raw; }

function enumRaw(names, value, name) {
  if (typeof value === "string") {
    var i = names.indexOf(value);
    if (i < 0) throw new CodecError(name + ": unknown value " + value);
    return i;
  }
  return value;
}

function roundHalfAway(x) { return x >= 0 ? Math.floor(x + 0.5) : -Math.floor(-x + 0.5); }

function decodeField(bytes, pos, field, out) {
  var name = field[0], kind = kindOf(field), arg = field[2], size, i;
  if (kind === "bits") {
    size = fieldSize(field);
    var acc = 0;
    for (i = 0; i < size; i++) acc = acc * 256 + bytes[pos + i];
    var shift = size * 8;
    for (i = 0; i < arg.length; i++) {
      shift -= arg[i][1];
      var raw = Math.floor(acc / Math.pow(2, shift)) % Math.pow(2, arg[i][1]);
      out[arg[i][0]] = arg[i][2] ? enumName(arg[i][2], raw) : raw;
    }
    return pos + size;
  }
  if (kind === "list") {
    var sub = arg[1];
    size = fieldSize(field);
    var rest = bytes.length - pos;
    if (rest % size) throw new CodecError(name + ": " + (rest % size) + " trailing bytes are not whole items of " + size);
    if (rest / size > arg[0]) throw new CodecError(name + ": " + (rest / size) + " items, at most " + arg[0]);
    var items = [];
    while (pos < bytes.length) {
      var item = {};
      for (i = 0; i < sub.length; i++) pos = decodeField(bytes, pos, sub[i], item);
      items.push(sub.length === 1 ? item[sub[0][0]] : item);
    }
    out[name] = items;
    return pos;
  }
  size = SIZES[kind];
  var v = getInt(bytes, pos, size, !!SIGNED[kind]);
  if (kind === "enumeration") v = enumName(arg, v);
  else if (kind === "ver") v = ((v >> 16) & 255) + "." + ((v >> 8) & 255) + "." + (v & 255);
  else if (kind === "lat") v = v * 90 / 8388608;
  else if (kind === "lon") v = v * 180 / 8388608;
  else if (arg) v = v / arg;
  out[name] = v;
  return pos + size;
}

function encodeField(out, field, values) {
  var name = field[0], kind = kindOf(field), arg = field[2], raw, i;
  if (kind === "bits") {
    var acc = 0, width = 0;
    for (i = 0; i < arg.length; i++) {
      var b = arg[i], bv = values[b[0]] === undefined ? 0 : values[b[0]];
      raw = b[2] ? enumRaw(b[2], bv, b[0]) : bv;
      if (raw < 0 || raw >= Math.pow(2, b[1])) throw new CodecError(b[0] + "=" + raw + " does not fit " + b[1] + " bits");
      acc = acc * Math.pow(2, b[1]) + raw;
      width += b[1];
    }
    for (i = width / 8 - 1; i >= 0; i--) out.push(Math.floor(acc / Math.pow(2, 8 * i)) % 256);
    return;
  }
  if (kind === "list") {
    var items = values[name] || [];
    if (items.length > arg[0]) throw new CodecError(name + ": " + items.length + " items, at most " + arg[0]);
    for (i = 0; i < items.length; i++) {
      var item = items[i];
      if (arg[1].length === 1 && typeof item !== "object") { item = {}; item[arg[1][0][0]] = items[i]; }
      for (var j = 0; j < arg[1].length; j++) encodeField(out, arg[1][j], item);
    }
    return;
  }
  if (values[name] === undefined) throw new CodecError("missing field " + name);
  var v = values[name];
  if (kind === "enumeration") { raw = enumRaw(arg, v, name); kind = "u8"; }
  else if (kind === "ver") {
    var parts = String(v).split(".");
    raw = ((+parts[0]) << 16) + ((+parts[1]) << 8) + (+parts[2]);
    kind = "u24";
  }
  else if (kind === "lat") raw = Math.max(-8388608, Math.min(8388607, roundHalfAway(v * (8388608 / 90))));
  else if (kind === "lon") raw = Math.max(-8388608, Math.min(8388607, roundHalfAway(v * (8388608 / 180))));
  else if (arg) raw = roundHalfAway(v * arg);
  else raw = v;
  putInt(out, SIZES[kind], !!SIGNED[kind], raw, name);
}

function decodeSettings(bytes) {
  var out = {}, pos = 0;
  while (pos < bytes.length) {
    if (pos + 2 > bytes.length) throw new CodecError("settings: truncated record header at byte " + pos);
    var id = bytes[pos], length = bytes[pos + 1], row = null, i;
    pos += 2;
    for (i = 0; i < SETTINGS.length; i++) if (SETTINGS[i][0] === id) row = SETTINGS[i];
    if (!row) throw new CodecError("settings: unknown setting id " + id);
    var size = SIZES[row[2]];
    if (length !== size) throw new CodecError("settings: " + row[1] + " needs " + size + " bytes, got " + length);
    if (pos + length > bytes.length) throw new CodecError("settings: " + row[1] + " truncated");
    var v = getInt(bytes, pos, size, !!SIGNED[row[2]]);
    if (v < row[3] || v > row[4]) throw new CodecError("settings: " + row[1] + "=" + v + " out of range " + row[3] + ".." + row[4]);
    out[row[1]] = v;
    pos += length;
  }
  return out;
}

function encodeSettings(values) {
  var out = [];
  for (var i = 0; i < SETTINGS.length; i++) {
    var row = SETTINGS[i];
    if (values[row[1]] === undefined) continue;
    var v = values[row[1]];
    if (v < row[3] || v > row[4]) throw new CodecError(row[1] + "=" + v + " out of range " + row[3] + ".." + row[4]);
    out.push(row[0], SIZES[row[2]]);
    putInt(out, SIZES[row[2]], !!SIGNED[row[2]], v, row[1]);
  }
  return out;
}

function fixedSize(fields) {
  var n = 0;
  for (var i = 0; i < fields.length; i++) if (fields[i][1] !== "list") n += fieldSize(fields[i]);
  return n;
}

function decodePayload(port, bytes, direction) {
  if (port === SETTINGS_PORT) {
    var s = decodeSettings(bytes);
    s.message = "settings";
    s.port = port;
    return s;
  }
  var variants = [], i;
  // a FUOTA request and its answer share port and command id: the direction tells them apart
  // (null: an uplink, or a downlink on a port that carries only downlinks, as codec.decode does)
  if (direction !== "down")
    for (i = 0; i < MESSAGES.length; i++) if (MESSAGES[i][1] === port && MESSAGES[i][3] !== "down") variants.push(MESSAGES[i]);
  if (!variants.length && direction !== "up")
    for (i = 0; i < MESSAGES.length; i++) if (MESSAGES[i][1] === port && MESSAGES[i][3] !== "up") variants.push(MESSAGES[i]);
  if (!variants.length) throw new CodecError("unknown port " + port);
  var m = null, pos = 0;
  if (variants[0][2] === null) m = variants[0];
  else {
    if (bytes.length < 1) throw new CodecError("empty payload on port " + port);
    for (i = 0; i < variants.length; i++) if (variants[i][2] === bytes[0]) m = variants[i];
    if (!m) throw new CodecError("port " + port + ": unknown version or command " + bytes[0]);
    pos = 1;
  }
  var fields = m[4];
  var need = pos + fixedSize(fields);
  var hasList = fields.length > 0 && fields[fields.length - 1][1] === "list";
  if (bytes.length < need || (!hasList && bytes.length !== need))
    throw new CodecError(m[0] + ": " + bytes.length + " bytes, expected " + (hasList ? "at least " : "") + need);
  var out = {message: m[0], port: port};
  for (i = 0; i < fields.length; i++) pos = decodeField(bytes, pos, fields[i], out);
  return out;
}

// true when values give every field of row m that has no default (bits and lists do)
function fills(m, values) {
  for (var i = 0; i < m[4].length; i++) {
    var kind = m[4][i][1];
    if (kind !== "bits" && kind !== "list" && values[m[4][i][0]] === undefined) return false;
  }
  return true;
}

// a message with several versions is encoded as the newest one the values fill (as codec.encode does)
function encodePayload(name, values) {
  var m = null, i;
  for (i = MESSAGES.length - 1; i >= 0; i--)
    if (MESSAGES[i][0] === name && (m === null || !fills(m, values))) {
      if (m === null || fills(MESSAGES[i], values)) m = MESSAGES[i];
    }
  if (!m) throw new CodecError("unknown message " + name);
  if (m[1] === SETTINGS_PORT) return {fPort: m[1], bytes: encodeSettings(values)};
  var out = [];
  if (m[2] !== null) out.push(m[2]);
  for (i = 0; i < m[4].length; i++) encodeField(out, m[4][i], values);
  return {fPort: m[1], bytes: out};
}

function asResult(fn) {
  try { return {data: fn(), warnings: [], errors: []}; }
  catch (e) {
    if (e instanceof CodecError) return {warnings: [], errors: [e.message]};
    return {warnings: [], errors: ["formatter failure: " + e]};
  }
}

// The Things Stack v3 and ChirpStack v4 entry points.
function decodeUplink(input) {
  return asResult(function () { return decodePayload(input.fPort, input.bytes, null); });
}

function decodeDownlink(input) {
  return asResult(function () { return decodePayload(input.fPort, input.bytes, "down"); });
}

// input.data = {message: "ack_alert", alert_type: "mortality", seq: 3}
function encodeDownlink(input) {
  try {
    var r = encodePayload(input.data.message, input.data);
    return {fPort: r.fPort, bytes: r.bytes, warnings: [], errors: []};
  } catch (e) {
    if (e instanceof CodecError) return {warnings: [], errors: [e.message]};
    return {warnings: [], errors: ["formatter failure: " + e]};
  }
}

if (typeof module !== "undefined") {
  module.exports = {decodeUplink: decodeUplink, decodeDownlink: decodeDownlink, encodeDownlink: encodeDownlink};
}
"""


def _jsonable(value: object) -> object:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def render() -> str:
    """Return the JavaScript formatter source for the current codec table."""
    header = (
        "// Tembo payload formatter for The Things Stack v3 and ChirpStack v4.\n"
        "// GENERATED from collar_firmware/codec.py by lora_bridge/formatter.py: do not edit by hand.\n"
        "// Regenerate: python -m lora_bridge.formatter > formatters/tembo-formatter.js\n"
    )
    table = (
        f"var SETTINGS_PORT = {codec.SETTINGS_PORT};\n"
        f"var MESSAGES = {json.dumps(_jsonable(codec.MESSAGES))};\n"
        f"var SETTINGS = {json.dumps(_jsonable(codec.SETTINGS))};\n"
    )
    return header + table + _ENGINE


def write(path: Path = FORMATTER_PATH) -> Path:
    """Write the formatter to path and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render())
    return path


if __name__ == "__main__":
    sys.stdout.write(render())
