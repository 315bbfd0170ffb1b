"""
A small site with its sessions in their own SQLite database.

Two aliases, as a production site would have two servers: "default" for the
users and the admin, "sessions" for the session table only.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("EXAMPLE_DATA_DIR", BASE_DIR))

SECRET_KEY = "example-only-not-secret"  # a local demo only
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # No django.contrib.sessions: this project never ran Django's engine, so
    # it has no django_session table to import from, and purgesessions
    # cleans up (a project moving in keeps it; see the README).
    # Before django_sql_sessions: its django_sql_sessions/base.html replaces
    # the package's, so the package's "your sessions" pages wear this site's look.
    "example",
    "django_sql_sessions",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Django's SessionMiddleware, plus device details and last activity.
    "django_sql_sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example.urls"
WSGI_APPLICATION = "example.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "example.views.routes",
            ],
        },
    },
]

DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DATA_DIR / "db.sqlite3"},
    "sessions": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DATA_DIR / "sessions.sqlite3",
        # WAL lets readers go on while a session is written; see the README.
        "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL", "timeout": 5},
    },
}

# The package's whole configuration.
SESSION_ENGINE = "django_sql_sessions.backends.db"
# The sessions database holds nothing but sessions: this router pins the
# session model there and keeps every other app's tables out of it.
DATABASE_ROUTERS = ["django_sql_sessions.routers.DedicatedSessionRouter"]
SQL_SESSIONS_DB_ALIAS = "sessions"
SQL_SESSIONS_TABLE = "web_sessions"
# Shown on the "your sessions" page; IPs are kept as /24 and /48 networks.
SQL_SESSIONS_DEVICE_DETAILS = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
LOGIN_URL = "admin:login"
LOGIN_REDIRECT_URL = "sql_sessions:list"
