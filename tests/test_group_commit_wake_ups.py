"""Group commit hand-ins: each sender waiting for its answer sleeps once and is woken once, for its own
answer or to write what is left, with the same batches and answers, a failing batch included.

Sleeps are counted, not timed: a thread's call of `acquire` on a lock already held (the only way a
thread waits for another) is one sleep of that thread."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from lora_bridge.errors import StoreUnavailable
from lora_bridge.group_commit import GroupCommit, Submission

holding = threading.local()  # set while a test's write_batch holds its batch (a sleep of its own)


def up(body: bytes) -> Submission:
    return Submission("tts", "up", body, content_type="application/json")


@contextmanager
def sleeps_counted() -> Iterator[Counter[str]]:
    """Count, per thread started meanwhile (by name), its sleeps outside a held write_batch."""
    sleeps: Counter[str] = Counter()

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event != "c_call" or getattr(arg, "__name__", "") != "acquire" or getattr(holding, "active", False):
            return
        lock = getattr(arg, "__self__", None)
        if lock is not None and hasattr(lock, "locked") and lock.locked():
            sleeps[threading.current_thread().name] += 1

    threading.setprofile(profile)
    try:
        yield sleeps
    finally:
        threading.setprofile(None)


def held(write: Callable[[list[Submission]], None]) -> tuple[Callable[[list[Submission]], None],
                                                               list[list[bytes]], list[threading.Event],
                                                               list[threading.Event]]:
    """write_batch for a GroupCommit that records each batch's bodies and holds batch i until
    let_finish[i] is set, after started[i] (so senders can be lined up behind it), then calls write."""
    written: list[list[bytes]] = []
    started = [threading.Event() for _ in range(8)]
    let_finish = [threading.Event() for _ in range(8)]

    def write_batch(batch: list[Submission]) -> None:
        index = len(written)
        written.append([s.body for s in batch])
        holding.active = True  # from here its Events' own locks are taken (`Condition._is_owned`)
        try:
            started[index].set()
            assert let_finish[index].wait(10)
        finally:
            holding.active = False
        write(batch)

    return write_batch, written, started, let_finish


def keep(batch: list[Submission]) -> None:
    for submission in batch:
        submission.result = b"kept " + submission.body


def sender(group: GroupCommit) -> tuple[dict[bytes, Any], Callable[[bytes], None]]:
    """The answers of group's senders by body, and a sender: hands body in and keeps its answer."""
    answers: dict[bytes, Any] = {}

    def send(body: bytes) -> None:
        answers[body] = group.submit(up(body))

    return answers, send


def line_up(group: GroupCommit, send: Callable[[bytes], None], bodies: list[bytes]) -> list[threading.Thread]:
    """Start a sender per body, each waiting behind the batch in progress before the next starts."""
    threads = []
    for body in bodies:
        thread = threading.Thread(target=send, args=(body,), name=body.decode())
        thread.start()
        threads.append(thread)
        while group.waiting() < len(threads):
            threading.Event().wait(0.002)
    return threads


def test_each_sender_waiting_behind_a_batch_is_woken_once_for_its_own_answer_round_after_round():
    write_batch, written, started, let_finish = held(keep)
    group = GroupCommit(write_batch)
    answers, send = sender(group)

    rounds = [[f"r{r}-{n}".encode() for n in range(6)] for r in range(3)]
    with sleeps_counted() as sleeps:
        threads = [threading.Thread(target=send, args=(b"first",), name="first")]
        threads[0].start()
        for index, bodies in enumerate(rounds):
            assert started[index].wait(10)
            threads += line_up(group, send, bodies)
            let_finish[index].set()
        assert started[len(rounds)].wait(10)
        let_finish[len(rounds)].set()
        for thread in threads:
            thread.join(10)

    assert written == [[b"first"], *rounds]
    every = [b"first", *(body for bodies in rounds for body in bodies)]
    assert answers == {body: b"kept " + body for body in every}
    # The first sender never sleeps; every other sleeps once: the oldest of a round until it is handed
    # the writing of its round, the others until their round is written.
    assert dict(sleeps) == {body.decode(): 1 for bodies in rounds for body in bodies}
    assert (group.wake_ups, group.batches, group.waiting()) == (18, 4, 0)


def test_a_failing_batch_answers_its_senders_with_its_error_and_hands_the_writing_on_to_the_next_in_line():
    refused = {b"first", b"f0", b"f1", b"f2"}

    def write(batch: list[Submission]) -> None:
        if any(s.body in refused for s in batch):
            raise StoreUnavailable("store unavailable: disk I/O error")
        keep(batch)

    write_batch, written, started, let_finish = held(write)
    group = GroupCommit(write_batch, max_batch=3)
    answers: dict[bytes, Any] = {}

    def send(body: bytes) -> None:
        try:
            answers[body] = group.submit(up(body))
        except StoreUnavailable as error:
            answers[body] = error

    followers = [f"f{n}".encode() for n in range(5)]
    with sleeps_counted() as sleeps:
        first = threading.Thread(target=send, args=(b"first",), name="first")
        first.start()
        assert started[0].wait(10)
        threads = [first, *line_up(group, send, followers)]
        for event in let_finish[:3]:
            event.set()
        for thread in threads:
            thread.join(10)

    assert written == [[b"first"], [b"f0", b"f1", b"f2"], [b"f3", b"f4"]]
    assert {body for body, answer in answers.items() if isinstance(answer, StoreUnavailable)} == refused
    assert {body: answers[body] for body in (b"f3", b"f4")} == {b"f3": b"kept f3", b"f4": b"kept f4"}
    # f0 and f3 are each handed the writing, f1, f2 and f4 woken with their answers: once each.
    assert dict(sleeps) == {body.decode(): 1 for body in followers}
    assert (group.wake_ups, group.waiting()) == (5, 0)
    # No writer is left behind: the next sender writes its own batch at once.
    let_finish[3].set()
    assert group.submit(up(b"after")) == b"kept after"
    assert written[-1] == [b"after"]


def test_a_batch_written_now_waits_its_turn_and_then_hands_the_writing_to_the_senders_waiting():
    write_batch, written, started, let_finish = held(keep)
    group = GroupCommit(write_batch)
    answers, send = sender(group)

    replayed = [up(b"replayed-1"), up(b"replayed-2")]
    with sleeps_counted() as sleeps:
        first = threading.Thread(target=send, args=(b"first",), name="first")
        first.start()
        assert started[0].wait(10)
        replay = threading.Thread(target=group.write_now, args=(replayed,), name="replay")
        replay.start()
        while not sleeps["replay"]:  # it waits for its turn
            threading.Event().wait(0.002)
        threads = [first, replay, *line_up(group, send, [b"s0", b"s1"])]
        for event in let_finish[:3]:
            event.set()
        for thread in threads:
            thread.join(10)

    assert written == [[b"first"], [b"replayed-1", b"replayed-2"], [b"s0", b"s1"]]
    assert [s.outcome() for s in replayed] == [b"kept replayed-1", b"kept replayed-2"]
    assert answers == {b"first": b"kept first", b"s0": b"kept s0", b"s1": b"kept s1"}
    assert dict(sleeps) == {"replay": 1, "s0": 1, "s1": 1}


@pytest.mark.parametrize("max_batch", [1, 2])
def test_senders_behind_a_small_max_batch_are_written_in_the_order_they_came(max_batch: int):
    write_batch, written, started, let_finish = held(keep)
    group = GroupCommit(write_batch, max_batch=max_batch)
    answers, send = sender(group)

    bodies = [f"s{n}".encode() for n in range(4)]
    first = threading.Thread(target=send, args=(b"first",))
    first.start()
    assert started[0].wait(10)
    threads = [first, *line_up(group, send, bodies)]
    for event in let_finish:
        event.set()
    for thread in threads:
        thread.join(10)

    assert written == [[b"first"], *(bodies[i:i + max_batch] for i in range(0, len(bodies), max_batch))]
    assert answers == {body: b"kept " + body for body in [b"first", *bodies]}
