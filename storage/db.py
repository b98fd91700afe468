"""Engine, sessions and migrations. Built once per process and passed down."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
CONNECT_TIMEOUT_S = 10  # libpq connect_timeout (whole seconds); ?connect_timeout= in the URL wins


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # Let SQLAlchemy, not the driver, decide where transactions begin (below),
    # so a SAVEPOINT never starts, and its RELEASE never commits, a transaction.
    dbapi_connection.isolation_level = None
    cur = dbapi_connection.cursor()
    # WAL lets readers run beside the one writer; busy_timeout makes writers queue
    # instead of failing when a CLI command and the worker touch the file at once.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def normalize_url(url: str) -> str:
    """Send plain ``postgresql://`` URLs to psycopg 3, the driver memq installs; psycopg's own
    options (``?prepare_threshold=none``, storage/pgurl.py) are left to ``Database``."""
    from storage.pgurl import split_driver_options

    url = split_driver_options(url)[0]
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


SUPPORTED_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg", "sqlite")


def check_database_url(url: str) -> None:
    """Refuse a URL memq cannot use, in words (not the driver's ModuleNotFoundError)."""
    from storage.repository.errors import BadInput

    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in SUPPORTED_SCHEMES:
        from memq.logging_setup import URL_PASSWORD

        shown = URL_PASSWORD.sub(lambda m: m.group("head") + "***@", url)
        raise BadInput(f"unsupported database URL {shown}: memq needs postgresql://USER@HOST/DB "
                       "or sqlite:///PATH (MEMQ_DATABASE_URL)")


def create_missing_database(url: str) -> bool:
    """Create the Postgres database ``url`` names, if it does not exist (``memq db upgrade``).

    Connects to the server's ``postgres`` database with the same credentials. True
    when it was created, False when it existed; a server that refuses raises its error.
    """
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    target = make_url(normalize_url(url))
    name = target.database
    if not name or not target.drivername.startswith("postgresql"):
        return False
    engine = create_engine(target.set(database="postgres"), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first():
                return False
            quoted = conn.dialect.identifier_preparer.quote(name)
            conn.execute(text(f"CREATE DATABASE {quoted}"))
            return True
    finally:
        engine.dispose()


def _raise_unavailable(exc: DBAPIError) -> None:
    """A round trip past its deadline surfaces as itself (``DatabaseUnavailable: Postgres did
    not answer within 5 s ...``), not wrapped in SQLAlchemy's OperationalError."""
    deadline = sys.modules.get("storage.deadline")  # loaded by any Database with a deadline
    if deadline is not None and isinstance(exc.orig, deadline.DatabaseUnavailable):
        raise exc.orig.with_traceback(None) from exc


@contextmanager
def _begun(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session of `sessions` with its transaction begun (committed on exit, rolled back on
    error); a round trip past its deadline surfaces as DatabaseUnavailable."""
    try:
        with sessions() as session, session.begin():
            yield session
    except DBAPIError as exc:
        _raise_unavailable(exc)
        raise


class Database:
    """One engine and session factory; `transaction()` is the way to write several rows.

    Postgres: two pools, one for transactions and one for autocommit statements
    (`autocommit()`), sharing pool_size: at most 2 × pool_size connections per
    process with overflow, opened on demand.

    ``deadline_s`` (Postgres, the client paths): every round trip of a connection gives
    up after this long with ``DatabaseUnavailable`` (storage/deadline.py); unset, the
    connections are psycopg's own and nothing is added to a statement.
    """

    def __init__(self, url: str, pool_size: int = 10, deadline_s: float | None = None) -> None:
        check_database_url(url)
        self.deadline_s: float | None = None
        from storage.pgurl import split_driver_options

        self.driver_options = split_driver_options(url)[1]  # e.g. no prepared statements behind PgBouncer
        self.url = normalize_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            path = self.url.split(":///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(
                self.url, connect_args={"check_same_thread": False, "timeout": 30}
            )
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # IMMEDIATE: a transaction that reads before it writes cannot fail to
            # upgrade its lock later ("database is locked"); writers queue instead.
            event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        else:
            self.engine = self._postgres_engine(max(1, pool_size - pool_size // 2))
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Postgres: a pool of its own whose connections stay in autocommit (switching
        # a pooled connection per checkout costs more than it saves). SQLite keeps
        # one transaction: its BEGIN and COMMIT cost no round trip.
        self.autocommit_engine: Engine = self.engine if self.is_sqlite else self._postgres_engine(
            max(1, pool_size // 2), isolation_level="AUTOCOMMIT")
        self._autocommit_sessions = sessionmaker(self.autocommit_engine, expire_on_commit=False)
        from storage import limits

        for factory in (self._sessions, self._autocommit_sessions):
            limits.install(factory)  # varchar(N) limits alike on SQLite and Postgres
        if deadline_s is not None:
            self.set_deadline(deadline_s)

    def set_deadline(self, deadline_s: float) -> None:
        """Bound every Postgres round trip by ``deadline_s`` from now on (SQLite: nothing to do).

        Connections already pooled are dropped, so each one in use afterwards has the
        deadline. Set once; a second call keeps the first deadline."""
        if self.is_sqlite or self.deadline_s is not None:
            return
        if deadline_s <= 0:
            raise ValueError(f"a database deadline must be positive, not {deadline_s}")
        from storage import deadline

        self.deadline_s = deadline_s
        for engine in (self.engine, self.autocommit_engine):
            deadline.install(engine, deadline_s)
            engine.dispose()

    def _postgres_engine(self, pool_size: int, **options: str) -> Engine:
        return create_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=pool_size,
            # No pre-ping (a round trip per checkout): after a database restart
            # the first statement fails, SQLAlchemy drops the whole pool, and the
            # step is retried (steps are idempotent).
            pool_recycle=1800,
            # A server that accepts the TCP connection but never answers (frozen, overloaded)
            # fails a new connection after this long instead of hanging on it.
            connect_args={**({} if "connect_timeout=" in self.url else {"connect_timeout": CONNECT_TIMEOUT_S}),
                          **self.driver_options},
            **options,
        )

    def transaction(self) -> AbstractContextManager[Session]:
        """A session inside one transaction: committed on exit, rolled back on error."""
        return _begun(self._sessions)

    def autocommit(self) -> AbstractContextManager[Session]:
        """A session whose statements each commit on their own (Postgres).

        For work that needs no atomicity across statements: a single write, or
        reads that need no common snapshot (on Postgres, READ COMMITTED gives each
        statement its own snapshot inside a transaction too). Two round trips fewer
        than transaction(). On SQLite it is transaction().
        """
        return _begun(self._autocommit_sessions)

    def upgrade(self) -> None:
        """Apply every Alembic migration (``memq db upgrade``)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def dispose(self) -> None:
        self.engine.dispose()
        self.autocommit_engine.dispose()
