"""The MariaDB/MySQL server the tests use: ``import mariadb_server``, like ``import fakes``.

A plain module rather than conftest.py, which test modules cannot import by name.
"""

import os

# The server, without a database: each test session creates (and drops) its own database.
MYSQL_SERVER_URL = os.environ.get("TEST_MYSQL_URL", "mysql+asyncmy://root:@127.0.0.1:3306")
