"""Drop-in mirrors of the original SDKs' public APIs: change the import, keep the code.

- ``aioagents.compat.sandbox_fusion``  — ``sandbox-fusion`` (with its ``run_concurrent``)
- ``aioagents.compat.simstudio``       — ``simstudio-sdk`` (with its ``SimStudioError`` class tree)
- ``aioagents.compat.appbuilder``      — ``appbuilder-sdk`` (assistants)
- ``aioagents.compat.slambda``         — ``slambda``

Every SDK-mirroring concern lives here (signatures, error classes, pydantic-style model methods), built on the
public API of the native packages and of ``aioagents.sync``.
"""
