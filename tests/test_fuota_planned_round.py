"""The planned multicast round serves a whole herd, so its slowest collar seldom waits for a repair round."""

from __future__ import annotations

import random

import pytest
from test_fuota_parity_order import fragments_until_rebuilt
from test_update_fec import rebuilt

from lora_bridge.updates import planner
from lora_bridge.updates.fec import fragment
from lora_bridge.updates.parity_order import counter_at

MODEL_IMAGE_BYTES = 3844  # the model-only update: 35 to 37 fragments of 104-112 bytes at SF9


def test_the_planned_round_rebuilds_the_model_on_every_collar_of_most_fifty_collar_herds():
    herds = 20
    served = 0
    for herd in range(herds):
        rng = random.Random(100 + herd)
        losses = [0.1 * (0.5 + rng.random()) for _ in range(50)]  # what the bridge saw per collar
        plan = planner.make_plan(MODEL_IMAGE_BYTES, [planner.CollarLink(f"c{i}", 9, x) for i, x in enumerate(losses)])
        assert 35 <= plan.nb_frag <= 37
        image = bytes(rng.getrandbits(8) for _ in range(plan.nb_frag * 8 - 3))
        frags = fragment(image, 8)  # the model's 35 fragments, 8 bytes each: the same code, cheap XORs
        slowest = 0
        for loss in losses:
            sent, store = fragments_until_rebuilt(frags, loss, rng, counter_at)
            assert rebuilt(store, frags.nb_frag, frags.padding) == image
            slowest = max(slowest, sent)
        served += slowest <= plan.fragments
    assert served >= 0.75 * herds, f"only {served} of {herds} herds were served without a repair round"


def test_a_small_group_gets_no_less_parity_than_one_collar_at_ninety_nine_percent():
    one = planner.make_plan(MODEL_IMAGE_BYTES, [planner.CollarLink("c", 9, 0.1)])
    three = planner.make_plan(MODEL_IMAGE_BYTES, [planner.CollarLink(f"c{i}", 9, 0.1) for i in range(3)])
    fifty = planner.make_plan(MODEL_IMAGE_BYTES, [planner.CollarLink(f"c{i}", 9, 0.1) for i in range(50)])
    assert one.parity == three.parity < fifty.parity, "a herd of fifty gets more parity for its slowest collar"


def test_the_model_goes_in_the_fragment_size_whose_planned_round_ends_soonest():
    herd = [planner.CollarLink(f"c{i}", 9, 0.1 * (0.5 + i / 50)) for i in range(50)]
    plan = planner.make_plan(MODEL_IMAGE_BYTES, herd)
    largest = planner.make_plan(MODEL_IMAGE_BYTES, herd, frag_size=112)
    assert (plan.frag_size, plan.nb_frag, plan.nb_frag * plan.frag_size - MODEL_IMAGE_BYTES) == (104, 37, 4)
    assert largest.nb_frag * largest.frag_size - MODEL_IMAGE_BYTES == 76, "112-byte fragments: the last mostly padding"
    assert plan.multicast_s < largest.multicast_s
    for size in range(planner.MIN_FRAG_SIZE, 113):
        assert plan.multicast_s <= planner.make_plan(MODEL_IMAGE_BYTES, herd, frag_size=size).multicast_s, size
    with pytest.raises(planner.PlanRefused, match="do not fit a SF9 downlink"):
        planner.make_plan(MODEL_IMAGE_BYTES, herd, frag_size=113)
