"""Which storage failures are run again, and how often: conflicts yes, lost connections as told.

The pauses between attempts are real (a few milliseconds each, well under a second in all).
"""

from __future__ import annotations

import pytest
from payment_gateway.service.errors import StorageContention, StorageUnavailable
from payment_gateway.service.storage_retry import CONTENTION_RETRIES, retrying_storage


class Failing:
    """Raises the given errors in turn, then answers ``done``."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


async def test_a_conflict_is_run_again_until_it_goes_through() -> None:
    work = Failing(*(StorageContention("conflict") for _ in range(CONTENTION_RETRIES)))
    assert await retrying_storage(work) == "done"
    assert work.calls == CONTENTION_RETRIES + 1


async def test_conflicts_without_end_are_raised_in_the_end() -> None:
    work = Failing(*(StorageContention("conflict") for _ in range(CONTENTION_RETRIES + 1)))
    with pytest.raises(StorageContention):
        await retrying_storage(work)
    assert work.calls == CONTENTION_RETRIES + 1


async def test_a_lost_connection_is_not_run_again_unless_the_work_allows_it() -> None:
    # The COMMIT may have gone through: only work that is safe to repeat says so.
    once = Failing(StorageUnavailable("lost"))
    with pytest.raises(StorageUnavailable):
        await retrying_storage(once)
    assert once.calls == 1

    twice = Failing(StorageUnavailable("lost"), StorageUnavailable("lost"))
    assert await retrying_storage(twice, unavailable_retries=2) == "done"
    assert twice.calls == 3

    thrice = Failing(*(StorageUnavailable("lost") for _ in range(3)))
    with pytest.raises(StorageUnavailable):
        await retrying_storage(thrice, unavailable_retries=2)
