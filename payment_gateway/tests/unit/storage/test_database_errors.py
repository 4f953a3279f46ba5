"""How the unit of work names the server's errors: conflict, unreachable node, or neither."""

from __future__ import annotations

import pytest
from payment_gateway.service.errors import StorageContention, StorageUnavailable
from payment_gateway.storage.unit_of_work import SqlUnitOfWork
from sqlalchemy.exc import OperationalError


class DriverError(Exception):
    """What the driver raises: the server's error number first."""


def server_error(code: int, message: str) -> OperationalError:
    return OperationalError("COMMIT", {}, DriverError(code, message))


class _Connection:
    def in_transaction(self) -> bool:
        return False

    async def close(self) -> None:
        return None


async def leave_with(error: BaseException) -> None:
    """Leave a unit of work with ``error``, as ``async with`` does: what comes out is raised."""
    uow = SqlUnitOfWork(engine=None)  # type: ignore[arg-type]  # __aexit__ needs no engine
    uow._connection = _Connection()  # type: ignore[assignment]
    await uow.__aexit__(type(error), error, None)
    raise error  # __aexit__ let it through unchanged


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (1213, "Deadlock found when trying to get lock; try restarting transaction"),
        (1205, "Lock wait timeout exceeded; try restarting transaction"),
    ],
)
async def test_a_rolled_back_transaction_is_a_conflict_to_run_again(
    code: int, message: str
) -> None:
    # On Galera a certification conflict at COMMIT is reported as 1213 as well.
    with pytest.raises(StorageContention):
        await leave_with(server_error(code, message))


async def test_a_galera_node_outside_the_primary_component_is_unavailable_not_a_conflict() -> None:
    error = server_error(1047, "WSREP has not yet prepared node for application use")
    with pytest.raises(StorageUnavailable) as raised:
        await leave_with(error)
    assert not isinstance(raised.value, StorageContention)  # may have nothing to retry on


async def test_other_errors_pass_through_unchanged() -> None:
    error = server_error(1146, "Table 'payments' doesn't exist")
    with pytest.raises(OperationalError):
        await leave_with(error)
