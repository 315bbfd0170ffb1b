"""
Settings of the site that tests/cluster/test_patroni_failover.py serves with
gunicorn: users in a SQLite file of the test's, sessions on the Patroni
cluster through HAProxy, as a production site would have them (a connection
kept between requests, checked before its first use in each). The test
passes where things are in the environment.
"""

import os

SECRET_KEY = "failover-tests"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django_sql_sessions",
]
MIDDLEWARE = [
    "django_sql_sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "tests.cluster.failover_urls"
SESSION_ENGINE = "django_sql_sessions.backends.db"
DATABASE_ROUTERS = ["django_sql_sessions.routers.DedicatedSessionRouter"]
SQL_SESSIONS_DB_ALIAS = "sessions"
SQL_SESSIONS_TABLE = os.environ["FAILOVER_SITE_TABLE"]
SQL_SESSIONS_GC_FREQUENCY = 0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast, tests only
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["FAILOVER_SITE_USERS"]},
    "sessions": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ["PG_PATRONI_HOST"],
        "PORT": os.environ["PG_PATRONI_PORT"],
        "USER": os.environ["PG_PATRONI_USER"],
        "PASSWORD": os.environ.get("PG_PATRONI_PASSWORD", ""),
        "NAME": os.environ["FAILOVER_SITE_DATABASE"],
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {"connect_timeout": 2},
    },
}
LOGGING_CONFIG = None
