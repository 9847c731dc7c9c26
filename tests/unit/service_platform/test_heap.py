"""What freezing the start-up heap does to this process's garbage collection (the real collector)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from service_platform.heap import freeze_long_lived_objects


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector can free it


@pytest.fixture
def unfrozen_afterwards() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_objects_alive_at_freezing_are_left_out_of_later_collections(unfrozen_afterwards: None) -> None:
    kept = Node()
    frozen = freeze_long_lived_objects("test")

    assert frozen > 0  # frozen objects are still freed when unreferenced, so the count moves afterwards
    assert not any(candidate is kept for candidate in gc.get_objects()), "a collection would no longer walk it"


def test_garbage_made_after_freezing_is_still_collected(unfrozen_afterwards: None) -> None:
    freeze_long_lived_objects("test")
    later = Node()
    gone = weakref.ref(later)
    del later

    gc.collect()

    assert gone() is None, "a cycle made after freezing must not leak"
