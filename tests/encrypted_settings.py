"""
tests/settings.py with SQL_SESSIONS_ENCRYPT on, on the run's test databases,
for commands run as manage.py runs them (tests/test_encryption.py).
"""

from tests.settings import *  # noqa: F403

SQL_SESSIONS_ENCRYPT = True
# The test database itself: for a server NAME already is; SQLite's file has
# a name of its own.
DATABASES["sqlitefile"]["NAME"] = DATABASES["sqlitefile"]["TEST"]["NAME"]  # noqa: F405
