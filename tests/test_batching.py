"""BatchLoader: lookups asked together share one load; none joins a load that has started."""

from __future__ import annotations

import asyncio

import pytest

from authapp.errors import APIError
from authapp.infra.batching import MAX_IN_FLIGHT, BatchLoader


class Loads:
    """A load that records what each call was asked and, when `gate` is set, waits on it."""

    def __init__(self) -> None:
        self.asked: list[dict[str, int]] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, asked: dict[str, int]) -> dict[str, str]:
        self.asked.append(asked)
        if self.gate is not None:
            await self.gate.wait()
        return {key: f"value of {key}" for key in asked if key != "missing"}


async def test_lookups_asked_together_share_one_load() -> None:
    loads = Loads()
    loader = BatchLoader(loads)
    answers = await asyncio.gather(
        loader.get("a", 1), loader.get("b", 2), loader.get("a", 3), loader.get("missing", 4)
    )
    assert answers == ["value of a", "value of b", "value of a", None]
    assert loads.asked == [{"a": 1, "b": 2, "missing": 4}]  # a once, with the first arg


async def test_a_lone_lookup_is_loaded_in_the_same_turn() -> None:
    loads = Loads()
    loader = BatchLoader(loads)
    assert await loader.get("a", 1) == "value of a"
    assert await loader.get("a", 2) == "value of a"
    assert loads.asked == [{"a": 1}, {"a": 2}]  # a later lookup reads again: nothing cached


async def test_a_lookup_never_joins_a_load_that_has_started() -> None:
    loads = Loads()
    loads.gate = asyncio.Event()
    loader = BatchLoader(loads)
    first = asyncio.create_task(loader.get("a", 1))
    await asyncio.sleep(0.01)
    assert loads.asked == [{"a": 1}]  # started, and waiting on the gate
    rest = [asyncio.create_task(loader.get(key, 1)) for key in "bcdef"]
    await asyncio.sleep(0.01)
    # A second load may run beside the first; lookups asked after it wait for a later one.
    assert len(loads.asked) == MAX_IN_FLIGHT == 2
    assert loads.asked[1] == dict.fromkeys("bcdef", 1)
    late = [asyncio.create_task(loader.get(key, 1)) for key in "gh"]
    await asyncio.sleep(0.01)
    assert len(loads.asked) == 2  # both running: g and h wait, and then go together
    loads.gate.set()
    assert await first == "value of a"
    assert [await task for task in rest + late] == [f"value of {key}" for key in "bcdefgh"]
    assert loads.asked[2] == dict.fromkeys("gh", 1)


async def test_a_failed_load_fails_each_of_its_lookups_and_not_the_next() -> None:
    calls = 0

    async def load(asked: dict[str, int]) -> dict[str, str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise APIError(503, "SERVICE_UNAVAILABLE", "The database is unavailable.")
        return dict.fromkeys(asked, "ok")

    loader = BatchLoader(load)
    answers = await asyncio.gather(loader.get("a", 1), loader.get("b", 1), return_exceptions=True)
    assert [getattr(answer, "code", None) for answer in answers] == ["SERVICE_UNAVAILABLE"] * 2
    assert await loader.get("a", 1) == "ok"


async def test_a_request_that_goes_away_does_not_disturb_the_others() -> None:
    loads = Loads()
    loads.gate = asyncio.Event()
    loader = BatchLoader(loads)
    leaving = asyncio.create_task(loader.get("a", 1))
    staying = asyncio.create_task(loader.get("b", 1))
    await asyncio.sleep(0.01)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    loads.gate.set()
    assert await staying == "value of b"
