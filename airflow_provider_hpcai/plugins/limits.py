"""Limits on what one request may make the plugin read and parse, and headers every answer carries.

* :class:`RequestLimits` is the app's outermost ASGI middleware. It refuses a body announced
  as larger than :data:`MAX_BODY_BYTES` before reading it, and counts the bytes of every body
  while the route reads it, so a chunked upload (no ``Content-Length``) is cut off at the limit
  instead of being buffered whole. Every answer gets ``X-Content-Type-Options: nosniff``.
* :func:`parse_json` turns a body into JSON data and refuses nesting deeper than
  :data:`MAX_JSON_DEPTH` with a 400 that says so (Python's parser would otherwise raise
  ``RecursionError`` and later validators recurse too).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import HTTPException, status
from fastapi.responses import JSONResponse

__all__ = ["MAX_BODY_BYTES", "MAX_JSON_DEPTH", "BodyTooLarge", "RequestLimits", "json_depth", "parse_json"]

#: Largest request body accepted (a 256 KiB manifest, JSON-escaped, fits).
MAX_BODY_BYTES = 1024 * 1024
#: Deepest nesting of objects and arrays accepted in a JSON body (template parameters need a few).
MAX_JSON_DEPTH = 32

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _too_large_detail(limit: int) -> str:
    return f"the body is over {limit} bytes; send at most {limit // 1024} KiB (a manifest at most 256 KiB)"


class BodyTooLarge(HTTPException):
    """Raised from ``receive()`` once a body passes the limit; answered with 413."""

    def __init__(self, limit: int) -> None:
        # Connection: close makes the server drop the connection instead of reading (and discarding)
        # the rest of the upload to keep the connection alive.
        super().__init__(413, _too_large_detail(limit), headers={"Connection": "close"})


class RequestLimits:
    """ASGI middleware: body size limit while reading, and ``nosniff`` on every answer.

    :param app: the ASGI app to wrap.
    :param max_body_bytes: the largest body accepted.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *,
                 max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-content-type-options"]
                message["headers"] = [*headers, (b"x-content-type-options", b"nosniff")]
            await send(message)

        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._refuse(scope, receive, send_with_headers, limit)
                return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        try:
            await self.app(scope, counting_receive, send_with_headers)
        except BodyTooLarge:
            # Raised outside a route's exception handling (e.g. by middleware reading the body).
            if started:
                raise
            await self._refuse(scope, receive, send_with_headers, limit)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = JSONResponse({"detail": _too_large_detail(limit)}, status_code=413, headers={"Connection": "close"})
        await response(scope, receive, send)


def json_depth(value: Any, limit: int) -> int:
    """How deeply ``value`` nests lists and dicts, counting at most to ``limit + 1`` (no recursion)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_json(raw: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON data from a request body; 400 with a clear message when it is not JSON or nests too deeply.

    :param raw: the body (empty means ``{}``).
    :param max_depth: the deepest nesting of objects and arrays accepted.
    """
    too_deep = HTTPException(
        status.HTTP_400_BAD_REQUEST,
        f"the JSON body nests objects or arrays more than {max_depth} levels deep; flatten it",
    )
    try:
        data = json.loads(raw or b"{}")
    except RecursionError:
        raise too_deep from None
    except ValueError as err:  # JSONDecodeError, and UnicodeDecodeError for bytes that are not text
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"the body is not valid JSON: {err}") from None
    if json_depth(data, max_depth) > max_depth:
        raise too_deep
    return data
