import time
import uuid

from payment_gateway.service.ids import new_id


def test_new_ids_are_uuid7_unique_and_ordered_by_creation() -> None:
    ids = []
    for _ in range(50):
        ids.append(new_id())
        time.sleep(0.001)  # UUIDv7 orders by millisecond
    assert all(uuid.UUID(value).version == 7 for value in ids)
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)  # so a table keyed by them grows at the end of its index
