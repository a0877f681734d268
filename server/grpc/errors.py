"""Maps domain errors to gRPC statuses with google.rpc details (design §9), in one place."""

from __future__ import annotations

import logging

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from tenants.core import errors

DOMAIN = "reengage.dev"
MAX_VIOLATIONS = 10  # enough to act on; an answer listing thousands would not fit its trailers
log = logging.getLogger(__name__)

_CODES: dict[type[errors.DomainError], int] = {
    errors.InvalidArgument: code_pb2.INVALID_ARGUMENT,
    errors.Unauthenticated: code_pb2.UNAUTHENTICATED,
    errors.PermissionDenied: code_pb2.PERMISSION_DENIED,
    errors.NotFound: code_pb2.NOT_FOUND,
    errors.AlreadyExists: code_pb2.ALREADY_EXISTS,
    errors.EtagMismatch: code_pb2.ABORTED,
    errors.FailedPrecondition: code_pb2.FAILED_PRECONDITION,
    errors.Unavailable: code_pb2.UNAVAILABLE,
}


def _packed(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def _cut(text: str, limit: int) -> str:
    """text within limit bytes of UTF-8: a status travels in HTTP/2 trailers, which clients cap
    (8 KiB by default), and an error that echoes a huge input must still reach the caller."""
    raw = text.encode("utf-8", "backslashreplace")
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", "ignore") + "…"


def to_status(error: errors.DomainError) -> grpc.Status:
    code = next((c for t, c in _CODES.items() if isinstance(error, t)), code_pb2.INTERNAL)
    details = [
        _packed(
            error_details_pb2.ErrorInfo(
                reason=error.reason,
                domain=DOMAIN,
                metadata={_cut(k, 64): _cut(v, 200) for k, v in list(error.metadata.items())[:5]},
            )
        )
    ]
    if isinstance(error, errors.InvalidArgument):
        details.append(
            _packed(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=_cut(v.field, 100), description=_cut(v.description, 200)
                        )
                        for v in error.violations[:MAX_VIOLATIONS]
                    ]
                )
            )
        )
    return rpc_status.to_status(
        status_pb2.Status(code=code, message=_cut(error.message, 300), details=details)
    )


def internal_status() -> grpc.Status:
    return rpc_status.to_status(
        status_pb2.Status(
            code=code_pb2.INTERNAL,
            message="internal error",
            details=[_packed(error_details_pb2.ErrorInfo(reason="INTERNAL", domain=DOMAIN))],
        )
    )
