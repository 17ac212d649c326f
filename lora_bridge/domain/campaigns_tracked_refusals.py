"""Which refused fragmentation set-ups count in a campaign the bridge only tracks (no delivery of its own).

A collar that refuses a set-up outside its bounds (collar_firmware/update_install.py `setup`: more than
`update_fec.MAX_FRAGMENTS` fragments, fragments over `MAX_FRAG_SIZE`, more than `MAX_IMAGE_BYTES`, or none at all)
says so in a port-31 ack (`campaigns.SETUP_REFUSAL_RESULTS`: `too_large`, `malformed`) that names no image. In a
delivered campaign the bridge knows the set-ups it sent and reads their answers (`fuota_delivery`); in a tracked one
it knows none, and a stray set-up (another fleet's, a replayed frame) heard after the collar's release used to fail
the collar and stop the campaign at its canaries.

What the ack carries (a set-up's refusal, its date) and what the campaign keeps (its image's size) decide: the
refusal answers the campaign's own image only when that image is larger than any collar takes (`too_large`);
`malformed` (a set-up of no fragments) never does. Any other refusal is said in the campaign's history
(`NOT_COUNTED`) and the collar stays "sending": a result it sends later still counts, and the campaign's time limit
fails a collar that never sends one (`campaigns.expire`), the history then saying which refusals it had heard.
"""

from __future__ import annotations

from collar_firmware.update_install import MAX_IMAGE_BYTES

NOT_COUNTED = "setup_refusal_not_counted"  # the history's word for a refused set-up that was not the campaign's


def answers_its_image(image_bytes: int, result: str) -> bool:
    """True when a set-up's refusal (result) can answer a set-up of the tracked campaign's image of image_bytes."""
    return result == "too_large" and image_bytes > MAX_IMAGE_BYTES


def why_not(image_bytes: int, result: str) -> str:
    """The history's words for a refusal that was not counted (result), the campaign's image of image_bytes."""
    if result == "malformed":
        return "the collar refused a set-up of no fragments: no image's, this campaign's least of all"
    return (f"the collar refused a set-up as too large; this campaign's image of {image_bytes} bytes fits a collar "
            f"({MAX_IMAGE_BYTES} at most): another's set-up, unless the network server delivering it split it into "
            "more fragments or larger ones than a collar takes")
