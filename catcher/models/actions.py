"""What a rule does when it fires: one model per action type.

A rule's ``actions`` list holds these, told apart by ``type``. Each type has its executor
(with the settings of its service) in :mod:`catcher.actions`.
"""

from __future__ import annotations

import json
import math
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .durations import Duration
from .enums import Edge, Severity, SeverityField
from .templates import check_template, placeholders_in

__all__ = [
    "ACTION_TYPES",
    "Action",
    "ActionBase",
    "ActionCondition",
    "AnyAction",
    "NoteburstAction",
    "OcpsAction",
    "TimesSquareAction",
    "WebhookAction",
]

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ActionCondition(BaseModel):
    """When an action runs: a minimum severity and an edge."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    severity: SeverityField = Field(
        Severity.WARNING,
        description="Minimum severity. Rising: the new severity must reach it. Falling: the"
        " previous severity must have reached it.",
    )
    edge: Edge = Field(
        Edge.rising,
        description="rising: severity went up to at least `severity`; falling: severity went"
        " down from at least `severity` (a recovery); any: either.",
    )


class ActionBase(BaseModel):
    """Fields every action has."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    name: str | None = Field(
        None,
        description="Name of the action, unique in its rule (default: its type). Lowercase"
        " letters, digits, - and _.",
    )
    on: ActionCondition = Field(default_factory=ActionCondition)
    cooldown: Duration = Field(
        timedelta(0),
        description="After the action starts for a series, do not start it again for that"
        " series until this much trigger time has passed.",
    )
    max_age: Duration | None = Field(
        None,
        description="Do not run the action for a trigger older than this when it reaches the"
        " worker; record it as expired (default: CATCHER_MAX_TRIGGER_AGE).",
    )

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.fullmatch(value):
            raise ValueError(
                "use 1 to 63 lowercase letters, digits, - and _, starting with a letter or digit"
            )
        return value

    def templates(self) -> dict[str, Any]:
        """Parameters that may hold placeholders, by field name."""
        return {}

    @model_validator(mode="after")
    def _check_templates(self) -> Self:
        problems: list[str] = []
        for field, value in self.templates().items():
            problems.extend(f"{field}: {p}" for p in _not_json(value))
            for path, text in placeholders_in(value):
                problems.extend(
                    f"{field}{'.' + path if path else ''}: {p}" for p in check_template(text)
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _not_json(value: Any, where: str = "") -> list[str]:
    """What in a value JSON cannot carry: NaN and infinite numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{where or 'value'}: {value} is not a number JSON can carry"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _not_json(v, f"{where}.{k}".lstrip("."))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _not_json(v, f"{where}[{i}]")]
    return []


EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=255)]
"""The name of an environment variable."""


class WebhookAction(ActionBase):
    """POST a JSON body to a URL (Slack incoming webhooks and the like)."""

    type: Literal["webhook"]
    url: str | None = Field(None, description="The URL, when it is not a secret.")
    url_env: EnvName | None = Field(None, description="Environment variable holding the URL.")
    url_file: Path | None = Field(None, description="Mounted file holding the URL.")
    token_env: EnvName | None = Field(
        None, description="Environment variable holding a bearer token to send, if any."
    )
    body: Any = Field(
        default_factory=lambda: {"text": "{rule_id} is {severity}: {reason}"},
        description="JSON body; strings may hold placeholders.",
    )
    timeout: Duration | None = Field(None, description="Timeout of one attempt.")

    @model_validator(mode="after")
    def _one_url(self) -> Self:
        given = [n for n in ("url", "url_env", "url_file") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of url, url_env (an environment variable) or url_file"
                f" (a mounted file); got {', '.join(given) or 'none'}"
            )
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {self.url!r}")
        return self

    def templates(self) -> dict[str, Any]:
        """The body may hold placeholders."""
        return {"body": self.body}


class NoteburstAction(ActionBase):
    """Run a notebook with noteburst, with parameters filled from the trigger."""

    type: Literal["noteburst"]
    notebook: Path = Field(description="The .ipynb file, relative to the rules file.")
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="Values assigned in a cell after the notebook's `parameters` cell.",
    )
    kernel_name: str = Field("LSST", description="Jupyter kernel to run the notebook with.")
    timeout: Duration = Field(
        timedelta(minutes=5), description="Time noteburst allows the notebook to run."
    )
    enable_retry: bool = Field(True, description="Let noteburst retry a failed start.")
    notebook_content: dict[str, Any] = Field(
        default_factory=dict, exclude=True, repr=False, description="Loaded notebook."
    )

    @field_validator("parameters")
    @classmethod
    def _identifiers(cls, value: dict[str, Any]) -> dict[str, Any]:
        bad = [k for k in value if not k.isidentifier()]
        if bad:
            raise ValueError(f"parameter names must be Python identifiers: {', '.join(bad)}")
        return value

    @model_validator(mode="after")
    def _load_notebook(self, info: ValidationInfo) -> Self:
        if self.notebook_content:
            return self
        base = Path((info.context or {}).get("base_dir", "."))
        path = self.notebook if self.notebook.is_absolute() else base / self.notebook
        try:
            content = json.loads(path.read_text())
        except OSError as exc:
            raise ValueError(f"cannot read notebook {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"notebook {path} is not JSON: {exc}") from None
        if not isinstance(content, dict) or not isinstance(content.get("cells"), list):
            raise ValueError(f"notebook {path} has no list of cells; is it an .ipynb file?")
        self.notebook = path
        self.notebook_content = content
        return self

    def templates(self) -> dict[str, Any]:
        """The parameters may hold placeholders."""
        return {"parameters": self.parameters}


OCPS_COMMAND = "cd $JOB_SOURCE_DIR && bash bin/pipetask.sh"
"""The command the OCPS CSC runs: uws_scripts' pipetask wrapper."""
OCPS_SCRIPTS_URL = "https://github.com/lsst-dm/uws_scripts"


class OcpsAction(ActionBase):
    """Run a pipeline through the OCPS execution service (uws-api-server).

    The defaults send what the OCPS CSC sends: the uws_scripts pipetask wrapper, with the
    job's environment taken from the fields below. Every string may hold placeholders.
    """

    type: Literal["ocps"]
    pipeline_url: str = Field(description="PIPELINE_URL: URL of the pipeline YAML.")
    butler_repo: str = Field(description="BUTLER_REPO: path or URI of the Butler repository.")
    data_query: str = Field(description="DATA_QUERY: the data query for pipetask run.")
    image_tag: str = Field("w_latest", description="IMAGE_TAG: Science Pipelines image tag.")
    run_options: str = Field(
        "", description="RUN_OPTIONS: extra pipetask run options, e.g. -i <input collection>."
    )
    output_glob: str = Field("*", description="OUTPUT_GLOB: output dataset types to report.")
    environment: dict[str, str] = Field(
        default_factory=dict, description="More environment variables for the job."
    )
    command: str = Field(OCPS_COMMAND, description="Command the job container runs.")
    git_url: str = Field(OCPS_SCRIPTS_URL, description="Git repository the job clones.")
    commit_ref: str = Field("main", description="Branch or commit of git_url.")
    replicas: int = Field(1, ge=1, description="Parallel job containers.")
    max_runtime: Duration = Field(
        timedelta(hours=2),
        description="Longest the job may run; past it Catcher aborts it and fails the action.",
    )

    @field_validator("environment")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [k for k in value if not _ENV_NAME.fullmatch(k)]
        if bad:
            raise ValueError(f"environment variable names are invalid: {', '.join(bad)}")
        return value

    def job_environment(self) -> dict[str, str]:
        """The environment sent to the job, before placeholders are filled."""
        return {
            "IMAGE_TAG": self.image_tag,
            "PIPELINE_URL": self.pipeline_url,
            "BUTLER_REPO": self.butler_repo,
            "RUN_OPTIONS": self.run_options,
            "OUTPUT_GLOB": self.output_glob,
            "DATA_QUERY": self.data_query,
            **self.environment,
        }

    def templates(self) -> dict[str, Any]:
        """The job's environment, command and git reference may hold placeholders."""
        return {
            "environment": self.job_environment(),
            "command": self.command,
            "git_url": self.git_url,
            "commit_ref": self.commit_ref,
        }


class TimesSquareAction(ActionBase):
    """Compute a Times Square page for a parameter set and publish its HTML."""

    type: Literal["times_square"]
    page: str = Field(min_length=1, description="Name of the Times Square page.")
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="Page parameters. Times Square computes a parameter set once, so include"
        " the trigger id or window when each trigger must get its own report.",
    )
    force_rerun: bool = Field(
        False, description="Drop a cached result for the same parameters and compute again."
    )

    @field_validator("page")
    @classmethod
    def _page_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value):
            raise ValueError("a page name has letters, digits, '.', '-' and '_' only")
        return value

    def templates(self) -> dict[str, Any]:
        """The parameters may hold placeholders."""
        return {"parameters": self.parameters}


AnyAction = WebhookAction | NoteburstAction | OcpsAction | TimesSquareAction
Action = Annotated[AnyAction, Field(discriminator="type")]
ACTION_TYPES: tuple[str, ...] = tuple(
    get_args(model.model_fields["type"].annotation)[0] for model in get_args(AnyAction)
)
"""The ``type`` of each action model, in the order of :data:`AnyAction`."""
