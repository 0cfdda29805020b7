"""Settings, decoded from the environment into a msgspec Struct.

One setting chooses the store: ``ARLEDGER_DATABASE_URL``. Unset, the ledger lives in
an SQLite file under ``ARLEDGER_DATA_DIR`` (default ``./.arledger-data``); set it to
``postgresql://user:password@host:5432/dbname`` to scale out, or to
``sqlite:///path/to/file.sqlite`` for another file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, unquote, urlparse

import msgspec


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str = ""
    data_dir: str = ".arledger-data"
    env: Literal["development", "production"] = "development"
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    aggregate_cache_size: int = 2000
    snapshot_interval: int = 200
    create_tables: bool = True
    kafka_bootstrap: str = "127.0.0.1:9092"
    dunning_policy: str = ""  # path of a dunning policy (.toml/.json); empty = the packaged default
    collectors: str = ""  # comma-separated collectors that share unassigned customers (worklists)
    scorecard: str = ""  # credit policy file used until one is recorded (default: the shipped one)
    #: Names this ledger in the CloudEvents ``source`` (``/arledger/<ledger_name>``).
    ledger_name: str = "default"
    kafka_events_topic: str = "arledger.events.v1"
    kafka_overdue_topic: str = "arledger.overdue.v1"
    #: Event class names also published to the overdue topic (comma separated).
    kafka_overdue_events: str = (
        "InvoiceFellOverdue,AgingBucketEntered,PromiseToPayBroken,DunningStepDue,"
        "CreditReviewDue,EarlyWarningRaised,EarlyWarningCleared"
    )
    kafka_partitions: int = 12
    kafka_replication_factor: int = 1
    #: Events read from the store and published per acknowledged batch.
    relay_batch_size: int = 5000
    #: Request, metadata and delivery timeouts of the Kafka clients (milliseconds).
    kafka_timeout_ms: int = 15000
    #: Longest wait between retries while the broker is unreachable (seconds).
    relay_max_backoff: float = 30.0

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(self.data_dir).resolve() / 'ledger.sqlite'}"

    @property
    def overdue_event_names(self) -> frozenset[str]:
        return frozenset(n.strip() for n in self.kafka_overdue_events.split(",") if n.strip())

    @property
    def is_postgres(self) -> bool:
        return self.resolved_database_url.startswith(("postgres://", "postgresql://"))

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Read ``ARLEDGER_*`` variables; msgspec converts and validates their types."""
        environ = dict(os.environ if environ is None else environ)
        raw: dict[str, object] = {}
        for field in cls.__struct_fields__:
            value = environ.get(f"ARLEDGER_{field.upper()}")
            if value is not None:
                raw[field] = value
        raw.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return msgspec.convert(raw, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise SystemExit(f"configuration error: {exc} (environment variables ARLEDGER_*)") from None

    def eventsourcing_env(self) -> dict[str, str]:
        """Translate the database URL into the eventsourcing library's settings."""
        url = self.resolved_database_url
        common = {
            "MAPPER_TOPIC": "services.persistence:MsgspecMapper",
            "IS_SNAPSHOTTING_ENABLED": "y",
            "AGGREGATE_CACHE_MAXSIZE": str(self.aggregate_cache_size),
            "CREATE_TABLE": "y" if self.create_tables else "n",
        }
        parsed = urlparse(url)
        if parsed.scheme == "sqlite":
            path = unquote(parsed.path)
            if path != ":memory:" and not path.startswith("file:"):
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            return {**common, "PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": path, "SQLITE_LOCK_TIMEOUT": "30"}
        if parsed.scheme in ("postgres", "postgresql"):
            query = parse_qs(parsed.query)
            env = {
                **common,
                "PERSISTENCE_MODULE": "eventsourcing.postgres",
                "POSTGRES_DBNAME": parsed.path.lstrip("/") or "postgres",
                "POSTGRES_HOST": parsed.hostname or "127.0.0.1",
                "POSTGRES_PORT": str(parsed.port or 5432),
                "POSTGRES_USER": unquote(parsed.username or "postgres"),
                "POSTGRES_PASSWORD": unquote(parsed.password or ""),
                "POSTGRES_POOL_SIZE": "5",
                "POSTGRES_MAX_OVERFLOW": "10",
                "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
            }
            if "schema" in query:
                env["POSTGRES_SCHEMA"] = query["schema"][0]
            return env
        raise SystemExit(f"configuration error: ARLEDGER_DATABASE_URL scheme {parsed.scheme!r} is not sqlite or postgresql")
