"""``ReplayGuard``: every CDS client JWT's ``jti`` is accepted once (CDS Hooks 2.0: jti "used to protect against
replay attacks").

A (iss, jti) is remembered in the service's state database until its JWT expires (its own table, shared by every
worker process, so a token replayed to another worker is refused too). Expired entries are deleted as new ones
arrive; ``max_token_seconds`` bounds how long any entry lives, so the table holds at most the tokens of the last few
minutes.
"""

from __future__ import annotations

import hashlib
import threading
import time

from sqlalchemy import BigInteger, Column, MetaData, String, Table, delete, insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

metadata = MetaData()

jti_table = Table(
    "cds_hooks_jti", metadata,
    Column("token", String(64), primary_key=True),  # sha256 of iss and jti (bounded length, no raw value kept)
    Column("expires", BigInteger, nullable=False, index=True),  # seconds since the epoch
)


class ReplayGuard:
    """Remembers the (iss, jti) of accepted JWTs until they expire."""

    def __init__(self, engine: Engine, purge_every: int = 100):
        self.engine = engine
        metadata.create_all(engine)
        self.purge_every = purge_every
        self._count = 0
        self._lock = threading.Lock()

    def first_use(self, iss: str, jti: str, expires: int) -> bool:
        """True the first time (iss, jti) is presented (it is then remembered until ``expires``), else False."""
        token = hashlib.sha256(f"{len(iss)}:{iss}{jti}".encode("utf-8", "surrogateescape")).hexdigest()
        with self._lock:
            self._count += 1
            purge = self._count % self.purge_every == 1
        try:
            with self.engine.begin() as conn:
                if purge:
                    conn.execute(delete(jti_table).where(jti_table.c.expires < int(time.time())))
                conn.execute(insert(jti_table).values(token=token, expires=expires))
        except IntegrityError:
            return False
        return True
