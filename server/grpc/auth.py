"""Authentication for every RPC: `authorization: Bearer <api key>` → a Principal.

The interceptor wraps each method handler so that authentication, the handler and the mapping
of domain errors to statuses run in one place; servicers read the caller with `principal()`.
Health checks and reflection are open, as load balancers and tools expect.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from psycopg_pool import AsyncConnectionPool

from server.grpc import request_checks
from server.grpc.errors import internal_status, to_status
from server.grpc.handlers import kind_of
from tenants.core.errors import DomainError, Unauthenticated
from tenants.core.unexpected_errors import log_unexpected
from tenants.org import api_keys
from tenants.org.access import Principal

log = logging.getLogger(__name__)
_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal")
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def principal() -> Principal:
    """The authenticated caller of the current RPC."""
    return _principal.get()


def bearer_token(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str:
    values = [v for k, v in (metadata or ()) if k == "authorization"]
    if not values:
        raise Unauthenticated(
            "missing `authorization: Bearer <api key>` metadata", reason="API_KEY_MISSING"
        )
    value = values[0] if isinstance(values[0], str) else values[0].decode("latin-1")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "authorization must be `Bearer <api key>`", reason="API_KEY_MALFORMED"
        )
    return token.strip()


async def _abort(context: grpc.aio.ServicerContext, error: Exception) -> None:
    if isinstance(error, DomainError):
        await context.abort_with_status(to_status(error))
    log_unexpected(log, error, "unhandled error in RPC")
    await context.abort_with_status(internal_status())


def _checked_message(request: Any) -> Any:
    """The request once it passed request_checks."""
    request_checks.check(request)
    return request


def _checked_stream(items: frozenset[str] | None) -> Callable[[Any], AsyncIterator[Any]]:
    """The request stream checked message by message as the servicer reads it (a bad message
    ends the call there); the fields in items are left to the servicer, which judges them item
    by item."""
    skip = items or frozenset()

    async def checked_stream(request: Any) -> AsyncIterator[Any]:
        async for message in request:
            request_checks.check(message, skip)
            yield message

    return checked_stream


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self, pool: AsyncConnectionPool[Any], keys: api_keys.AuthCache = api_keys.NO_CACHE
    ) -> None:
        self._pool = pool
        self._keys = keys  # keys authenticated in the last few seconds (tenants.org.api_keys)
        # by method name: the handler of a method never changes once the server has started
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def _authenticate(self, context: grpc.aio.ServicerContext) -> Principal:
        token = bearer_token(context.invocation_metadata())
        known = api_keys.remembered(token, self._keys)
        if known is not None:
            return known
        async with self._pool.connection() as conn:
            return await api_keys.authenticate(conn, token, self._keys)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            items = request_checks.ITEMS_JUDGED_BY_THE_SERVICER.get(method)
            wrapped = self._wrapped[method] = self._wrap(handler, items)
        return wrapped

    async def _call(
        self,
        context: grpc.aio.ServicerContext,
        request: Any,
        checked: Callable[[Any], Any],
        call: Callable[[Any], Any],
    ) -> Any:
        """Authenticates, checks the request (checked: request_checks), then awaits
        call(request); every failure becomes a status, once."""
        try:
            _principal.set(await self._authenticate(context))
            return await call(checked(request))
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, exc)

    async def _stream(
        self,
        context: grpc.aio.ServicerContext,
        request: Any,
        checked: Callable[[Any], Any],
        call: Callable[[Any], AsyncIterator[Any]],
    ) -> AsyncIterator[Any]:
        try:
            _principal.set(await self._authenticate(context))
            async for item in call(checked(request)):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, exc)

    def _wrap(
        self, h: grpc.RpcMethodHandler, items: frozenset[str] | None
    ) -> grpc.RpcMethodHandler:
        # each kind gets a real `async def` wrapper (server.grpc.handlers). Undecodable
        # messages reach the wrapper as request_checks.Undecodable (grpc itself would answer
        # INTERNAL).
        kind = kind_of(h)
        inner = kind.behaviour
        tolerant = request_checks.tolerant(h.request_deserializer)
        checked = _checked_stream(items) if h.request_streaming else _checked_message
        if not kind.streams_responses:

            async def unary_response(request: Any, context: grpc.aio.ServicerContext) -> Any:
                return await self._call(context, request, checked, lambda r: inner(r, context))

            return kind.make(unary_response, tolerant)

        async def stream_response(request: Any, context: grpc.aio.ServicerContext) -> Any:
            stream = self._stream(context, request, checked, lambda r: inner(r, context))
            async for item in stream:
                yield item

        return kind.make(stream_response, tolerant)
