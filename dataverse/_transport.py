"""Sending one Web API request well: headers, token, concurrency cap, retries and error mapping.

Every request of the client goes through `Transport.send`. It adds the OData headers, a bearer token, a
`User-Agent` naming the product and a fresh `x-ms-client-request-id`; waits for a slot under the environment's
concurrency cap (which follows the service's `x-ms-dop-hint`); retries as `RetryPolicy` allows; refreshes the
token once after a 401; and turns any failure into the package's error tree. A read-only transport refuses
anything but GET and HEAD before it asks for a token: a guard that holds however a write was reached.
"""

from __future__ import annotations

import ipaddress
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import anyio
import httpx2

from ._errors import (
    DataverseError,
    DuplicateRecord,
    NotFound,
    RequestTimeout,
    ServiceError,
    Throttled,
    TransportError,
    WriteRefused,
    error_from_response,
)
from ._retry import TRANSIENT_STATUSES, RetryPolicy, parse_retry_after
from ._tokens import TokenProvider

logger = logging.getLogger(__name__)

DEFAULT_API_VERSION: Final = "v9.2"
DATAVERSE_CONCURRENCY_LIMIT: Final = 52  # concurrent requests Dataverse allows per user
LOOPBACK_NAMES: Final = frozenset({"localhost"})

# What repeating a request after an unclear failure would do:
#   "safe"    nothing more (GET, PATCH with fixed values, DELETE): retry after 5xx, timeouts, drops
#   "create"  a POST with a client-generated primary key: a repeat can be recognised, see send()
#   "unsafe"  anything else: only retried when it certainly did not run (429, connection refused)
Repeatability = Literal["safe", "create", "unsafe"]
READS: Final = frozenset({"GET", "HEAD"})
# Failures before the request left this process: it certainly did not run.
NEVER_SENT: Final = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout)


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def service_url(url: str) -> str:
    """`url` without a trailing slash, if it is https (or http to a loopback host) with no query."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{url!r} is not a service URL such as https://contoso.crm.dynamics.com")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(f"{url!r} must use https:// (http:// is accepted only for loopback hosts)")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r}: a service URL has no query or fragment")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def api_base_url(environment_url: str, api_version: str = DEFAULT_API_VERSION) -> str:
    """`<environment url>/api/data/<version>`."""
    if not api_version.startswith("v") or not api_version[1:].replace(".", "").isdigit():
        raise ValueError(f"API version {api_version!r} is not like v9.2")
    return f"{service_url(environment_url)}/api/data/{api_version}"


@dataclass(frozen=True)
class Outcome:
    """A successful response; whether it only succeeded because an earlier attempt landed, or may have."""

    response: httpx2.Response
    landed_earlier: bool = False  # a repeat met the earlier attempt's result (duplicate key, row gone)
    after_unclear: bool = False  # an earlier attempt failed unclearly: it may have been carried out


class Transport:
    """Sends requests under one API root (`api_url`) on behalf of one caller."""

    def __init__(
        self,
        http: httpx2.AsyncClient,
        api_url: str,
        tokens: TokenProvider,
        *,
        retry: RetryPolicy | None = None,
        max_concurrency: int = DATAVERSE_CONCURRENCY_LIMIT,
        user_agent: str = "dynamics-mcp",
        read_only: bool = False,
    ) -> None:
        self.http = http
        self.api_url = service_url(api_url)
        self.tokens = tokens
        self.retry = retry or RetryPolicy()
        self.max_concurrency = max(1, max_concurrency)
        self.limiter = anyio.CapacityLimiter(self.max_concurrency)
        self.user_agent = user_agent
        self.read_only = read_only

    def url(self, path: str) -> str:
        return f"{self.api_url}/{path.lstrip('/')}"

    def is_own_url(self, url: str) -> bool:
        """Whether `url` belongs to this environment's Web API (never send the token elsewhere)."""
        return url.startswith(self.api_url + "/") or url == self.api_url

    @property
    def origin(self) -> str:
        parts = urlsplit(self.api_url)
        return f"{parts.scheme}://{parts.netloc}"

    def _follow_dop_hint(self, response: httpx2.Response) -> None:
        hint = response.headers.get("x-ms-dop-hint")
        if hint and hint.isdigit() and int(hint) > 0:
            wanted = min(self.max_concurrency, int(hint))
            if self.limiter.total_tokens != wanted:
                self.limiter.total_tokens = wanted

    async def send(
        self,
        method: str,
        url: str,
        *,
        repeatability: Repeatability,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        reads: bool = False,
        content: bytes | None = None,
        keep: Callable[[httpx2.Response], bool] | None = None,
        receive: Callable[[httpx2.Response], Awaitable[None]] | None = None,
    ) -> Outcome:
        """Send one request with retries; raises a DataverseError subclass on failure.

        A write's error says in `may_have_written` whether any attempt may have been carried out. `reads` says
        that a request of another method than GET or HEAD only reads (a read-only transport then sends it).
        `content` is a body sent as it is (its `Content-Type` among `headers`); an error response that `keep`
        accepts is returned rather than raised (a `$batch` answers 400 with the failed request's response inside).
        `receive` reads a successful response's body as it streams in (a large document is never held whole), once
        per attempt: a body that breaks off is retried as the request is; the returned response's body is consumed.
        """
        if self.read_only and not reads and method.upper() not in READS:
            raise WriteRefused(f"This server is read-only: the {method} request was not sent to Dataverse.")
        if not self.is_own_url(url):
            raise TransportError(f"Refusing to send a request outside {self.api_url}.")
        waited, attempt, force_refresh, refreshed = 0.0, 0, False, False
        unclear = False  # an earlier attempt of this write failed in a way that may have left it carried out
        while True:
            attempt += 1
            token = await self.tokens.token(force_refresh=force_refresh)
            force_refresh = False
            request_headers = {
                "Accept": "application/json",
                "OData-MaxVersion": "4.0",
                "OData-Version": "4.0",
                "User-Agent": self.user_agent,
                "x-ms-client-request-id": str(uuid.uuid4()),
                **(headers or {}),
                "Authorization": f"Bearer {token.token}",
            }
            if json is not None:
                request_headers["Content-Type"] = "application/json; charset=utf-8"
            try:
                async with self.limiter:
                    if receive is None:
                        response = await self.http.request(
                            method, url, params=params, json=json, content=content, headers=request_headers
                        )
                    else:
                        request = self.http.build_request(
                            method, url, params=params, json=json, content=content, headers=request_headers
                        )
                        response = await self._streamed(request, receive)
            except NEVER_SENT as error:
                # The request never reached the service: repeating it is always safe.
                delay = self._retry_delay(attempt, waited, None)
                if delay is None:
                    raise self._give_up(_transport_error(error, self.origin), method, unclear) from error
            except httpx2.TransportError as error:
                unclear = True
                delay = self._retry_delay(attempt, waited, None) if repeatability != "unsafe" else None
                if delay is None:
                    raise self._give_up(_transport_error(error, self.origin), method, unclear) from error
            else:
                self._follow_dop_hint(response)
                if response.is_success or response.status_code == 304 or (keep is not None and keep(response)):
                    return Outcome(response, after_unclear=unclear and method not in READS)
                failure = _failure(response)
                if response.status_code == 401 and not refreshed:
                    refreshed = force_refresh = True
                    continue
                if unclear and _is_earlier_result(method, repeatability, failure):
                    return Outcome(response, landed_earlier=True, after_unclear=True)
                # A 5xx may come from a gateway after the service committed; 4xx and 429 mean nothing ran.
                unclear = unclear or failure.status >= 500
                delay = self._delay_for(failure, repeatability, attempt, waited)
                if delay is None:
                    raise self._give_up(failure, method, unclear)
            logger.debug("retrying %s after %.2fs (attempt %d)", method, delay, attempt)
            waited += delay
            await self.retry.sleep(delay)

    async def _streamed(
        self, request: httpx2.Request, receive: Callable[[httpx2.Response], Awaitable[None]]
    ) -> httpx2.Response:
        """Send `request`; `receive` reads a successful body as it streams, an error body is read whole."""
        response = await self.http.send(request, stream=True)
        try:
            if response.is_success:
                await receive(response)
            else:
                await response.aread()
        finally:
            await response.aclose()
        return response

    @staticmethod
    def _give_up(failure: DataverseError, method: str, unclear: bool) -> DataverseError:
        failure.may_have_written = unclear and method not in READS
        return failure

    def _retry_delay(self, attempt: int, waited: float, retry_after: float | None) -> float | None:
        policy = self.retry
        if attempt >= policy.max_attempts:
            return None
        delay = policy.backoff(attempt) if retry_after is None else retry_after
        if retry_after is not None and retry_after > policy.max_retry_after:
            return None
        if waited + delay > policy.max_total_wait:
            return None
        return delay

    def _delay_for(
        self, failure: ServiceError, repeatability: Repeatability, attempt: int, waited: float
    ) -> float | None:
        if isinstance(failure, Throttled):
            # Throttled requests were not executed, whatever their method.
            return self._retry_delay(attempt, waited, failure.retry_after if failure.retry_after is not None else 1.0)
        if failure.status in TRANSIENT_STATUSES and repeatability != "unsafe":
            return self._retry_delay(attempt, waited, None)
        return None


def _failure(response: httpx2.Response) -> ServiceError:
    try:
        body = response.json()
    except ValueError:
        body = None
    request_id = response.headers.get("x-ms-service-request-id") or response.request.headers.get(
        "x-ms-client-request-id"
    )
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    return error_from_response(response.status_code, body, request_id=request_id, retry_after=retry_after)


def _is_earlier_result(method: str, repeatability: Repeatability, failure: ServiceError) -> bool:
    """Whether a repeat's failure is what an earlier, unclear attempt that was carried out leaves behind."""
    if repeatability == "create" and isinstance(failure, DuplicateRecord):
        return True  # our own client-generated key already exists
    return method == "DELETE" and isinstance(failure, NotFound)  # the row is gone


def _transport_error(error: httpx2.TransportError, origin: str) -> DataverseError:
    if isinstance(error, httpx2.TimeoutException):
        kind = "connecting" if isinstance(error, httpx2.ConnectTimeout) else "waiting for the answer"
        return RequestTimeout(f"Timed out {kind} to Dataverse.")
    if isinstance(error, httpx2.ConnectError):
        return TransportError(f"Could not connect to the Dataverse environment at {origin}: it is unreachable.")
    return TransportError(
        f"The connection to Dataverse failed before a complete answer ({type(error).__name__}).",
        hint="The network or the service cut the connection; try again in a moment.",
    )
