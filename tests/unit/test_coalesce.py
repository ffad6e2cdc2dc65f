"""SingleFlight: one job in flight, shared by every concurrent caller."""

from __future__ import annotations

import asyncio
import gc

import pytest

from proxy.coordination.singleflight import SingleFlight


class Job:
    """A job that counts its runs and waits for a gate before answering."""

    def __init__(self, result: str = "value", error: Exception | None = None) -> None:
        self.calls = 0
        self.started = asyncio.Event()
        self.gate = asyncio.Event()
        self.cancelled = False
        self.finished = False
        self._result = result
        self._error = error

    async def __call__(self) -> str:
        self.calls += 1
        self.started.set()
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        self.finished = True
        if self._error is not None:
            raise self._error
        return f"{self._result}-{self.calls}"


async def test_concurrent_runs_share_one_execution() -> None:
    flight: SingleFlight[str] = SingleFlight()
    job = Job()

    callers = [asyncio.create_task(flight.run(job)) for _ in range(10)]
    await job.started.wait()
    await asyncio.sleep(0)
    assert flight.running
    job.gate.set()
    results = await asyncio.gather(*callers)

    assert job.calls == 1
    assert [value for value, _ in results] == ["value-1"] * 10
    joined = [was_joined for _, was_joined in results]
    assert joined.count(False) == 1
    assert joined.count(True) == 9
    assert not flight.running


async def test_sequential_runs_each_execute() -> None:
    flight: SingleFlight[str] = SingleFlight()
    job = Job()
    job.gate.set()

    first = await flight.run(job)
    second = await flight.run(job)

    assert first == ("value-1", False)
    assert second == ("value-2", False)
    assert job.calls == 2


async def test_exception_reaches_every_caller_and_next_run_starts_anew() -> None:
    flight: SingleFlight[str] = SingleFlight()
    failing = Job(error=RuntimeError("upstream down"))

    callers = [asyncio.create_task(flight.run(failing)) for _ in range(5)]
    await failing.started.wait()
    failing.gate.set()
    outcomes = await asyncio.gather(*callers, return_exceptions=True)

    assert failing.calls == 1
    assert len(outcomes) == 5
    for outcome in outcomes:
        assert isinstance(outcome, RuntimeError)
        assert str(outcome) == "upstream down"
    assert not flight.running

    healthy = Job(result="ok")
    healthy.gate.set()
    assert await flight.run(healthy) == ("ok-1", False)
    assert healthy.calls == 1


async def test_cancelled_caller_does_not_cancel_job_for_others() -> None:
    flight: SingleFlight[str] = SingleFlight()
    job = Job()

    leaver = asyncio.create_task(flight.run(job))
    await job.started.wait()
    stayer = asyncio.create_task(flight.run(job))
    await asyncio.sleep(0)

    leaver.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaver
    assert flight.running
    job.gate.set()

    assert await stayer == ("value-1", True)
    assert job.calls == 1
    assert job.finished
    assert not job.cancelled


async def test_job_finishes_even_when_its_only_caller_leaves() -> None:
    flight: SingleFlight[str] = SingleFlight()
    job = Job()
    caller = asyncio.create_task(flight.run(job))
    await job.started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller

    job.gate.set()
    for _ in range(10):
        if not flight.running:
            break
        await asyncio.sleep(0)

    assert job.finished
    assert not job.cancelled
    assert not flight.running


async def test_close_cancels_running_job() -> None:
    flight: SingleFlight[str] = SingleFlight()
    job = Job()
    task, joined = flight.start(job)
    assert not joined
    await job.started.wait()

    await flight.close()

    assert task.cancelled()
    assert job.cancelled
    assert not job.finished
    assert not flight.running


async def test_close_when_idle_is_a_no_op() -> None:
    flight: SingleFlight[str] = SingleFlight()
    await flight.close()
    assert not flight.running


async def test_close_swallows_a_failing_job() -> None:
    flight: SingleFlight[str] = SingleFlight()
    job = Job(error=RuntimeError("boom"))
    flight.start(job)
    await job.started.wait()
    job.gate.set()
    await flight.close()
    assert not flight.running


async def test_start_returns_same_task_while_running() -> None:
    flight: SingleFlight[str] = SingleFlight()
    job = Job()
    assert not flight.running

    first, first_joined = flight.start(job)
    second, second_joined = flight.start(job)

    assert flight.running
    assert first is second
    assert (first_joined, second_joined) == (False, True)
    job.gate.set()
    assert await first == "value-1"
    await asyncio.sleep(0)
    assert not flight.running
    assert job.calls == 1


async def test_background_failure_is_marked_seen() -> None:
    """A failed job nobody awaited must not leave a 'never retrieved' exception behind."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        flight: SingleFlight[str] = SingleFlight()
        job = Job(error=RuntimeError("nobody listens"))
        task, _ = flight.start(job)
        job.gate.set()
        await asyncio.wait([task])
        await asyncio.sleep(0)
        assert not flight.running
        del task
        gc.collect()
    finally:
        loop.set_exception_handler(previous)
    assert reported == []
