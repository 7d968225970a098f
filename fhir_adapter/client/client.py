"""``FhirClient``: the FHIR R4 REST API over ``requests`` - search with paging, read, writes, bundles.

Every request has a timeout, is retried by ``RetryPolicy``'s rule (see ``retry.py``), and fails with a
``FhirError`` that names the request, the HTTP status and the server's OperationOutcome text.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import orjson
import requests

from fhir_adapter.client.capabilities import Capabilities
from fhir_adapter.client.errors import AuthError, error_class, outcome_text
from fhir_adapter.client.retry import RetryPolicy, may_retry, parse_retry_after
from fhir_adapter.client.search import SearchPage
from fhir_adapter.errors import FhirError

log = logging.getLogger("fhir_adapter.client")

FHIR_JSON = "application/fhir+json"
Params = Mapping[str, Any] | Sequence[tuple[str, Any]] | str | None
Timeout = float | tuple[float, float]


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
        bind = getattr(auth, "bind", None)
        if callable(bind):  # SmartBackendAuth discovers its token URL from the base when not given one
            bind(self.base_url, self.session)

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
            response = self.request("GET", url)
            self._capabilities = Capabilities.from_statement(self._json(response, f"GET {url}"), f"GET {url}")
        return self._capabilities

    def supports_search(self, resource_type: str, param: str) -> bool:
        return self.capabilities.supports_search(resource_type, param)

    def first_supported(self, resource_type: str, params: Sequence[str]) -> str | None:
        """The first of ``params`` the server declares for ``resource_type``, or None (then filter on the client)."""
        return next((p for p in params if self.supports_search(resource_type, p)), None)

    # -- reading -----------------------------------------------------------------------------------------

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        """``GET Type/id``. A missing or deleted resource raises ``ResourceNotFound``."""
        url = f"{self.base_url}/{resource_type}/{resource_id}"
        return self._resource(self.request("GET", url), f"GET {url}")

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
            bundle = self._json(self.request("GET", url, headers=headers), label)
            if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
                raise FhirError("a search answered with something other than a Bundle", request=label)
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
        return self._resource(self.request("POST", url, json=resource), f"POST {url}")

    def create_if_none_exist(self, resource: dict[str, Any], query: Params) -> tuple[dict[str, Any], bool]:
        """Conditional create (``If-None-Exist: query``): ``(resource, created)``; False when one already matched."""
        rtype = _type_of(resource)
        url = f"{self.base_url}/{rtype}"
        qs = query_string(query)
        label = f"POST {url} (If-None-Exist: {qs})"
        response = self.request("POST", url, json=resource, headers={"If-None-Exist": qs}, conditional=True)
        created = response.status_code == 201
        body = self._json(response, label) if response.content else None
        if isinstance(body, dict) and body.get("resourceType") == rtype:
            return body, created
        if response.headers.get("Location"):
            return self._resource(response, label), created
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
        return self._resource(self.request("PUT", url, json=resource), f"PUT {url}")

    def conditional_update(self, resource: dict[str, Any], query: Params) -> tuple[dict[str, Any], bool]:
        """``PUT Type?query``: ``(resource, created)``. Several matches raise ``PreconditionFailed`` (412)."""
        url = f"{self.base_url}/{_type_of(resource)}?{query_string(query)}"
        response = self.request("PUT", url, json=resource)
        return self._resource(response, f"PUT {url}"), response.status_code == 201

    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """``POST base`` a transaction Bundle: all entries or none. The transaction-response Bundle."""
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
        label = f"POST {self.base_url} ({kind})"
        result = self._json(self.request("POST", self.base_url, json=bundle), label)
        if not isinstance(result, dict) or result.get("resourceType") != "Bundle":
            raise FhirError(f"the {kind} answer is not a Bundle", request=label)
        return result

    # -- HTTP --------------------------------------------------------------------------------------------

    def request(self, method: str, url: str, *, json: Any = None, headers: Mapping[str, str] | None = None,
                conditional: bool = False, stream: bool = False, use_auth: bool = True) -> requests.Response:
        """Send one request with retries; a 2xx/3xx response, else the right ``FhirError``.

        ``conditional`` marks a POST that is safe to repeat (If-None-Exist). With SMART auth, one 401
        (token expired or revoked early) gets a fresh token and a free retry.
        """
        method = method.upper()
        label = f"{method} {url}"
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
                response = self.session.request(method, url, data=data, headers=sent, timeout=self.timeout,
                                                auth=self.auth if use_auth else None, stream=stream)
            except requests.RequestException as exc:
                if attempt < policy.max_attempts and may_retry(method, conditional=conditional, exc=exc):
                    wait = policy.delay(attempt)
                    log.warning("%s failed (%s); retry %d of %d in %.1f s", label, _describe(exc), attempt,
                                policy.max_attempts - 1, wait)
                    policy.sleep(wait)
                    continue
                raise FhirError(_describe(exc), request=label) from exc
            status = response.status_code
            if status < 400:
                return response
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

    def download(self, url: str, dest: Path, *, accept: str = "application/fhir+ndjson",
                 use_auth: bool = True) -> int:
        """Stream ``url`` to the file ``dest`` (never whole into memory); the bytes written.

        A body cut off mid-way is fetched again from the start (GET is idempotent).
        """
        label = f"GET {url}"
        part = dest.with_name(dest.name + ".part")
        attempt = 0
        while True:
            attempt += 1
            response = self.request("GET", url, headers={"Accept": accept}, stream=True, use_auth=use_auth)
            try:
                size = 0
                with response, part.open("wb") as out:
                    for chunk in response.iter_content(chunk_size=1 << 16):
                        out.write(chunk)
                        size += len(chunk)
            except requests.RequestException as exc:
                part.unlink(missing_ok=True)
                if attempt < self.retry.max_attempts and may_retry("GET", exc=exc):
                    self.retry.sleep(self.retry.delay(attempt))
                    continue
                raise FhirError(f"download failed: {_describe(exc)}", request=label) from exc
            part.replace(dest)
            return size

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

    @staticmethod
    def _json(response: requests.Response, label: str) -> Any:
        content = response.content
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > len(content) and not response.headers.get(
                "Content-Encoding"):
            raise FhirError(f"response body truncated ({len(content)} of {declared} bytes)", request=label,
                            status=response.status_code)
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise FhirError(f"response body is not valid JSON (truncated or malformed: {exc})", request=label,
                            status=response.status_code) from exc

    def _resource(self, response: requests.Response, label: str) -> dict[str, Any]:
        """The resource a read or write answered with; after a ``return=minimal`` write, read its Location."""
        if not response.content and response.headers.get("Location"):
            location = urljoin(self.base_url + "/", response.headers["Location"].split("/_history/")[0])
            return self._resource(self.request("GET", location), f"GET {location}")
        body = self._json(response, label)
        if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
            raise FhirError("the server answered with something other than a FHIR resource", request=label,
                            status=response.status_code)
        return body


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
