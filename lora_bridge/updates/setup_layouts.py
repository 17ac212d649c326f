"""Which FragSessionSetupReq a collar's firmware reads: the one table the bridge sets collars up from.

TS004's FragSessionSetupReq opens with one FragSession byte: RFU 2 bits | FragIndex 2 | McGroupBitMask 4.
Tembo's firmware up to 1.0.0 read that byte as McGroupBitMask in bits 5..2 and FragIndex in bits 1..0:
given TS004's 0x01 (FragIndex 0, group 0) it opens session 1 and drops every fragment of session 0, so
it never rebuilds the image. The bridge therefore encodes each collar's set-up for the firmware that
collar reports running (its status uplinks' fw_version, kept on the device); everything else of the
delivery is alike for both (the DataFragment's FragIndex in bits 15..14, the answers' error bits), so
one multicast group carries the fragments to collars of either layout.

A collar whose firmware the bridge has not heard yet is set up in the oldest layout: Tembo's firmware
from 1.0.1 takes the FragIndex from bits 5..4 of that byte too (0 for 0x04) and, like 1.0.0, does not
read the group mask (it hears its fragments on the group the delivery set it up in).
"""

from __future__ import annotations

from dataclasses import dataclass

from collar_firmware import codec
from collar_firmware.update import version_raw


@dataclass(frozen=True)
class SetupLayout:
    """Where one firmware reads FragIndex and McGroupBitMask in FragSessionSetupReq's FragSession byte."""

    name: str
    index_shift: int
    mask_shift: int

    def frag_session(self, frag_index: int, mc_group_bit_mask: int) -> int:
        """Return the FragSession byte that tells this firmware the session and its groups."""
        if not 0 <= frag_index <= 3 or not 0 <= mc_group_bit_mask <= 15:
            raise ValueError(f"FragIndex {frag_index} / McGroupBitMask {mc_group_bit_mask} out of range")
        return (frag_index << self.index_shift | mc_group_bit_mask << self.mask_shift) & 0xFF

    def describe(self) -> str:
        """A technician's words for the layout."""
        return (f"{self.name} (FragIndex in bits {self.index_shift + 1}..{self.index_shift}, "
                f"McGroupBitMask in bits {self.mask_shift + 3}..{self.mask_shift})")


TS004 = SetupLayout("TS004", index_shift=4, mask_shift=0)
TEMBO_1_0 = SetupLayout("Tembo 1.0.0", index_shift=0, mask_shift=2)

# (first firmware version that reads it, layout), newest first; the last entry covers every older one
LAYOUTS: tuple[tuple[str, SetupLayout], ...] = (
    ("1.0.1", TS004),
    ("0.0.0", TEMBO_1_0),
)


def layout_for(fw_version: str | None) -> SetupLayout:
    """Return the layout the firmware `fw_version` reads (None or unreadable: the oldest, see above)."""
    try:
        running = version_raw(fw_version) if fw_version else None
    except ValueError:
        running = None
    if running is not None:
        for since, layout in LAYOUTS:
            if running >= version_raw(since):
                return layout
    return LAYOUTS[-1][1]


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
