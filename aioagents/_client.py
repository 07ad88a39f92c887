"""The one shape of every service client: a declarative endpoint spec and a base class that owns the Transport.

Each client declares an :class:`Endpoint` (where its URL and credential come from, its default timeout, the headers
its credential rides in, the request-id headers its server sends) and derives from :class:`ServiceClient`, which
builds the Transport from it and gives every client the same lifecycle (``aclose``, ``async with``), ``__repr__``
(never a secret), :meth:`ServiceClient.with_options` and the meaning of the retry knobs.

Retry knobs, the same on every client and every call: ``max_retries`` counts the retries after the first attempt
(``max_retries=0``: one attempt, no retry), ``max_attempts`` counts every attempt, the first included
(``max_attempts=1`` is the same as ``max_retries=0``). Pass either; both must agree.

Per-call options are declared once, in :class:`RequestOptions`: every public call of every client takes
``**options: Unpack[RequestOptions]`` and hands them to :func:`resolve_options`, the one place that checks them and
turns them into the Transport's keywords. A type checker checks callers' keyword names and types against the
TypedDict; at run time an unknown name raises ``TypeError`` as a misspelt keyword argument would.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypedDict

import aiohttp
import attrs

from aioagents._config import Timeout, TimeoutLike, env_or, to_timeout
from aioagents._exceptions import InvalidRequestError
from aioagents._ratelimit import RateLimiter
from aioagents._retry import RetryPolicy
from aioagents._transport import ErrorFactory, ResponseHook, Transport, _loggable, default_error

# typing gained Self and Unpack in 3.11; on 3.10 they come from typing_extensions (a dependency there). Client
# modules and the generated sync twins import them from here so that no module needs its own version switch.
if sys.version_info >= (3, 11):
    from typing import Self, Unpack
else:  # pragma: no cover - exercised on Python 3.10 only
    from typing_extensions import Self, Unpack

__all__ = [
    "CallOptions",
    "ClientOptions",
    "Endpoint",
    "RequestOptions",
    "Self",
    "SentOptions",
    "ServiceClient",
    "Unpack",
    "merge_headers",
    "resolve_attempts",
    "resolve_options",
]


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


class ClientOptions(TypedDict, total=False):
    """The constructor options every client takes, declared once (``**options: Unpack[ClientOptions]``).

    >>> SandboxClient("http://sandbox:8080", timeout=30, max_retries=5, session=shared, trust_env=False)
    """

    timeout: TimeoutLike
    """The default timeout of a call: seconds, or a :class:`~aioagents.Timeout` (default: the service's)."""

    max_attempts: int | None
    """Every attempt of a call counted, the first included (default 3); pass this or ``max_retries``."""

    max_retries: int | None
    """The retries after a call's first attempt (``0``: one attempt)."""

    rate_limiter: RateLimiter | None
    """Paces every request of this client (and of its copies); share one between clients to share a limit."""

    session: aiohttp.ClientSession | None
    """An aiohttp session to send through (left open by ``aclose``); default: one of the client's own."""

    trust_env: bool
    """Honour ``HTTP(S)_PROXY``, ``NO_PROXY``, ``SSL_CERT_FILE`` and friends (default ``True``)."""

    trace_configs: Sequence[aiohttp.TraceConfig] | None
    """aiohttp ``TraceConfig`` objects that see every attempt of every call."""


_CLIENT_OPTION_NAMES = frozenset(ClientOptions.__annotations__)


class CallOptions(TypedDict, total=False):
    """The per-call options of a call whose own ``timeout`` means something else (an interpreter execute's
    server-side wait): :class:`RequestOptions` without ``timeout``."""

    max_retries: int | None
    """Retries after the first attempt: ``0`` is one attempt, no retry."""

    extra_headers: Mapping[str, str] | None
    """Headers sent on this call only, on top of the client's (a secret value is never logged)."""


class RequestOptions(CallOptions, total=False):
    """The options every call of every client accepts, declared once (``**options: Unpack[RequestOptions]``):
    ``timeout``, ``max_retries`` and ``extra_headers``.

    >>> await sandbox.run_code("print(1)", timeout=5, max_retries=0, extra_headers={"X-Trace": "1"})

    Each applies to that one call and defaults to the client's setting (see
    :meth:`ServiceClient.with_options` for a copy of a client with other defaults). ``None`` is the same as not
    giving the option. Build a dict of them once and pass it to many calls with ``**``.
    """

    timeout: TimeoutLike
    """Seconds for the whole call (every attempt), or a :class:`~aioagents.Timeout` with its parts."""


_OPTION_NAMES = frozenset(RequestOptions.__annotations__)


class SentOptions(TypedDict):
    """:class:`RequestOptions` resolved into the keywords of the Transport's ``request``, ``stream`` and ``open``:
    pass them on with ``**``."""

    timeout: TimeoutLike
    max_attempts: int | None
    headers: Mapping[str, str] | None


def resolve_options(
    options: Mapping[str, Any],
    *,
    headers: Mapping[str, str] | None = None,
    timeout: TimeoutLike = None,
    max_attempts: int | None = None,
) -> SentOptions:
    """The one place that reads a call's :class:`RequestOptions` (or :class:`CallOptions`): checks them and returns
    the Transport keywords.

    ``headers``, ``timeout`` and ``max_attempts`` are the call's own defaults (its own headers, a timeout it needs,
    ``1`` for a probe that must fail fast); the caller's options win over them, ``extra_headers`` on top of
    ``headers``. An unknown option raises ``TypeError``, a bad value :class:`~aioagents.InvalidRequestError`.
    """
    if not options:
        return {"timeout": timeout, "max_attempts": max_attempts, "headers": headers}
    if not _OPTION_NAMES.issuperset(options):
        unknown = ", ".join(sorted(set(options) - _OPTION_NAMES))
        raise TypeError(f"unexpected keyword argument(s) {unknown}; the per-call options are {sorted(_OPTION_NAMES)}")
    given_timeout: TimeoutLike = options.get("timeout")
    retries = options.get("max_retries")
    extra = options.get("extra_headers")
    if extra is not None and not isinstance(extra, Mapping):
        raise InvalidRequestError(
            f"extra_headers must be a mapping of header names to values, not {type(extra).__name__}"
        )
    return {
        "timeout": timeout if given_timeout is None else given_timeout,
        "max_attempts": max_attempts if retries is None else resolve_attempts(None, retries),
        "headers": merge_headers(headers, extra),
    }


class ServiceClient:
    """The base of every service client: it owns the Transport built from the class's :class:`Endpoint`.

    It gives each client ``aclose()`` and ``async with``, a ``__repr__`` that shows the URL and never a secret,
    ``base_url``, and :meth:`with_options`. Every call of a client accepts the per-call options of
    :class:`RequestOptions` (``timeout``, ``max_retries``, ``extra_headers``), resolved by :func:`resolve_options`.
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
        """Build this client's Transport (once) from its endpoint spec and the constructor's :class:`ClientOptions`
        (``given``; an unknown name raises ``TypeError``, as a misspelt keyword would); ``key``, ``headers``,
        ``retry`` and the hooks are the client's own. A constructor not yet on ``ClientOptions`` may pass its
        ``locals()``: the options are then read by name and the rest is ignored."""
        if "self" not in given and not _CLIENT_OPTION_NAMES.issuperset(given):
            unknown = ", ".join(sorted(set(given) - _CLIENT_OPTION_NAMES))
            raise TypeError(
                f"{type(self).__name__}() got unexpected keyword argument(s) {unknown}; "
                f"the client options are {sorted(_CLIENT_OPTION_NAMES)}"
            )
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
    def with_options(self, *, max_attempts: int | None = None, **options: Unpack[RequestOptions]) -> Self:
        """A copy of this client with other defaults (what is not given is kept), on the same connections, rate
        limiter and retry budget: ``client.with_options(timeout=5, max_retries=0, extra_headers={"X-Trace": "1"})``.

        Takes the per-call options (:class:`RequestOptions`) and ``max_attempts`` (every attempt counted; pass it or
        ``max_retries``). The copy's requests go through this client's connections; closing the copy only stops the
        copy, closing this client closes the pool under every copy.
        """
        sent = resolve_options(options)
        attempts = resolve_attempts(max_attempts, options.get("max_retries"))
        clone = copy.copy(self)
        transport = clone._transport = self._transport.derive(
            timeout=sent["timeout"], max_attempts=attempts, headers=sent["headers"]
        )
        # Hooks bound to this client now report to the copy (its own rate-limit facts, its own base URL).
        hook, factory = transport.response_hook, transport.error_factory
        if hook is not None and getattr(hook, "__self__", None) is self:
            transport.response_hook = getattr(clone, hook.__name__)
        if getattr(factory, "__self__", None) is self:
            transport.error_factory = getattr(clone, factory.__name__)
        clone._rebind()
        return clone

    def _with_options(
        self,
        timeout: TimeoutLike,
        max_retries: int | None,
        max_attempts: int | None,
        extra_headers: Mapping[str, str] | None,
    ) -> Self:
        """The base's :meth:`with_options`, for a client that still declares its own (it must not recurse into
        that override)."""
        return ServiceClient.with_options(
            self, max_attempts=max_attempts, timeout=timeout, max_retries=max_retries, extra_headers=extra_headers
        )

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

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
