"""``FhirClient``: the FHIR R4 REST API over ``requests`` - search with paging, read, writes, bundles.

Every request has a timeout, is retried by ``RetryPolicy``'s rule (see ``retry.py``), and fails with a
``FhirError`` that names the request, the HTTP status and the server's OperationOutcome text. A request and the
reading of its answer are one attempt (``exchange``): a 2xx answer whose body cannot be read as what was asked
for (cut short, not JSON, not the resource or Bundle expected) is retried like a 5xx when the request may be
repeated, and a failing page of a search is fetched again, never the search from its start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import orjson
import requests

from fhir_adapter.client.capabilities import Capabilities
from fhir_adapter.client.errors import AuthError, UnreadableAnswer, error_class, outcome_text
from fhir_adapter.client.retry import (
    IDEMPOTENT_METHODS,
    RetryPolicy,
    may_retry,
    never_reached_server,
    parse_retry_after,
)
from fhir_adapter.client.search import SearchPage
from fhir_adapter.client.throttle import Throttle
from fhir_adapter.errors import FhirError

log = logging.getLogger("fhir_adapter.client")

FHIR_JSON = "application/fhir+json"
Params = Mapping[str, Any] | Sequence[tuple[str, Any]] | str | None
Timeout = float | tuple[float, float]
T = TypeVar("T")
# said of a plain POST that failed after it was sent: the server may have stored it already
NOT_REPEATED = "the server may have acted on it, so it was not sent again (check the server before repeating it)"


def param_items(params: Params) -> list[tuple[str, Any]]:
    """``params`` (a mapping, pairs or a query string ``a=1&b=2``) as a list of pairs."""
    if not params:
        return []
    if isinstance(params, str):
        return parse_qsl(params.lstrip("?"), keep_blank_values=True)
    return list(params.items() if isinstance(params, Mapping) else params)


def query_string(params: Params) -> str:
    """``params`` as a query string that stays readable in messages (``subject=Patient/1``, ``code=s|c``)."""
    return urlencode(param_items(params), doseq=True, safe="/|:,$*")


class FhirClient:
    """A FHIR R4 server at ``base_url``.

    ``auth`` is a ``requests`` auth (``BearerToken``, ``SmartBackendAuth``, None); ``timeout`` is (connect,
    read) seconds for every request; ``strict=True`` sends ``Prefer: handling=strict`` with searches so
    that a parameter the server does not know fails with 400 instead of being ignored (lenient servers
    such as SEKMET and HAPI then return *more* matches, not fewer).
    """

    def __init__(self, base_url: str, *, auth: requests.auth.AuthBase | None = None, timeout: Timeout = (5, 60),
                 retry: RetryPolicy | None = None, session: requests.Session | None = None,
                 strict: bool = False) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.strict = strict
        self._own_session = session is None
        self.session = session or requests.Session()
        self._capabilities: Capabilities | None = None
        self.throttle: Throttle | None = None  # set by a caller that sends from several threads (see throttle.py)
        bind = getattr(auth, "bind", None)
        if callable(bind):  # SmartBackendAuth discovers its token URL from the base when not given one
            bind(self.base_url, self.session, self.retry)

    def __repr__(self) -> str:
        return f"FhirClient({self.base_url!r})"

    def close(self) -> None:
        if self._own_session:
            self.session.close()

    def __enter__(self) -> FhirClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- capabilities ------------------------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        """The server's CapabilityStatement, read once (``GET /metadata``) on first use."""
        if self._capabilities is None:
            url = f"{self.base_url}/metadata"
            statement = self.get_resource(url, "CapabilityStatement")
            self._capabilities = Capabilities.from_statement(statement, f"GET {url}")
        return self._capabilities

    def supports_search(self, resource_type: str, param: str) -> bool:
        return self.capabilities.supports_search(resource_type, param)

    def first_supported(self, resource_type: str, params: Sequence[str]) -> str | None:
        """The first of ``params`` the server declares for ``resource_type``, or None (then filter on the client)."""
        return next((p for p in params if self.supports_search(resource_type, p)), None)

    # -- reading -----------------------------------------------------------------------------------------

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        """``GET Type/id``. A missing or deleted resource raises ``ResourceNotFound``."""
        return self.get_resource(f"{self.base_url}/{resource_type}/{resource_id}", resource_type)

    def get_resource(self, url: str, resource_type: str | None = None) -> dict[str, Any]:
        """``GET url``: the resource it answers with (of ``resource_type``, when given), the GET sent again when
        the answer cannot be read as one."""
        return self.exchange("GET", url, lambda response: resource_body(response, resource_type))

    def get_json(self, url: str, *, headers: Mapping[str, str] | None = None) -> Any:
        """``GET url``: its JSON answer, the GET sent again when the answer is cut short or not JSON."""
        return self.exchange("GET", url, json_body, headers=headers)

    def search_pages(self, resource_type: str, params: Params = None, *,
                     count: int | None = None) -> Iterator[SearchPage]:
        """Every page of ``Type?params``, following Bundle.link "next" until there is none.

        A next link already visited (a server paging bug seen with offset paging behind proxies) raises
        ``FhirError`` instead of looping forever. OperationOutcome entries are logged as warnings.
        """
        items = param_items(params)
        if count is not None:
            items = [(k, v) for k, v in items if k != "_count"] + [("_count", count)]
        qs = query_string(items)
        url: str | None = f"{self.base_url}/{resource_type}" + (f"?{qs}" if qs else "")
        headers = {"Prefer": "handling=strict"} if self.strict else None
        seen: set[str] = set()
        said: set[str] = set()
        number = 0
        while url is not None:
            seen.add(url)
            number += 1
            label = f"GET {url}"
            bundle = self.exchange("GET", url, bundle_body, headers=headers)  # page k again, not page 1
            page = SearchPage(number, label, bundle)
            for outcome in page.outcomes():
                text = outcome_text(outcome)
                if text and text not in said:
                    said.add(text)
                    log.warning("%s: the server said: %s", label, text)
            yield page
            url = page.next_url(self.base_url)
            if url in seen:
                raise FhirError(f"the server's next link loops back to a page already read: {url}",
                                request=label)
            if url is not None and urlsplit(url)[:2] != urlsplit(self.base_url)[:2]:
                # never send the access token to another host (a misconfigured proxy rewrites links)
                raise FhirError(f"the server's next link leaves the server: {url}", request=label)

    def search(self, resource_type: str, params: Params = None, *,
               count: int | None = None) -> Iterator[dict[str, Any]]:
        """Every matched (and ``_include``d) resource of ``Type?params``, over all pages, streamed."""
        for page in self.search_pages(resource_type, params, count=count):
            yield from page.resources()

    # -- writing -----------------------------------------------------------------------------------------

    def create(self, resource: dict[str, Any]) -> dict[str, Any]:
        """``POST Type``: the stored resource (with its new id). Never retried blindly (see ``retry.py``)."""
        url = f"{self.base_url}/{_type_of(resource)}"
        return self._written(self.exchange("POST", url, written_answer, json=resource), f"POST {url}")

    def create_if_none_exist(self, resource: dict[str, Any], query: Params) -> tuple[dict[str, Any], bool]:
        """Conditional create (``If-None-Exist: query``): ``(resource, created)``; False when one already matched."""
        rtype = _type_of(resource)
        url = f"{self.base_url}/{rtype}"
        qs = query_string(query)
        label = f"POST {url} (If-None-Exist: {qs})"
        answer = self.exchange("POST", url, lambda r: written_answer(r, resource=False), json=resource,
                               headers={"If-None-Exist": qs}, conditional=True)
        created = answer.status == 201
        if isinstance(answer.body, dict) and answer.body.get("resourceType") == rtype:
            return answer.body, created
        if answer.location:
            return self._written(WriteAnswer(answer.status, None, answer.location), label), created
        found = next(self.search(rtype, qs), None)
        if found is None:
            raise FhirError("conditional create succeeded but the resource cannot be found", request=label)
        return found, created

    def update(self, resource: dict[str, Any]) -> dict[str, Any]:
        """``PUT Type/id`` (the server may create it when it allows update-as-create)."""
        rid = resource.get("id")
        if not isinstance(rid, str) or not rid:
            raise ValueError("update needs a resource with an id")
        url = f"{self.base_url}/{_type_of(resource)}/{rid}"
        return self._written(self.exchange("PUT", url, written_answer, json=resource), f"PUT {url}")

    def conditional_update(self, resource: dict[str, Any], query: Params) -> tuple[dict[str, Any], bool]:
        """``PUT Type?query``: ``(resource, created)``. Several matches raise ``PreconditionFailed`` (412)."""
        url = f"{self.base_url}/{_type_of(resource)}?{query_string(query)}"
        answer = self.exchange("PUT", url, written_answer, json=resource)
        return self._written(answer, f"PUT {url}"), answer.status == 201

    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """``POST base`` a transaction Bundle: all entries or none. The transaction-response Bundle.

        Never sent twice: an answer that fails or cannot be read after the server got the Bundle raises
        ``FhirError`` (``UnreadableAnswer`` for a cut or malformed answer) saying the server may have applied it."""
        return self._bundle(bundle, "transaction")

    def batch(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """``POST base`` a batch Bundle: entries succeed or fail one by one (failures are logged)."""
        result = self._bundle(bundle, "batch")
        for i, entry in enumerate(result.get("entry") or ()):
            status = str((entry.get("response") or {}).get("status", "")) if isinstance(entry, dict) else ""
            if status[:1] not in ("", "2"):
                text = outcome_text((entry.get("response") or {}).get("outcome"))
                log.warning("batch entry %d failed: %s%s", i, status, f" ({text})" if text else "")
        return result

    def _bundle(self, bundle: dict[str, Any], kind: str) -> dict[str, Any]:
        if bundle.get("resourceType") != "Bundle" or bundle.get("type") != kind:
            raise ValueError(f"expected a Bundle of type {kind!r}")
        return self.exchange("POST", self.base_url, bundle_body, json=bundle)

    # -- HTTP --------------------------------------------------------------------------------------------

    def request(self, method: str, url: str, *, json: Any = None, headers: Mapping[str, str] | None = None,
                conditional: bool = False, stream: bool = False, use_auth: bool = True) -> requests.Response:
        """Send one request with retries; a 2xx/3xx response, else the right ``FhirError``.

        ``conditional`` marks a POST that is safe to repeat (If-None-Exist). With SMART auth, one 401
        (token expired or revoked early) gets a fresh token and a free retry. The body is not checked: use
        ``exchange`` (or ``get_json``, ``get_resource``) when it is read, so that a cut answer is retried.
        """
        return self.exchange(method, url, _as_is, json=json, headers=headers, conditional=conditional,
                             stream=stream, use_auth=use_auth)

    def exchange(self, method: str, url: str, parse: Callable[[requests.Response], T], *, json: Any = None,
                 headers: Mapping[str, str] | None = None, conditional: bool = False, stream: bool = False,
                 use_auth: bool = True) -> T:
        """Send one request with retries and read its 2xx/3xx answer with ``parse``: what ``parse`` returns.

        Sending and reading are one attempt: when ``parse`` raises ``UnreadableAnswer`` (or the connection drops
        while it streams the body), a request that may be repeated (``retry.may_retry``: GET, PUT, DELETE, a
        conditional POST) is sent again within the same ``RetryPolicy``; a plain POST never is, and its error
        says the server may have acted on it. An HTTP error status raises the right ``FhirError``.
        """
        method = method.upper()
        label = f"{method} {url}"
        safe = method in IDEMPOTENT_METHODS or conditional
        sent = {"Accept": FHIR_JSON}
        data = None
        if json is not None:
            data = orjson.dumps(json)
            sent.update({"Content-Type": FHIR_JSON, "Prefer": "return=representation"})
        sent.update(headers or {})
        policy = self.retry
        reauthorized = False
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._send(method, url, data=data, headers=sent, auth=self.auth if use_auth else None,
                                      stream=stream)
            except requests.RequestException as exc:
                if attempt < policy.max_attempts and may_retry(method, conditional=conditional, exc=exc):
                    wait = policy.delay(attempt)
                    log.warning("%s failed (%s); retry %d of %d in %.1f s", label, _describe(exc), attempt,
                                policy.max_attempts - 1, wait)
                    policy.sleep(wait)
                    continue
                reason = _describe(exc)
                if not safe and not never_reached_server(exc):
                    reason = f"{reason}; {NOT_REPEATED}"
                raise FhirError(reason, request=label) from exc
            status = response.status_code
            if status < 400:
                try:
                    return parse(response)
                except UnreadableAnswer as exc:
                    problem, cause = str(exc), exc
                except requests.RequestException as exc:  # the connection dropped while the body streamed
                    problem, cause = _describe(exc), exc
                response.close()
                if attempt < policy.max_attempts and may_retry(method, conditional=conditional,
                                                               unreadable_body=True):
                    wait = policy.delay(attempt)
                    log.warning("%s: HTTP %d with an unreadable answer (%s); retry %d of %d in %.1f s", label,
                                status, problem, attempt, policy.max_attempts - 1, wait)
                    policy.sleep(wait)
                    continue
                raise UnreadableAnswer(problem if safe else f"{problem}; {NOT_REPEATED}", request=label,
                                       status=status) from cause
            if status == 401 and use_auth and not reauthorized and callable(getattr(self.auth, "invalidate", None)):
                reauthorized = True  # a token can expire or be revoked before its expires_in: one free retry
                log.info("%s: 401, fetching a new access token", label)
                self.auth.invalidate()  # type: ignore[union-attr]
                response.close()
                attempt -= 1
                continue
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if attempt < policy.max_attempts and may_retry(method, conditional=conditional, status=status,
                                                           retry_after=retry_after is not None):
                wait = policy.delay(attempt, retry_after)
                log.warning("%s: HTTP %d; retry %d of %d in %.1f s", label, status, attempt,
                            policy.max_attempts - 1, wait)
                response.close()
                policy.sleep(wait)
                continue
            raise self._error(response, label)

    def _send(self, method: str, url: str, *, data: bytes | None, headers: Mapping[str, str],
              auth: requests.auth.AuthBase | None, stream: bool) -> requests.Response:
        """One HTTP request; with a ``throttle``, sent when it allows and its answer reported to it."""
        if self.throttle is None:
            return self.session.request(method, url, data=data, headers=headers, timeout=self.timeout, auth=auth,
                                        stream=stream)
        with self.throttle.slot() as epoch:
            try:
                response = self.session.request(method, url, data=data, headers=headers, timeout=self.timeout,
                                                auth=auth, stream=stream)
            except requests.RequestException:
                self.throttle.done(epoch, None)
                raise
            self.throttle.done(epoch, response.status_code, parse_retry_after(response.headers.get("Retry-After")))
            return response

    def download(self, url: str, dest: Path, *, accept: str = "application/fhir+ndjson", use_auth: bool = True,
                 count: int | None = None) -> int:
        """Stream the NDJSON file at ``url`` to ``dest`` (never whole into memory); the bytes written.

        A body cut off mid-way is fetched again from the start (GET is idempotent), within the retry policy:
        a connection that drops or a length that does not match, a last line cut short (no newline and not
        JSON), or fewer lines than the ``count`` the manifest announced. ``dest`` appears only complete.
        """
        part = dest.with_name(dest.name + ".part")
        try:
            return self.exchange("GET", url, lambda response: _save_ndjson(response, part, dest, count),
                                 headers={"Accept": accept}, stream=True, use_auth=use_auth)
        finally:
            part.unlink(missing_ok=True)

    def _error(self, response: requests.Response, label: str) -> FhirError:
        try:
            body = orjson.loads(response.content) if response.content else None
        except (orjson.JSONDecodeError, requests.RequestException):
            body = None
        status = response.status_code
        text = outcome_text(body)
        if not text and isinstance(body, dict) and isinstance(body.get("error_description"), str):
            text = body["error_description"]
        reason = response.reason or "error"
        cls = error_class(status)
        message = "not authorized" if cls is AuthError else f"the server refused the request ({reason})"
        return cls(message, request=label, status=status, outcome=text)

    def _written(self, answer: WriteAnswer, label: str) -> dict[str, Any]:
        """The resource a write answered with; after a ``return=minimal`` write, read at its Location."""
        if answer.body is None and answer.location:
            return self.get_resource(urljoin(self.base_url + "/", answer.location.split("/_history/")[0]))
        if not isinstance(answer.body, dict):
            raise FhirError("the server answered the write with no resource and no Location", request=label,
                            status=answer.status)
        return answer.body


@dataclass(frozen=True)
class WriteAnswer:
    """The answer to a write: its status, its JSON body (None when empty) and its ``Location`` header."""

    status: int
    body: Any
    location: str | None


def _as_is(response: requests.Response) -> requests.Response:
    return response


def json_body(response: requests.Response) -> Any:
    """The JSON body of a 2xx answer, or ``UnreadableAnswer`` when it is cut short or not JSON."""
    content = response.content
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > len(content) and not response.headers.get(
            "Content-Encoding"):
        raise UnreadableAnswer(f"response body truncated ({len(content)} of {declared} bytes)")
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        what = "an HTML or XML page" if content.lstrip()[:1] == b"<" else "truncated or malformed"
        raise UnreadableAnswer(f"response body is not valid JSON ({what}: {exc})") from exc


def resource_body(response: requests.Response, resource_type: str | None = None) -> dict[str, Any]:
    """The FHIR resource (of ``resource_type``, when given) a 2xx answer holds, or ``UnreadableAnswer``."""
    body = json_body(response)
    found = body.get("resourceType") if isinstance(body, dict) else None
    if not isinstance(found, str) or (resource_type is not None and found != resource_type):
        expected = f"a {resource_type}" if resource_type else "a FHIR resource"
        raise UnreadableAnswer(f"the server answered with something other than {expected} ({_what(body)})")
    return body


def bundle_body(response: requests.Response) -> dict[str, Any]:
    """The Bundle a search, transaction or batch answered with, or ``UnreadableAnswer``."""
    return resource_body(response, "Bundle")


def written_answer(response: requests.Response, *, resource: bool = True) -> WriteAnswer:
    """A write's answer; its body, when it has one, must be JSON (and a FHIR resource when ``resource``)."""
    location = response.headers.get("Location") or None
    if not response.content:
        return WriteAnswer(response.status_code, None, location)
    body = resource_body(response) if resource else json_body(response)
    return WriteAnswer(response.status_code, body, location)


def _what(body: Any) -> str:
    if isinstance(body, dict):
        rtype = body.get("resourceType")
        return rtype if isinstance(rtype, str) else "a JSON object without resourceType"
    return f"JSON {type(body).__name__}"


def _save_ndjson(response: requests.Response, part: Path, dest: Path, count: int | None) -> int:
    """Stream ``response`` to ``part``, check that it is whole, then move it to ``dest``: the bytes written.
    ``UnreadableAnswer`` when it was cut short (the caller fetches it again)."""
    size = lines = 0
    tail_start = 0  # where the last line (after the last newline) begins
    with response, part.open("wb") as out:
        for chunk in response.iter_content(chunk_size=1 << 16):
            if not chunk:
                continue
            out.write(chunk)
            newlines = chunk.count(b"\n")
            if newlines:
                lines += newlines
                tail_start = size + chunk.rindex(b"\n") + 1
            size += len(chunk)
    if size > tail_start:  # the file does not end with a newline: its last line must be whole JSON
        lines += 1
        _check_last_line(part, tail_start, size)
    if count is not None and lines < count:
        raise UnreadableAnswer(f"download cut short: {lines} line{'' if lines == 1 else 's'} for the {count} "
                               "resources the manifest lists")
    part.replace(dest)
    return size


LAST_LINE_CHECK = 64 << 20  # a last line longer than this is left to the NDJSON reader to name


def _check_last_line(path: Path, start: int, size: int) -> None:
    if size - start > LAST_LINE_CHECK:
        return
    with path.open("rb") as fh:
        fh.seek(start)
        tail = fh.read()
    if not tail.strip():
        return
    try:
        orjson.loads(tail)
    except orjson.JSONDecodeError as exc:
        raise UnreadableAnswer(f"download cut short: its last line (from byte {start}) is not whole JSON "
                               f"({exc})") from exc


def _type_of(resource: dict[str, Any]) -> str:
    rtype = resource.get("resourceType") if isinstance(resource, dict) else None
    if not isinstance(rtype, str) or not rtype:
        raise ValueError("not a FHIR resource: no resourceType")
    return rtype


def _describe(exc: BaseException) -> str:
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "timed out connecting to the server"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "timed out waiting for the server's answer"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return f"response body truncated (connection closed mid-way: {exc})"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return f"cannot connect to the server ({exc})"
    return f"request failed ({exc})"
