"""
Settings of the site that benchmarks/servers.py serves: its driver passes
them as JSON in BENCH_SERVER_SETTINGS (databases, cache, session engine).
"""

import json
import os

globals().update(json.loads(os.environ["BENCH_SERVER_SETTINGS"]))

SECRET_KEY = "benchmark"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
USE_TZ = True
INSTALLED_APPS = ["django.contrib.sessions", "django_sql_sessions"]
# Django's own middleware for every engine, so that only the engine differs.
MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware"]
ROOT_URLCONF = "benchmarks.serverapp.urls"
# run.py's table: the benchmark database has one session table.
SQL_SESSIONS_TABLE = "bench_sessions"
LOGGING_CONFIG = None
