"""An in-memory bank for unit tests: same outcomes as the simulator, no network."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from payment_gateway.domain.bank import BankAnswer, BankFault
from payment_gateway.domain.payment import PaymentRequest

_OUTCOMES = {
    "4242424242424242": ("0", None),
    "4000000000000002": ("100", "insufficient_funds"),
    "4000000000009995": ("200", None),
}


@dataclass
class FakeBank:
    """Records every deposit; ``fault`` makes the next deposits fail that way."""

    fault: BankFault | None = None
    deposits: list[tuple[str, PaymentRequest]] = field(default_factory=list)
    answers: dict[str, BankAnswer] = field(default_factory=dict)

    async def deposit(self, payment_id: str, request: PaymentRequest) -> BankAnswer | BankFault:
        if self.fault is BankFault.NOT_SENT or self.fault is BankFault.REJECTED:
            return self.fault
        self.deposits.append((payment_id, request))
        if payment_id not in self.answers:
            code, reason = _OUTCOMES.get(request.pan, ("100", "card_not_supported"))
            self.answers[payment_id] = BankAnswer(code, reason, str(uuid.uuid4()))
        if self.fault is BankFault.UNCERTAIN:
            return self.fault
        return self.answers[payment_id]

    async def inquire(self, payment_id: str) -> BankAnswer | BankFault | None:
        return self.answers.get(payment_id)

    def settle(self, payment_id: str, code: str = "0") -> None:
        """The bank finishes a pending deposit."""
        previous = self.answers[payment_id]
        self.answers[payment_id] = BankAnswer(code, None, previous.transaction_id)
