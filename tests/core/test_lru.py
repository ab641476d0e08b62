"""The one bounded LRU map."""

from __future__ import annotations

import pytest

from proxy.core.lru import LRU, Generations


def test_the_least_recently_used_entry_goes_first() -> None:
    lru: LRU[str, int] = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # a is now the most recent
    assert lru.put("c", 3) == [("b", 2)]
    assert list(lru) == ["a", "c"]
    assert "b" not in lru
    assert len(lru) == 2


def test_peek_and_contains_do_not_refresh() -> None:
    lru: LRU[str, int] = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.peek("a") == 1
    assert "a" in lru
    assert lru.put("c", 3) == [("a", 1)]


def test_put_of_a_present_key_replaces_and_refreshes() -> None:
    lru: LRU[str, int] = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.put("a", 10) == []
    assert lru.put("c", 3) == [("b", 2)]
    assert dict(lru.items()) == {"a": 10, "c": 3}
    assert list(lru.values()) == [10, 3]


def test_defaults_pop_and_clear() -> None:
    lru: LRU[str, int] = LRU(3)
    assert lru.get("x") is None
    assert lru.get("x", 7) == 7
    assert lru.peek("x", 8) == 8
    lru.put("a", 1)
    assert lru.pop("a") == 1
    assert lru.pop("a", 5) == 5
    lru.put("b", 2)
    lru.clear()
    assert len(lru) == 0 and lru.weight == 0


def test_add_is_true_only_the_first_time() -> None:
    lru: LRU[str, None] = LRU(2)
    assert lru.add("a", None)
    assert not lru.add("a", None)
    lru.add("b", None)
    lru.add("c", None)
    assert lru.add("a", None)  # forgotten once evicted


def test_weight_bounds_the_total() -> None:
    lru: LRU[str, bytes] = LRU(10, weigh=len)
    lru.put("a", b"1234")
    lru.put("b", b"1234")
    assert lru.weight == 8
    assert lru.put("c", b"1234") == [("a", b"1234")]
    assert lru.weight == 8
    lru.put("b", b"12")  # replacing gives back the old weight
    assert lru.weight == 6
    assert lru.pop("c") == b"1234"
    assert lru.weight == 2


def test_an_entry_heavier_than_the_bound_is_kept_alone() -> None:
    lru: LRU[str, bytes] = LRU(4, weigh=len)
    lru.put("a", b"12")
    assert lru.put("big", b"123456") == [("a", b"12")]
    assert list(lru) == ["big"]
    assert lru.put("b", b"1") == [("big", b"123456")]


def test_a_bound_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        LRU(0)


def test_a_generation_changes_when_moved_and_is_stable_otherwise() -> None:
    generations: Generations[str] = Generations(10)
    first = generations["p"]
    assert generations["p"] == first
    generations.move("p")
    assert generations["p"] != first
    assert generations["q"] not in (first, generations["p"])


def test_a_forgotten_generation_never_comes_back_as_an_old_number() -> None:
    generations: Generations[str] = Generations(2)
    seen = {generations["p"]}
    generations.move("p")
    seen.add(generations["p"])
    generations["q"]
    generations["r"]  # p forgotten
    assert generations["p"] not in seen
