"""The one shape of every service client: a declarative endpoint spec and a base class that owns the Transport.

Each client declares an :class:`Endpoint` (where its URL and credential come from, its default timeout, the headers
its credential rides in, the request-id headers its server sends) and derives from :class:`ServiceClient`, which
builds the Transport from it and gives every client the same lifecycle (``aclose``, ``async with``), ``__repr__``
(never a secret), :meth:`ServiceClient.with_options` and the meaning of the retry knobs.

Retry knobs, the same on every client and every call: ``max_retries`` counts the retries after the first attempt
(``max_retries=0``: one attempt, no retry), ``max_attempts`` counts every attempt, the first included
(``max_attempts=1`` is the same as ``max_retries=0``). Pass either; both must agree.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import attrs

from aioagents._config import Timeout, TimeoutLike, env_or, to_timeout
from aioagents._exceptions import InvalidRequestError
from aioagents._retry import RetryPolicy
from aioagents._transport import ErrorFactory, ResponseHook, Transport, _loggable, default_error

_C = TypeVar("_C", bound="ServiceClient")

__all__ = ["Endpoint", "ServiceClient", "call_attempts", "merge_headers", "resolve_attempts"]


@attrs.frozen(kw_only=True)
class Endpoint:
    """What a service client declares instead of writing constructor logic: where its URL and credential come from
    and how its requests look.

    The URL is the explicit argument, else the first set variable of ``url_env``, else ``default_url``; the
    credential likewise from ``key_env``. A credential goes in each of ``auth_headers`` as ``"<auth_scheme> <key>"``
    (``auth_scheme=None``: the key as given) and is never shown. ``headers`` go on every request, ``timeout`` is
    the default when the caller gives none, ``max_attempts`` the default retry count (every attempt counted),
    ``request_id_headers`` the response headers that name a request in errors and logs.
    """

    url_env: tuple[str, ...] = ()
    default_url: str
    key_env: tuple[str, ...] = ()
    auth_headers: tuple[str, ...] = ("Authorization",)
    auth_scheme: str | None = "Bearer"
    timeout: Timeout = attrs.field(factory=lambda: Timeout(total=60.0, connect=10.0))
    max_attempts: int = 3
    headers: Mapping[str, str] = attrs.field(factory=dict, hash=False)
    request_id_headers: tuple[str, ...] = ("x-request-id", "request-id")

    def url(self, explicit: str | None) -> str:
        """The base URL: ``explicit``, else the environment, else the default."""
        return env_or(explicit, *self.url_env, default=self.default_url) or self.default_url

    def key(self, explicit: str | None) -> str | None:
        """The credential: ``explicit``, else the environment, else ``None``."""
        return env_or(explicit, *self.key_env)

    def auth(self, key: str | None) -> dict[str, str] | None:
        """The secret headers that carry ``key`` (``None`` without a key)."""
        if not key:
            return None
        value = f"{self.auth_scheme} {key}" if self.auth_scheme else key
        return dict.fromkeys(self.auth_headers, value)


def resolve_attempts(max_attempts: int | None, max_retries: int | None) -> int | None:
    """Both retry knobs as one count of attempts (``None``: neither given, keep the default).

    ``max_retries=0`` means one attempt; ``max_attempts`` counts the first attempt too, so it is at least 1. Both
    given must agree; a bad value raises :class:`~aioagents.InvalidRequestError`.
    """
    if max_retries is not None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise InvalidRequestError(f"max_retries must be an integer >= 0 (0: one attempt), not {max_retries!r}")
        if max_attempts is not None and max_attempts != max_retries + 1:
            raise InvalidRequestError(
                f"max_attempts={max_attempts} and max_retries={max_retries} disagree "
                "(max_attempts counts the first attempt: max_attempts == max_retries + 1)"
            )
        return max_retries + 1
    if max_attempts is not None and (
        isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1
    ):
        raise InvalidRequestError(
            f"max_attempts counts every attempt, the first included: at least 1, not {max_attempts!r} "
            "(for no retries pass max_retries=0 or max_attempts=1)"
        )
    return max_attempts


def merge_headers(base: Mapping[str, str] | None, extra: Mapping[str, str] | None) -> Mapping[str, str] | None:
    """A call's own headers with the caller's ``extra_headers`` on top (no copy when only one is given)."""
    if not extra:
        return base
    if not base:
        return extra
    return {**base, **extra}


class ServiceClient:
    """The base of every service client: it owns the Transport built from the class's :class:`Endpoint`.

    It gives each client ``aclose()`` and ``async with``, a ``__repr__`` that shows the URL and never a secret,
    ``base_url``, and :meth:`with_options`. Every call of a client accepts the per-call options ``timeout`` (seconds
    or a :class:`~aioagents.Timeout`), ``max_retries`` (0: one attempt) and ``extra_headers`` (sent on that call
    only).
    """

    endpoint_spec: ClassVar[Endpoint]
    """The service's endpoint declaration (environment variables, defaults, auth and request-id headers)."""

    _transport: Transport

    def _connect(
        self,
        base_url: str | None,
        given: Mapping[str, Any],
        *,
        key: str | None = None,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        error_factory: ErrorFactory = default_error,
        response_hook: ResponseHook | None = None,
    ) -> Transport:
        """Build this client's Transport (once) from its endpoint spec and the constructor's arguments: ``given`` is
        the constructor's ``locals()``, from which the options every client takes are read by name (``timeout``,
        ``max_attempts``, ``max_retries``, ``rate_limiter``, ``session``, ``trust_env``, ``trace_configs``), so no
        constructor restates them; ``key``, ``headers``, ``retry`` and the hooks are the client's own."""
        spec = self.endpoint_spec
        attempts = resolve_attempts(given.get("max_attempts"), given.get("max_retries")) or spec.max_attempts
        policy = retry or RetryPolicy()
        if policy.max_attempts != attempts:
            policy = policy.evolve(max_attempts=attempts)
        self._transport = Transport(
            spec.url(base_url),
            headers={**spec.headers, **(headers or {})},
            secret_headers=spec.auth(key),
            timeout=to_timeout(given.get("timeout"), spec.timeout),
            retry=policy,
            rate_limiter=given.get("rate_limiter"),
            session=given.get("session"),
            error_factory=error_factory,
            response_hook=response_hook,
            request_id_headers=spec.request_id_headers,
            trust_env=given.get("trust_env", True),
            trace_configs=given.get("trace_configs"),
        )
        return self._transport

    # -- options ---------------------------------------------------------------------------------------------
    def _with_options(
        self: _C,
        timeout: TimeoutLike,
        max_retries: int | None,
        max_attempts: int | None,
        extra_headers: Mapping[str, str] | None,
    ) -> _C:
        """``with_options`` of every client (each declares the public method only to name its own type, which the
        generated sync twins need): a copy with other defaults, sharing this client's connection pool, rate limiter
        and retry budget.

        What is not given keeps this client's value. The copy's requests go through this client's connections;
        closing the copy only stops the copy, closing this client closes the pool under every copy.
        """
        attempts = resolve_attempts(max_attempts, max_retries)
        clone = copy.copy(self)
        transport = clone._transport = self._transport.derive(
            timeout=timeout, max_attempts=attempts, headers=extra_headers
        )
        # Hooks bound to this client now report to the copy (its own rate-limit facts, its own base URL).
        hook, factory = transport.response_hook, transport.error_factory
        if hook is not None and getattr(hook, "__self__", None) is self:
            transport.response_hook = getattr(clone, hook.__name__)
        if getattr(factory, "__self__", None) is self:
            transport.error_factory = getattr(clone, factory.__name__)
        clone._rebind()
        return clone

    def _rebind(self) -> None:
        """Re-point whatever a client built on its Transport (sub-resources) at a copy's new Transport."""

    # -- lifecycle -------------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """The service's base URL (no trailing ``/``)."""
        return self._transport.base_url

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._transport.closed

    def _repr_fields(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({_loggable(self.base_url)!r}{self._repr_fields()})"

    async def aclose(self) -> None:
        """Close the connections this client opened (a session passed in is left open; a copy made by
        :meth:`with_options` leaves the shared pool to its original)."""
        await self._transport.aclose()

    async def __aenter__(self: _C) -> _C:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def call_attempts(max_retries: int | None) -> int | None:
    """A call's ``max_retries`` as the Transport's ``max_attempts`` (``None``: the client's default)."""
    return None if max_retries is None else resolve_attempts(None, max_retries)
