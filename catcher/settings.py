"""Building blocks of Catcher's settings: secrets from mounted files, one error message.

A secret setting ``X`` may instead be given as a file, ``X_FILE`` (a mounted Kubernetes
secret); giving both is an error. :class:`ServiceSettings` is the base of the settings of
one external service an action type calls (``CATCHER_<SERVICE>_*``); each executor declares
its own, next to the code that uses them.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self

from pydantic import SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ServiceSettings", "format_validation_error", "read_secret_files", "setting_names"]


def read_secret_files(settings: BaseSettings, fields: tuple[str, ...], prefix: str) -> None:
    """Fill each secret field from its ``<field>_file`` when that is set."""
    for field in fields:
        path: Path | None = getattr(settings, f"{field}_file")
        if path is None:
            continue
        name = f"{prefix}{field.upper()}"
        if getattr(settings, field) is not None:
            raise ValueError(f"Set {name} or {name}_FILE, not both.")
        try:
            secret = path.read_text().strip()
        except OSError as exc:
            raise ValueError(f"Cannot read {name}_FILE {path}: {exc.strerror}.") from None
        setattr(settings, field, SecretStr(secret))


def secret_values_of(settings: BaseSettings, fields: tuple[str, ...]) -> list[str]:
    """The values of the secret fields that are set."""
    found = [getattr(settings, field) for field in fields]
    return [s.get_secret_value() for s in found if s is not None]


def setting_names(settings_class: type[BaseSettings], *, skip: tuple[str, ...] = ()) -> list[str]:
    """The environment variable of each field of a settings class (without nested ones)."""
    prefix = settings_class.model_config.get("env_prefix", "")
    return [f"{prefix}{name.upper()}" for name in settings_class.model_fields if name not in skip]


def format_validation_error(error: ValidationError, source: str) -> str:
    """One readable message for a settings validation error; ``source``: e.g. CATCHER_*."""
    lines = [f"Invalid configuration ({source}):"]
    for item in error.errors():
        loc = "_".join(str(p) for p in item["loc"])
        msg = item["msg"].removeprefix("Value error, ")
        lines.append(f"  {source.removesuffix('*')}{loc.upper()}: {msg}" if loc else f"  {msg}")
    return "\n".join(lines)


class ServiceSettings(BaseSettings):
    """Settings of the external service behind one action type (``CATCHER_<SERVICE>_*``)."""

    model_config = SettingsConfigDict(extra="ignore")

    secret_fields: ClassVar[tuple[str, ...]] = ()
    """Fields that hold secrets: never logged, and readable from ``<NAME>_FILE``."""

    @classmethod
    def prefix(cls) -> str:
        """The prefix of this service's environment variables."""
        return cls.model_config.get("env_prefix", "")

    @model_validator(mode="after")
    def _read_secret_files(self) -> Self:
        read_secret_files(self, self.secret_fields, self.prefix())
        return self

    def secret_values(self) -> list[str]:
        """Every secret these settings hold."""
        return secret_values_of(self, self.secret_fields)
