"""
User models with primary keys that are not integers, to prove the user index
stores what login() stores, whatever the key's type. The tests swap them in
with AUTH_USER_MODEL.
"""

from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractUser
from django.db import models


class UUIDUser(AbstractUser):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    groups = None  # type: ignore[assignment]
    user_permissions = None  # type: ignore[assignment]


class EmailUser(AbstractUser):
    # A string primary key, as some projects have (emails, external ids).
    email_key = models.CharField(primary_key=True, max_length=254)
    groups = None  # type: ignore[assignment]
    user_permissions = None  # type: ignore[assignment]
