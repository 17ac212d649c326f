"""The script that brings an answer into view on a phone: it names the keyed box the answer is drawn in,
and each answer's script differs from the one before, so the browser runs it again at the same place."""

from __future__ import annotations

from ranger_dashboard import into_view


def test_each_answer_under_a_form_gets_a_script_of_its_own_for_the_box_it_is_drawn_in():
    first, second = into_view.script("herd_answer_fit", 1), into_view.script("herd_answer_fit", 2)

    assert first != second, "the same script at the same place would not run for the second answer"
    assert '".st-key-herd_answer_fit"' in first and '".st-key-herd_answer_fit"' in second
    assert 'scrollIntoView({block: "nearest"})' in first
    assert first.startswith("<script>") and first.endswith("</script>")
