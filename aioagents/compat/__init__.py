"""Drop-in mirrors of the original SDKs' public APIs: change the import, keep the code.

- ``aioagents.compat.sandbox_fusion``  — ``sandbox-fusion``
- ``aioagents.compat.simstudio``       — ``simstudio-sdk``
- ``aioagents.compat.appbuilder``      — ``appbuilder-sdk`` (assistants)
- ``aioagents.compat.slambda``         — ``slambda``
"""
