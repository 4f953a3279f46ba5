"""Errors the use cases raise. Each carries its HTTP status; one handler renders them all."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


class GatewayError(Exception):
    status_code = 500
    title = "Internal Server Error"
    type_slug = "internal-error"

    def __init__(self, detail: str, *, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class InvalidRequest(GatewayError):
    status_code = 422
    title = "Unprocessable Content"
    type_slug = "validation-error"


class IdempotencyKeyReused(InvalidRequest):
    type_slug = "idempotency-key-reused"


class Unauthorized(GatewayError):
    status_code = 401
    title = "Unauthorized"
    type_slug = "unauthorized"


class NotFound(GatewayError):
    status_code = 404
    title = "Not Found"
    type_slug = "not-found"


class RequestInProgress(GatewayError):
    status_code = 409
    title = "Conflict"
    type_slug = "request-in-progress"


class WrongStatus(GatewayError):
    """The payment's status does not allow the operation (the detail says which it has)."""

    status_code = 409
    title = "Conflict"
    type_slug = "wrong-status"


class BankDeclined(GatewayError):
    """The bank refused or declined the operation: nothing changed."""

    status_code = 402
    title = "Payment Required"
    type_slug = "bank-declined"


class StorageUnavailable(GatewayError):
    """The database could not be reached or dropped the connection; the work was not done."""

    status_code = 503
    title = "Service Unavailable"
    type_slug = "storage-unavailable"


class StorageContention(StorageUnavailable):
    """The database rolled the work back: a lock wait timeout, a deadlock, or a Galera
    certification conflict. Nothing was written, so the work may safely run again."""

    title = "Service Unavailable"
    type_slug = "storage-unavailable"


class ClientGone(GatewayError):
    """The client disconnected mid-request: nothing was done and nobody hears the answer."""

    status_code = 400
    title = "Bad Request"
    type_slug = "client-disconnected"


class UnsupportedMediaType(GatewayError):
    status_code = 415
    title = "Unsupported Media Type"
    type_slug = "unsupported-media-type"
