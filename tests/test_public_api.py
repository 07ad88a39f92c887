"""The public surface is a tested artifact: every public module's ``__all__`` lists exactly its public names."""

from __future__ import annotations

import importlib
import inspect

import pytest

PACKAGES = [
    "aioagents",
    "aioagents.sandbox",
    "aioagents.interpreter",
    "aioagents.workflows",
    "aioagents.assistants",
    "aioagents.functions",
    "aioagents.local",
    "aioagents.testing",
    "aioagents.sync",
]
COMPAT = [
    "aioagents.compat.sandbox_fusion",
    "aioagents.compat.simstudio",
    "aioagents.compat.appbuilder",
    "aioagents.compat.slambda",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_lists_exactly_the_public_names(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(exported) == len(set(exported)), "duplicates in __all__"
    # Packages load some names lazily (PEP 562): resolving each one (an AttributeError fails the test) puts it in vars.
    for attr in exported:
        getattr(module, attr)
    public = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_") and not inspect.ismodule(value) and attr not in {"annotations", "TYPE_CHECKING"}
    }
    assert set(exported) - {"__version__"} == public


@pytest.mark.parametrize("name", COMPAT)
def test_compat_exports_exist(name: str) -> None:
    module = importlib.import_module(name)
    assert [attr for attr in module.__all__ if not hasattr(module, attr)] == []


@pytest.mark.parametrize("name", PACKAGES + COMPAT)
def test_every_public_name_has_a_docstring(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__
    missing = [
        attr
        for attr in module.__all__
        if (inspect.isclass(getattr(module, attr)) or inspect.isfunction(getattr(module, attr)))
        and not inspect.getdoc(getattr(module, attr))
    ]
    assert missing == []
