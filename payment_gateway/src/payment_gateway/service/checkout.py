"""Use cases of checkout sessions and the hosted payment page (docs/design.md, Hosted payment
page): the merchant creates, reads and expires sessions; the shopper pays one on the page.

The page's payments are ordinary payments (service/payments.py), made with the session's
amount under the session merchant's name and an idempotency key per attempt, so a second post
of the same form replays the first payment. What a payment's outcome does to its session is
written by the recorder in the payment's own transaction (service/recording.py), whoever
learns the outcome.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from payment_gateway.domain.checkout import (
    SESSION_ID_PREFIX,
    CardEntry,
    CheckoutSession,
    CheckoutSessionDraft,
    CheckoutStatus,
    attempt_key,
    challenge_return_url,
    page_url,
)
from payment_gateway.domain.merchant import Merchant
from payment_gateway.domain.payment import Payment
from payment_gateway.domain.urls import browser_url_problem
from payment_gateway.logging_setup import current_request_id
from payment_gateway.service.clock import Clock, utc_now
from payment_gateway.service.errors import (
    FieldError,
    IdempotencyKeyReused,
    InvalidRequest,
    NotFound,
    RequestInProgress,
    WrongStatus,
)
from payment_gateway.service.ids import new_id
from payment_gateway.service.payments import PaymentService
from payment_gateway.service.ports import UnitOfWorkFactory
from payment_gateway.service.recording import TransactionalRecorder

MAX_SESSION_ID_LENGTH = 64


@dataclass(frozen=True, slots=True)
class CheckoutPolicy:
    public_url: str  # the gateway as browsers reach it: the page is {public_url}/checkout/{id}
    allow_http_urls: bool  # success and cancel URLs may be plain http (outside production)
    # How long a second post of a form waits for the first one's payment to be decided.
    wait_for_first_post: timedelta = timedelta(seconds=8)
    poll_interval: timedelta = timedelta(milliseconds=100)
    expiry_batch_size: int = 100


@dataclass(frozen=True, slots=True)
class CheckoutView:
    """What the page shows: the session (None: there is none) and its latest payment."""

    session: CheckoutSession | None
    payment: Payment | None = None
    # The form was for another attempt than the session's current one, or its payment is
    # still being decided by an earlier post: nothing new was charged.
    stale: bool = False


class CheckoutService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        recorder: TransactionalRecorder,
        payments: PaymentService,
        policy: CheckoutPolicy,
        clock: Clock = utc_now,
    ) -> None:
        self._uow = uow
        self._recorder = recorder
        self._payments = payments
        self._policy = policy
        self._clock = clock

    # -- the merchant's API

    async def create(self, merchant: Merchant, draft: CheckoutSessionDraft) -> CheckoutSession:
        errors = [
            FieldError(name, problem)
            for name, url in (("success_url", draft.success_url), ("cancel_url", draft.cancel_url))
            if (problem := browser_url_problem(url, https_only=not self._policy.allow_http_urls))
        ]
        if errors:
            raise InvalidRequest("the request is invalid: see errors", errors=errors)
        now = self._clock()
        session_id = SESSION_ID_PREFIX + new_id()
        session = CheckoutSession(
            id=session_id,
            merchant_id=merchant.id,
            status=CheckoutStatus.OPEN,
            amount=draft.amount,
            currency=draft.currency,
            reference=draft.reference,
            success_url=draft.success_url,
            cancel_url=draft.cancel_url,
            capture=draft.capture,
            url=page_url(self._policy.public_url, session_id),
            created_at=now,
            updated_at=now,
            expires_at=now + draft.expires_in,
            merchant_name=merchant.name,
        )
        async with self._uow() as uow:
            await uow.checkout_sessions.add(session)
            await uow.commit()
        return session

    async def get(self, merchant: Merchant, session_id: str) -> CheckoutSession:
        """One of the merchant's sessions; another merchant's is NotFound, as an unknown id."""
        session = await self._read(session_id, merchant.id)
        if session is None:
            raise NotFound(f"no checkout session {session_id[:MAX_SESSION_ID_LENGTH]}")
        return session

    async def expire(self, merchant: Merchant, session_id: str) -> CheckoutSession:
        """Expire an open session, so that it takes no payment any more."""
        session = await self.get(merchant, session_id)
        if session.status is not CheckoutStatus.OPEN:
            raise WrongStatus(f"the checkout session is {session.status.value}, not open")
        expired = await self._recorder.expire_checkout_session(
            session.id, merchant.id, self._clock(), current_request_id()
        )
        if not expired:
            current = await self.get(merchant, session_id)
            if current.status is not CheckoutStatus.OPEN:
                raise WrongStatus(f"the checkout session is {current.status.value}, not open")
            raise WrongStatus("a payment of the checkout session is still being decided")
        return await self.get(merchant, session_id)

    async def expire_due(self) -> int:
        """Expire the sessions past their expires_at (the reconciler's loop runs it)."""
        return await self._recorder.expire_due_checkout_sessions(
            self._clock(), self._policy.expiry_batch_size
        )

    # -- the shopper's page

    async def view(self, session_id: str) -> CheckoutView:
        """The session behind a page address, whoever's it is, with its latest payment."""
        if len(session_id) > MAX_SESSION_ID_LENGTH:
            return CheckoutView(None)
        session = await self._read(session_id, None)
        if session is None or session.payment_id is None:
            return CheckoutView(session)
        async with self._uow(read_only=True, single_statement=True) as uow:
            payment = await uow.payments.get(session.payment_id, session.merchant_id)
        return CheckoutView(session, payment)

    def accepts_payment(self, session: CheckoutSession) -> bool:
        return session.accepts_payment(self._clock())

    async def pay(self, session_id: str, attempt: int, card: CardEntry) -> CheckoutView:
        """Charge the card for the session, once per attempt (a double post replays it)."""
        view = await self.view(session_id)
        session = view.session
        if session is None or not self.accepts_payment(session):
            return CheckoutView(session, view.payment, stale=session is not None)
        if attempt != session.declines:
            # A form rendered before the session's latest decline (a second click that
            # arrived late, a back button): its attempt was made already. A payment still
            # pending is always the current attempt's: the same key finds it.
            return CheckoutView(session, view.payment, stale=True)
        merchant = Merchant(session.merchant_id, session.merchant_name)
        payment = await self._create_once(merchant, card, session, attempt_key(session.id, attempt))
        if payment is None:
            return CheckoutView(await self._read(session_id, None), view.payment, stale=True)
        return CheckoutView(await self._read(session_id, None), payment)

    async def _create_once(
        self, merchant: Merchant, card: CardEntry, session: CheckoutSession, key: str
    ) -> Payment | None:
        """The attempt's payment, made now or by an earlier post of the same form.

        None when that earlier post sent another card, or is still waiting for the bank.
        """
        request = card.payment_request(
            session, challenge_return_url(self._policy.public_url, session.id)
        )
        waited = timedelta()
        while True:
            try:
                return (await self._payments.create(merchant, request, key)).payment
            except IdempotencyKeyReused:
                return None
            except RequestInProgress:
                if waited >= self._policy.wait_for_first_post:
                    return None
            await asyncio.sleep(self._policy.poll_interval.total_seconds())
            waited += self._policy.poll_interval

    async def _read(self, session_id: str, merchant_id: str | None) -> CheckoutSession | None:
        if len(session_id) > MAX_SESSION_ID_LENGTH:
            return None
        async with self._uow(read_only=True, single_statement=True) as uow:
            return await uow.checkout_sessions.get(session_id, merchant_id)
