"""What the use cases need from storage and the bank, as interfaces.

The SQL implementations live in ``storage``, the HTTP one in ``bank``; unit tests use fakes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from payment_gateway.domain.bank import BankAnswer, BankFault
from payment_gateway.domain.checkout import CheckoutSession
from payment_gateway.domain.deliveries import GONE, DeliveryStatus, WebhookEndpoint
from payment_gateway.domain.events import Event
from payment_gateway.domain.merchant import ApiKeyInfo, Merchant
from payment_gateway.domain.operations import Operation, OperationKind, OperationResolution
from payment_gateway.domain.payment import (
    Payment,
    PaymentRequest,
    PaymentStatus,
    Resolution,
    RetrySchedule,
)
from payment_gateway.domain.three_d_secure import Authentication
from payment_gateway.domain.webhooks import SendResult, WebhookMessage


@dataclass(frozen=True, slots=True)
class StoredCard:
    id: str
    pan_encrypted: bytes
    holder_name_encrypted: bytes | None
    bin: str | None


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    key: str
    request_hash: str


@dataclass(frozen=True, slots=True)
class KeyedPayment:
    """A payment found by its idempotency key, with the hash of the request that made it."""

    payment: Payment
    request_hash: str | None


@dataclass(frozen=True, slots=True)
class DuePayment:
    """A payment the reconciler has claimed: ask the bank what became of it."""

    id: str
    merchant_id: str
    status: str
    created_at: datetime
    updated_at: datetime  # when its deposit was sent, or answered pending
    capture: bool = True  # False: an approved deposit is an authorization


@dataclass(frozen=True, slots=True)
class NewPayment:
    """A payment about to be recorded (`init`), with its card and idempotency claim."""

    payment: Payment
    card: StoredCard
    idempotency: IdempotencyRecord | None
    next_attempt_at: datetime  # when the reconciler may first look at it
    request_id: str | None = None  # of the request that made it, for its event


@dataclass(frozen=True, slots=True)
class StatusTransition:
    """A payment's move to the status the bank's answer resolves to (a guarded write)."""

    payment_id: str
    merchant_id: str
    resolution: Resolution
    at: datetime
    next_attempt_at: datetime | None  # None once the status is terminal
    by: str = "request"  # or "reconciler": who learned the answer
    request_id: str | None = None  # of the request that learned it, for its event
    # The payment as the request holds it, before the move: its event is rendered from it
    # instead of being read back (the reconciler, which holds none, reads it back).
    payment: Payment | None = None


@dataclass(frozen=True, slots=True)
class NewOperation:
    """A capture, void or refund about to be recorded (`pending`), before its bank call."""

    operation: Operation
    idempotency: IdempotencyRecord | None
    next_attempt_at: datetime  # when the reconciler may first ask the bank about it


@dataclass(frozen=True, slots=True)
class KeyedOperation:
    """An operation found by its idempotency key, with the hash of the request that made it."""

    operation: Operation
    request_hash: str | None


@dataclass(frozen=True, slots=True)
class OperationSettlement:
    """What to record of an operation once the bank's answer is known (a guarded write)."""

    operation: Operation
    resolution: OperationResolution
    at: datetime
    next_attempt_at: datetime | None  # None once settled; when to ask again if still pending
    by: str = "request"  # or "reconciler"
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class DueAuthorization:
    """An authorization past AUTHORIZATION_TTL_SECONDS, claimed for cancelling."""

    payment_id: str
    merchant_id: str


@dataclass(frozen=True, slots=True)
class PaymentFilters:
    """What a listing keeps: every given condition must hold (``created_*`` are bounds)."""

    status: PaymentStatus | None = None
    reference: str | None = None
    created_gte: datetime | None = None
    created_gt: datetime | None = None
    created_lte: datetime | None = None
    created_lt: datetime | None = None


@dataclass(frozen=True, slots=True)
class ListPosition:
    """A row's place in a listing (payments, events, deliveries), ordered by (created_at, id)."""

    created_at: datetime
    id: str


class DuplicateIdempotencyKey(Exception):
    """The (merchant, idempotency key) pair is already claimed by another payment."""


class DuplicateMerchant(Exception):
    """A merchant with that name already exists."""


class PaymentRepository(Protocol):
    async def add_many(self, entries: Sequence[NewPayment]) -> None:
        """Insert payments with their cards; DuplicateIdempotencyKey if a claim is taken."""
        ...

    async def get(self, payment_id: str, merchant_id: str) -> Payment | None: ...

    async def get_many(self, payment_ids: Sequence[str]) -> list[Payment]:
        """The payments with these ids, whoever's they are (for the outbox, not the API)."""
        ...

    async def find_by_idempotency_key(self, merchant_id: str, key: str) -> KeyedPayment | None: ...

    async def release_idempotency_key(
        self, payment_id: str, key: str, created_before: datetime
    ) -> bool: ...

    async def apply_transitions(self, transitions: Sequence[StatusTransition]) -> int:
        """Guarded writes: each applies only from a status allowed to become the new one.

        Returns how many applied.
        """
        ...

    async def claim_due(
        self,
        now: datetime,
        limit: int,
        schedule: RetrySchedule,
    ) -> list[DuePayment]: ...

    async def release_expired_idempotency_keys(self, created_before: datetime) -> int: ...

    async def oldest_open_created_at(self) -> datetime | None: ...

    async def claim_settlement(self, payment_id: str, operation_id: str) -> bool:
        """Make ``operation_id`` the one capture or void under way of an authorized payment."""
        ...

    async def release_settlement(self, payment_id: str, operation_id: str) -> None: ...

    async def capture(self, payment_id: str, operation_id: str, amount: int, at: datetime) -> bool:
        """authorized -> succeeded, with ``amount`` captured (by that operation only)."""
        ...

    async def cancel(self, payment_id: str, operation_id: str, reason: str, at: datetime) -> bool:
        """authorized -> canceled (by that operation only)."""
        ...

    async def reserve_refund(self, payment_id: str, amount: int) -> bool:
        """Count ``amount`` as pending refund, if what is left to refund covers it."""
        ...

    async def settle_refund(self, payment_id: str, amount: int, *, succeeded: bool) -> None:
        """A pending refund of ``amount`` ended: refunded if it succeeded, released if not."""
        ...

    async def claim_expired_authorizations(
        self, now: datetime, limit: int, lease_seconds: float
    ) -> list[DueAuthorization]: ...

    async def claim_unanswered_challenges(
        self, now: datetime, limit: int, lease_seconds: float
    ) -> list[str]:
        """Ids of payments whose 3-D Secure challenge is past its deadline, claimed."""
        ...

    async def card_of(self, payment_id: str) -> StoredCard | None:
        """The payment's stored (encrypted) card; None once its data was erased."""
        ...

    async def list_page(
        self,
        merchant_id: str,
        filters: PaymentFilters,
        limit: int,
        *,
        older_than: ListPosition | None = None,
        newer_than: ListPosition | None = None,
    ) -> list[Payment]:
        """Up to ``limit`` of the merchant's payments that match, nearest the position first:
        newest first, or, with ``newer_than``, oldest first (the ones just after it)."""
        ...


class OperationRepository(Protocol):
    async def add(self, new: NewOperation) -> None:
        """Insert the operation; DuplicateIdempotencyKey if its claim is taken."""
        ...

    async def get(self, operation_id: str, merchant_id: str) -> Operation | None: ...

    async def find_by_idempotency_key(
        self, merchant_id: str, kind: OperationKind, key: str
    ) -> KeyedOperation | None: ...

    async def list_for_payment(
        self, payment_id: str, merchant_id: str, kind: OperationKind, limit: int
    ) -> list[Operation]: ...

    async def settle(self, settlement: OperationSettlement) -> bool:
        """Record the resolution if the operation is still pending; True if it was."""
        ...

    async def claim_due(
        self, now: datetime, limit: int, schedule: RetrySchedule
    ) -> list[Operation]:
        """Pending operations whose next inquiry is due, claimed like payments are."""
        ...

    async def release_expired_idempotency_keys(self, created_before: datetime) -> int: ...


class EventRepository(Protocol):
    async def add_many(self, events: Sequence[Event]) -> None:
        """Write events into the outbox, to be fanned out to the merchants' endpoints."""
        ...


class MerchantRepository(Protocol):
    async def by_key_hash(self, key_hash: str) -> Merchant | None: ...

    async def by_name(self, name: str) -> Merchant | None: ...

    async def add(self, merchant: Merchant, now: datetime) -> None: ...

    async def add_key(
        self, merchant_id: str, key_hash: str, prefix: str, now: datetime
    ) -> None: ...

    async def list_keys(self) -> list[ApiKeyInfo]: ...

    async def revoke_key(self, prefix: str, now: datetime) -> int: ...


class CheckoutSessionRepository(Protocol):
    """Checkout sessions; each read also says whether a payment of it is still pending."""

    async def add(self, session: CheckoutSession) -> None: ...

    async def get(self, session_id: str, merchant_id: str | None = None) -> CheckoutSession | None:
        """The session; with ``merchant_id``, only if it is that merchant's (the API's read)."""
        ...

    async def get_many(self, session_ids: Sequence[str]) -> list[CheckoutSession]: ...

    async def complete(self, session_id: str, payment_id: str, paid: bool, at: datetime) -> bool:
        """Its payment succeeded (``paid``) or was authorized: complete, unless it already is."""
        ...

    async def count_decline(self, session_id: str, payment_id: str, at: datetime) -> int | None:
        """One more declined payment of an open session: the count now (None: not open)."""
        ...

    async def attach_payment(self, session_id: str, payment_id: str, at: datetime) -> None: ...

    async def expire(self, session_id: str, at: datetime) -> bool:
        """open -> expired, unless a payment of it may still succeed."""
        ...

    async def expire_due(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        """Expire up to ``limit`` open sessions past their expiry, claimed so that replicas
        take disjoint ones: the (id, merchant id) of each."""
        ...


class Transaction(Protocol):
    """One transaction: commit explicitly, anything else rolls back."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...


class UnitOfWork(Transaction, Protocol):
    """One transaction over the payment tables and the outbox."""

    @property
    def payments(self) -> PaymentRepository: ...

    @property
    def merchants(self) -> MerchantRepository: ...

    @property
    def operations(self) -> OperationRepository: ...

    @property
    def cards(self) -> CardRepository: ...

    @property
    def events(self) -> EventRepository: ...

    @property
    def checkout_sessions(self) -> CheckoutSessionRepository: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self, *, read_only: bool = False, single_statement: bool = False) -> UnitOfWork:
        """A unit of work; ``single_statement`` ones may commit each statement on its own."""
        ...

    async def ping(self) -> None:
        """Raise StorageUnavailable unless the database answers."""
        ...


class OperationRecorder(Protocol):
    async def settle_operation(self, settlement: OperationSettlement) -> bool:
        """Record an operation's resolution and what it does to its payment; True if applied."""
        ...


class PaymentRecorder(Protocol):
    """The one write path of a payment's status (docs/design.md, Statuses)."""

    async def record(self, new: NewPayment) -> None:
        """Commit the payment and its card before returning.

        Raises DuplicateIdempotencyKey when the key is already claimed, StorageUnavailable when
        the database cannot be reached (the commit may then have happened unseen).
        """
        ...

    async def record_transition(self, transition: StatusTransition) -> bool:
        """Apply the transition if the payment's status still allows it; True if it did.

        Raises StorageUnavailable when the database cannot be reached (the transition is
        safe to try again).
        """
        ...


class BankAdapter(Protocol):
    async def deposit(
        self, payment_id: str, request: PaymentRequest, authentication_id: str | None = None
    ) -> BankAnswer | BankFault:
        """Charge the card once, with ``payment_id`` as the bank's de-duplication reference;
        ``authentication_id`` names its 3-D Secure authentication."""
        ...

    async def authenticate(
        self, payment_id: str, request: PaymentRequest, return_url: str
    ) -> Authentication | BankFault:
        """Start the 3-D Secure authentication of the card and amount (reference
        ``payment_id``); after a challenge the shopper's browser is sent to ``return_url``."""
        ...

    async def authentication(self, payment_id: str) -> Authentication | BankFault | None:
        """The authentication as it stands now, asked server-side; None when the bank has none."""
        ...

    async def inquire(self, payment_id: str) -> BankAnswer | BankFault | None:
        """What the bank knows of the deposit: an answer, a fault, or None when it has none."""
        ...

    async def operate(
        self, kind: OperationKind, operation_id: str, payment_id: str, amount: int
    ) -> BankAnswer | BankFault:
        """Capture, void or refund, with ``operation_id`` as the de-duplication reference."""
        ...

    async def inquire_operation(
        self, kind: OperationKind, operation_id: str
    ) -> BankAnswer | BankFault | None:
        """What the bank knows of an operation, or None when it has none."""
        ...


class CardRepository(Protocol):
    async def erase_card_data(self, created_before: datetime, limit: int, now: datetime) -> int:
        """Erase the encrypted PAN and holder name of up to ``limit`` cards of terminal
        payments created before ``created_before``; how many were erased."""
        ...


# -- events and webhooks (docs/design.md, Events and webhooks)


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """A delivery this worker has claimed: send ``event`` to ``url``, signed with the secrets."""

    id: str
    event: Event
    endpoint_id: str
    url: str
    secrets_encrypted: tuple[bytes, ...]  # newest first: the previous one during its overlap
    attempts: int  # attempts made before this one


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What one attempt did, and what becomes of its delivery."""

    delivery: DueDelivery
    attempted_at: datetime
    result: SendResult
    status: DeliveryStatus
    next_attempt_at: datetime | None  # pending only

    @property
    def gone(self) -> bool:
        """The endpoint answered 410 Gone: it is disabled at once."""
        return self.result.status_code == GONE


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    attempted_at: datetime
    status_code: int | None
    duration_ms: int
    error: str | None
    response_excerpt: str | None


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """A delivery as the merchant sees it in an endpoint's deliveries list."""

    id: str
    event_id: str
    event_type: str
    endpoint_id: str
    status: DeliveryStatus
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None
    attempts: list[DeliveryAttempt]


class WebhookRepository(Protocol):
    async def add_endpoint(self, endpoint: WebhookEndpoint, secret_encrypted: bytes) -> None: ...

    async def get_endpoint(self, endpoint_id: str, merchant_id: str) -> WebhookEndpoint | None: ...

    async def list_endpoints(self, merchant_id: str) -> list[WebhookEndpoint]: ...

    async def update_endpoint(self, endpoint: WebhookEndpoint) -> None:
        """Write the endpoint's url, events, description and disabled state."""
        ...

    async def delete_endpoint(self, endpoint_id: str, merchant_id: str) -> bool: ...

    async def replace_secret(
        self, endpoint_id: str, secret_encrypted: bytes, previous_expires_at: datetime
    ) -> None:
        """The new secret signs from now on; the current one as well until it expires."""
        ...

    async def park_deliveries(self, endpoint_id: str) -> None:
        """Pending deliveries of a disabled endpoint wait (unscheduled) until it is enabled."""
        ...

    async def resume_deliveries(self, endpoint_id: str, now: datetime) -> None: ...

    async def fan_out(self, now: datetime, limit: int, lease_until: datetime) -> list[DueDelivery]:
        """Hand up to ``limit`` new events to their subscribed endpoints, once each.

        The deliveries are created claimed by the caller (due again at ``lease_until``, should
        it die before recording an attempt) and returned ready to send.
        """
        ...

    async def claim_due(
        self, now: datetime, limit: int, lease_until: datetime
    ) -> list[DueDelivery]:
        """Pending deliveries whose next attempt is due, claimed until ``lease_until``."""
        ...

    async def record_outcomes(
        self, outcomes: Sequence[DeliveryOutcome], failing_since_cutoff: datetime
    ) -> None:
        """Record the attempts and where each delivery stands; an endpoint that failed every
        attempt since before the cutoff, or answered 410, is disabled."""
        ...

    async def redeliver(self, event: Event, now: datetime) -> int:
        """Schedule the event again for each enabled endpoint subscribed to it; how many."""
        ...

    async def list_deliveries(
        self, endpoint_id: str, limit: int, older_than: ListPosition | None
    ) -> list[DeliveryRecord]:
        """The endpoint's deliveries, newest first, with their attempts."""
        ...

    async def get_delivery(self, delivery_id: str, endpoint_id: str) -> DeliveryRecord | None: ...

    async def oldest_undelivered_at(self) -> datetime | None:
        """When the oldest event still waiting to reach some endpoint was created."""
        ...

    async def get_event(self, event_id: str, merchant_id: str) -> Event | None: ...

    async def list_events(
        self,
        merchant_id: str,
        event_type: str | None,
        limit: int,
        *,
        older_than: ListPosition | None = None,
        newer_than: ListPosition | None = None,
    ) -> list[Event]:
        """Like PaymentRepository.list_page: newest first, or oldest first after newer_than."""
        ...

    async def delete_events_before(self, created_before: datetime, limit: int) -> int:
        """Drop up to ``limit`` events older than the retention period, with their deliveries."""
        ...


class WebhookUnitOfWork(Transaction, Protocol):
    """One transaction over the event and webhook tables."""

    @property
    def webhooks(self) -> WebhookRepository: ...


class WebhookUnitOfWorkFactory(Protocol):
    def __call__(
        self, *, read_only: bool = False, single_statement: bool = False
    ) -> WebhookUnitOfWork: ...


class SecretCipher(Protocol):
    """Encrypts what must be read back (webhook signing secrets), as the card vault does."""

    def encrypt(self, plaintext: str) -> bytes: ...

    def decrypt(self, token: bytes) -> str: ...


class WebhookUrlGuard(Protocol):
    async def check(self, url: str) -> object:
        """Raise UnsafeWebhookUrl unless the gateway may send to ``url``."""
        ...


class WebhookSender(Protocol):
    async def send(self, url: str, message: WebhookMessage) -> SendResult:
        """One signed POST of the message; every fault is a SendResult, never an exception."""
        ...
