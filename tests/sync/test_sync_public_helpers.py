"""The bridge's public helpers (``aioagents.sync.run``, ``open_stream``, ``on_loop_close``) and the rule that the compat
layers are built on them, never on the private bridge module."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import aioagents
from aioagents import sync
from aioagents.compat import sandbox_fusion

COMPAT = Path(aioagents.__file__).parent / "compat"


def test_run_returns_the_coroutine_result_from_blocking_code() -> None:
    async def add(a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    assert sync.run(add(2, 3)) == 5


def test_run_raises_the_coroutine_error() -> None:
    async def fail() -> None:
        raise LookupError("nothing here")

    with pytest.raises(LookupError, match="nothing here"):
        sync.run(fail())


def test_run_keeps_one_loop_per_thread_between_calls() -> None:
    async def loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    assert sync.run(loop()) is sync.run(loop())


def test_open_stream_iterates_on_the_loop_that_opened_it() -> None:
    async def opening() -> AsyncIterator[tuple[int, asyncio.AbstractEventLoop]]:
        opened_on = asyncio.get_running_loop()

        async def items() -> AsyncIterator[tuple[int, asyncio.AbstractEventLoop]]:
            for i in range(3):
                yield i, opened_on

        return items()

    with sync.open_stream(opening()) as stream:
        seen = list(stream)
    assert [i for i, _ in seen] == [0, 1, 2]
    assert len({id(loop) for _, loop in seen}) == 1


def test_on_loop_close_accepts_a_bridge_loop_and_refuses_another() -> None:
    async def current() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    async def closer() -> None:
        return None

    assert sync.on_loop_close(sync.run(current()), closer) is True
    foreign = asyncio.new_event_loop()
    try:
        assert sync.on_loop_close(foreign, closer) is False
    finally:
        foreign.close()


def test_run_from_another_thread_uses_that_threads_loop() -> None:
    async def loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    here = sync.run(loop())
    there: list[asyncio.AbstractEventLoop] = []
    worker = threading.Thread(target=lambda: there.append(sync.run(loop())))
    worker.start()
    worker.join()
    assert len(there) == 1
    assert there[0] is not here


@pytest.mark.parametrize("path", sorted(COMPAT.glob("*.py")), ids=lambda p: p.name)
def test_compat_modules_use_only_the_public_sync_api(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert re.findall(r"aioagents\.sync\._\w+|from aioagents\.sync import _\w+", source) == []


def test_the_old_top_level_run_concurrent_still_works_with_a_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match=r"aioagents\.compat\.sandbox_fusion\.run_concurrent"):
        moved = aioagents.run_concurrent  # type: ignore[attr-defined]
    assert moved is sandbox_fusion.run_concurrent
    assert "run_concurrent" not in aioagents.__all__


def test_an_unknown_top_level_name_is_still_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        aioagents.no_such_name  # type: ignore[attr-defined]  # noqa: B018


def test_run_concurrent_runs_plain_callables_on_threads_and_keeps_input_order() -> None:
    assert sandbox_fusion.run_concurrent(
        lambda x, y=0: x * 10 + y, args=[[1], [2], [3]], kwargs=[{}, {"y": 1}, {}]
    ) == [
        10,
        21,
        30,
    ]


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [(None, None, "give args or kwargs"), ([[1]], [{}, {}], "same length")],
)
def test_run_concurrent_refuses_inputs_that_do_not_line_up(
    args: list[list[int]] | None, kwargs: list[dict[str, int]] | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        sandbox_fusion.run_concurrent(print, args=args, kwargs=kwargs)
