"""What a reset left of an over-the-air update's radio state, put right at boot.

Loaded by update.UpdateAgent only when flash holds such state (an open session or window, or groups
after a reset that cut the modem's power), so an ordinary boot's heap pays nothing for it.
  - A TS004 session still missing fragments when the collar reset cannot go on: which fragments it
    held, and its parity rows, lived in RAM. It ends: the collar says so at once with a
    FragSessionStatusAns of that FragIndex with SessionDoesNotExist (it would not hear the window's
    status request, its window being closed below), and answers every later status request so, so
    the bridge sets up a new session by unicast; no update outcome is reported (nothing was refused:
    the campaign goes on). Its fragments lie in the inactive slot, which the set-up left without a
    descriptor: nothing of a half image is checked, installed or booted.
  - A session whose image was whole is still answered for (nothing missing), and a TS004 v2.0.0 one's
    FragDataBlockReceivedReq that the server has not answered goes on where it was (the fewest sends left of
    the two copies update_install.keep_block_ack writes; the next due at most update.BLOCK_ACK_RETRY_S ahead,
    so a clock set back meanwhile delays it no longer than that).
  - A Class C window open at the reset: a processor-only reset (watchdog, software, pin, lockup) leaves
    the modem listening, draining the battery for a window nobody closes: it goes back to Class A.
  - After a reset that cut the modem's power too (update.MODEM_LOST_RESETS) the stack lost the keys of
    the multicast groups set up over the air: they are no longer claimed (multicast.modem_lost_power).
"""

import struct

from collar_firmware import records
from collar_firmware.update import (
    _SESSION_FORMAT,
    BLOCK_ACK_RETRY_S,
    KEY_GROUPS,
    KEY_SESSION,
    KEY_WINDOW,
    KEYS_BLOCK_ACK,
)


def after_reset(agent, modem_lost):
    """Put right what the reset left (modem_lost: the modem's power went too)."""
    storage = agent.storage
    if storage.read(KEY_WINDOW):
        try:
            agent.collar.hal.radio.set_class_a()
            storage.write(KEY_WINDOW, b"")
        except OSError:
            pass  # the modem refused: asked again at the next boot (its window is over either way)
    body = records.kept(storage, KEY_SESSION, 4)  # struct.calcsize(_SESSION_FORMAT)
    if body is not None:
        index, whole, received = struct.unpack(_SESSION_FORMAT, body)
        agent.frag_version = 2 if index & 0x80 else 1  # its answers keep the layout of its set-up
        if whole:
            agent.frag_index, agent.frag_received, agent.frag_held = index & 3, received, True
            agent.frag_mic_error = index >> 6 & 1  # its status answers still say the block failed its MIC
            owed = None
            for key in KEYS_BLOCK_ACK if index & 0x80 else ():
                body = records.kept(storage, key, 5)  # struct.calcsize("<BI"): sends left, next due
                if body is not None and (owed is None or body[0] < owed[0]):
                    owed = struct.unpack("<BI", body)
            if owed:
                agent.block_ack_left = owed[0]
                agent.block_ack_s = min(owed[1], agent.collar.now_s + BLOCK_ACK_RETRY_S)
        else:
            agent.end_session()
            agent._status_answer(index & 3)  # unasked: SessionDoesNotExist (the modem left the window)
    elif storage.read(KEY_SESSION):
        agent.end_session()  # torn by a power cut as it was written: no session
    if modem_lost and storage.read(KEY_GROUPS):
        from collar_firmware import multicast

        multicast.Multicast(agent.collar.hal.radio, storage).modem_lost_power()
