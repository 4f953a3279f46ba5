"""Identifiers of new rows."""

import uuid_utils


def new_id() -> str:
    """A UUIDv7 (RFC 9562): random, but ordered by creation time.

    Rows keyed by it are appended at the end of the primary-key index instead of at random
    places in it, so a large, growing table keeps its writes in a few hot pages: with UUIDv4
    keys, once the tables outgrow the database's buffer pool every insert touches a cold page.
    """
    return str(uuid_utils.uuid7())
