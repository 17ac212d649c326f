"""Which FragSessionSetupReq a collar's firmware reads: the one table the bridge sets collars up from.

TS004's FragSessionSetupReq opens with one FragSession byte: RFU 2 bits | FragIndex 2 | McGroupBitMask 4.
Tembo's firmware up to 1.0.0 read that byte as McGroupBitMask in bits 5..2 and FragIndex in bits 1..0:
given TS004's 0x01 (FragIndex 0, group 0) it opens session 1 and drops every fragment of session 0, so
it never rebuilds the image. The bridge therefore encodes each collar's set-up for the firmware that
collar reports running (its status uplinks' fw_version, kept on the device); everything else of the
delivery is alike for both (the DataFragment's FragIndex in bits 15..14, the answers' error bits), so
one multicast group carries the fragments to collars of either layout.

A collar whose firmware the bridge has not heard yet gets a byte that both read alike (EITHER): its
FragIndex in bits 5..4 and in bits 1..0, group 0's bit in bit 2 (0x04 for FragIndex 0, 0x15 for 1, 0x26
for 2, 0x37 for 3). Neither firmware reads the group mask (each hears its fragments on the group the
delivery set it up in), so bits 5..2, 1.0.0's mask, may carry TS004's FragIndex; read as TS004, the
mask holds group 0's bit only for an odd FragIndex, and 1.0.0's can name groups 0 and 1 only. (The old
layout alone is right for FragIndex 0 only: 1.0.1 reads 0x05, FragIndex 1 as 1.0.0 has it, as 0.)
1.0.0's FragSessionSetupAns carries no FragIndex (status 0 whatever it took), so an answer read as
FragIndex 0 is all a collar on 1.0.0 can give: `answers_set_up` takes it as the answer to a set-up of
any FragIndex, and a TS004 firmware's only under the FragIndex set up (TS004 v1.0.0 3.2, v2.0.0 3.3 Table
14: StatusBitMask bits 7..6 are the FragIndex). FragSessionStatusAns (Received&index bits 15..14) and
FragSessionDeleteAns (Status bits 1..0) name the FragIndex asked about in every firmware.
"""

from __future__ import annotations

from dataclasses import dataclass

from collar_firmware import codec
from collar_firmware.update import version_raw


@dataclass(frozen=True)
class SetupLayout:
    """Where firmware reads FragIndex and McGroupBitMask in FragSessionSetupReq's FragSession byte: the
    FragIndex is written at every one of index_shifts, the mask's low mask_bits bits at mask_shift;
    answered_indexes(i): the FragIndex values (bits 7..6) its FragSessionSetupAns to a set-up of i can carry."""

    name: str
    index_shifts: tuple[int, ...]
    mask_shift: int
    mask_bits: int = 4
    names_index_in_answer: bool = True  # False: the answer's bits 7..6 are 0 whatever was set up
    may_not_name_index: bool = False  # a firmware of either kind: the answer may carry the FragIndex or 0

    def answered_indexes(self, frag_index: int) -> tuple[int, ...]:
        """Return the FragIndex values a FragSessionSetupAns to a set-up of `frag_index` carries."""
        if not self.names_index_in_answer:
            return (0,)
        return (frag_index, 0) if self.may_not_name_index else (frag_index,)

    def frag_session(self, frag_index: int, mc_group_bit_mask: int) -> int:
        """Return the FragSession byte that tells this firmware the session and its groups."""
        if not 0 <= frag_index <= 3 or not 0 <= mc_group_bit_mask < 1 << self.mask_bits:
            raise ValueError(f"FragIndex {frag_index} / McGroupBitMask {mc_group_bit_mask} out of range for "
                             f"{self.describe()}")
        byte = mc_group_bit_mask << self.mask_shift
        for shift in self.index_shifts:
            byte |= frag_index << shift
        return byte & 0xFF

    def describe(self) -> str:
        """A technician's words for the layout."""
        index = " and ".join(f"{shift + 1}..{shift}" for shift in self.index_shifts)
        return (f"{self.name} (FragIndex in bits {index}, "
                f"McGroupBitMask in bits {self.mask_shift + self.mask_bits - 1}..{self.mask_shift})")


TS004 = SetupLayout("TS004", index_shifts=(4,), mask_shift=0)
TEMBO_1_0 = SetupLayout("Tembo 1.0.0", index_shifts=(0,), mask_shift=2, names_index_in_answer=False)
# a firmware not heard yet: TS004's FragIndex where 1.0.0's mask reads groups 2 and 3, so groups 0..1 only
EITHER = SetupLayout("TS004 and Tembo 1.0.0 alike", index_shifts=(4, 0), mask_shift=2, mask_bits=2,
                     may_not_name_index=True)

# (first firmware version that reads it, layout), newest first; the last entry covers every older one
LAYOUTS: tuple[tuple[str, SetupLayout], ...] = (
    ("1.0.1", TS004),
    ("0.0.0", TEMBO_1_0),
)


def layout_for(fw_version: str | None) -> SetupLayout:
    """Return the layout the firmware `fw_version` reads (None or unreadable: EITHER, see above)."""
    try:
        running = version_raw(fw_version) if fw_version else None
    except ValueError:
        running = None
    if running is None:
        return EITHER
    return next(layout for since, layout in LAYOUTS if running >= version_raw(since))


def setup_values(fw_version: str | None, frag_index: int, mc_group_bit_mask: int) -> dict[str, int]:
    """Return the codec values of `frag_session_setup`'s FragSession field that carry, for a collar
    running `fw_version`, FragIndex `frag_index` and McGroupBitMask `mc_group_bit_mask` (the codec's
    field names are TS004's; the byte they pack is the one that firmware reads)."""
    byte = layout_for(fw_version).frag_session(frag_index, mc_group_bit_mask)
    bits = next(f[2] for f in codec.message("frag_session_setup")[4] if f[0] == "frag_session")
    values, shift = {}, sum(width for _n, width, _e in bits)
    for bit_name, width, _names in bits:
        shift -= width
        values[bit_name] = byte >> shift & ((1 << width) - 1)
    return values


def answers_set_up(fw_version: str | None, frag_index: int, status: int) -> bool:
    """Return True when FragSessionSetupAns `status` from a collar running `fw_version` answers the set-up of
    FragIndex `frag_index` (its bits 7..6 as that firmware writes them), False when it is about another."""
    return status >> 6 & 3 in layout_for(fw_version).answered_indexes(frag_index)
