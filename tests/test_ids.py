"""Message ids: 64-bit, increasing, node bits, and never reissued after a restart."""

from __future__ import annotations

from gateway.clock import ManualClock
from gateway.ids import COUNTER_BITS, EPOCH_MS, NODE_BITS, MessageIdGenerator, id_time_ms


def test_ids_increase_carry_the_node_and_the_time() -> None:
    clock = ManualClock(EPOCH_MS + 5_000)
    ids = MessageIdGenerator(clock, node_id=7)
    first, second = ids.next_id(), ids.next_id()
    assert second == first + 1
    assert (first >> COUNTER_BITS) & ((1 << NODE_BITS) - 1) == 7
    assert id_time_ms(first) == EPOCH_MS + 5_000
    clock.advance(-10)  # the wall clock steps back: ids still increase
    assert ids.next_id() > second
    assert 0 < first < 2**63


def test_a_full_millisecond_borrows_the_next() -> None:
    ids = MessageIdGenerator(ManualClock(EPOCH_MS + 1), node_id=0)
    made = [ids.next_id() for _ in range((1 << COUNTER_BITS) + 2)]
    assert made == sorted(set(made))
    assert id_time_ms(made[-1]) == EPOCH_MS + 2


def test_seeded_generator_never_reissues_a_stored_id() -> None:
    clock = ManualClock(EPOCH_MS + 10_000)
    before_restart = MessageIdGenerator(clock)
    last = max(before_restart.next_id() for _ in range(3))
    clock.advance(-5)  # restarted with the clock behind the last id's millisecond
    after_restart = MessageIdGenerator(clock)
    after_restart.seed(last)
    assert after_restart.next_id() > last
    # Seeding with an older id changes nothing.
    after_restart.seed(1)
    assert after_restart.next_id() > last
