"""Rebuilding, checking and installing an update image, and the trial that follows.

Loaded by update.UpdateAgent with the first fragmentation set-up or a trial boot, never at boot:
its code (and update_fec's, update_image's) stays off the collar's heap until an update comes.
Fragments are rebuilt by update_fec.FecDecoder straight into the inactive slot in flash (records
"s<slot>f<i>", parity rows "s<slot>p<i>"), in bounded RAM. A complete image (update_image.py) is
checked for size, hardware and version, its payload against the SHA-256 its header carries (a share
a wake-up, PayloadCheck), and its header signature by trust.Trust (a few steps per wake-up); then a
model is installed and tried on its golden vector, or a firmware is named on trial in the boot record
and the collar reboots. What reads many kilobytes (the payload's hash, a delta's composition, the
check of a slot on trial) is a Stepped walk of at most BYTES_PER_STEP bytes a wake-up.

A slot's firmware is its bundle (update_image.py), found through the slot's sealed descriptor
(update_slot.py, loaded with a firmware's install or trial only). A whole image's bundle is its
payload, left where the fragments put it. A delta's bundle is composed into records "s<slot>c<i>" of
the inactive slot: its new modules and the running slot's kept ones, one block of RAM at a time,
checked against the length and SHA-256 its signed header names; the active slot is only read. The
descriptor is written once the slot is complete and checked, the boot record after it, so a power
cut before leaves the collar on its version. The set-up of any session first clears the inactive
slot's descriptor (its fragments go over that slot). The trial boot confirms only a slot whose
bundle reads record by record to its end and hashes to what the image signed.
"""

import hashlib
import struct

from collar_firmware import codec, config, records, update_fec, update_image
from collar_firmware.classifier import GOOD_SUFFIX
from collar_firmware.compat import const
from collar_firmware.trust import digest
from collar_firmware.update import (
    BLOCK_ACK_RETRY_S,
    COMPOSING,
    FIRMWARE_TRIAL,
    IDLE,
    KEY_COMPOSE,
    KEY_MODEL_PREV,
    KEY_MODEL_TRIAL,
    KEY_TRIAL_HEADER,
    KEYS_BLOCK_ACK,
    MODEL_TRIAL,
    NO_SLOT,
    PORT_FRAGMENTS,
    RECEIVING,
    SOLVING,
    VERIFYING,
)

MAX_IMAGE_BYTES = update_image.MAX_HEADER_BYTES + update_image.MAX_PAYLOAD_BYTES
KEY_MODEL_GOOD = "model" + GOOD_SUFFIX  # classifier.load_model's last good copy of "model"
KEY_GOOD_PREV = "model.good.prev"  # that copy as it was before the install being tried
COPY_BYTES = 256  # bytes read from flash at a time while hashing or copying (update_slot.COMPOSE_BLOCK too)
# the last TS004 v2.0.0 SessionCnt taken, kept in two sealed copies written alternately: a reboot or a power cut
# mid-write leaves one, so a replayed set-up is refused after a reset too
KEYS_SESSION_CNT = ("upd.cnt0", "upd.cnt1")
# FragDataBlockReceivedReq (TS004 v2.0.0 3.5: the application retransmits it until FragDataBlockReceivedAns) is
# sent at most this many times, update.BLOCK_ACK_RETRY_S apart: each one an ack-priority uplink the scheduler's
# duty cycle paces; the first after BlockAckDelay's random delay (_mic_checked)
BLOCK_ACK_TRIES = const(4)
BYTES_PER_STEP = 8192  # bytes a wake-up hashes, composes or checks (Stepped: 17 M fuel a check, 23-28 M composing; docs/updates.md)


def _slot():
    """Return update_slot, loaded with a firmware's install or trial (never for a model)."""
    from collar_firmware import update_slot

    return update_slot


def slot_key(slot):
    """Return the key of a slot's descriptor."""
    return "s%d.bundle" % slot


class SlotStore:
    """One series of records of a flash slot: the fragments the FEC decoder writes ("f") or a composed
    bundle ("c"), block i under "s<slot><series><i>"."""

    def __init__(self, storage, slot, series="f"):
        self.storage = storage
        self.slot = slot
        self.series = series

    def write(self, i, data):
        """Write block i of the series."""
        self.storage.write("s%d%s%d" % (self.slot, self.series, i), bytes(data))

    def read(self, i):
        """Return block i of the series (OSError when it is not in flash)."""
        data = self.storage.read("s%d%s%d" % (self.slot, self.series, i))
        if data is None:
            raise OSError("slot %d has no record %s%d" % (self.slot, self.series, i))
        return data

    def write_row(self, p, data):
        """Write the parity row whose pivot is fragment p."""
        self.storage.write("s%dp%d" % (self.slot, p), bytes(data))

    def read_row(self, p):
        """Return the parity row whose pivot is fragment p."""
        return self.storage.read("s%dp%d" % (self.slot, p))


class Stepped:
    """Bytes handed on a bounded share a wake-up (step: at most BYTES_PER_STEP): the record
    read(pos..end), then whatever _next points at, until _next says the walk is over (True or False)."""

    read = None
    pos = end = 0
    share = BYTES_PER_STEP

    def step(self):
        """Hand on the next share; return None while there is more, else what _next ended with."""
        budget = self.share
        while budget:
            if self.pos < self.end:
                k = min(self.end - self.pos, COPY_BYTES, budget)
                self._take(self.read(self.pos, self.pos + k))
                self.pos += k
                budget -= k
            else:
                done = self._next()
                if done is not None:
                    return done
        return None


def setup(agent, msg, now):
    """A fragmentation session set-up (TS004 v1.0.0's, or v2.0.0's with SessionCnt and the block's MIC):
    checked against the bounds before anything is allocated."""
    agent.header = None
    nb_frag = msg["nb_frag"]
    frag_size = msg["frag_size"]
    index = msg["frag_index"]
    v2 = "session_cnt" in msg
    # FragAlgo: only TS004's parity code; DataBlockIntKey for every session (its MIC in v2.0.0, its drawn delays)
    if (msg["control"] >> 3) & 7 or (not _mic_ready(agent) and v2):
        agent._answer("frag_session_setup_ans", {"status": index << 6 | 1})  # EncodingUnsupported
        agent.end_session()
        return
    if v2:
        cnt, newest = _session_cnt(agent.storage)
        if msg["session_cnt"] <= cnt:  # v2.0.0: SessionCnt grows, a replay is refused (after a reset too)
            agent._answer("frag_session_setup_ans", {"status": index << 6 | 0x10})  # SessionCnt replay
            return
    # a file of no fragments, of empty ones, or padded by a whole fragment holds nothing: malformed, not too large
    empty = nb_frag < 1 or frag_size < 1 or msg["padding"] >= frag_size
    if empty or nb_frag * frag_size > MAX_IMAGE_BYTES or nb_frag > update_fec.MAX_FRAGMENTS \
            or frag_size > update_fec.MAX_FRAG_SIZE:
        agent._answer("frag_session_setup_ans", {"status": index << 6 | 2})  # TS004: not enough memory
        agent.end_session()  # a refused set-up leaves the collar without a session
        reason = "malformed" if empty else "too_large"
        if agent.state == RECEIVING:  # it ended the session of its FragIndex: that session's outcome
            agent._result(reason, now)
        else:  # it ended none: said on port 31, the last update's result stays what status reports
            agent.ack(PORT_FRAGMENTS, codec.tag_of("data_fragment"), reason, now)
        return
    agent.storage.write(slot_key(agent._inactive()), b"")  # its fragments go over that slot's firmware
    agent.storage.write(KEY_COMPOSE, b"")  # and over the fragments a delta being composed reads
    agent.slot_job = None
    agent.decoder = update_fec.FecDecoder(nb_frag, frag_size, SlotStore(agent.storage, agent._inactive()), True)
    agent.image_len = nb_frag * frag_size - msg["padding"]
    agent.frag_index = index  # TS004 FragIndex: fragments of another session are not ours
    agent.frag_groups = msg["mc_group_bit_mask"]  # the multicast groups that may feed it (unicast always may)
    agent.frag_version = 2 if v2 else 1
    agent.frag_mic_error = 0
    # v2.0.0: what the rebuilt block's MIC is checked against, and whether FragDataBlockReceivedReq is asked for;
    # v1.0.0: SessionCnt 0 and Control, for the delay drawn before a multicast status request's answer
    agent.frag_v2 = (msg.get("session_cnt", 0), msg.get("mic"), msg["descriptor"], msg["control"])
    if v2:  # over the older copy, before the set-up is answered: a cut leaves the newest one whole
        agent.storage.write(KEYS_SESSION_CNT[1 - newest], records.sealed(struct.pack("<H", msg["session_cnt"])))
    for key in KEYS_BLOCK_ACK:  # what the last session owed is over (a cut before: still that session's)
        agent.storage.write(key, b"")
    agent.block_ack_left = 0  # a new session: what the last one owed the server is over
    agent.frag_held = True
    agent.heard_s = now  # SESSION_SILENT_S counts from here and from each fragment of the session
    agent.save_session(0)  # a reset before the image is whole ends the session (update_restart.py)
    agent.state = RECEIVING
    agent._answer("frag_session_setup_ans", {"status": index << 6})  # FragIndex, no error bit


def delete(agent, msg):
    """TS004 FragSessionDeleteReq: the open session of that FragIndex is dropped (its image is never checked
    or installed; the slot it wrote holds no descriptor); the answer says whether there was one."""
    index = msg["frag_index"]
    held = agent._holds(index)
    if held:
        agent.block_ack_left = 0
        agent.end_session()
        if agent.state == RECEIVING or agent.state == SOLVING:
            agent.state = IDLE
            agent.decoder = None
            agent.header = None
    agent._answer("frag_session_delete_ans", {"frag_index": index, "session_does_not_exist": 0 if held else 1})


def fragment(agent, msg, now):
    """One data fragment of the open session; the image is checked once the decoder completes it."""
    if msg["index_and_n"] >> 14 != agent.frag_index:
        return
    n = msg["index_and_n"] & 0x3FFF
    if agent.decoder.add(n, bytes(msg["data"])):
        _whole(agent, now)
    elif agent.decoder.solving:
        agent.state = SOLVING  # every fragment is known: the wake-ups write the missing ones (step)


def _whole(agent, now):
    """Every fragment of the session is in flash: kept so (a reset still answers for it), then checked (a
    v2.0.0 session's block first against its MIC, a share a wake-up: MicCheck)."""
    agent.save_session(1)
    agent.state = VERIFYING
    if agent.frag_version > 1:
        agent.slot_job = MicCheck(agent)
        return
    _check_image(agent, now)


# TS004 v2.0.0's data block MIC, as LoRa Basics Modem's v2.0.0 package computes it:
#   DataBlockIntKey = aes128_encrypt(root key, 0x30 | pad16)
#   B0  = 0x49 | SessionCnt (u16) | FragIndex (u8) | Descriptor (u32) | 0 (u32) | block size (u32), little-endian
#   MIC = the first 4 bytes of AES-CMAC(DataBlockIntKey, B0 | block), read as a little-endian u32
# The root key (the LoRaWAN 1.0.x GenAppKey, the 1.1 AppKey) and the derived key never leave the LR1110: the key is
# derived inside it (hal.Radio.derive_key, lr11xx_crypto_derive_key) and the CMAC (RFC 4493) is chained here one
# 16-byte block at a time, each block enciphered by the engine (hal.Radio.aes_encrypt,
# lr11xx_crypto_aes_encrypt_01): the engine's own lr11xx_crypto_compute_aes_cmac takes at most 256 bytes in one
# call and keeps nothing between calls. RAM: the chain, a pending block, two subkeys.
# Keys by the names the engine's driver maps to its slots: "app_key" (the root), "data_block_int_key" (derived).


def _session_cnt(storage):
    """Return (the last v2.0.0 SessionCnt taken, -1 for none; the index of the copy holding it)."""
    best, newest = -1, 1
    for i in (0, 1):
        body = records.kept(storage, KEYS_SESSION_CNT[i], 2)
        if body is not None and body[0] | body[1] << 8 > best:
            best, newest = body[0] | body[1] << 8, i
    return best, newest


def _mic_ready(agent):
    """Derive DataBlockIntKey in the radio's crypto engine; False when the radio has none or refuses."""
    radio = agent.collar.hal.radio
    if not hasattr(radio, "derive_key"):
        return False
    try:
        radio.derive_key("app_key", "data_block_int_key", b"\x30" + bytes(15))
    except OSError:
        return False
    return True


def _double(block):
    """RFC 4493's subkey step: block shifted left one bit, 0x87 folded in when its top bit fell out."""
    out = bytearray(16)
    carry = 0
    for i in range(15, -1, -1):
        v = block[i]
        out[i] = ((v << 1) | carry) & 0xFF
        carry = v >> 7
    if block[0] & 0x80:
        out[15] ^= 0x87
    return out


class Cmac:
    """AES-CMAC over total bytes handed in by update(), each block enciphered by the radio with key."""

    def __init__(self, radio, key, total):
        self.radio = radio
        self.key = key
        self.total = total
        self.done = 0  # bytes chained so far
        self.chain = bytearray(16)
        self.pending = bytearray()
        self.k1 = _double(radio.aes_encrypt(key, bytes(16)))
        self.k2 = _double(self.k1)

    def _cipher(self, block):
        chain = self.chain
        for j in range(16):
            chain[j] ^= block[j]
        self.chain = bytearray(self.radio.aes_encrypt(self.key, bytes(chain)))

    def update(self, data):
        """Take the next bytes; every block but the last is chained at once."""
        p = self.pending
        p.extend(data)
        i = 0
        while len(p) - i >= 16 and self.done + 16 < self.total:
            self._cipher(p[i:i + 16])
            i += 16
            self.done += 16
        self.pending = p[i:] if i else p

    def mic(self):
        """Return the first 4 bytes of the CMAC as a little-endian u32 (every byte must have come)."""
        last = bytearray(16)
        p = self.pending
        last[:len(p)] = p
        if len(p) == 16:  # a whole last block (B0 makes the input 16 bytes at least)
            sub = self.k1
        else:
            last[len(p)] = 0x80
            sub = self.k2
        for j in range(16):
            last[j] ^= sub[j]
        self._cipher(last)
        c = self.chain
        return c[0] | c[1] << 8 | c[2] << 16 | c[3] << 24


class MicCheck(Stepped):
    """TS004 v2.0.0: the rebuilt block's MIC computed a share a wake-up (step: True when it is the set-up's, False
    when not)."""

    share = 2048  # 128 blocks enciphered by the radio a wake-up

    def __init__(self, agent):
        session_cnt, self.expected, descriptor, _ack = agent.frag_v2
        self.read = lambda start, stop: _image(agent, start, stop)
        self.end = agent.image_len
        self.cmac = Cmac(agent.collar.hal.radio, "data_block_int_key", 16 + self.end)
        self.cmac.update(struct.pack("<BHBIII", 0x49, session_cnt, agent.frag_index, descriptor, 0, self.end))
        self._take = self.cmac.update

    def _next(self):
        return self.cmac.mic() == self.expected


def _mic_checked(agent, ok, now):
    """The block's MIC is known: FragDataBlockReceivedReq when the set-up asked for it (TS004 v2.0.0 3.5); a
    block whose MIC is not the set-up's is not processed (refused as tampered), the session still answers."""
    agent.slot_job = None
    agent.frag_mic_error = 0 if ok else 1
    if not ok:
        agent.save_session(1)  # a reset still answers MICError for it
    if agent.frag_v2[3] & 0x40:  # AckReception: the first report waits its drawn delay (delay_s), not the whole group at once
        agent.block_ack_left = BLOCK_ACK_TRIES
        agent.block_ack_s = now + delay_s(agent, 0)
        keep_block_ack(agent, 1)
    if ok:
        _check_image(agent, now)
    else:
        agent._result("tampered", now)


def delay_s(agent, t):
    """Return rand() * 2**(BlockAckDelay + 4) s, rand() in [0, 1) (TS004: Control bits 2..0 of the held session's
    set-up; LoRa Basics Modem's v2.0.0 package waits 0..2**(BlockAckDelay + 4) s), so a multicast group's collars do
    not all answer at once: before the first FragDataBlockReceivedReq (t 0), before the answer to a multicast
    FragSessionStatusReq heard at t. rand() is 16 bits the radio's crypto engine enciphers under the collar's own
    DataBlockIntKey from SessionCnt (0 in v1.0.0), FragIndex and t (0x52 first: never B0's 0x49, never all zeros):
    a value no other collar draws, new each session and request, with no key in the collar's Python (0 when the
    engine refuses or holds no such key, e.g. a radio without one, or after a reset)."""
    try:
        cnt, _mic, _descriptor, control = agent.frag_v2
        r = agent.collar.hal.radio.aes_encrypt("data_block_int_key", struct.pack(
            "<BHBI", 0x52, cnt, agent.frag_index, t) + bytes(8))
        return (r[0] | r[1] << 8) << (control & 7) + 4 >> 16
    except Exception:
        return 0


def keep_block_ack(agent, was):
    """Keep what FragDataBlockReceivedReq still owes (sends left, when the next is due) in flash over the copy that
    does not hold the state before, whose sends left were `was` (a record of n > 0 left lies in copy n & 1): a power
    cut tearing the write leaves that one whole, so a reset never forgets the server is owed its answer, at worst
    sends it once more (update_restart.py takes up the fewest left)."""
    agent.storage.write(KEYS_BLOCK_ACK[was & 1 ^ 1], records.sealed(struct.pack(
        "<BI", agent.block_ack_left, agent.block_ack_s)))


def block_ack(agent, now):
    """Send FragDataBlockReceivedReq for the held session (again, until its answer stops it: update.py), at most
    BLOCK_ACK_TRIES times, update.BLOCK_ACK_RETRY_S apart, each send kept in flash."""
    agent.block_ack_left -= 1
    agent.block_ack_s = now + BLOCK_ACK_RETRY_S
    keep_block_ack(agent, agent.block_ack_left + 1)
    agent._answer("frag_data_block_received", {"frag_index": agent.frag_index, "mic_error": agent.frag_mic_error})


def _read(store, size, start, stop):
    """Return bytes start..stop of what a slot's series of size-byte blocks holds."""
    out = bytearray()
    i = start // size
    while i * size < stop:
        frag = store.read(i)
        lo = start - i * size if start > i * size else 0
        hi = stop - i * size if stop < (i + 1) * size else size
        out.extend(frag[lo:hi])
        i += 1
    return out


def _image(agent, start, stop):
    """Return bytes start..stop of the rebuilt image (read from the slot's fragments)."""
    return _read(agent.decoder.store, agent.decoder.frag_size, start, stop)


class PayloadCheck(Stepped):
    """The rebuilt image's payload hashed a share a wake-up (step: True when it has the SHA-256 its header
    h carries, False when not)."""

    def __init__(self, agent, h):
        self.h = h
        self.read = lambda start, stop: _image(agent, start, stop)
        self.pos = h.size
        self.end = h.size + h.payload_len
        self.digest = hashlib.sha256()
        self._take = self.digest.update

    def _next(self):
        return self.digest.digest() == self.h.payload_sha256


def _check_image(agent, now):
    """The rebuilt image's header checked; its payload is hashed over the next wake-ups (VERIFYING)."""
    try:
        head = _image(agent, 0, min(agent.image_len, update_image.MAX_HEADER_BYTES))
        h = update_image.parse_header(head)
        agent.header = h
        running = agent.boot.active_version if h.kind == update_image.KIND_FIRMWARE \
            else agent.collar.model.version
        update_image.check(h, agent.image_len, config.HARDWARE_ID, running)
        if h.base_version:
            _slot().base_of(agent, h)  # before the signature's seconds of work: the bundle it is built on is here
    except update_image.ImageRefused as exc:
        agent._result(exc.reason, now)
        return
    agent.signed = bytes(head[:h.signed_len])
    agent.slot_job = PayloadCheck(agent, h)


def step(agent, now):
    """Advance the solve, the signature check, a delta's composition, the check of a slot on trial or the
    model's trial by one wake-up."""
    if agent.state == COMPOSING:
        _compose(agent, now)
    elif agent.state == FIRMWARE_TRIAL:
        _check_trial(agent, now)
    elif agent.state == SOLVING:
        if agent.decoder.solve():
            _whole(agent, now)
    elif agent.state == VERIFYING and agent.header is None:  # v2.0.0's MIC (v1.0.0 has its header before VERIFYING)
        ok = agent.slot_job.step()
        if ok is not None:
            _mic_checked(agent, ok, now)
    elif agent.state == VERIFYING:
        t = agent.collar.trust
        h = agent.header
        check = agent.slot_job
        if check is not None:  # the payload's SHA-256 first, then a key the collar holds, then the signature
            held = check.step()
            if held is None:
                return
            agent.slot_job = None
            if not held or h.key_id not in t.keys:
                agent._result("unsigned" if held else "tampered", now)
                return
        if t.accept(h.key_id, digest(agent.signed), h.signature):
            _install(agent, now)
        elif t.pending is None:
            agent._result("tampered", now)  # checked to the end: the signature is not the key's
    elif agent.state == MODEL_TRIAL:
        if agent.header is None:  # a reset in the install: what it replaced goes back, the campaign sends it again
            _rollback_model(agent, "truncated", now)
            return
        model = agent.collar.model
        if getattr(model, "version", 0) == agent.header.version:
            _model_trial(agent, now)
        elif agent.collar.trust.pending is None:
            _rollback_model(agent, "tampered", now)  # the blob itself did not verify


def _install(agent, now):
    h = agent.header
    storage = agent.storage
    if h.kind == update_image.KIND_MODEL:
        blob = _image(agent, h.size, h.size + h.payload_len)
        _vouch_for_model(agent, blob)
        # what the collar ran, and the last good copy it falls back to: the trial's load makes the new
        # blob the good copy, so a rollback must put both back (b"": there was none)
        previous = storage.read("model")
        storage.write(KEY_MODEL_PREV, previous if previous is not None else b"")
        good = storage.read(KEY_MODEL_GOOD)
        storage.write(KEY_GOOD_PREV, good if good is not None else b"")
        storage.write(KEY_MODEL_TRIAL, b"\x01")  # a reset from here puts back what the install replaces
        storage.write("model", bytes(blob))
        agent.state = MODEL_TRIAL
        agent.collar.reload_model()
        agent.step(now)
        return
    if h.base_version:  # composed from the next wake-up on, as after a reboot: from the record
        storage.write(KEY_COMPOSE, records.sealed(bytes((agent.decoder.frag_size,)) + agent.signed + h.signature))
        agent.state = COMPOSING
        return
    # the bundle is the payload, where the fragments lie
    _slot().describe(storage, agent._inactive(), h.version, "f", agent.decoder.frag_size, h.size, h.payload_len,
                     h.payload_sha256)
    _trial(agent, h)


def _compose(agent, now):
    """Compose the next share of a verified delta's bundle (update_slot.Composition); once it is whole, name it
    on trial. The first share reads what to compose from the record the install wrote (KEY_COMPOSE: the
    fragment size, a u8 as update_fec.MAX_FRAG_SIZE allows, the signed header and its signature), so after
    a reboot the composition starts again; a record torn by a power cut as it was written leaves the
    collar on its version (refused: truncated)."""
    try:
        if agent.slot_job is None:
            body = records.unsealed(agent.storage.read(KEY_COMPOSE))
            if body is None:
                raise update_image.ImageRefused("truncated", "")
            agent.header = h = update_image.parse_header(body[1:])
            agent.signed = bytes(body[1:1 + h.signed_len])
            agent.slot_job = _slot().Composition(agent, h, body[0])
        done = agent.slot_job.step()
    except update_image.ImageRefused as exc:
        agent.storage.write(KEY_COMPOSE, b"")
        agent._result(exc.reason, now)
        return
    if done:
        agent.storage.write(KEY_COMPOSE, b"")  # a cut before the boot record leaves the version it runs
        agent.slot_job = None
        _trial(agent, agent.header)


def _trial(agent, h):
    """Name the inactive slot, whose bundle is whole and described, on trial, and reboot into it."""
    storage = agent.storage
    storage.write(KEY_TRIAL_HEADER, records.sealed(agent.signed + h.signature))
    agent.boot.trial_slot = agent._inactive()
    agent.boot.trial_version = h.version
    agent.boot.save(storage)
    agent.state = IDLE
    agent.collar.request_reboot()  # the trial boot: the new image runs, the self-test decides


def _vouch_for_model(agent, blob):
    """The image's verified signature covers the blob byte for byte: its own signature needs no
    second check (a blob that is not signed by a held key still fails to load)."""
    if len(blob) < 16 + 68 or not blob[5] & 1:
        return
    body_len = struct.unpack_from("<I", blob, 8)[0]
    end = 16 + body_len
    if len(blob) == end + 68:
        agent.collar.trust.vouch(blob[end + 1], memoryview(blob)[0:end], bytes(blob[end + 4:]))


def _golden_ok(agent, h, model=None):
    """True when model (default: the one the collar runs) puts h's golden vector in its class."""
    model = agent.collar.model if model is None else model
    if not h.golden:
        return True
    if not hasattr(model, "predict") or len(h.golden) != model.n_features:
        return False
    return model.predict(h.golden) == h.golden_class


def _model_trial(agent, now):
    if _golden_ok(agent, agent.header):
        agent.state = IDLE
        agent._result("ok", now)
    else:
        _rollback_model(agent, "self_test_failed", now)


def _rollback_model(agent, reason, now):
    """Put back the model and the good copy the collar had before the install, then load what they hold
    (the shipped model when there were none): the refused blob is neither run nor kept as good."""
    good = agent.storage.read(KEY_GOOD_PREV)
    agent.storage.write(KEY_MODEL_GOOD, good if good is not None else b"")
    previous = agent.storage.read(KEY_MODEL_PREV)
    agent.storage.write("model", previous if previous is not None else b"")
    agent.state = IDLE
    agent.collar.reload_model()
    agent._result(reason, now)


def firmware_trial(agent, now):
    """First wake-up of a firmware on trial: its slot is checked over the next wake-ups (FIRMWARE_TRIAL,
    update_slot.SlotCheck), then the self-test confirms it or rolls back. A power cut meanwhile leaves
    the boot record naming the trial: the check starts again after the reboot."""
    if agent.boot.trial_slot == NO_SLOT:
        return
    agent.header = agent.slot_job = None
    agent.state = FIRMWARE_TRIAL
    try:
        h = update_image.parse_header(records.unsealed(agent.storage.read(KEY_TRIAL_HEADER)))
        slots = _slot()
        slots.adopt(agent.storage, agent.boot.trial_slot, h)  # installed by a firmware before descriptors
        agent.slot_job = slots.SlotCheck(agent.storage, agent.boot.trial_slot, h)
    except Exception:
        pass  # no trial header, or a broken one: rolled back below
    _check_trial(agent, now)


def _check_trial(agent, now):
    """Check the next share of the slot on trial; once it is read, confirm it when it holds the signed
    bundle and the self-test passes, else roll back to the slot the collar ran."""
    check = agent.slot_job
    try:
        held = check.step()  # no check (None): AttributeError, not held
        if held is None:
            return
        ok = held and _self_test(agent, check.h)
    except Exception:
        ok = False
    boot = agent.boot
    trial_version = boot.trial_version
    if ok:
        boot.active_slot = boot.trial_slot
        boot.active_version = boot.trial_version
    boot.trial_slot = NO_SLOT
    boot.trial_version = 0
    boot.save(agent.storage)
    # a passed self-test's last check sent the "ok" ack itself: not queued twice
    agent._result("ok" if ok else "self_test_failed", now, update_image.KIND_FIRMWARE, trial_version, ok)


def _shipped_model(agent):
    """The model a firmware's golden vector was made with (release.golden_vector): the one it ships, loaded
    when the collar runs another (a model update's may put that vector in another class: it is no fault
    of the firmware). Raises ModelError when the firmware's own model does not load."""
    model = agent.collar.model
    if getattr(model, "source", None) == "default":
        return model
    from collar_firmware import classifier

    return classifier.load_default(agent.collar.trust.blob_verifier())


def _self_test(agent, h):
    """The sensors answer, the classifier reproduces the golden vector, the radio sends."""
    hal = agent.collar.hal
    if hal.imu.read_fifo(agent.collar.accel_buf) <= 0 or hal.power.battery_mv() <= 0 \
            or not _golden_ok(agent, h, _shipped_model(agent)):
        return False
    ack = codec.encode("ack", {"time_s": hal.clock.now_s(), "on_port": PORT_FRAGMENTS,
                               "cmd": codec.tag_of("data_fragment"), "result": "ok"})
    return hal.radio.send(codec.port_of("ack"), ack, False) is not False
