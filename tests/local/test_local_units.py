"""Pure pieces of the local sandbox, table-tested: the public surface, path rules, status derivation."""

from __future__ import annotations

import pytest

import aioagents.local as local
from aioagents.local._engine import _response
from aioagents.local._paths import PathError, split_relative
from aioagents.local._process import ProcessResult


def test_all_is_sorted_and_lists_exactly_the_public_names() -> None:
    assert local.__all__ == sorted(local.__all__)
    public = {n for n in dir(local) if not n.startswith("_")}
    assert set(local.__all__) == public
    for name in local.__all__:
        assert getattr(local, name).__doc__, name


@pytest.mark.parametrize(
    ("path", "parts"),
    [("a.txt", ["a.txt"]), ("d/e/f.txt", ["d", "e", "f.txt"]), ("./a//b", ["a", "b"]), ("a/./b", ["a", "b"])],
)
def test_relative_paths_are_split(path: str, parts: list[str]) -> None:
    assert split_relative(path) == parts


@pytest.mark.parametrize("path", ["", "/abs", "\\\\share", "..", "a/../b", "a/..", "x\x00y", ".", "./"])
def test_unsafe_paths_are_refused(path: str) -> None:
    with pytest.raises(PathError):
        split_relative(path)


def _r(status: str = "Finished", code: int | None = 0, stderr: str = "") -> ProcessResult:
    return ProcessResult(status=status, return_code=code, stdout="", stderr=stderr, execution_time=0.1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("compile_result", "run_result", "expected"),
    [
        (None, _r(), "Success"),
        (_r(), _r(), "Success"),
        (None, _r(code=1), "Failed"),
        (_r(code=1), None, "Failed"),
        (_r("TimeLimitExceeded", None), None, "Failed"),
        (None, _r("TimeLimitExceeded", None), "Failed"),
        # §A3: Error wins over everything, and its stderr becomes the message.
        (_r("Error", None, "boom"), None, "SandboxError"),
        (_r(code=1), _r("Error", None, "boom"), "SandboxError"),
    ],
)
def test_status_is_derived_in_the_contract_order(
    compile_result: ProcessResult | None, run_result: ProcessResult | None, expected: str
) -> None:
    answer = _response(compile_result, run_result, {})
    assert answer["status"] == expected
    assert answer["message"] == ("boom" if expected == "SandboxError" else "")
