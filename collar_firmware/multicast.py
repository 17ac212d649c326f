"""TS005 remote multicast set-up on the collar: its multicast groups and the Class C window.

Port 200 (codec table): PackageVersionReq, McGroupStatusReq (which groups the collar holds, with
their addresses), McGroupSetupReq / McGroupDeleteReq (a group's address,
its McKey still wrapped with the collar's McKEKey, and its frame counter range, handed to the
LoRaWAN stack through `hal.Radio.multicast_group`: only the stack holds the key-encryption key),
and McClassCSessionReq (the window's start in GPS seconds, its timeout 2**TimeOut s, frequency and
data rate). The collar checks each field against its bounds and answers with the package's error
bits (MC_ERR_*). A window opens at its start (`Radio.set_class_c`) and closes at its end
(`Radio.set_class_a`) whatever else happens, so a collar never stays in Class C draining its
battery; a reset with a window open puts the modem back in Class A at boot (update_restart.py: a
processor-only reset leaves the modem listening otherwise). Group 0 is the one provisioned with the
collar. The groups are kept in flash ("mc.groups") and hold across a processor-only reset (the modem
keeps their keys); a reset that cut the modem's power too forgets the ones set up over the air
(`modem_lost_power`), so McGroupStatusAns never names a group the modem can no longer decrypt.
A radio that cannot do Class C (`Radio.supports_class_c()` False: a modem without multicast) holds
no group: set-up answers IDerror and a session request McGroupUndefined (TS005 has no bit of its
own for a device without Class C; an undefined group is what such a device has), so the bridge
leaves that collar to unicast and the collar never waits for a window it cannot open.
"""

import struct

from collar_firmware import codec, records
from collar_firmware.compat import const
from collar_firmware.update import KEY_GROUPS, KEY_WINDOW

# TS005's package identifier and version (PackageVersionAns) and the bits of its answers (kept here,
# with the only code that sets them, so the loop's RAM does not hold them).
_MC_PACKAGE_ID = const(2)
_MC_PACKAGE_VERSION = const(1)
_MC_GROUPS = const(4)  # McGroupID is 2 bits
_MC_ERR_ID = const(0x04)  # McGroupSetupAns IDerror; McGroupDeleteAns McGroupUndefined
_MC_ERR_DR = const(0x04)  # McClassCSessionAns
_MC_ERR_FREQ = const(0x08)
_MC_ERR_UNDEFINED = const(0x10)
_MC_ERR_START_MISSED = const(0x20)

_PROVISIONED_GROUPS = const(1)  # bit mask of the groups whose keys the collar left the factory with
_MIN_FREQUENCY_HZ100 = const(8630000)  # EU868: 863-870 MHz, in the 100 Hz steps of DLFrequency
_MAX_FREQUENCY_HZ100 = const(8700000)
_MAX_DATA_RATE = const(7)  # EU868 DR0..DR7
_TIMEOUT_MASK = const(0x0F)  # SessionTimeOut: RFU 4 bits | TimeOut 4 bits
_MAX_TIME_TO_START_S = const(0xFFFFFF)  # TimeToStart is 3 bytes

CLOSED = const(2)  # what step() returns when it closed a window


class Multicast:
    """The collar's multicast groups and its Class C session (one at a time)."""

    def __init__(self, radio, storage):
        self.radio = radio
        self.storage = storage
        self.defined = _PROVISIONED_GROUPS
        self.addr = [0, 0, 0, 0]
        self._load()
        supports = getattr(radio, "supports_class_c", None)  # a radio without it cannot do Class C
        self.class_c = supports is not None and supports()
        if not self.class_c:
            self.defined = 0
        self.group = 0
        self.start_s = 0  # Unix second the window opens; 0: no session
        self.end_s = 0
        self.frequency_hz = 0
        self.data_rate = 0
        self.open = False
        self.closed = 0  # windows closed so far
        # TS003 TokenReq of the last AppTimeReq (asked before a window opens); bit 4 set while no request waits for
        # its AppTimeAns (none asked yet, or answered), so no 4-bit TokenAns matches it
        self.clock_token = 0x10

    def _load(self):
        body = records.kept(self.storage, KEY_GROUPS, 17)
        if body is not None:
            self.defined = body[0] & 0x0F
            self.addr = list(struct.unpack("<IIII", body[1:]))

    def _save(self):
        self.storage.write(KEY_GROUPS, records.sealed(bytes([self.defined]) + struct.pack("<IIII", *self.addr)))

    def modem_lost_power(self):
        """The modem's power went with the collar's (update.MODEM_LOST_RESETS): its stack lost the keys of the
        groups set up over the air, so they are no longer claimed (McGroupStatusAns says what it can
        decrypt) and the stack is told to forget them too; a provisioned group never set up again over
        the air (its address never learnt) stays, its keys being the factory's."""
        keep = 0
        for group in range(_MC_GROUPS):
            if self.is_defined(group) and _PROVISIONED_GROUPS & (1 << group) and not self.addr[group]:
                keep |= 1 << group
        if keep == self.defined:
            return
        for group in range(_MC_GROUPS):
            if self.is_defined(group) and not keep & (1 << group):
                self.addr[group] = 0
                try:
                    self.radio.multicast_delete(group)
                except OSError:
                    pass  # the stack lost it anyway
        self.defined = keep
        self._save()

    def is_defined(self, group):
        """Return True when group is a McGroupID the collar holds keys for."""
        return 0 <= group < _MC_GROUPS and self.defined & (1 << group) != 0

    def scheduled(self):
        """Return True while a session waits to open or is open."""
        return self.start_s != 0

    def wake_s(self):
        """Return the next instant the window opens or closes (0: none)."""
        if not self.start_s:
            return 0
        return self.end_s if self.open else self.start_s

    # ---- port 200 ----------------------------------------------------------------------

    def take(self, agent, name, msg, now):
        """Answer one TS005 request through the update agent's queue; before a window opens, ask the
        time (TS003) so the collar opens it when the fleet does. Here, not in update.py (with the
        clock answer), so the code is on the heap only once a port-200 frame came."""
        answer = self.handle(name, msg, now)
        if answer is None:
            return
        agent._answer(answer[0], answer[1])
        if name == "mc_class_c_session" and answer[1]["time_to_start_s"]:
            self.clock_token = (self.clock_token + 1) & 0x0F
            agent._answer("app_time_req", {"device_time_gps_s": codec.gps_from_unix(now),
                                           "ans_required": 1, "token": self.clock_token})

    def clock_answer(self, agent, msg, now):
        """Take a TS003 AppTimeAns (port 202) to the last AppTimeReq: set the clock by its correction. An answer to
        no request, an older one or one answered already is dropped (it would correct twice); a time no uplink could
        carry is refused on port 31 (out_of_range) and the request still waits for its answer."""
        if msg["message"] != "app_time_ans" or msg["token"] != self.clock_token:
            return
        t_s = now + msg["correction_s"]
        # before the GPS epoch no AppTimeReq can ask (GPS seconds) nor an uplink carry its time (u32 Unix seconds): a
        # collar set to 1958 could encode no uplink again, not even the request that would put it right (a correction,
        # i32, cannot take it past 2**32 before 2038)
        if t_s < codec.GPS_EPOCH_UNIX_S:
            agent.ack(codec.PORT_CLOCK, codec.tag_of("app_time_ans"), "out_of_range", now)
            return
        agent.collar.hal.clock.set_time_s(t_s)
        self.clock_token |= 0x10  # answered: a second answer would correct twice

    def handle(self, name, msg, now):
        """Take one TS005 request; return (answer name, values) or None."""
        if name == "mc_package_version":
            return ("mc_package_version_ans", {"package_id": _MC_PACKAGE_ID,
                                               "package_version": _MC_PACKAGE_VERSION})
        if name == "mc_group_status":
            return ("mc_group_status_ans", self._status(msg["req_group_mask"]))
        if name == "mc_group_setup":
            return ("mc_group_setup_ans", {"status": self._setup(msg)})
        if name == "mc_group_delete":
            return ("mc_group_delete_ans", {"status": self._delete(msg["group"], now)})
        if name == "mc_class_c_session":
            return self._session(msg, now)
        return None

    def _status(self, mask):
        """McGroupStatusAns: how many groups are defined, and those of mask with their McAddr."""
        total = 0
        answered = 0
        groups = []
        for group in range(_MC_GROUPS):
            if self.is_defined(group):
                total += 1
                if mask & (1 << group):
                    answered |= 1 << group
                    groups.append({"group": group, "mc_addr": self.addr[group]})
        return {"rfu": 0, "nb_total_groups": total, "ans_group_mask": answered, "groups": groups}

    def _setup(self, msg):
        group = msg["group"]
        if group >= _MC_GROUPS or msg["min_mc_fcount"] > msg["max_mc_fcount"] or not self.class_c:
            return _MC_ERR_ID | (group & 3)
        key = struct.pack("<IIII", msg["mc_key_encrypted_0"], msg["mc_key_encrypted_1"],
                          msg["mc_key_encrypted_2"], msg["mc_key_encrypted_3"])
        if not self.radio.multicast_group(group, msg["mc_addr"], key, msg["min_mc_fcount"], msg["max_mc_fcount"]):
            return _MC_ERR_ID | group
        self.defined |= 1 << group
        self.addr[group] = msg["mc_addr"]
        self._save()
        return group

    def _delete(self, group, now):
        if not self.is_defined(group):
            return _MC_ERR_ID | (group & 3)
        self.radio.multicast_delete(group)
        self.defined &= ~(1 << group)
        self.addr[group] = 0
        self._save()
        if self.start_s and self.group == group:
            self.end_s = now  # its window closes at the next step
        return group

    def _session(self, msg, now):
        group = msg["group"]
        status = group & 3
        if not self.is_defined(group):
            status |= _MC_ERR_UNDEFINED
        freq = msg["frequency_hz100"]
        if freq < _MIN_FREQUENCY_HZ100 or freq > _MAX_FREQUENCY_HZ100:
            status |= _MC_ERR_FREQ
        if msg["data_rate"] > _MAX_DATA_RATE:
            status |= _MC_ERR_DR
        start = codec.unix_from_gps(msg["session_time_gps_s"])
        end = start + (1 << (msg["timeout_log2_s"] & _TIMEOUT_MASK))
        if end <= now:
            status |= _MC_ERR_START_MISSED
        if status & ~3:
            return ("mc_class_c_session_ans", {"status": status, "time_to_start_s": []})
        if self.open:
            self.radio.set_class_a()  # a new session replaces the open one
            self.storage.write(KEY_WINDOW, b"")
            self.open = False
        self.group = group
        self.start_s = start
        self.end_s = end
        self.frequency_hz = freq * 100
        self.data_rate = msg["data_rate"]
        wait = start - now if start > now else 0
        return ("mc_class_c_session_ans", {"status": status,
                                           "time_to_start_s": [wait if wait < _MAX_TIME_TO_START_S
                                                               else _MAX_TIME_TO_START_S]})

    # ---- the window --------------------------------------------------------------------

    def step(self, now):
        """Open the window at its start, close it at its end; return CLOSED when it closed one."""
        if not self.start_s:
            return 0
        if now >= self.end_s:
            if self.open:
                self.radio.set_class_a()
                self.storage.write(KEY_WINDOW, b"")
            self.open = False
            self.start_s = 0
            self.end_s = 0
            self.closed += 1
            return CLOSED
        if not self.open and now >= self.start_s:
            self.storage.write(KEY_WINDOW, b"\x01")  # before the modem listens: a reset puts it back in Class A
            self.radio.set_class_c(self.frequency_hz, self.data_rate)
            self.open = True
        return 0
