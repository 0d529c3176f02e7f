"""Configuration of Catcher's processes, from the environment and mounted files.

Catcher's own settings use the ``CATCHER_`` prefix. Kafka connection settings use the
``KAFKA_*`` names that Sasquatch's Strimzi ``KafkaAccess`` resource provides.
"""

from __future__ import annotations

import ssl
import tempfile
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from pydantic import Field, SecretStr, SkipValidation, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from . import topics
from .actions import DEFAULT_CONCURRENCY, EXECUTORS
from .constants import DEFAULT_TOPIC_PREFIX
from .exceptions import ConfigError
from .models.actions import ACTION_TYPES
from .models.durations import Duration
from .redact import secrets
from .settings import (
    ServiceSettings,
    format_validation_error,
    read_secret_files,
    secret_values_of,
    setting_names,
)
from .topics import Topic

__all__ = [
    "Config",
    "KafkaConnectionSettings",
    "KafkaSaslMechanism",
    "KafkaSecurityProtocol",
    "LogProfile",
    "RetrySettings",
    "load_config",
    "setting_names_all",
]


PLAIN_CLIENT_TIMEOUT_MS = 10_000

RETENTION_MARGIN = timedelta(hours=1)
"""How much longer than a trigger's maximum age the ledger keeps a finished action."""
"""How long a plain aiokafka client (commands, views) waits for one answer of a broker."""


class KafkaSecurityProtocol(StrEnum):
    """How Catcher talks to the Kafka brokers."""

    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class KafkaSaslMechanism(StrEnum):
    """SASL mechanism; Sasquatch's listeners use SCRAM-SHA-512."""

    SCRAM_SHA_512 = "SCRAM-SHA-512"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    PLAIN = "PLAIN"


class LogLevel(StrEnum):
    """Log levels."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class LogProfile(StrEnum):
    """Logging profile: JSON lines for production, readable lines for development."""

    production = "production"
    development = "development"


class KafkaConnectionSettings(BaseSettings):
    """How to reach Kafka, with the variable names ``KafkaAccess`` provides."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore")

    bootstrap_servers: str = Field(
        "localhost:9092",
        description="Comma-separated host:port list of Kafka bootstrap servers.",
    )
    security_protocol: KafkaSecurityProtocol = Field(
        KafkaSecurityProtocol.PLAINTEXT,
        description="PLAINTEXT, SSL (mutual TLS), SASL_PLAINTEXT or SASL_SSL.",
    )
    sasl_mechanism: KafkaSaslMechanism = Field(
        KafkaSaslMechanism.SCRAM_SHA_512, description="SASL mechanism for the SASL protocols."
    )
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(None, description="SASL password.")
    client_cert_path: Path | None = Field(None, description="Client certificate (mutual TLS).")
    client_key_path: Path | None = Field(None, description="Client private key (mutual TLS).")
    cluster_ca_path: Path | None = Field(None, description="CA certificate of the cluster.")

    @model_validator(mode="after")
    def _check_protocol(self) -> Self:
        protocol = self.security_protocol
        sasl = (KafkaSecurityProtocol.SASL_PLAINTEXT, KafkaSecurityProtocol.SASL_SSL)
        if protocol in sasl and (not self.sasl_username or self.sasl_password is None):
            raise ValueError(
                f"Set KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD since"
                f" KAFKA_SECURITY_PROTOCOL is {protocol.value}."
            )
        no_client_cert = self.client_cert_path is None or self.client_key_path is None
        if protocol == KafkaSecurityProtocol.SSL and no_client_cert:
            raise ValueError(
                "Set KAFKA_CLIENT_CERT_PATH and KAFKA_CLIENT_KEY_PATH since"
                " KAFKA_SECURITY_PROTOCOL is SSL."
            )
        if (self.client_cert_path is None) != (self.client_key_path is None):
            raise ValueError(
                "Set both KAFKA_CLIENT_CERT_PATH and KAFKA_CLIENT_KEY_PATH, or neither."
            )
        return self

    @property
    def uses_ssl(self) -> bool:
        """Whether the connection is encrypted."""
        return self.security_protocol in (
            KafkaSecurityProtocol.SSL,
            KafkaSecurityProtocol.SASL_SSL,
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        """Build the TLS context, or None for the unencrypted protocols."""
        if not self.uses_ssl:
            return None
        context = ssl.create_default_context(
            cafile=str(self.cluster_ca_path) if self.cluster_ca_path else None
        )
        if self.client_cert_path and self.client_key_path:
            context.load_cert_chain(str(self.client_cert_path), str(self.client_key_path))
        return context

    def aiokafka_params(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's producer, consumer and admin client."""
        params: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol.value,
            # A broker that accepts connections and never answers fails a command in
            # seconds, not in aiokafka's default 40 s.
            "request_timeout_ms": PLAIN_CLIENT_TIMEOUT_MS,
        }
        context = self.ssl_context()
        if context is not None:
            params["ssl_context"] = context
        if self.security_protocol.value.startswith("SASL"):
            params["sasl_mechanism"] = self.sasl_mechanism.value
            params["sasl_plain_username"] = self.sasl_username
            params["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        return params

    def faust_broker_url(self) -> str:
        """Broker URL in Faust's ``kafka://host:port;host:port`` form."""
        hosts = [h.strip() for h in self.bootstrap_servers.split(",") if h.strip()]
        return "kafka://" + ";".join(hosts)

    def faust_credentials(self) -> Any:
        """Faust's credentials for these settings (SASL, TLS), or None for plaintext."""
        import faust  # noqa: PLC0415 - only the worker needs Faust; the CLI starts faster

        context = self.ssl_context()
        if self.security_protocol in (
            KafkaSecurityProtocol.SASL_PLAINTEXT,
            KafkaSecurityProtocol.SASL_SSL,
        ):
            return faust.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password.get_secret_value() if self.sasl_password else None,
                mechanism=self.sasl_mechanism.value,
                ssl_context=context,
            )
        if context is not None:
            return faust.SSLCredentials(context)
        return None


class RetrySettings(BaseSettings):
    """The one retry policy for calls to external services."""

    model_config = SettingsConfigDict(env_prefix="CATCHER_RETRY_", extra="ignore")

    attempts: int = Field(5, ge=1, description="Most attempts per action submission.")
    backoff_initial: float = Field(1.0, gt=0, description="First backoff, in seconds.")
    backoff_max: float = Field(60.0, gt=0, description="Longest backoff, in seconds.")
    backoff_multiplier: float = Field(2.0, ge=1, description="Growth of the backoff.")
    jitter: float = Field(
        0.2, ge=0, le=1, description="Fraction of each backoff drawn at random (0 to 1)."
    )
    attempt_timeout: float = Field(30.0, gt=0, description="Timeout of one attempt, seconds.")
    deadline: float = Field(
        600.0, gt=0, description="Total time allowed for all attempts of one step, seconds."
    )


def _service_settings() -> dict[str, ServiceSettings]:
    """Each action type's service settings, read from the environment."""
    return {e.type: e.settings_class() for e in EXECUTORS if e.settings_class is not None}


class Config(BaseSettings):
    """Settings of a Catcher process (worker, CLI)."""

    model_config = SettingsConfigDict(env_prefix="CATCHER_", extra="forbid")

    rules_path: Path = Field(
        Path("rules"),
        description="A rules YAML file, or a directory whose *.yaml and *.yml files are read.",
    )
    topic_prefix: str = Field(
        DEFAULT_TOPIC_PREFIX,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$",
        description="Prefix of Catcher's topics; it is also the Avro namespace.",
    )
    app_id: str = Field(
        "catcher", description="Faust application id: the consumer group and table prefix."
    )
    schema_registry_url: str = Field(
        "http://sasquatch-schema-registry.sasquatch:8081",
        description="URL of the Confluent-compatible Schema Registry.",
    )
    topic_partitions: int = Field(
        1, ge=1, description="Partitions of the topics Catcher creates (and of its tables)."
    )
    topic_replication_factor: int = Field(
        1, ge=1, description="Replication factor of the topics Catcher creates."
    )
    create_topics: bool = Field(
        True,
        description="Create missing topics at start-up (turn off where Strimzi KafkaTopic"
        " resources own them).",
    )
    producer_max_request_size: int = Field(
        1048576,
        ge=65536,
        description="Largest record Catcher sends, in bytes (the broker's message.max.bytes"
        " must allow it). A dead letter that would be larger carries a truncated original.",
    )
    producer_max_batch_size: int = Field(
        16384,
        ge=1,
        description="Largest producer batch in bytes. A value below one record's size"
        " sends one record per batch.",
    )
    producer_idempotence: bool = Field(
        True,
        description="Idempotent producers (acks=all, no duplicate from a producer's own"
        " retries). Turn off only for a broker without them, such as the demo's.",
    )
    broker_session_timeout: float = Field(
        30.0, gt=0, description="Consumer group session timeout, seconds."
    )
    broker_heartbeat_interval: float = Field(
        3.0, gt=0, description="Consumer group heartbeat interval, seconds."
    )
    influxdb_url: str = Field(
        "http://sasquatch-influxdb.sasquatch:8086",
        description="Where tasks are deployed: an InfluxDB 2.x URL, or Kapacitor's Flux task"
        " service with its base path (e.g. http://kapacitor:9092/kapacitor/v1).",
    )
    influxdb_token: SecretStr | None = Field(
        None, description="Token of the tasks API (username:password on 1.x compatibility)."
    )
    influxdb_token_file: Path | None = Field(
        None, description="File holding the tasks API token (instead of CATCHER_INFLUXDB_TOKEN)."
    )
    influxdb_org: str = Field("", description="Organization of the tasks (InfluxDB 2.x).")
    love_url: str | None = Field(
        None,
        description="LOVE-manager's producer websocket, e.g."
        " wss://summit-lsp.lsst.codes/love/manager/ws/subscription; unset, no LOVE producer.",
    )
    love_password: SecretStr | None = Field(
        None, description="LOVE-manager's PROCESS_CONNECTION_PASS."
    )
    love_password_file: Path | None = Field(
        None, description="File holding the LOVE password (instead of CATCHER_LOVE_PASSWORD)."
    )
    escalation_url: str | None = Field(
        None,
        description="SquadCast-compatible incident API (e.g. https://api.squadcast.com) for"
        " rules with alarm.escalate; incidents are POSTed to /v2/incidents/api/<key>.",
    )
    escalation_key: SecretStr | None = Field(
        None, description="Key of the incident webhook (part of its URL)."
    )
    escalation_key_file: Path | None = Field(
        None,
        description="File holding the escalation key (instead of CATCHER_ESCALATION_KEY).",
    )
    efd_url: str = Field(
        "http://sasquatch-influxdb.sasquatch:8086",
        description="InfluxDB 1.x of the EFD, read by `catcher backtest` (InfluxQL /query).",
    )
    efd_database: str = Field("efd", description="Database of the EFD's telemetry.")
    efd_username: str | None = Field(None, description="User name for the EFD, if it needs one.")
    efd_password: SecretStr | None = Field(None, description="Password for the EFD.")
    efd_password_file: Path | None = Field(
        None, description="File holding the EFD password (instead of CATCHER_EFD_PASSWORD)."
    )
    api_url: str = Field(
        "http://localhost:8080",
        description="Base URL of a worker's HTTP API, for `catcher alarms` (behind Gafaelfawr:"
        " e.g. https://summit-lsp.lsst.codes/catcher).",
    )
    api_token: SecretStr | None = Field(
        None, description="Gafaelfawr token sent by `catcher alarms` as a bearer token."
    )
    api_token_file: Path | None = Field(
        None, description="File holding the API token (instead of CATCHER_API_TOKEN)."
    )
    source_bucket: str = Field(
        "efd/autogen",
        description="Bucket the rules' tasks read (database/retention policy on InfluxDB 1.x).",
    )
    trigger_bucket: str = Field(
        "catcher/autogen", description="Bucket the tasks write trigger rows to."
    )
    trigger_measurement: str = Field(
        "catcher_triggers", description="Measurement of the trigger rows."
    )
    tasks_influxdb_url: str = Field(
        "",
        description="InfluxDB the Flux tasks read and write, named in each task with the task"
        " host's secret catcher_influxdb_token (Kapacitor's Flux tasks need it); empty: the"
        " task host's own InfluxDB (InfluxDB 2.x).",
    )
    mirror_url: str = Field(
        "http://sasquatch-influxdb.sasquatch:8086",
        description="InfluxDB the mirror reads trigger rows from (InfluxQL /query).",
    )
    mirror_interval: float = Field(10.0, gt=0, description="Seconds between two mirror polls.")
    mirror_lookback: float = Field(
        600.0, gt=0, description="How far back each poll looks for late rows, seconds."
    )
    mirror_enabled: bool = Field(False, description="Run the mirror inside the worker too.")
    poll_interval: float = Field(
        10.0, gt=0, description="Seconds between two polls of a running job."
    )
    poll_timeout: float = Field(
        3600.0,
        gt=0,
        description="Longest time an action's job may run before Catcher gives up on it, seconds.",
    )
    resume_interval: float = Field(
        15.0,
        gt=0,
        description="Seconds between two scans for unfinished actions, history events to"
        " send again and ledger entries past their retention.",
    )
    default_engine: Literal["flux", "stream"] = Field(
        "flux",
        description="Who evaluates a condition that names no engine: Flux tasks on InfluxDB,"
        " or the worker on the telemetry stream.",
    )
    stream_grace: float = Field(
        10.0,
        ge=0,
        description="Seconds a stream rule's window stays open after its end for late samples.",
    )
    alarm_scan_interval: float = Field(
        1.0,
        gt=0,
        description="Seconds between two checks for due alarm timers (auto-acknowledge,"
        " auto-unacknowledge, unmute, escalation).",
    )
    http_port: int = Field(
        8080, ge=0, le=65535, description="Port of the worker's HTTP API (0: any free port)."
    )
    metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Port serving /metrics alone (so that a NetworkPolicy can admit Prometheus"
        " there and nothing else); unset, /metrics is served beside the API.",
    )
    frame_ancestors: str = Field(
        "'self'",
        description="Pages that may embed the operator page (its Content-Security-Policy"
        " frame-ancestors), e.g. 'self' for LOVE's EmbeddedView on the same host.",
    )
    path_prefix: str = Field(
        "",
        description="Path the alarm API is served under, as the ingress forwards it (e.g."
        " /catcher); the probes and /metrics stay at the root.",
    )
    stall_timeout: float = Field(
        300.0,
        gt=0,
        description="Seconds a partition may have records waiting with none of them done"
        " before /health answers 503 (liveness: the consumer is wedged).",
    )
    telemetry_topic_prefix: str = Field(
        "",
        description="Prefix of the telemetry topics' names before the measurement (e.g."
        " summit. where MirrorMaker2 replicates the summit's lsst.sal.* topics).",
    )
    api_anonymous_user: str | None = Field(
        None,
        description="User recorded for API requests without Gafaelfawr's X-Auth-Request-User"
        " header; unset, such requests are refused (401). For local use only.",
    )
    batch_max: int = Field(
        200,
        ge=1,
        description="Most records an agent takes at once; records of different keys in a"
        " batch are handled together, those of one key in order.",
    )
    batch_wait: float = Field(
        0.01,
        gt=0,
        description="Longest wait, in seconds, for a batch to fill before it is handled.",
    )
    ledger_retention: Duration | None = Field(
        None,
        description="How long a finished action stays in the ledger (then it is tombstoned);"
        " seconds or text such as 12h. By default an hour longer than the longest a trigger"
        " can be delivered again and still run (CATCHER_MAX_TRIGGER_AGE, or an action's"
        " longer max_age); when set, it must exceed those.",
    )
    max_trigger_age: Duration = Field(
        timedelta(hours=6),
        description="An action whose trigger is older than this is recorded as expired and"
        " not run (an action's max_age overrides it); seconds or text such as 6h.",
    )
    concurrency: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_CONCURRENCY),
        description="Most calls in flight per service, as JSON by action type, e.g."
        ' {"webhook": 32, "ocps": 8}; types not named keep their default'
        " (webhook 32, others 8).",
    )
    data_dir: Path = Field(
        default_factory=lambda: Path(tempfile.gettempdir()) / "catcher",
        description="Scratch directory of the stream engine (default: catcher under the"
        " temporary directory); state itself lives in Kafka.",
    )
    log_profile: LogProfile = Field(
        LogProfile.production, description="production or development."
    )
    log_level: LogLevel = Field(
        LogLevel.INFO, description="Log level: DEBUG, INFO, WARNING or ERROR."
    )
    kafka: KafkaConnectionSettings = Field(
        default_factory=KafkaConnectionSettings, description="Kafka connection (KAFKA_*)."
    )
    retry: RetrySettings = Field(
        default_factory=RetrySettings, description="Retry policy (CATCHER_RETRY_*)."
    )
    services: dict[str, SkipValidation[ServiceSettings]] = Field(
        default_factory=_service_settings,
        description="The settings of each action type's service, by type"
        " (CATCHER_NOTEBURST_*, CATCHER_OCPS_*, ...; declared by the executors).",
    )

    secret_fields: ClassVar[tuple[str, ...]] = (
        "influxdb_token",
        "api_token",
        "love_password",
        "escalation_key",
        "efd_password",
    )
    nested: ClassVar[tuple[str, ...]] = ("kafka", "retry", "services")

    @model_validator(mode="after")
    def _read_secret_files(self) -> Self:
        read_secret_files(self, self.secret_fields, "CATCHER_")
        return self

    @model_validator(mode="before")
    @classmethod
    def _level_upper(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("log_level"), str):
            data["log_level"] = data["log_level"].strip().upper()
        return data

    @model_validator(mode="after")
    def _check_prefix(self) -> Self:
        prefix = self.path_prefix.rstrip("/")
        if prefix and (not prefix.startswith("/") or any(c in prefix for c in "{}?#% ")):
            raise ValueError(
                f"CATCHER_PATH_PREFIX {self.path_prefix!r} is not a path such as /catcher."
            )
        self.path_prefix = prefix
        return self

    @model_validator(mode="after")
    def _check_bounds(self) -> Self:
        if self.ledger_retention is not None and self.ledger_retention <= self.max_trigger_age:
            raise ValueError(
                "Set CATCHER_LEDGER_RETENTION longer than CATCHER_MAX_TRIGGER_AGE: a trigger"
                " delivered again after its finished action left the ledger would run it twice."
            )
        unknown = sorted(set(self.concurrency) - set(ACTION_TYPES))
        if unknown:
            raise ValueError(
                f"CATCHER_CONCURRENCY names unknown action types {', '.join(unknown)};"
                f" use {', '.join(ACTION_TYPES)}."
            )
        if any(n < 1 for n in self.concurrency.values()):
            raise ValueError("CATCHER_CONCURRENCY values must be at least 1.")
        self.concurrency = {**DEFAULT_CONCURRENCY, **self.concurrency}
        return self

    def secret_values(self) -> list[str]:
        """Every secret this configuration holds (tokens, passwords)."""
        found = secret_values_of(self, self.secret_fields)
        found += secret_values_of(self.kafka, ("sasl_password",))
        for settings in self.services.values():
            found += settings.secret_values()
        return found

    def service(self, action_type: str) -> ServiceSettings | None:
        """The settings of an action type's service (None: the type has none)."""
        return self.services.get(action_type)

    def topic_name(self, topic: Topic) -> str:
        """The broker's name of a topic of the catalogue (:mod:`catcher.topics`)."""
        return topic.full_name(self.topic_prefix, self.app_id)

    def telemetry_topic(self, measurement: str) -> str:
        """The topic a stream rule's measurement is read from (the EFD's name, prefixed)."""
        return f"{self.telemetry_topic_prefix}{measurement}"

    @property
    def triggers_topic(self) -> str:
        """Topic of trigger records."""
        return self.topic_name(topics.TRIGGERS)

    @property
    def actions_topic(self) -> str:
        """Topic of action history events."""
        return self.topic_name(topics.ACTIONS)

    @property
    def deadletter_topic(self) -> str:
        """Topic of dead letters."""
        return self.topic_name(topics.DEADLETTER)

    @property
    def alarms_topic(self) -> str:
        """Alarm states, keyed by alarm name (compacted)."""
        return self.topic_name(topics.ALARMS)

    @property
    def mirror_topic(self) -> str:
        """The mirror's checkpoint (compacted, one key)."""
        return self.topic_name(topics.MIRROR)

    @property
    def silences_topic(self) -> str:
        """Silences (maintenance windows), keyed by id (compacted)."""
        return self.topic_name(topics.SILENCES)

    @property
    def rule_states_topic(self) -> str:
        """Compacted topic of rules' alarms disabled or enabled at run time."""
        return self.topic_name(topics.RULE_STATES)

    @property
    def series_topic(self) -> str:
        """Internal topic of triggers keyed by series."""
        return self.topic_name(topics.SERIES)

    @property
    def action_requests_topic(self) -> str:
        """Internal topic of planned actions keyed by action_id."""
        return self.topic_name(topics.ACTION_REQUESTS)

    @property
    def samples_topic(self) -> str:
        """Internal topic of telemetry samples keyed by series (stream rules)."""
        return self.topic_name(topics.SAMPLES)

    def changelog_topic(self, table: str) -> str:
        """The changelog topic of one of the worker's tables (Faust names it so)."""
        return f"{self.app_id}-{table}-changelog"

    def retention_for(self, longest_max_age: timedelta | None) -> timedelta:
        """How long finished actions stay in the ledger, given the rules' longest max_age."""
        if self.ledger_retention is not None:
            return self.ledger_retention
        return max(self.max_trigger_age, longest_max_age or timedelta(0)) + RETENTION_MARGIN

    @staticmethod
    def worker_topics(*, stream: bool) -> list[Topic]:
        """The topics the worker uses; ``stream``: it evaluates stream rules."""
        return [t for t in topics.CATALOGUE if stream or not t.stream_only]


def setting_names_all() -> list[str]:
    """The environment variable of every setting, nested ones included."""
    names = setting_names(Config, skip=Config.nested)
    names += setting_names(RetrySettings) + setting_names(KafkaConnectionSettings)
    for executor in EXECUTORS:
        if executor.settings_class is not None:
            names += setting_names(executor.settings_class)
    return names


def load_config(**overrides: Any) -> Config:
    """Read the configuration from the environment, raising ConfigError with one message."""
    nested: dict[str, tuple[type[BaseSettings], str]] = {
        "kafka": (KafkaConnectionSettings, "KAFKA_*"),
        "retry": (RetrySettings, "CATCHER_RETRY_*"),
    }
    for name, (settings_class, prefix) in nested.items():
        if name in overrides:
            continue
        try:
            overrides[name] = settings_class()
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, prefix)) from None
    if "services" not in overrides:
        overrides["services"] = {}
        for executor in EXECUTORS:
            if executor.settings_class is None:
                continue
            try:
                overrides["services"][executor.type] = executor.settings_class()
            except ValidationError as exc:
                prefix = executor.settings_class.prefix() + "*"
                raise ConfigError(format_validation_error(exc, prefix)) from None
    try:
        config = Config(**overrides)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "CATCHER_*")) from None
    secrets.register(*config.secret_values())
    return config
