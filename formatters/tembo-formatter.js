// Tembo payload formatter for The Things Stack v3 and ChirpStack v4.
// GENERATED from collar_firmware/codec.py by lora_bridge/formatter.py: do not edit by hand.
// Regenerate: python -m lora_bridge.formatter > formatters/tembo-formatter.js
var SETTINGS_PORT = 3;
var MESSAGES = [["status", 1, 1, "up", [["time_s", "u32", null], ["lat", "lat", null], ["lon", "lon", null], ["fix_age_s", "u16", null], ["battery_mv", "u16", null], ["temperature_c", "i16", 10], ["fw_version", "ver", null], ["model_version", "u16", null], ["uptime_h", "u16", null], ["reset_cause", "enum", ["power_on", "watchdog", "brownout", "software", "pin", "lockup", "unknown"]], ["behaviour", "enum", ["rest", "forage", "walk", "run"]], ["flags", "bits", [["tracking", 1, null], ["in_farmland", 1, null], ["outside_park", 1, null], ["battery_low", 1, null], ["model_fallback", 1, null], ["clock_unsynced", 1, null], ["queue_full", 1, null], ["spare", 1, null]]], ["queue_depth", "u8", null], ["errors", "u8", null]]], ["status", 1, 2, "up", [["time_s", "u32", null], ["lat", "lat", null], ["lon", "lon", null], ["fix_age_s", "u16", null], ["battery_mv", "u16", null], ["temperature_c", "i16", 10], ["fw_version", "ver", null], ["model_version", "u16", null], ["uptime_h", "u16", null], ["reset_cause", "enum", ["power_on", "watchdog", "brownout", "software", "pin", "lockup", "unknown"]], ["behaviour", "enum", ["rest", "forage", "walk", "run"]], ["flags", "bits", [["tracking", 1, null], ["in_farmland", 1, null], ["outside_park", 1, null], ["battery_low", 1, null], ["model_fallback", 1, null], ["clock_unsynced", 1, null], ["queue_full", 1, null], ["spare", 1, null]]], ["queue_depth", "u8", null], ["errors", "u8", null], ["update", "bits", [["update_kind", 2, ["none", "firmware", "model"]], ["update_outcome", 3, ["none", "installed", "refused", "rolled_back"]], ["update_spare", 3, null]]], ["update_version", "ver", null], ["update_reason", "enum", ["ok", "unknown_command", "malformed", "out_of_range", "unknown_setting", "busy", "refused", "unsigned", "tampered", "downgrade", "wrong_hardware", "truncated", "self_test_failed", "too_large", "wrong_base"]]]], ["activity", 2, 1, "up", [["time_s", "u32", null], ["interval_min", "u8", null], ["model_version", "u16", null], ["vedba_mean_mg", "u16", null], ["vedba_max_mg", "u16", null], ["shares", "list", [16, [["share", "u8", 2]]]]]], ["positions", 4, 1, "up", [["time_s", "u32", null], ["fixes", "list", [5, [["dt_s", "u16", null], ["lat", "lat", null], ["lon", "lon", null]]]]]], ["settings", 3, null, "both", []], ["alert", 10, null, "up", [["alert", "bits", [["alert_type", 5, ["test", "mortality", "immobility", "poaching_risk", "geofence_farmland", "geofence_exit", "collar_drop", "tamper", "low_battery", "battery_critical", "unexpected_reboot"]], ["seq", 3, null]]], ["time_s", "u32", null], ["lat", "lat", null], ["lon", "lon", null]]], ["ack", 31, null, "up", [["time_s", "u32", null], ["on_port", "u8", null], ["cmd", "u8", null], ["result", "enum", ["ok", "unknown_command", "malformed", "out_of_range", "unknown_setting", "busy", "refused", "unsigned", "tampered", "downgrade", "wrong_hardware", "truncated", "self_test_failed", "too_large", "wrong_base"]]]], ["ack_alert", 32, 1, "down", [["alert", "bits", [["alert_type", 5, ["test", "mortality", "immobility", "poaching_risk", "geofence_farmland", "geofence_exit", "collar_drop", "tamper", "low_battery", "battery_critical", "unexpected_reboot"]], ["seq", 3, null]]]]], ["request_status", 32, 2, "down", []], ["reboot", 32, 3, "down", []], ["tracking", 32, 4, "down", [["minutes", "u16", null]]], ["clear_fences", 32, 5, "down", []], ["fence", 32, 6, "down", [["fence", "bits", [["fence_id", 4, null], ["kind", 2, ["park", "farmland", "exclusion", "spare"]], ["last", 1, null], ["spare", 1, null]]], ["first_index", "u8", null], ["points", "list", [7, [["lat", "lat", null], ["lon", "lon", null]]]]]], ["request_settings", 32, 7, "down", []], ["mc_package_version", 200, 0, "down", []], ["mc_package_version_ans", 200, 0, "up", [["package_id", "u8", null], ["package_version", "u8", null]]], ["mc_group_status", 200, 1, "down", [["req_group_mask", "u8", null]]], ["mc_group_status_ans", 200, 1, "up", [["status", "bits", [["rfu", 1, null], ["nb_total_groups", 3, null], ["ans_group_mask", 4, null]]], ["groups", "list", [4, [["group", "u8", null], ["mc_addr", "u32", null]]]]]], ["mc_group_setup", 200, 2, "down", [["group", "u8", null], ["mc_addr", "u32", null], ["mc_key_encrypted_0", "u32", null], ["mc_key_encrypted_1", "u32", null], ["mc_key_encrypted_2", "u32", null], ["mc_key_encrypted_3", "u32", null], ["min_mc_fcount", "u32", null], ["max_mc_fcount", "u32", null]]], ["mc_group_setup_ans", 200, 2, "up", [["status", "u8", null]]], ["mc_group_delete", 200, 3, "down", [["group", "u8", null]]], ["mc_group_delete_ans", 200, 3, "up", [["status", "u8", null]]], ["mc_class_c_session", 200, 4, "down", [["group", "u8", null], ["session_time_gps_s", "u32", null], ["timeout_log2_s", "u8", null], ["frequency_hz100", "u24", null], ["data_rate", "u8", null]]], ["mc_class_c_session_ans", 200, 4, "up", [["status", "u8", null], ["time_to_start_s", "list", [1, [["s", "u24", null]]]]]], ["frag_package_version", 201, 0, "down", []], ["frag_package_version_ans", 201, 0, "up", [["package_id", "u8", null], ["package_version", "u8", null]]], ["frag_session_setup", 201, 2, "down", [["frag_session", "bits", [["rfu", 2, null], ["frag_index", 2, null], ["mc_group_bit_mask", 4, null]]], ["nb_frag", "u16", null], ["frag_size", "u8", null], ["control", "u8", null], ["padding", "u8", null], ["descriptor", "u32", null]]], ["frag_session_setup_ans", 201, 2, "up", [["status", "u8", null]]], ["frag_session_status", 201, 1, "down", [["param", "bits", [["rfu", 5, null], ["frag_index", 2, null], ["participants", 1, null]]]]], ["frag_session_status_ans", 201, 1, "up", [["received_and_index", "u16", null], ["missing", "u8", null], ["status", "bits", [["rfu", 5, null], ["session_does_not_exist", 1, null], ["spare", 1, null], ["not_enough_matrix_memory", 1, null]]]]], ["frag_session_delete", 201, 3, "down", [["param", "bits", [["rfu", 6, null], ["frag_index", 2, null]]]]], ["frag_session_delete_ans", 201, 3, "up", [["status", "bits", [["rfu", 5, null], ["session_does_not_exist", 1, null], ["frag_index", 2, null]]]]], ["frag_data_block_received", 201, 4, "up", [["status", "bits", [["rfu", 5, null], ["mic_error", 1, null], ["frag_index", 2, null]]]]], ["frag_data_block_received_ans", 201, 4, "down", [["param", "bits", [["rfu", 6, null], ["frag_index", 2, null]]]]], ["data_fragment", 201, 8, "down", [["index_and_n", "u16", null], ["data", "list", [240, [["byte", "u8", null]]]]]], ["app_time_req", 202, 1, "up", [["device_time_gps_s", "u32", null], ["param", "bits", [["rfu", 3, null], ["ans_required", 1, null], ["token", 4, null]]]]], ["app_time_ans", 202, 1, "down", [["correction_s", "i32", null], ["param", "bits", [["rfu", 4, null], ["token", 4, null]]]]]];
var SETTINGS = [[1, "gnss_interval_s", "u32", 60, 86400, "s"], [2, "summary_interval_s", "u16", 300, 14400, "s"], [3, "status_interval_s", "u32", 900, 86400, "s"], [4, "accel_rate_hz", "u8", 10, 100, "Hz"], [5, "accel_range_g", "u8", 2, 16, "g"], [6, "window_s", "u8", 2, 60, "s"], [7, "window_every_s", "u16", 10, 3600, "s"], [8, "immobility_h", "u8", 1, 48, "h"], [9, "tracking_minutes", "u16", 0, 1440, "min"], [10, "fair_use_airtime_s", "u16", 1, 600, "s"], [11, "low_battery_mv", "u16", 2500, 4200, "mV"], [12, "critical_battery_mv", "u16", 2500, 4200, "mV"], [13, "alert_repeat_min", "u16", 5, 1440, "min"], [14, "confirmed_alerts", "u8", 0, 1, ""], [15, "tracking_gnss_interval_s", "u16", 30, 3600, "s"], [16, "utc_offset_min", "i16", -720, 840, "min"], [17, "still_vedba_mg", "u16", 5, 500, "mg"], [18, "run_vedba_mg", "u16", 100, 4000, "mg"], [19, "immobility_suspect_h", "u8", 1, 48, "h"], [20, "fence_margin_m", "u16", 0, 1000, "m"], [21, "boundary_near_m", "u16", 0, 20000, "m"], [22, "positions_per_uplink", "u8", 1, 5, ""], [23, "poaching_score", "u8", 1, 255, ""], [24, "drop_temp_fall_dc", "u16", 5, 200, "dC"], [25, "gnss_adaptive", "u8", 0, 1, ""], [26, "gnss_rest_interval_s", "u32", 60, 86400, "s"], [27, "gnss_move_interval_s", "u32", 60, 86400, "s"], [28, "gnss_min_gap_s", "u16", 0, 3600, "s"], [29, "poaching_min_run_s", "u16", 0, 600, "s"], [30, "gnss_forage_interval_s", "u32", 60, 86400, "s"], [31, "carcass_vedba_mg", "u8", 0, 100, "mg"], [32, "carcass_min", "u16", 10, 1440, "min"], [33, "fast_vedba_mg", "u16", 100, 4000, "mg"]];
// ANSWER_SIZES[port][command id]: bytes of a FUOTA answer, or its sizes by the byte after its id
var ANSWER_SIZES = {"200":{"0":3,"1":[2,7,7,12,7,12,12,17,7,12,12,17,12,17,17,22,2,7,7,12,7,12,12,17,7,12,12,17,12,17,17,22,2,7,7,12,7,12,12,17,7,12,12,17,12,17,17,22,2,7,7,12,7,12,12,17,7,12,12,17,12,17,17,22,2,7,7,12,7,12,12,17,7,12,12,17,12,17,17,22,2,7,7,12,7,12,12,17,7,12,12,17,12,17,17,22,2,7,7,12,7,12,12,17,7,12,12,17,12,17,17,22,2,7,7,12,7,12,12,17,7,12,12,17,12,17,17,22,2,7,7,12,7,12,12,17,7,12,12,17,12,17,17,22,2,7,7,12,7,12,12,17,7,12,12,17,12,17,17,22,2,7,7,12,7,12,12,17,7,12,12,17,12,17,17,22,2,7,7,12,7,12,12,17,7,12,12,17,12,17,17,22,2,7,7,12,7,12,12,17,7,12,12,17,12,17,17,22,2,7,7,12,7,12,12,17,7,12,12,17,12,17,17,22,2,7,7,12,7,12,12,17,7,12,12,17,12,17,17,22,2,7,7,12,7,12,12,17,7,12,12,17,12,17,17,22],"2":2,"3":2,"4":[5,5,5,5,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2]},"201":{"0":3,"2":2,"1":5,"3":2,"4":2},"202":{"1":6}};
// COMMAND_SIZES[port][command id]: bytes of a FUOTA downlink command (0: it takes the rest of the frame)
var COMMAND_SIZES = {"200":{"0":1,"1":2,"2":30,"3":2,"4":11},"201":{"0":1,"2":11,"1":2,"3":2,"4":2,"8":0},"202":{"1":6}};

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
    if (rest % size) throw new CodecError(name + ": " + rest + " trailing bytes are not whole items of " + size);
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

// bytes of the FUOTA answer at pos (its id included), -1 for an unknown id; an answer whose length the byte
// after its id tells, with that byte missing, is taken as 2 bytes so it reads as cut short
function answerSize(port, bytes, pos) {
  var size = ANSWER_SIZES[port][bytes[pos]];
  if (size === undefined) return -1;
  if (typeof size === "number") return size;
  return pos + 1 < bytes.length ? size[bytes[pos + 1]] : 2;
}

// the answers of an uplink one by one (lora_bridge/fuota_answers.py split_answers): the whole payload on a
// port not of FUOTA, or an empty one; an unknown id or an answer cut short throws, naming where it begins
function splitAnswers(port, bytes) {
  if (!ANSWER_SIZES.hasOwnProperty(port) || !bytes.length) return [bytes];
  var pieces = [], pos = 0;
  while (pos < bytes.length) {
    var size = answerSize(port, bytes, pos);
    if (size < 0 || pos + size > bytes.length) refuseAnswer(port, bytes, pos, size);
    pieces.push(bytes.slice(pos, pos + size));
    pos += size;
  }
  return pieces;
}

function refuseAnswer(port, bytes, pos, size) {
  var where = "answer " + bytes[pos] + " at byte " + pos;
  try { decodePayload(port, bytes.slice(pos), "up"); }
  catch (e) { if (e instanceof CodecError) throw new CodecError(where + ": " + e.message); throw e; }
  if (size < 0) throw new CodecError("port " + port + ": unknown " + where);
  throw new CodecError("port " + port + ": " + where + " cut short (" + (bytes.length - pos) + " of " + size + " bytes)");
}

// One message: its fields, {message, port, ...}. A FUOTA uplink of several answers (ports 200-202):
// {message: "<first>+<how many follow>", port, answers: [{message, port, ...}, ...]}, in order, as the bridge
// names and reads it; broken anywhere, it is an error whole.
function decodeUplinkData(port, bytes) {
  var pieces = splitAnswers(port, bytes), answers = [], i;
  for (i = 0; i < pieces.length; i++) answers.push(decodePayload(port, pieces[i], null));
  if (answers.length === 1) return answers[0];
  return {message: answers[0].message + "+" + (answers.length - 1), port: port, answers: answers};
}

// The Things Stack v3 and ChirpStack v4 entry points.
function decodeUplink(input) {
  return asResult(function () { return decodeUplinkData(input.fPort, input.bytes); });
}

// the commands of a downlink one by one (as the collar's UpdateAgent.handle walks them with codec.command_size):
// the whole payload on a port not of FUOTA, or an empty one; a command taking the rest of the frame (size 0, a
// DataFragment) ends it; an unknown command or one cut short throws, naming the command and where it begins
function splitCommands(port, bytes) {
  if (!COMMAND_SIZES.hasOwnProperty(port) || !bytes.length) return [bytes];
  var pieces = [], pos = 0;
  while (pos < bytes.length) {
    var size = COMMAND_SIZES[port][bytes[pos]];
    if (size === 0) size = bytes.length - pos;
    if (size === undefined || pos + size > bytes.length) refuseCommand(port, bytes, pos);
    pieces.push(bytes.slice(pos, pos + size));
    pos += size;
  }
  return pieces;
}

function refuseCommand(port, bytes, pos) {
  var where = "command " + bytes[pos] + " at byte " + pos;
  try { decodePayload(port, bytes.slice(pos), "down"); }
  catch (e) { if (e instanceof CodecError) throw new CodecError(where + ": " + e.message); throw e; }
  throw new CodecError("port " + port + ": " + where + " cut short");
}

// One command: its fields, {message, port, ...}. A FUOTA downlink of several commands (ports 200-202, TS005
// v1.0.0 4: "a message MAY carry more than one command"): {message: "<first>+<how many follow>", port,
// commands: [{message, port, ...}, ...]}, in order; broken anywhere, it is an error whole.
function decodeDownlinkData(port, bytes) {
  var pieces = splitCommands(port, bytes), commands = [], i;
  for (i = 0; i < pieces.length; i++) commands.push(decodePayload(port, pieces[i], "down"));
  if (commands.length === 1) return commands[0];
  return {message: commands[0].message + "+" + (commands.length - 1), port: port, commands: commands};
}

function decodeDownlink(input) {
  return asResult(function () { return decodeDownlinkData(input.fPort, input.bytes); });
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
