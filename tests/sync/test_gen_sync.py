"""scripts/gen_sync.py: what it generates from the toy, that the output is clean, and the ``--check`` gate."""

from __future__ import annotations

import asyncio
import collections.abc
import importlib
import inspect
import os
import shutil
import subprocess
import sys
import typing
from pathlib import Path
from types import ModuleType

import pytest

import aioagents.testing
from aioagents.testing import _server

from . import toy_async, toy_unsupported
from .conftest import GEN_SYNC, ROOT, TOY_CLASSES, TOY_PACKAGE, load_gen_sync, subprocess_env, toy_spec

VENV_BIN = Path(sys.executable).parent
gen_sync = load_gen_sync()


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(VENV_BIN)) or shutil.which(name)
    assert path is not None, f"{name} is a dev dependency and must be installed"
    return path


def _run_gen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GEN_SYNC), *args],
        env=subprocess_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# -- what the twin looks like ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "__init__",
        "add",
        "fail",
        "sleep",
        "echo",
        "count",
        "numbers",
        "lines",
        "opened",
        "describe",
        "from_env",
        "relabeled",
        "tagged",
    ],
)
def test_twin_methods_keep_the_async_signature(toysync: ModuleType, name: str) -> None:
    sync_fn, async_fn = getattr(toysync.ToyClient, name), getattr(toy_async.ToyClient, name)
    as_tuple = [(p.name, p.kind, p.default) for p in inspect.signature(sync_fn).parameters.values()]
    assert as_tuple == [(p.name, p.kind, p.default) for p in inspect.signature(async_fn).parameters.values()]
    # The annotations may be spelt differently (``threading.Event`` → ``Event``) but mean the same objects.
    sync_hints, async_hints = typing.get_type_hints(sync_fn), typing.get_type_hints(async_fn)
    sync_hints.pop("return", None)
    async_hints.pop("return", None)
    assert sync_hints == async_hints


@pytest.mark.parametrize(
    ("name", "annotation"),
    [
        ("add", "int"),
        ("nothing", "None"),
        ("echo", "Echo"),
        ("count", "_bridge.SyncStream[int]"),
        # A bare stream class: the item type comes from the argument it gives its generic base.
        ("numbers", "_bridge.SyncStream[int]"),
        ("numbers_lazy", "_bridge.SyncStream[int]"),
        ("lines", "_bridge.SyncStream[str]"),
        ("opened", "_bridge.SyncContextManager[str]"),
        ("from_env", "ToyClient"),
        # ``-> Self`` on a base: the twin of the class it is mirrored on.
        ("relabeled", "ToyClient"),
        ("tagged", "str"),
        ("produce", "int | _bridge.SyncStream[int]"),
        ("find_thread", "Threads | None"),
    ],
)
def test_twin_return_annotations(toysync: ModuleType, name: str, annotation: str) -> None:
    assert inspect.signature(getattr(toysync.ToyClient, name)).return_annotation == annotation


def test_a_self_return_on_a_base_gives_the_twin_and_unpacked_options_are_forwarded(toysync: ModuleType) -> None:
    with toysync.ToyClient(label="a") as client:
        copy = client.relabeled("b")
        assert type(copy) is toysync.ToyClient
        assert (copy.label, client.label) == ("b", "a")
        assert client.tagged("t", timeout=5, extra_headers={"X": "1"}) == "t:extra_headers,timeout"


def test_twin_methods_are_plain_functions(toysync: ModuleType) -> None:
    for name in ("add", "echo", "count", "numbers", "close", "__enter__", "__exit__"):
        method = getattr(toysync.ToyClient, name)
        assert not inspect.iscoroutinefunction(method)
        assert not inspect.isasyncgenfunction(method)


def test_aclose_and_async_context_become_close_and_context(toysync: ModuleType) -> None:
    names = set(vars(toysync.ToyClient))
    assert {"close", "__enter__", "__exit__"} <= names
    assert not {"aclose", "__aenter__", "__aexit__"} & names


def test_docstrings_are_copied(toysync: ModuleType) -> None:
    for name in ("add", "echo", "count", "lines", "calls", "describe"):
        assert inspect.getdoc(getattr(toysync.ToyClient, name)) == inspect.getdoc(getattr(toy_async.ToyClient, name))
    assert inspect.getdoc(toysync.ToyClient.close) == inspect.getdoc(toy_async.ToyClient.aclose)
    class_doc = inspect.getdoc(toysync.ToyClient)
    assert class_doc is not None
    assert class_doc.startswith(f"Blocking twin of :class:`{toy_async.__name__}.ToyClient`.")
    # The example in the class docstring is rewritten for the blocking API.
    assert "    with ToyClient(" in class_doc
    assert "        client.add(1, 2)" in class_doc
    assert "await" not in class_doc


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (">>> await client.run()", ">>> client.run()"),
        ("... async for event in events:", "... for event in events:"),
        (
            "Example::\n\n    async with C() as c:\n        await c.aclose()",
            "Example::\n\n    with C() as c:\n        c.close()",
        ),
        # Prose, and text after a literal block has ended, stay as written.
        ("We await the server; use async with.", "We await the server; use async with."),
        ("Code::\n\n    await x()\n\nThen await y.", "Code::\n\n    x()\n\nThen await y."),
    ],
)
def test_docstring_examples_are_rewritten_for_the_blocking_api(doc: str, expected: str) -> None:
    assert gen_sync.sync_examples(doc) == expected


def test_output_is_deterministic() -> None:
    registry = {toy_async.__name__: TOY_CLASSES}
    assert gen_sync.generate(registry, package=TOY_PACKAGE) == gen_sync.generate(registry, package=TOY_PACKAGE)


def test_every_generated_file_carries_the_header(generated_dir: Path) -> None:
    files = sorted((generated_dir / TOY_PACKAGE).glob("*.py"))
    assert [f.name for f in files] == ["__init__.py", "toy_async.py"]
    for path in files:
        assert path.read_text(encoding="utf-8").startswith("# GENERATED by scripts/gen_sync.py — do not edit\n")


def test_package_reexports_every_twin_with_a_sorted_all(generated_dir: Path, toysync: ModuleType) -> None:
    package = sys.modules[TOY_PACKAGE]
    assert package.__all__ == sorted(package.__all__)
    assert set(package.__all__) == {
        *TOY_CLASSES,
        "SyncContextManager",
        "SyncStream",
        "on_loop_close",
        "open_stream",
        "owns",
        "run",
    }
    assert package.ToyClient is toysync.ToyClient


def test_unsupported_shapes_fail_generation_loudly() -> None:
    with pytest.raises(gen_sync.GenerationError, match=r"ListOfParts: the annotation 'list\[Part\]' nests"):
        gen_sync.generate({toy_unsupported.__name__: ["Part", "ListOfParts"]}, package=TOY_PACKAGE)
    with pytest.raises(gen_sync.GenerationError, match="StreamOfParts: a stream of registered classes"):
        gen_sync.generate({toy_unsupported.__name__: ["Part", "StreamOfParts"]}, package=TOY_PACKAGE)
    with pytest.raises(gen_sync.GenerationError, match="TwoCloses has both aclose and close"):
        gen_sync.generate({toy_unsupported.__name__: ["TwoCloses"]}, package=TOY_PACKAGE)


@pytest.mark.parametrize(
    ("obj", "source", "attr", "home"),
    [
        (asyncio.Task, "asyncio", "Task", "asyncio"),  # defined in the private _asyncio
        (collections.abc.AsyncIterator, "collections.abc", "AsyncIterator", "collections.abc"),
        (typing.Any, "typing", "Any", "typing"),
        (_server.FakeServer, "aioagents.testing._server", "FakeServer", "aioagents.testing"),
        (toy_async.Echo, toy_async.__name__, "Echo", toy_async.__name__),
    ],
)
def test_names_are_imported_from_their_public_home(obj: object, source: str, attr: str, home: str) -> None:
    assert aioagents.testing.FakeServer is _server.FakeServer
    assert gen_sync.public_home(obj, source, attr) == home


# -- the output passes the project's tools ---------------------------------------------------------------------------


def test_generated_code_is_already_ruff_formatted(generated_dir: Path) -> None:
    done = subprocess.run(
        [
            _tool("ruff"),
            "format",
            "--check",
            "--diff",
            "--line-length",
            str(gen_sync.LINE_LENGTH),
            str(generated_dir / TOY_PACKAGE),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_generated_code_passes_ruff_lint(generated_dir: Path) -> None:
    # Import sorting (I) is checked on the repository's own output below, where first-party is known.
    done = subprocess.run(
        [
            _tool("ruff"),
            "check",
            "--no-cache",
            "--isolated",
            "--line-length",
            str(gen_sync.LINE_LENGTH),
            "--target-version",
            "py310",
            "--select",
            "E,F,W,UP,B,ASYNC,RUF,SIM",
            str(generated_dir / TOY_PACKAGE),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_generated_code_passes_mypy_strict(generated_dir: Path, tmp_path: Path) -> None:
    env = subprocess_env(generated_dir)
    env["MYPYPATH"] = env["PYTHONPATH"]
    done = subprocess.run(
        [
            _tool("mypy"),
            "--strict",
            "--python-version",
            "3.10",
            "--follow-imports",
            "silent",
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
            "--config-file",
            os.devnull,
            "-p",
            TOY_PACKAGE,
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_repository_sync_package_is_clean_for_ruff() -> None:
    done = subprocess.run(
        [_tool("ruff"), "check", "--no-cache", "aioagents/sync"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    done = subprocess.run(
        [_tool("ruff"), "format", "--check", "aioagents/sync"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -- the --check gate ------------------------------------------------------------------------------------------------


def test_repository_sync_api_is_up_to_date() -> None:
    """The CI gate: aioagents/sync/ is exactly what the registry generates."""
    done = _run_gen("--check")
    assert done.returncode == 0, done.stdout + done.stderr


def _toy_args(out: Path) -> list[str]:
    return ["--out", str(out), "--package", TOY_PACKAGE, "--class", toy_spec()]


def test_check_passes_right_after_writing(tmp_path: Path) -> None:
    out = tmp_path / TOY_PACKAGE
    assert _run_gen(*_toy_args(out)).returncode == 0
    done = _run_gen("--check", *_toy_args(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""


def test_check_fails_with_a_diff_on_a_hand_edit(tmp_path: Path) -> None:
    out = tmp_path / TOY_PACKAGE
    assert _run_gen(*_toy_args(out)).returncode == 0
    path = out / "toy_async.py"
    path.write_text(path.read_text(encoding="utf-8").replace("def add(", "def add_renamed("), encoding="utf-8")
    done = _run_gen("--check", *_toy_args(out))
    assert done.returncode == 1
    assert "-    def add_renamed(" in done.stdout
    assert "+    def add(" in done.stdout
    assert "out of date" in done.stderr


def test_check_fails_on_a_missing_file(tmp_path: Path) -> None:
    out = tmp_path / TOY_PACKAGE
    assert _run_gen(*_toy_args(out)).returncode == 0
    (out / "__init__.py").unlink()
    assert _run_gen("--check", *_toy_args(out)).returncode == 1


def test_check_fails_on_a_stale_generated_file_and_write_removes_it(tmp_path: Path) -> None:
    out = tmp_path / TOY_PACKAGE
    assert _run_gen(*_toy_args(out)).returncode == 0
    stale = out / "removed_service.py"
    stale.write_text("# GENERATED by scripts/gen_sync.py — do not edit\n", encoding="utf-8")
    hand_written = out / "_helper.py"
    hand_written.write_text("X = 1\n", encoding="utf-8")
    done = _run_gen("--check", *_toy_args(out))
    assert done.returncode == 1
    assert "removed_service.py" in done.stdout
    assert "_helper.py" not in done.stdout
    assert _run_gen(*_toy_args(out)).returncode == 0
    assert not stale.exists()
    assert hand_written.exists()


def test_check_fails_when_the_async_source_changes(tmp_path: Path) -> None:
    """Drift in the other direction: the async class gained a method that the files on disk lack."""
    source = tmp_path / "src" / "drifting_toy.py"
    source.parent.mkdir()
    source.write_text(
        '''"""A module that changes."""


class Drifting:
    """Drifts."""

    async def one(self) -> int:
        """One."""
        return 1
''',
        encoding="utf-8",
    )
    out = tmp_path / TOY_PACKAGE
    args = ["--out", str(out), "--package", TOY_PACKAGE, "--class", "drifting_toy:Drifting"]
    env = subprocess_env(source.parent)

    def gen(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(GEN_SYNC), *extra, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert gen().returncode == 0
    assert gen("--check").returncode == 0
    with source.open("a", encoding="utf-8") as f:
        f.write('''
    async def two(self) -> int:
        """Two."""
        return 2
''')
    done = gen("--check")
    assert done.returncode == 1
    assert "+    def two(self) -> int:" in done.stdout


def test_repository_sync_package_exports_every_registered_class() -> None:
    import aioagents.sync

    registered = {name for names in gen_sync.SYNC_CLASSES.values() for name in names}
    assert aioagents.sync.__all__ == sorted(aioagents.sync.__all__)
    assert set(aioagents.sync.__all__) == registered | set(gen_sync.BRIDGE_EXPORTS)
    for module, names in gen_sync.SYNC_CLASSES.items():
        for name in names:
            twin = getattr(aioagents.sync, name)
            assert twin.__name__ == name
            assert twin._wrap.__annotations__["inner"] == f"_impl.{name}"
            assert importlib.import_module(twin.__module__)._impl is importlib.import_module(module)
