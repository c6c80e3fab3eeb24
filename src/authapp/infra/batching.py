"""Lookups that many requests make at once, answered together by one query."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
A = TypeVar("A")
V = TypeVar("V")

# Loads running at once per loader. Lookups asked meanwhile wait for the next load, which
# takes them all: under load, batches grow with the traffic (6 lookups a statement at 1,550
# signed-in requests/s per 2 workers, against 4 when every turn of the loop started its own;
# 9 with one load at a time). Two rather than one, so that one slow query does not hold up
# every signed-in request of the worker.
MAX_IN_FLIGHT = 2


class BatchLoader(Generic[K, A, V]):
    """Answer the lookups that requests ask for at about the same time with one `load`.

    Under load a worker runs many requests at once, and each signed-in one needs its
    session: one statement for all of them costs PostgreSQL and asyncpg little more than one
    for a single request. Nothing waits for a batch to fill: a load starts at the end of the
    event loop's turn in which its first lookup was asked, or, while MAX_IN_FLIGHT loads are
    running, as soon as one of them ends. A lookup never joins a load that has started, so
    every answer reads the database after its request arrived (a session revoked before that
    is refused). `arg` goes with each key (the first asked wins for a key asked twice in one
    batch); keys that `load` does not return are answered None; a failed load fails each of
    its lookups with its error.
    """

    def __init__(self, load: Callable[[dict[K, A]], Awaitable[dict[K, V]]]) -> None:
        self._load = load
        self._pending: dict[K, tuple[A, list[asyncio.Future[V | None]]]] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def get(self, key: K, arg: A) -> V | None:
        loop = asyncio.get_running_loop()
        if not self._pending:
            loop.call_soon(self._start)
        future: asyncio.Future[V | None] = loop.create_future()
        self._pending.setdefault(key, (arg, []))[1].append(future)
        return await future

    def _start(self) -> None:
        if not self._pending or len(self._running) >= MAX_IN_FLIGHT:
            return  # taken already, or to be taken when a running load ends
        batch, self._pending = self._pending, {}
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._running.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._start()

    async def _run(self, batch: dict[K, tuple[A, list[asyncio.Future[V | None]]]]) -> None:
        waiting = [future for _, futures in batch.values() for future in futures]
        try:
            found = await self._load({key: arg for key, (arg, _) in batch.items()})
        except asyncio.CancelledError:
            for future in waiting:
                future.cancel()
            raise
        except Exception as error:
            for future in waiting:
                if not future.done():  # a request that went away meanwhile
                    future.set_exception(error)
            return
        for key, (_, futures) in batch.items():
            value = found.get(key)
            for future in futures:
                if not future.done():
                    future.set_result(value)
