"""The SandboxFusion client: run code, run notebooks, and evaluate completions against datasets."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from aioagents import ClientOptions, RequestOptions
from aioagents._batch import BatchResult, ProgressCallback, as_completed
from aioagents._client import Endpoint, SentOptions, ServiceClient, Unpack, resolve_attempts, resolve_options
from aioagents._config import Timeout, env_or
from aioagents._converter import structure, unstructure
from aioagents._exceptions import APIError, InvalidRequestError
from aioagents._retry import RetryPolicy
from aioagents._transport import Response, _loggable
from aioagents.sandbox.models import (
    CommandRunStatus,
    EvalResult,
    GetMetricsFunctionRequest,
    GetMetricsFunctionResult,
    GetMetricsRequest,
    GetPromptByIdRequest,
    GetPromptsRequest,
    Prompt,
    RunCodeRequest,
    RunCodeResponse,
    RunJupyterRequest,
    RunJupyterResponse,
    RunStatus,
    SubmitRequest,
    SummaryMapping,
    fast_run_code_response,
)

__all__ = ["DEFAULT_ENDPOINT", "SandboxClient", "SandboxError", "summary_run_code_result"]

DEFAULT_ENDPOINT = "http://localhost:8080"

# The server keeps running code after a client gives up, so a run's client timeout must outlast the run itself.
_RUN_MARGIN = 5.0
# run_jupyter: the original server kills its driver at total_timeout + 10 s.
_JUPYTER_MARGIN = 12.0

T = TypeVar("T")

log = logging.getLogger("aioagents.sandbox")


class SandboxError(APIError):
    """The sandbox could not run the code (``status: SandboxError``): an infrastructure failure, not a failing program.

    ``response`` is the decoded result; the message is cut (the server repeats the whole program in it).
    """

    def __init__(self, message: str, *, response: RunCodeResponse | RunJupyterResponse | None = None) -> None:
        super().__init__(message if len(message) <= 500 else message[:500] + f"… [{len(message) - 500} more chars]")
        self.response = response


def summary_run_code_result(result: RunCodeResponse, mapping: SummaryMapping | None = None) -> str:
    """Classify a run into one of ``mapping``'s labels (compile failed / timed out, run failed / timed out, success).

    Raises ``ValueError`` on a result that cannot come from a consistent server.
    """
    mapping = mapping or SummaryMapping()
    compile_result, run_result = result.compile_result, result.run_result
    if compile_result is None and run_result is None:
        if result.status is RunStatus.Success:
            return mapping.Success
        if result.status is RunStatus.Failed:
            return mapping.Failed
        raise ValueError(f"unexpected result status {result.status.value}")
    if run_result is None:
        assert compile_result is not None
        if compile_result.status is CommandRunStatus.TimeLimitExceeded:
            return mapping.CompileTimeout or mapping.Failed
        if compile_result.return_code is None:
            raise ValueError(f"invalid sandbox result: no return code with status {compile_result.status.value}")
        if compile_result.return_code != 0:
            return mapping.CompileFailed or mapping.Failed
        raise ValueError("invalid sandbox result: compiled successfully with no run result")
    if run_result.status is CommandRunStatus.TimeLimitExceeded:
        return mapping.RunTimeout or mapping.Failed
    if run_result.return_code is None:
        raise ValueError(f"invalid sandbox result: no return code with status {run_result.status.value}")
    if run_result.return_code != 0:
        return mapping.RunFailed or mapping.Failed
    return mapping.Success


class SandboxClient(ServiceClient):
    """An async client of the SandboxFusion API.

    >>> async with SandboxClient() as sandbox:            # SANDBOX_FUSION_ENDPOINT or http://localhost:8080
    ...     result = await sandbox.run_code("print(1 + 1)", language="python")
    ...     result.status, result.stdout
    (<RunStatus.Success: 'Success'>, '2\\n')

    A failing program is a returned result (``status`` ``Failed``); a sandbox failure raises :class:`SandboxError`;
    transport failures raise the ``APIError`` tree. Runs are retried on connection errors and 5xx, never on 400/422,
    and — because the server keeps running code after a client gives up — not after a client timeout unless
    ``retry_timeouts=True`` (each such retry is logged as a warning). ``trust_env=False`` ignores proxy and CA-bundle
    environment variables; ``trace_configs`` (aiohttp ``TraceConfig``) see every attempt of every call.
    ``max_retries`` counts the retries (0: one attempt), ``max_attempts`` every attempt (default 3). Every call
    takes ``timeout``, ``max_retries`` and ``extra_headers`` for itself; :meth:`with_options` makes a copy with
    other defaults on the same connections.
    """

    endpoint_spec = Endpoint(
        url_env=("SANDBOX_FUSION_ENDPOINT",),
        default_url=DEFAULT_ENDPOINT,
        auth_headers=(),
        timeout=Timeout(total=60.0, connect=10.0),
    )

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        dataset_endpoint: str | None = None,
        retry_timeouts: bool = False,
        **options: Unpack[ClientOptions],
    ) -> None:
        transport = self._connect(endpoint, options, retry=RetryPolicy(retry_timeouts=retry_timeouts))
        self._dataset_endpoint = env_or(dataset_endpoint, "SANDBOX_FUSION_DATASET_ENDPOINT", default=transport.base_url)
        self._timeout_given = options.get("timeout") is not None

    def __repr__(self) -> str:
        return (
            f"SandboxClient(endpoint={_loggable(self.endpoint)!r}, "
            f"dataset_endpoint={_loggable(self.dataset_endpoint)!r})"
        )

    @property
    def endpoint(self) -> str:
        """The sandbox endpoint (run_code, run_jupyter, ping)."""
        return self._transport.base_url

    @endpoint.setter
    def endpoint(self, value: str) -> None:
        self._transport.base_url = value

    @property
    def dataset_endpoint(self) -> str:
        """The dataset endpoint (prompts, submit, metrics)."""
        return (self._dataset_endpoint or self.endpoint).rstrip("/")

    @dataset_endpoint.setter
    def dataset_endpoint(self, value: str) -> None:
        self._dataset_endpoint = value

    # -- helpers -------------------------------------------------------------------------------------------------
    def _run_options(
        self,
        options: RequestOptions,
        client_timeout: float | None,
        max_attempts: int | None,
        needed: float | None = None,
    ) -> SentOptions:
        """The options of a call that also takes the original SDK's ``client_timeout`` and ``max_attempts``; a run
        (``needed``: the seconds it may take on the server) waits at least that long unless a timeout was set."""
        sent = resolve_options(
            options, timeout=client_timeout, max_attempts=resolve_attempts(max_attempts, options.get("max_retries"))
        )
        if needed is not None and sent["timeout"] is None:
            if self._timeout_given or self._transport.timeout is not self.endpoint_spec.timeout:
                sent["timeout"] = self._transport.timeout
            else:
                sent["timeout"] = max(self._transport.timeout.total or 0.0, needed)
        return sent

    async def _post(
        self, path: str, body: Any, sent: SentOptions, *, endpoint: str | None, dataset: bool = False
    ) -> Response:
        base = endpoint or (self.dataset_endpoint if dataset else None)
        return await self._transport.request(
            "POST", path, json=unstructure(body), idempotent=True, base_url=base, **sent
        )

    async def _dataset(
        self, path: str, request: Any, endpoint: str | None, options: RequestOptions, into: type[T]
    ) -> T:
        """A dataset call: POST ``request`` to the dataset endpoint, the answer structured as ``into``."""
        resp = await self._post(path, request, resolve_options(options), endpoint=endpoint, dataset=True)
        return structure(resp.json(), into)

    # -- sandbox -------------------------------------------------------------------------------------------------
    async def run_code(
        self,
        request: RunCodeRequest | str,
        *,
        language: str = "python",
        stdin: str | None = None,
        files: Mapping[str, bytes | str | None] | None = None,
        fetch_files: Sequence[str] = (),
        compile_timeout: float = 10,
        run_timeout: float = 10,
        memory_limit_MB: int = -1,
        endpoint: str | None = None,
        client_timeout: float | None = None,
        max_attempts: int | None = None,
        **options: Unpack[RequestOptions],
    ) -> RunCodeResponse:
        """Run a program. Pass a :class:`RunCodeRequest`, or the code and its options as arguments.

        Returns the result whatever the program did (check ``status``); raises :class:`SandboxError` when the sandbox
        failed, ``UnprocessableEntityError`` for a request the server rejects. ``client_timeout`` (or ``timeout``, the
        name every client's calls share) defaults to ``compile_timeout + run_timeout`` plus a margin.
        """
        if isinstance(request, str):
            request = RunCodeRequest(
                code=request,
                language=language,
                stdin=stdin,
                files=dict(files or {}),
                fetch_files=list(fetch_files),
                compile_timeout=compile_timeout,
                run_timeout=run_timeout,
                memory_limit_MB=memory_limit_MB,
            )
        needed = request.compile_timeout + request.run_timeout + _RUN_MARGIN
        sent = self._run_options(options, client_timeout, max_attempts, needed)
        resp = await self._post("/run_code", request, sent, endpoint=endpoint)
        body = resp.json()
        result = fast_run_code_response(body) or structure(body, RunCodeResponse)
        if result.status is RunStatus.SandboxError:
            raise SandboxError(f"sandbox error: {result.message}", response=result)
        return result

    async def run_jupyter(
        self,
        request: RunJupyterRequest | Sequence[str],
        *,
        cell_timeout: float = 0,
        total_timeout: float = 45,
        memory_limit_MB: int = -1,
        files: Mapping[str, bytes | str | None] | None = None,
        fetch_files: Sequence[str] = (),
        endpoint: str | None = None,
        client_timeout: float | None = None,
        max_attempts: int | None = None,
        **options: Unpack[RequestOptions],
    ) -> RunJupyterResponse:
        """Run notebook cells in a fresh kernel; per-cell stdout, stderr, display bundles and errors."""
        if not isinstance(request, RunJupyterRequest):
            if isinstance(request, str):
                raise InvalidRequestError("run_jupyter takes a list of cells, not one string")
            request = RunJupyterRequest(
                cells=list(request),
                cell_timeout=cell_timeout,
                total_timeout=total_timeout,
                memory_limit_MB=memory_limit_MB,
                files=dict(files or {}),
                fetch_files=list(fetch_files),
            )
        sent = self._run_options(options, client_timeout, max_attempts, request.total_timeout + _JUPYTER_MARGIN)
        resp = await self._post("/run_jupyter", request, sent, endpoint=endpoint)
        result = structure(resp.json(), RunJupyterResponse)
        if result.status is RunStatus.SandboxError:
            raise SandboxError(f"sandbox error: {result.message}", response=result)
        return result

    async def ping(
        self,
        *,
        endpoint: str | None = None,
        **options: Unpack[RequestOptions],
    ) -> bool:
        """True when the server answers ``GET /v1/ping`` with ``"pong"``; transport failures raise (one attempt
        unless ``max_retries`` says otherwise)."""
        sent = resolve_options(options, max_attempts=1)
        resp = await self._transport.request("GET", "/v1/ping", idempotent=True, base_url=endpoint, **sent)
        return bool(resp.json() == "pong")

    # -- datasets ------------------------------------------------------------------------------------------------
    async def list_datasets(
        self,
        *,
        endpoint: str | None = None,
        **options: Unpack[RequestOptions],
    ) -> list[str]:
        """The dataset ids the server knows."""
        base = endpoint or self.dataset_endpoint
        resp = await self._transport.request(
            "GET", "/list_datasets", idempotent=True, base_url=base, **resolve_options(options)
        )
        return structure(resp.json(), list[str])

    async def list_ids(
        self,
        request: GetPromptsRequest,
        *,
        endpoint: str | None = None,
        **options: Unpack[RequestOptions],
    ) -> list[int | str]:
        """The row ids of a dataset."""
        resp = await self._post("/list_ids", request, resolve_options(options), endpoint=endpoint, dataset=True)
        return [structure(item, int | str) for item in resp.json()]  # type: ignore[arg-type]

    async def get_prompts(
        self,
        request: GetPromptsRequest,
        *,
        endpoint: str | None = None,
        **options: Unpack[RequestOptions],
    ) -> list[Prompt]:
        """A dataset's prompts (``offset``/``limit`` page them)."""
        return await self._dataset("/get_prompts", request, endpoint, options, list[Prompt])

    async def get_prompt_by_id(
        self,
        request: GetPromptByIdRequest,
        *,
        endpoint: str | None = None,
        **options: Unpack[RequestOptions],
    ) -> Prompt:
        """One prompt by id."""
        return await self._dataset("/get_prompt_by_id", request, endpoint, options, Prompt)

    async def submit(
        self,
        request: SubmitRequest,
        *,
        endpoint: str | None = None,
        client_timeout: float | None = None,
        max_attempts: int | None = None,
        **options: Unpack[RequestOptions],
    ) -> EvalResult:
        """Evaluate a completion against a dataset row's tests."""
        sent = self._run_options(options, client_timeout, max_attempts)
        resp = await self._post("/submit", request, sent, endpoint=endpoint, dataset=True)
        return structure(resp.json(), EvalResult)

    async def submit_safe(
        self,
        request: SubmitRequest,
        *,
        endpoint: str | None = None,
        client_timeout: float | None = None,
        max_attempts: int | None = None,
        **options: Unpack[RequestOptions],
    ) -> EvalResult:
        """Like :meth:`submit`, but a failed evaluation — the service refused it, or no answer came back — becomes a
        rejected result (``accepted=False``, logged as a warning) instead of an error.

        Only service and transport failures (:class:`~aioagents.APIError`) are turned into a rejection: a bug on our
        side (a ``TypeError``, an ``AttributeError``) or a cancellation propagates, so it can never pass for a wrong
        answer.
        """
        try:
            return await self.submit(
                request, endpoint=endpoint, client_timeout=client_timeout, max_attempts=max_attempts, **options
            )
        except APIError as exc:
            log.warning(
                "submit of %r to dataset %r failed, returning a rejected result: %s", request.id, request.dataset, exc
            )
            return EvalResult(id=request.id, accepted=False, extracted_code="", tests=[])

    async def get_metrics(
        self,
        request: GetMetricsRequest,
        *,
        endpoint: str | None = None,
        **options: Unpack[RequestOptions],
    ) -> dict[str, Any]:
        """A dataset's aggregate metrics over evaluated results (``{}`` when it defines none)."""
        return await self._dataset("/get_metrics", request, endpoint, options, dict[str, Any])

    async def get_metrics_function(
        self,
        request: GetMetricsFunctionRequest,
        *,
        endpoint: str | None = None,
        **options: Unpack[RequestOptions],
    ) -> str | None:
        """The source of a dataset's metrics function, or None."""
        result = await self._dataset("/get_metrics_function", request, endpoint, options, GetMetricsFunctionResult)
        return result.function

    # -- batches -------------------------------------------------------------------------------------------------
    def run_many(
        self,
        requests: Iterable[RunCodeRequest] | AsyncIterable[RunCodeRequest],
        *,
        concurrency: int = 16,
        on_progress: ProgressCallback | None = None,
        progress: bool = False,
    ) -> AsyncIterator[BatchResult[RunCodeRequest, RunCodeResponse]]:
        """Run many programs, ``concurrency`` at a time; yield each result as it completes, with its input index.

        >>> async for item in sandbox.run_many(requests, concurrency=64):
        ...     print(item.index, item.value.status if item.ok else item.error)

        Errors are captured per item, so one failure never loses another result.
        """
        return as_completed(
            self.run_code, requests, concurrency=concurrency, on_progress=on_progress, progress=progress
        )
