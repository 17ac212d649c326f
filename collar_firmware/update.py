"""Over-the-air updates on the collar: receive, rebuild, verify, install, trial boot, confirm or roll back.

Downlinks on the FUOTA ports (codec table): 200 TS005 multicast set-up and 202 clock sync (both in
multicast.py, loaded with the first port-200 frame: `app_time_ans` answers the time request a session
sends, and sets the clock through `hal.clock.set_time_s`),
201 fragmentation session set-up, status, deletion and data fragments. What boots holds only the boot record,
the last result and the dispatch: rebuilding, checking, installing and the trials live in
update_install.py (with update_fec.py and update_image.py), loaded with the first fragmentation
set-up or a trial boot, so the collar's boot heap pays nothing for them. Then:
  - a model is kept as "model.prev", written as "model" and loaded (its own signature checked
    too); the trial is the golden vector of the image: the classifier must put it in its class;
  - a firmware bundle lies whole in the inactive slot (a delta is first composed there with the
    running slot's kept modules, a bounded share a wake-up, again from the start after a power cut):
    the boot record names it as on trial and the collar reboots into
    it; the wake-ups after check the slot holds the whole signed bundle (a bounded share each), run
    the self-test (the sensors answer, the classifier reproduces the golden vector, the radio sends)
    and confirm or roll back.
Every outcome is acknowledged on port 31 (`ack` with on_port 201 and an ACK_RESULTS reason),
and the last one (kind, version, outcome, reason) is kept in flash ("upd.result") and reported in
every status (version 2), so a lost ack still reaches the bridge.

A reset that leaves FUOTA state in flash (an open session, an open Class C window, multicast groups
after the modem lost power) loads update_restart.py at boot, which puts it right.

The boot record is written twice, alternately ("boot0", "boot1", each sealed with its CRC and a
sequence number): a power cut at any point leaves one valid record, naming a signed version.
"""

import struct

from collar_firmware import codec, config, records
from collar_firmware.compat import const

PORT_MULTICAST = codec.port_of("mc_class_c_session")
PORT_FRAGMENTS = codec.port_of("frag_session_setup")

# TS004's PackageVersionAns: the fragmented data block transport package (3), v2.0.0 (2) on a radio whose crypto
# engine checks the data block's MIC (hal.Radio.derive_key), else v1.0.0 (1)
_FRAG_PACKAGE_ID = const(3)
_FRAG_PACKAGE_VERSION = const(2)
_FRAG_PACKAGE_VERSION_1 = const(1)
_SETUP_CID = const(2)  # FragSessionSetupReq (codec table)
_SETUP_ENCODING_UNSUPPORTED = const(1)  # FragSessionSetupAns bit 0: the collar does not read what was asked

IDLE = const(0)
RECEIVING = const(1)
VERIFYING = const(2)
MODEL_TRIAL = const(3)
FIRMWARE_TRIAL = const(4)  # the slot on trial checked a bounded share per wake-up, then the self-test
SOLVING = const(5)  # every fragment known, the missing ones written a bounded share per wake-up
COMPOSING = const(6)  # a verified delta's bundle composed into the inactive slot, a bounded share per wake-up

NO_SLOT = const(0xFF)
BOOT_KEYS = ("boot0", "boot1")
KEY_TRIAL_HEADER = "trial.hdr"
KEY_COMPOSE = "upd.compose"  # a verified delta being composed (its fragment size and signed header): a reboot composes it again
KEY_MODEL_PREV = "model.prev"
# non-empty while a verified model is installed (written before the model record, cleared once an outcome is kept):
# a reset meanwhile puts back the model the install replaced, acknowledged truncated (update_install.step)
KEY_MODEL_TRIAL = "upd.model"
KEY_RESULT = "upd.result"
# the TS004 session the collar holds (FragIndex, whole: 1 once every fragment is known, NbFragReceived then),
# written at its set-up and when its image is whole: a reset while it is open ends it as "truncated" (the
# fragments' bit set is in RAM only), one after it was whole still answers for it
KEY_SESSION = "upd.session"
_SESSION_FORMAT = "<BBH"  # FragIndex (bits 1..0, bit 6 the whole block's MICError, bit 7 v2.0.0), whole, received
# the last TS004 v2.0.0 SessionCnt taken ("upd.cnt0", "upd.cnt1"): update_install.py
# what FragDataBlockReceivedReq still owes the server (sends left u8, when the next is due u32), two sealed copies
# written alternately (update_install.keep_block_ack), taken up again after a reset (update_restart.py); a next
# send is due at most this far ahead (the repeats' spacing; BlockAckDelay's longest delay is 2,048 s)
KEYS_BLOCK_ACK = ("upd.ack0", "upd.ack1")
BLOCK_ACK_RETRY_S = const(3600)
# a session that hears neither its set-up nor a fragment of it for this long is over (truncated, acknowledged):
# the bridge serves a straggler by unicast at most lora_bridge.updates.delivery.MAX_UNICAST_DAYS (7; a test
# pins the margin), so only a collar whose campaign was dropped (its FragSessionDeleteReq lost) gets there
SESSION_SILENT_S = const(8 * 86400)
KEY_WINDOW = "mc.window"  # non-empty while a Class C window is open (multicast.py): a reset puts the modem back in Class A
KEY_GROUPS = "mc.groups"  # the TS005 groups the collar holds (multicast.py)
# resets that cut the modem's power with the processor's: its stack lost the groups set up over the air
MODEM_LOST_RESETS = ("power_on", "brownout", "unknown")
_RESULT_FORMAT = "<BBIB"  # kind (codec.UPDATE_KINDS), outcome (codec.UPDATE_OUTCOMES), version u24, reason
_BOOT_FORMAT = "<IBIBI"  # seq, active slot, active version, trial slot, trial version


def version_raw(text):
    """Return a "major.minor.patch" version (whole numbers 0..255 written plainly, no sign, space or
    leading zero, so one version has one text) as the u24 the wire carries; ValueError if not one."""
    parts = text.split(".")
    raw = 0
    for p in parts:
        try:
            v = int(p)
        except ValueError:
            v = -1
        # its own text again: no sign, space, underscore, leading zero or other script's digit slips through int()
        if len(parts) != 3 or not 0 <= v <= 255 or "%d" % v != p:
            raise ValueError("version must be major.minor.patch of plain whole numbers 0..255, got %r" % text)
        raw = raw << 8 | v
    return raw


def version_text(raw):
    """Return the "major.minor.patch" text of a u24 version."""
    return "%d.%d.%d" % ((raw >> 16) & 0xFF, (raw >> 8) & 0xFF, raw & 0xFF)


def _installer():
    from collar_firmware import update_install  # loaded with the first update frame, not at boot

    return update_install


class BootRecord:
    """Which slot runs which firmware version, and which one is on trial."""

    def __init__(self):
        self.seq = 0
        self.active_slot = 0
        self.active_version = version_raw(config.FW_VERSION)
        self.trial_slot = NO_SLOT
        self.trial_version = 0

    def load(self, storage):
        """Read the newest valid of the two records (none: the factory image in slot 0)."""
        best = None
        for key in BOOT_KEYS:
            body = records.kept(storage, key, 14)  # struct.calcsize(_BOOT_FORMAT)
            if body is None:
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
        self.trial_due = self.boot.trial_slot != NO_SLOT
        self.frag_index = 0
        self.frag_groups = 0  # McGroupBitMask of the held session: the multicast groups that may feed it
        self.answers = None  # bytearray gathering a FUOTA frame's answers for one uplink (None: between frames)
        self.answers_port = PORT_FRAGMENTS  # the port of that frame, where its answers go
        self.frag_held = False  # a TS004 session of frag_index is set up (and not deleted or abandoned)
        self.frag_received = 0  # NbFragReceived of that session once its image was whole
        self.frag_version = 1  # TS004 version of the last set-up heard: its status answers are laid out so
        self.frag_v2 = None  # the held session's (SessionCnt, MIC, Descriptor, Control): v1.0.0's SessionCnt 0, no MIC
        self.frag_mic_error = 0  # its rebuilt block's MIC was not the set-up's
        self.block_ack_left = 0  # FragDataBlockReceivedReq sends left until its answer (0: none owed)
        self.block_ack_s = 0  # when the next one is due
        self.status_due = 0  # when << 2 | FragIndex: a multicast FragSessionStatusReq's answer, after its drawn delay
        self.heard_s = 0  # when the receiving session last heard its set-up or one of its fragments
        self.slot_job = None  # update_slot.Composition or SlotCheck, stepped a share per wake-up
        if not self.trial_due and self.storage.read(KEY_COMPOSE):
            self.state = COMPOSING  # the power went while a verified delta was composed: the step starts it again
        elif self.storage.read(KEY_MODEL_TRIAL):
            self.state = MODEL_TRIAL  # the power went while a model was installed: the step puts the last one back
        lost = collar.reset_cause in MODEM_LOST_RESETS
        if self.storage.read(KEY_SESSION) or self.storage.read(KEY_WINDOW) or (lost and self.storage.read(KEY_GROUPS)):
            from collar_firmware import update_restart  # only after a reset that left FUOTA state in flash

            update_restart.after_reset(self, lost)

    # ---- what the loop asks ---------------------------------------------------------

    def fw_version(self):
        """Return the running firmware version as "major.minor.patch"."""
        return version_text(self.boot.active_version)

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
        return self.state != IDLE or self.trial_due or self.block_ack_left or self.status_due or (self.multicast is not None
                                                                                and self.multicast.scheduled())

    def wake_s(self):
        """Return when the loop must wake for the Class C window (opens or closes), an owed
        FragDataBlockReceivedReq or a delayed FragSessionStatusAns (0: none)."""
        wake = self.multicast.wake_s() if self.multicast is not None else 0
        for w in (self.block_ack_left and self.block_ack_s, self.status_due >> 2):
            if w and (not wake or w < wake):
                wake = w
        return wake

    def result_values(self):
        """Return the status fields of the last update's result (names from the codec's enums)."""
        return {"update_kind": self.last_kind, "update_outcome": self.last_outcome,
                "update_version": self.last_version, "update_reason": self.last_reason}

    def _load_result(self):
        body = records.kept(self.storage, KEY_RESULT, 7)  # struct.calcsize(_RESULT_FORMAT)
        if body is None:
            return
        kind, outcome, version, reason = struct.unpack(_RESULT_FORMAT, body)
        if kind < len(codec.UPDATE_KINDS) and outcome < len(codec.UPDATE_OUTCOMES) \
                and reason < len(codec.ACK_RESULTS) and version < 1 << 24:
            self.last_kind, self.last_outcome, self.last_version, self.last_reason = kind, outcome, version, reason
            self.last_result = codec.ACK_RESULTS[reason]

    # ---- downlinks ------------------------------------------------------------------

    def take(self, port, payload, now, group=None):
        """Take a frame heard on a FUOTA port, in a wake-up's receive window or in a Class C window
        (a board with a receiver of its own, hal.fuota, gets it instead); group is the McGroupID 0..3 the
        modem heard it on, None for the collar's own address (unicast). Return False when the frame
        was refused (broken, or not for the session): the loop counts a downlink error and goes on."""
        try:
            receiver = self.collar.hal.fuota
            if receiver is not None:
                receiver.handle(port, payload)
            else:
                self.handle(port, bytes(payload), now, group)
        except Exception:
            return False
        return True

    def handle(self, port, payload, now, group=None):
        """Take one FUOTA downlink heard on group (None: unicast); answers go to the collar's queue. A frame on any
        FUOTA port may carry several commands (TS005 v1.0.0 4 and TS004 v1.0.0 3: "a message MAY carry more than
        one command", a DataFragment only alone or last): each is taken in turn and their answers on the frame's
        port leave in one uplink of at most codec.MAX_UPLINK_BYTES (an answer past it is left out, as LoRa Basics
        Modem does; the bridge reads each, lora_bridge/fuota_answers.py). An empty frame, an unknown command id
        or a command cut short ends the parse (what follows cannot be located): the commands before it are done
        and answered, and the frame counts as refused (CodecError). Dropped unread and uncounted: any frame heard
        on a multicast group on ports 200 and 202 (TS005 v1.0.0 4: "If these messages are received on a multicast
        address the end-device MUST drop them silently"; TS003's AppTimeAns corrects the one clock whose
        AppTimeReq it answers); on port 201 each command is judged as TS004 says (`_command`). A set-up that the
        frame's end does not close after v1.0.0's fields is TS004 v2.0.0's (SessionCnt and MIC follow, commands may
        come after them); one with fewer than _V2_SETUP_TAIL bytes after those fields is a v2.0.0 set-up cut short,
        never read as v1.0.0's: answered EncodingUnsupported under its FragIndex, nothing set up, the frame refused."""
        if group is not None and port != PORT_FRAGMENTS:
            return
        self.answers = bytearray()
        self.answers_port = port
        try:
            pos = 0
            end = len(payload)
            if not end:
                raise codec.CodecError("empty frame")
            while pos < end:
                size = codec.command_size(port, payload[pos])
                if size < 0 or pos + size > end:
                    raise codec.CodecError("command unknown or cut short")
                if port == PORT_FRAGMENTS and payload[pos] == _SETUP_CID and end - pos > size:
                    size = codec.command_size(port, _SETUP_CID, "down", 2)
                    if end - pos < size:
                        if group is None:
                            self._answer("frag_session_setup_ans", {"status": (payload[pos + 1] & 0x30) << 2
                                                                    | _SETUP_ENCODING_UNSUPPORTED})
                        raise codec.CodecError("v2 set-up cut short")
                stop = pos + size if size else end
                self._command(port, payload[pos:stop] if pos or stop < end else payload, now, group)
                pos = stop
        finally:
            answers = self.answers
            self.answers = None
            if answers:
                self.collar.queue_ack(port, bytes(answers))

    def _command(self, port, payload, now, group):
        """Take one FUOTA command heard on group (None: unicast)."""
        # TS004 v2.0.0's set-up (SessionCnt and the data block's MIC after v1.0.0's fields): handle() told it by its length
        v2 = port == PORT_FRAGMENTS and payload[0] == _SETUP_CID and len(payload) > 11
        msg = codec.decode(port, payload, "down", 2 if v2 else 1)
        name = msg["message"]
        if group is not None and name != "data_fragment" and name != "frag_session_status":
            return  # TS004: only FragSessionStatusReq and DataFragment may come multicast (on port 201: handle())
        if name == "data_fragment":
            # TS004 v1.0.0: a fragment heard on a multicast group its session's McGroupBitMask does not enable
            # "SHALL be silently dropped"; unicast always feeds the session
            if self.state == RECEIVING and (group is None or self.frag_groups >> group & 1):
                if msg["index_and_n"] >> 14 == self.frag_index:
                    self.heard_s = now
                _installer().fragment(self, msg, now)
        elif name == "frag_session_setup":
            # one session at a time (its fragments fill the one inactive slot), of any FragIndex 0..3: the same
            # index set up again while its fragments arrive replaces it (TS004 v2.0.0 3.3: stopped, its context cleared, set up anew)
            if self.state == IDLE or (self.state == RECEIVING and msg["frag_index"] == self.frag_index):
                _installer().setup(self, msg, now)
            elif self.state != FIRMWARE_TRIAL:  # its fragments would go over the slot being tried: not answered
                # another index while a session fills the slot, or a whole image solved, checked, composed or
                # tried as a model in the slot a new session would write over: refused with TS004's
                # NotEnoughMemory (bit 1) under the FragIndex asked for, so the bridge knows the collar took no
                # session; the one it holds goes on to its own outcome, acknowledged as ever
                self._answer("frag_session_setup_ans", {"status": msg["frag_index"] << 6 | 2})
        elif name == "frag_package_version":
            v2 = hasattr(self.collar.hal.radio, "derive_key")
            self._answer("frag_package_version_ans", {"package_id": _FRAG_PACKAGE_ID, "package_version":
                                                      _FRAG_PACKAGE_VERSION if v2 else _FRAG_PACKAGE_VERSION_1})
        elif name == "frag_session_delete":
            _installer().delete(self, msg)
        elif name == "frag_session_status":
            # participants 0: only collars missing fragments answer (one without that session misses them all)
            # (TS004: a multicast one after the drawn delay, so the group's collars do not answer at once; unicast at once)
            if msg["participants"] or self.still_needed() or not self._holds(msg["frag_index"]):
                if group is None:
                    self._status_answer(msg["frag_index"])
                else:
                    self.status_due = now + _installer().delay_s(self, now) << 2 | msg["frag_index"]
        elif name == "frag_data_block_received_ans":
            was = self.block_ack_left
            if was and msg["frag_index"] == self.frag_index:
                self.block_ack_left = 0  # the server heard FragDataBlockReceivedReq: no more repeats, after a reset too
                _installer().keep_block_ack(self, was)
        elif port == PORT_MULTICAST:
            if self.multicast is None:
                from collar_firmware import multicast

                self.multicast = multicast.Multicast(self.collar.hal.radio, self.storage)
            self.multicast.take(self, name, msg, now)  # answers (and the clock request) from the lazy module
        elif self.multicast is not None:
            self.multicast.clock_answer(self, msg, now)  # only a session asks the time

    def _holds(self, index):
        """Return True when the collar holds the TS004 session of FragIndex index."""
        return self.frag_held and index == self.frag_index

    def _status_answer(self, index):
        """FragSessionStatusAns for FragIndex index: what the session holds and misses, or that the
        collar holds no such session (SessionDoesNotExist, nothing received, nothing counted missing). Laid out as
        the last set-up heard was (codec's rows of that TS004 version): v2.0.0 puts Status first, with MICError,
        and sends Status alone for no session."""
        held = self._holds(index)
        d = self.decoder
        values = {"received_and_index": index << 14 | (held and (d.received if d is not None else self.frag_received)) & 0x3FFF,
                  "missing": held and min(self.still_needed(), 255), "session_does_not_exist": not held,
                  "mic_error": held and self.frag_mic_error}
        # a parity row dropped for want of RAM (update_fec._MATRIX_BYTES): TS004 v1.0.0's NotEnoughMatrixMemory, v2.0.0's
        # MemoryError; the session then needs data fragments
        values["not_enough_matrix_memory"] = values["memory_error"] = held and d is not None and d.dropped_rows > 0
        values["session"] = (values,) if held else ()  # v2.0.0's Received&index and MissingFrag
        self._answer("frag_session_status_ans", values, self.frag_version)

    def _answer(self, name, values, version=1):
        payload = codec.encode(name, values, version)
        port = codec.port_of(name)
        answers = self.answers
        if answers is None or port != self.answers_port:
            self.collar.queue_ack(port, payload)
        elif len(answers) + len(payload) <= codec.MAX_UPLINK_BYTES:
            answers.extend(payload)  # one uplink for the frame's answers

    def _inactive(self):
        return 1 - self.boot.active_slot if self.boot.active_slot in (0, 1) else 1

    def session_over(self, now):
        """The session is over (SESSION_SILENT_S without a word of it, or the delivery's end in the simulator):
        an image still missing fragments is truncated."""
        if self.state == RECEIVING:
            self.end_session()
            self._result("truncated", now)

    def end_session(self):
        """The TS004 session is no more (deleted, abandoned, refused): forget it in RAM and in flash."""
        self.frag_held = False
        self.storage.write(KEY_SESSION, b"")

    def save_session(self, whole):
        """Keep the held session in flash (at its set-up, and once its image is whole)."""
        received = self.decoder.received if self.decoder is not None else 0
        self.frag_received = received
        # a record written before v2.0.0 (or before MICError was kept) reads as v1.0.0's (no MICError)
        self.storage.write(KEY_SESSION, records.sealed(struct.pack(
            _SESSION_FORMAT, self.frag_index | self.frag_mic_error << 6 | (0x80 if self.frag_version == 2 else 0),
            whole, received & 0x3FFF)))

    def step(self, now):
        """Advance whatever the update waits for (called once per wake-up)."""
        if self.multicast is not None and self.multicast.step(now) and self.state == RECEIVING:
            # the window closed: the bridge learns what unicast must still bring, after the collar's own drawn
            # delay (as a multicast request's answer), so a group's collars do not all answer at that moment
            self.status_due = now + _installer().delay_s(self, now) << 2 | self.frag_index
        if self.state == RECEIVING and now - self.heard_s > SESSION_SILENT_S \
                and (self.multicast is None or not self.multicast.scheduled()):
            self.session_over(now)  # abandoned: the decoder's RAM is freed, the bridge hears "truncated"
        if self.block_ack_left and now >= self.block_ack_s:
            _installer().block_ack(self, now)
        due = self.status_due
        if due and now >= due >> 2:
            self.status_due = 0
            self._status_answer(due & 3)
        if self.trial_due:
            self.trial_due = False
            _installer().firmware_trial(self, now)
        elif self.state != IDLE and self.state != RECEIVING:  # solving, checking, composing, trials
            _installer().step(self, now)

    def _result(self, reason, now, kind=0, version=0, acked=False):
        """Report an outcome: kept in flash for status, acknowledged on port 31 (unless acked: the
        trial's radio test sent that ack). kind and version default to the image header's, when the
        image got that far (0: not known). An image's kind (update_image.KIND_*) is its index in
        codec.UPDATE_KINDS (a test pins them)."""
        h = self.header
        if not kind and h is not None:
            kind, version = h.kind, h.version
        self.last_result = reason
        self.last_kind = kind if 0 < kind < len(codec.UPDATE_KINDS) else 0
        self.last_version = version & 0xFFFFFF
        self.last_reason = codec.ack_code(reason)
        self.last_outcome = 1 if reason == "ok" else 3 if reason == "self_test_failed" else 2
        self.storage.write(KEY_RESULT, records.sealed(struct.pack(
            _RESULT_FORMAT, self.last_kind, self.last_outcome, self.last_version, self.last_reason)))
        self.state = IDLE
        self.decoder = None
        self.slot_job = None
        self.storage.write(KEY_MODEL_TRIAL, b"")  # an outcome is kept: a model install has nothing left to put back
        if not acked:
            self.ack(PORT_FRAGMENTS, codec.tag_of("data_fragment"), reason, now)

    def ack(self, on_port, cmd, reason, now):
        """Acknowledge on port 31 what came to on_port in command cmd: reason, an ACK_RESULTS name."""
        port, payload = codec.encode_packet("ack", {"time_s": now, "on_port": on_port, "cmd": cmd, "result": reason})
        self.collar.queue_ack(port, payload)
