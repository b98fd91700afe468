"""The run watcher (memq/api/watcher.py) on its own: announcements that came before a waiter,
its mark, and states that never step back (given / when / then)."""

from __future__ import annotations

import asyncio

from memq.api.watcher import RunWatcher


class Reads:
    """A run reader that counts its calls and answers the states it is given."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.states: dict[str, tuple[str, int]] = {}

    async def read(self, run_ids: list[str]) -> dict[str, tuple[str, int]]:
        self.calls.append(list(run_ids))
        return {r: self.states[r] for r in run_ids if r in self.states}


def _subscribed(watcher: RunWatcher) -> int:
    """As the listener leaves it once Redis confirms the subscription."""
    watcher._generation += 1
    watcher.subscribed = True
    return watcher.mark()


def test_an_announcement_before_the_waiter_wakes_it_without_a_read():
    async def main() -> tuple[tuple[str, int], list[list[str]]]:
        reads = Reads()
        watcher = RunWatcher(reads.read, poll_s=30)
        watcher.start()
        mark = _subscribed(watcher)  # taken before the send
        watcher._announced("run-a done 1")  # the step commits before the waiter arrives
        state = await watcher.wait_finished("run-a", ("queued", 0), timeout_s=5, mark=mark)
        await watcher.stop()
        return state, reads.calls

    state, calls = asyncio.run(main())
    assert state == ("done", 1) and calls == []


def test_a_waiter_without_a_live_mark_reads_the_run_at_once():
    async def main() -> tuple[tuple[str, int], list[list[str]]]:
        reads = Reads()
        reads.states["run-b"] = ("done", 2)
        watcher = RunWatcher(reads.read, poll_s=30)
        watcher.start()
        stale = _subscribed(watcher)
        _subscribed(watcher)  # the subscription dropped and came back after the mark
        state = await watcher.wait_finished("run-b", ("queued", 0), timeout_s=5, mark=stale)
        await watcher.stop()
        return state, reads.calls

    state, calls = asyncio.run(main())
    assert state == ("done", 2) and calls == [["run-b"]]


def test_states_never_step_back_and_a_cancel_of_a_queued_run_is_news():
    async def main() -> list[tuple[str, int]]:
        watcher = RunWatcher(Reads().read, poll_s=30)
        watcher.start()
        mark = _subscribed(watcher)
        seen = []
        waiting = asyncio.ensure_future(watcher.wait_change("run-c", ("running", 2), 5, mark))
        await asyncio.sleep(0)
        watcher._announced("run-c running 1")  # an older step's publish arriving late: ignored
        watcher._announced("run-c done 3")
        seen.append(await waiting)
        waiting = asyncio.ensure_future(watcher.wait_change("run-d", ("queued", 0), 5, mark))
        await asyncio.sleep(0)
        watcher._announced("run-d cancelled 0")
        seen.append(await waiting)
        seen.append(await watcher.wait_change("run-e", ("queued", 0), 0.05, mark))  # nothing: times out
        await watcher.stop()
        return seen

    assert asyncio.run(main()) == [("done", 3), ("cancelled", 0), ("queued", 0)]
