"""Over-the-air updates on the collar: receive, rebuild, verify, install, trial boot, confirm or roll back.

Downlinks on the FUOTA ports (codec table): 200 TS005 multicast set-up and 202 clock sync (both in
multicast.py, loaded with the first port-200 frame: `app_time_ans` answers the time request a session
sends, and sets the clock through `hal.clock.set_time_s`),
201 fragmentation session set-up, status and data fragments. Fragments are rebuilt by
update_fec.FecDecoder straight into the inactive slot in flash (records "s<slot>f<i>"), in
bounded RAM. A complete image (update_image.py) is checked for size, hardware and version, its
payload against the SHA-256 its header carries, and its header signature by trust.Trust (a few
steps per wake-up). Then:
  - a model is kept as "model.prev", written as "model" and loaded (its own signature checked
    too); the trial is the golden vector of the image: the classifier must put it in its class;
  - a firmware bundle already lies in the inactive slot: the boot record names it as on trial
    and the collar reboots into it; the first wake-up runs the self-test (the sensors answer,
    the classifier reproduces the golden vector, the radio sends) and confirms or rolls back.
Every outcome is acknowledged on port 31 (`ack` with on_port 201 and an ACK_RESULTS reason),
and the last one (kind, version, outcome, reason) is kept in flash ("upd.result") and reported in
every status (version 2), so a lost ack still reaches the bridge.

The boot record is written twice, alternately ("boot0", "boot1", each sealed with its CRC and a
sequence number): a power cut at any point leaves one valid record, naming a signed version.
"""

import hashlib
import struct

from collar_firmware import codec, config, records, update_fec, update_image
from collar_firmware.compat import const

PORT_MULTICAST = codec.port_of("mc_class_c_session")
PORT_FRAGMENTS = codec.port_of("frag_session_setup")
CMD_DATA_FRAGMENT = codec.tag_of("data_fragment")
CMD_SETUP = codec.tag_of("frag_session_setup")

IDLE = const(0)
RECEIVING = const(1)
VERIFYING = const(2)
MODEL_TRIAL = const(3)
FIRMWARE_TRIAL = const(4)

NO_SLOT = const(0xFF)
MAX_IMAGE_BYTES = update_image.MAX_HEADER_BYTES + update_image.MAX_PAYLOAD_BYTES
BOOT_KEYS = ("boot0", "boot1")
KEY_TRIAL_HEADER = "trial.hdr"
KEY_MODEL_PREV = "model.prev"
KEY_RESULT = "upd.result"
_RESULT_FORMAT = "<BBIB"  # kind (codec.UPDATE_KINDS), outcome (codec.UPDATE_OUTCOMES), version u24, reason
_BOOT_FORMAT = "<IBIBI"  # seq, active slot, active version, trial slot, trial version


def _key(slot, i):
    return "s%df%d" % (slot, i)


class SlotStore:
    """The fragments of one flash slot, as the FEC decoder writes and reads them."""

    def __init__(self, storage, slot):
        self.storage = storage
        self.slot = slot

    def write(self, i, data):
        """Write fragment i of the slot."""
        self.storage.write(_key(self.slot, i), bytes(data))

    def read(self, i):
        """Return fragment i of the slot."""
        return self.storage.read(_key(self.slot, i))

    def write_row(self, p, data):
        """Write the parity row whose pivot is fragment p."""
        self.storage.write("s%dp%d" % (self.slot, p), bytes(data))

    def read_row(self, p):
        """Return the parity row whose pivot is fragment p."""
        return self.storage.read("s%dp%d" % (self.slot, p))


class BootRecord:
    """Which slot runs which firmware version, and which one is on trial."""

    def __init__(self):
        self.seq = 0
        self.active_slot = 0
        self.active_version = update_image.version_raw(config.FW_VERSION)
        self.trial_slot = NO_SLOT
        self.trial_version = 0

    def load(self, storage):
        """Read the newest valid of the two records (none: the factory image in slot 0)."""
        best = None
        for key in BOOT_KEYS:
            try:
                body = records.unsealed(storage.read(key))
            except OSError:
                body = None
            if body is None or len(body) != struct.calcsize(_BOOT_FORMAT):
                continue
            fields = struct.unpack(_BOOT_FORMAT, body)
            if best is None or fields[0] > best[0]:
                best = fields
        if best is not None:
            self.seq, self.active_slot, self.active_version, self.trial_slot, self.trial_version = best

    def save(self, storage):
        """Write the record over the older of the two copies."""
        self.seq += 1
        body = struct.pack(_BOOT_FORMAT, self.seq, self.active_slot, self.active_version,
                           self.trial_slot, self.trial_version)
        storage.write(BOOT_KEYS[self.seq & 1], records.sealed(body))


class UpdateAgent:
    """The update state of one collar; collar is the main.Collar it belongs to."""

    def __init__(self, collar):
        self.collar = collar
        self.storage = collar.hal.storage
        self.boot = BootRecord()
        self.boot.load(self.storage)
        self.state = IDLE
        self.decoder = None
        self.header = None
        self.image_len = 0
        self.multicast = None  # multicast.Multicast, loaded with the first port-200 frame (RAM kept for the loop)
        self.last_result = None  # ACK_RESULTS name of the last outcome
        self.last_kind = 0  # index into codec.UPDATE_KINDS
        self.last_outcome = 0  # index into codec.UPDATE_OUTCOMES
        self.last_version = 0  # u24 version of the image that outcome was about
        self.last_reason = 0  # index into codec.ACK_RESULTS
        self._load_result()
        self.installed = 0
        self.refused = 0
        self.trial_due = self.boot.trial_slot != NO_SLOT
        self.frag_index = 0

    # ---- what the loop asks ---------------------------------------------------------

    def fw_version(self):
        """Return the running firmware version as "major.minor.patch"."""
        return update_image.version_text(self.boot.active_version)

    def still_needed(self):
        """Return how many more independent fragments the open session needs (its rank deficit)."""
        if self.state != RECEIVING or self.decoder is None:
            return 0
        return self.decoder.missing - len(self.decoder.rows)

    def receiving(self):
        """Return True while a fragmentation session still misses fragments."""
        return self.state == RECEIVING

    def busy(self):
        """Return True while an update holds state the loop must advance."""
        return self.state != IDLE or self.trial_due or (self.multicast is not None and self.multicast.scheduled())

    def wake_s(self):
        """Return when the loop must wake for the Class C window (opens or closes; 0: no window)."""
        return self.multicast.wake_s() if self.multicast is not None else 0

    def result_values(self):
        """Return the status fields of the last update's result (names from the codec's enums)."""
        return {"update_kind": self.last_kind, "update_outcome": self.last_outcome,
                "update_version": self.last_version, "update_reason": self.last_reason}

    def _load_result(self):
        try:
            body = records.unsealed(self.storage.read(KEY_RESULT))
        except OSError:
            body = None
        if body is None or len(body) != struct.calcsize(_RESULT_FORMAT):
            return
        kind, outcome, version, reason = struct.unpack(_RESULT_FORMAT, body)
        if kind < len(codec.UPDATE_KINDS) and outcome < len(codec.UPDATE_OUTCOMES) \
                and reason < len(codec.ACK_RESULTS) and version < 1 << 24:
            self.last_kind, self.last_outcome, self.last_version, self.last_reason = kind, outcome, version, reason
            self.last_result = codec.ACK_RESULTS[reason]

    # ---- downlinks ------------------------------------------------------------------

    def handle(self, port, payload, now):
        """Take one FUOTA downlink; answers go to the collar's queue."""
        msg = codec.decode(port, payload, "down")
        name = msg["message"]
        if name == "data_fragment":
            self._fragment(msg, now)
        elif name == "frag_session_setup":
            self._setup(msg, now)
        elif name == "frag_session_status":
            if self.still_needed() or msg["participants"]:  # participants 0: only collars missing fragments answer
                self._status_answer()
        elif port == PORT_MULTICAST:
            if self.multicast is None:
                from collar_firmware import multicast

                self.multicast = multicast.Multicast(self.collar.hal.radio, self.storage)
            self.multicast.take(self, name, msg, now)  # answers (and the clock request) from the lazy module
        elif self.multicast is not None:
            self.multicast.clock_answer(self.collar.hal.clock, msg, now)  # only a session asks the time

    def _status_answer(self):
        missing = self.still_needed()
        received = self.decoder.received if self.decoder is not None else 0
        self._answer("frag_session_status_ans", {"received_and_index": received & 0x3FFF,
                                                  "missing": missing if missing < 255 else 255, "status": 0})

    def _answer(self, name, values):
        port, payload = codec.encode_packet(name, values)
        self.collar.queue_ack(port, payload)

    def _setup(self, msg, now):
        self.header = None
        nb_frag = msg["nb_frag"]
        frag_size = msg["frag_size"]
        if nb_frag * frag_size > MAX_IMAGE_BYTES or nb_frag > update_fec.MAX_FRAGMENTS \
                or frag_size > update_fec.MAX_FRAG_SIZE or msg["padding"] >= frag_size:
            self._answer("frag_session_setup_ans", {"status": 2})  # TS004: not enough memory
            self._result("too_large", now)
            return
        self.decoder = update_fec.FecDecoder(nb_frag, frag_size, SlotStore(self.storage, self._inactive()))
        self.image_len = nb_frag * frag_size - msg["padding"]
        self.frag_index = msg["session"] & 3  # TS004 FragIndex: fragments of another session are not ours
        self.header = None
        self.state = RECEIVING
        self._answer("frag_session_setup_ans", {"status": 0})

    def _inactive(self):
        return 1 - self.boot.active_slot if self.boot.active_slot in (0, 1) else 1

    def _fragment(self, msg, now):
        if self.state != RECEIVING:
            return
        if msg["index_and_n"] >> 14 != self.frag_index:
            return
        n = msg["index_and_n"] & 0x3FFF
        if self.decoder.add(n, bytes(msg["data"])):
            self.state = VERIFYING
            self._check_image(now)

    def session_over(self, now):
        """The Class C window closed: an image still missing fragments is truncated."""
        if self.state == RECEIVING:
            self._result("truncated", now)

    # ---- the image ------------------------------------------------------------------

    def _read(self, start, stop):
        """Return bytes start..stop of the rebuilt image (read from the slot's fragments)."""
        store = self.decoder.store
        size = self.decoder.frag_size
        out = bytearray()
        i = start // size
        while i * size < stop:
            frag = store.read(i)
            lo = start - i * size if start > i * size else 0
            hi = stop - i * size if stop < (i + 1) * size else size
            out.extend(frag[lo:hi])
            i += 1
        return out

    def _payload_sha256(self, start, stop):
        h = hashlib.sha256()
        size = self.decoder.frag_size
        i = start // size
        while i * size < stop:
            frag = self.decoder.store.read(i)
            lo = start - i * size if start > i * size else 0
            hi = stop - i * size if stop < (i + 1) * size else size
            h.update(frag[lo:hi])
            i += 1
        return h.digest()

    def _check_image(self, now):
        try:
            head = self._read(0, min(self.image_len, update_image.MAX_HEADER_BYTES))
            h = update_image.parse_header(head)
            self.header = h
            running = self.boot.active_version if h.kind == update_image.KIND_FIRMWARE \
                else self.collar.model.version
            update_image.check(h, self.image_len, config.HARDWARE_ID, running)
            if self._payload_sha256(h.size, h.size + h.payload_len) != h.payload_sha256:
                raise update_image.ImageRefused("tampered", "payload does not match its SHA-256")
            if h.key_id not in self.collar.trust.keys:
                raise update_image.ImageRefused("unsigned", "signed by key %d, which this collar does not hold"
                                                % h.key_id)
        except update_image.ImageRefused as exc:
            self._result(exc.reason, now)
            return
        self.signed = bytes(head[:h.signed_len])
        self.step(now)

    def step(self, now):
        """Advance whatever the update waits for (called once per wake-up)."""
        if self.multicast is not None and self.multicast.step(now) and self.state == RECEIVING:
            self._status_answer()  # the window closed: the bridge learns what unicast must still bring
        if self.trial_due:
            self.trial_due = False
            self._firmware_trial(now)
        elif self.state == VERIFYING:
            t = self.collar.trust
            h = self.header
            if t.accept(h.key_id, self.signed, h.signature):
                self._install(now)
            elif t.pending is None:
                self._result("tampered", now)  # checked to the end: the signature is not the key's
        elif self.state == MODEL_TRIAL:
            model = self.collar.model
            if getattr(model, "version", 0) == self.header.version:
                self._model_trial(now)
            elif self.collar.trust.pending is None:
                self._rollback_model("tampered", now)  # the blob itself did not verify

    def _install(self, now):
        h = self.header
        if h.kind == update_image.KIND_MODEL:
            blob = self._read(h.size, h.size + h.payload_len)
            self._vouch_for_model(blob)
            previous = self.storage.read("model")
            if previous is not None:
                self.storage.write(KEY_MODEL_PREV, previous)
            self.storage.write("model", bytes(blob))
            self.state = MODEL_TRIAL
            self.collar.reload_model()
            self.step(now)
            return
        self.storage.write(KEY_TRIAL_HEADER, records.sealed(self.signed + h.signature))
        self.boot.trial_slot = self._inactive()
        self.boot.trial_version = h.version
        self.boot.save(self.storage)
        self.state = IDLE
        self.collar.request_reboot()  # the trial boot: the new image runs, the self-test decides

    def _vouch_for_model(self, blob):
        """The image's verified signature covers the blob byte for byte: its own signature needs no
        second check (a blob that is not signed by a held key still fails to load)."""
        if len(blob) < 16 + 68 or not blob[5] & 1:
            return
        body_len = struct.unpack_from("<I", blob, 8)[0]
        end = 16 + body_len
        if len(blob) == end + 68:
            self.collar.trust.vouch(blob[end + 1], memoryview(blob)[0:end], bytes(blob[end + 4:]))

    def _golden_ok(self, h):
        model = self.collar.model
        if not h.golden:
            return True
        if not hasattr(model, "predict") or len(h.golden) != model.n_features:
            return False
        return model.predict(h.golden) == h.golden_class

    def _model_trial(self, now):
        if self._golden_ok(self.header):
            self.installed += 1
            self.state = IDLE
            self._result("ok", now)
        else:
            self._rollback_model("self_test_failed", now)

    def _rollback_model(self, reason, now):
        previous = self.storage.read(KEY_MODEL_PREV)
        self.storage.write("model", previous if previous is not None else b"")
        self.state = IDLE
        self.collar.reload_model()
        self._result(reason, now)

    def _firmware_trial(self, now):
        """First wake-up of a firmware on trial: self-test, then confirm or roll back."""
        boot = self.boot
        if boot.trial_slot == NO_SLOT:
            return
        body = records.unsealed(self.storage.read(KEY_TRIAL_HEADER))
        self.header = None
        trial_version = boot.trial_version
        ok = False
        try:
            h = update_image.parse_header(body) if body is not None else None
            ok = h is not None and self._self_test(h)
        except Exception:
            ok = False
        if ok:
            boot.active_slot = boot.trial_slot
            boot.active_version = boot.trial_version
            self.installed += 1
        boot.trial_slot = NO_SLOT
        boot.trial_version = 0
        boot.save(self.storage)
        self._result("ok" if ok else "self_test_failed", now, update_image.KIND_FIRMWARE, trial_version)

    def _self_test(self, h):
        """The sensors answer, the classifier reproduces the golden vector, the radio sends."""
        hal = self.collar.hal
        if hal.imu.read_fifo(self.collar.accel_buf) <= 0:
            return False
        if hal.power.battery_mv() <= 0:
            return False
        if not self._golden_ok(h):
            return False
        ack = codec.encode("ack", {"time_s": hal.clock.now_s(), "on_port": PORT_FRAGMENTS,
                                   "cmd": CMD_DATA_FRAGMENT, "result": "ok"})
        return hal.radio.send(codec.port_of("ack"), ack, False) is not False

    def _result(self, reason, now, kind=0, version=0):
        """Report an outcome: kept in flash for status, acknowledged on port 31. kind and version
        default to the image header's, when the image got that far (0: not known)."""
        h = self.header
        if not kind and h is not None:
            kind, version = h.kind, h.version
        if reason != "ok":
            self.refused += 1
        self.last_result = reason
        self.last_kind = 1 if kind == update_image.KIND_FIRMWARE else 2 if kind == update_image.KIND_MODEL else 0
        self.last_version = version & 0xFFFFFF
        self.last_reason = codec.ack_code(reason)
        self.last_outcome = 1 if reason == "ok" else 3 if reason == "self_test_failed" else 2
        self.storage.write(KEY_RESULT, records.sealed(struct.pack(
            _RESULT_FORMAT, self.last_kind, self.last_outcome, self.last_version, self.last_reason)))
        self.state = IDLE
        self.decoder = None
        port, payload = codec.encode_packet("ack", {"time_s": now, "on_port": PORT_FRAGMENTS,
                                                    "cmd": CMD_DATA_FRAGMENT, "result": reason})
        self.collar.queue_ack(port, payload)
