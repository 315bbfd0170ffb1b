"""
manage.py reencryptsessions: rewrite every session row not sealed under the
current key (SQL_SESSIONS_ENCRYPT), or with --decrypt every sealed row as
plaintext, in batches, under live traffic. Exit status: 0 when the run
finished; 1 on an error; 2 on invalid options; 130 when interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.core import signing
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, transaction
from django.utils.crypto import constant_time_compare

from django_sql_sessions import conf, encryption, storage
from django_sql_sessions.cursors import retry_after
from django_sql_sessions.management._common import add_batch_options, command_errors, plural


@dataclasses.dataclass
class Tally:
    rewritten: int = 0
    # Saved by a request between the read and the rewrite: that save sealed it.
    changed_meanwhile: int = 0
    # Tampered with, or under a key no longer in SECRET_KEY_FALLBACKS (the
    # cipher's or the signature's): left as
    # they are (they load as empty sessions; the next save replaces them).
    unreadable: int = 0
    batches: int = 0


class Command(BaseCommand):
    help = (
        "Re-encrypt the session rows that are not under the current key (plaintext rows, "
        "or rows under a SECRET_KEY_FALLBACKS key), in batches, so that an old key can be "
        "retired; with --decrypt, write every encrypted row as plaintext."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_batch_options(parser, "Rows per transaction")
        parser.add_argument(
            "--decrypt",
            action="store_true",
            help="Write encrypted rows as plaintext (after SQL_SESSIONS_ENCRYPT = False).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Report how many rows would be rewritten, and write none.",
        )

    def handle(
        self,
        *args: Any,
        batch_size: int | None,
        sleep: float,
        decrypt: bool,
        dry_run: bool,
        **options: Any,
    ) -> None:
        self.verbosity = options["verbosity"]
        with command_errors() as alias:
            encrypt = conf.ENCRYPT.get()
            if decrypt and encrypt:
                raise CommandError(
                    "SQL_SESSIONS_ENCRYPT is True: set it to False (and deploy that) before "
                    "--decrypt, or every save would encrypt the rows again."
                )
            if not decrypt and not encrypt:
                raise CommandError(
                    "SQL_SESSIONS_ENCRYPT is False: there is no key to encrypt to. Set it to "
                    "True, or pass --decrypt to write encrypted rows as plaintext."
                )
            if not decrypt:
                encryption.seal("")  # the cryptography package, before any row is read
            size = batch_size or conf.CLEANUP_BATCH_SIZE.get()
            table = storage.table()
            tally = Tally()
            try:
                self._run(table, size, sleep, decrypt=decrypt, dry_run=dry_run, tally=tally)
            except KeyboardInterrupt:
                raise CommandError(
                    f"Interrupted after rewriting {plural(tally.rewritten, 'session')} in "
                    f"{plural(tally.batches, 'whole batch', 'whole batches')}; run the command "
                    "again to go on.",
                    returncode=130,
                ) from None
        what = "as plaintext" if decrypt else "under the current key"
        verb = "Would rewrite" if dry_run else "Rewrote"
        self.stdout.write(
            f"{verb} {plural(tally.rewritten, 'session')} {what} in database '{alias}' "
            f"({plural(tally.batches, 'batch', 'batches')})."
        )
        if tally.changed_meanwhile:
            self.stdout.write(
                f"Saved by requests meanwhile, which wrote them {what} themselves: "
                f"{plural(tally.changed_meanwhile, 'session')}."
            )
        if tally.unreadable:
            self.stderr.write(
                f"Left as they are, since they could not be decrypted (tampered with, or "
                f"under a key no longer in SECRET_KEY_FALLBACKS): "
                f"{plural(tally.unreadable, 'session')}. They load as empty sessions, and "
                "their next save replaces them."
            )

    def _run(
        self,
        table: storage.SessionTable,
        size: int,
        sleep: float,
        *,
        decrypt: bool,
        dry_run: bool,
        tally: Tally,
    ) -> None:
        after = ""
        while rows := table.scan(after, size, sealed_only=decrypt):
            if tally.batches and sleep:
                time.sleep(sleep)
            renewed = resigned(rows)
            if dry_run:
                readable = sum(signed is not None for signed in renewed)
                tally.rewritten += readable
                tally.unreadable += len(rows) - readable
            else:
                self._batch(table, rows, renewed, decrypt=decrypt, tally=tally)
            after = rows[-1][0]
            tally.batches += 1
            if self.verbosity >= 2:
                self.stdout.write(
                    f"Batch {tally.batches}: {plural(len(rows), 'row')} read, "
                    f"{tally.rewritten:,} rewritten so far"
                )

    def _batch(
        self,
        table: storage.SessionTable,
        rows: list[tuple[str, str, int]],
        renewed: list[str | None],
        *,
        decrypt: bool,
        tally: Tally,
    ) -> None:
        """Rewrite a batch in one transaction; again, whole, after a deadlock or a conflict."""
        attempt = 1
        while True:
            done = Tally()
            try:
                with transaction.atomic(using=table.alias):
                    for (key_hash, _data, version), signed in zip(rows, renewed, strict=True):
                        if signed is None:
                            done.unreadable += 1
                            continue
                        new = signed if decrypt else encryption.seal(signed)
                        if table.reseal(key_hash, version, new):
                            done.rewritten += 1
                        else:
                            done.changed_meanwhile += 1
            except DatabaseError as exc:
                if not retry_after(table.connection, exc, attempt):
                    raise
                attempt += 1
                continue
            tally.rewritten += done.rewritten
            tally.changed_meanwhile += done.changed_meanwhile
            tally.unreadable += done.unreadable
            return


def resigned(rows: list[tuple[str, str, int]]) -> list[str | None]:
    """
    Each row's session signed anew under SECRET_KEY, its auth hash renewed
    (_renew_auth_hashes()), or None if it cannot be opened or its signature
    fails: once the rows are rewritten, the old key can leave
    SECRET_KEY_FALLBACKS without logging anyone out.
    """
    store = storage.session_model().get_session_store_class()()
    sessions: list[dict[str, Any] | None] = []
    for _key_hash, data, _version in rows:
        signed = encryption.try_open(data)
        try:
            session = (
                None
                if signed is None
                else signing.loads(signed, salt=store.key_salt, serializer=store.serializer)
            )
        except Exception:  # BadSignature, or what the serializer raises (Django's decode too)
            session = None
        sessions.append(session if isinstance(session, dict) else None)
    _renew_auth_hashes([session for session in sessions if session is not None])
    return [None if session is None else str(store.encode(session)) for session in sessions]


def _renew_auth_hashes(sessions: list[dict[str, Any]]) -> None:
    """
    Django's session auth hash (HASH_SESSION_KEY) is an HMAC under SECRET_KEY
    too: where it is the user's hash under a SECRET_KEY_FALLBACKS key, write
    the current one, as django.contrib.auth.get_user() does at the user's
    next request. Without it, a user idle while the old key was a fallback
    would be logged out by Django when the old key goes.
    """
    if not getattr(settings, "SECRET_KEY_FALLBACKS", None):
        return
    try:
        model = get_user_model()
    except (ImproperlyConfigured, LookupError):
        return  # no django.contrib.auth: no auth hash to renew
    pk_field = model._meta.pk
    assert pk_field is not None
    wanted = set()
    for session in sessions:
        if session.get(HASH_SESSION_KEY) and SESSION_KEY in session:
            try:
                wanted.add(pk_field.to_python(session[SESSION_KEY]))
            except ValidationError:
                continue
    if not wanted:
        return
    users = {str(pk): user for pk, user in model._default_manager.in_bulk(list(wanted)).items()}
    for session in sessions:
        user = users.get(str(session.get(SESSION_KEY)))
        stored = session.get(HASH_SESSION_KEY)
        # No such user, or one without auth hashes: get_user() checks nothing either.
        if user is None or not hasattr(user, "get_session_auth_fallback_hash"):
            continue
        if not isinstance(stored, str):
            continue
        current = user.get_session_auth_hash()
        if not constant_time_compare(stored, current) and any(
            constant_time_compare(stored, old) for old in user.get_session_auth_fallback_hash()
        ):
            session[HASH_SESSION_KEY] = current
