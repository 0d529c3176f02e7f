"""The rules language: YAML files of rules, each with actions to run when it fires."""

from __future__ import annotations

import itertools
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from ..exceptions import RuleError
from .alarms import AlarmSettings
from .durations import Duration, parse_duration
from .enums import Edge, Severity
from .templates import check_template, placeholders_in

__all__ = [
    "ACTION_TYPES",
    "AGGREGATES",
    "Action",
    "ActionCondition",
    "AlarmSettings",
    "AnyAction",
    "Condition",
    "Deadman",
    "Duration",
    "NoteburstAction",
    "OcpsAction",
    "Rule",
    "RuleSet",
    "RulesFile",
    "Schedule",
    "Source",
    "Thresholds",
    "TimesSquareAction",
    "WebhookAction",
    "parse_duration",
]


_NAME = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,62})$")
_ID = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,127})$")


def _severity(value: Any) -> Any:
    return Severity.parse(value) if isinstance(value, str) else value


class ActionCondition(BaseModel):
    """When an action runs: a minimum severity and an edge."""

    model_config = ConfigDict(extra="forbid")

    severity: Annotated[Severity, BeforeValidator(_severity)] = Field(
        Severity.WARNING,
        description="Minimum severity. Rising: the new severity must reach it. Falling: the"
        " previous severity must have reached it.",
    )
    edge: Edge = Field(
        Edge.rising,
        description="rising: severity went up to at least `severity`; falling: severity went"
        " down from at least `severity` (a recovery); any: either.",
    )


class _ActionBase(BaseModel):
    """Fields every action has."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

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
        if value is not None and not _NAME.match(value):
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
            for path, text in placeholders_in(value):
                problems.extend(
                    f"{field}{'.' + path if path else ''}: {p}" for p in check_template(text)
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self


class WebhookAction(_ActionBase):
    """POST a JSON body to a URL (Slack incoming webhooks and the like)."""

    type: Literal["webhook"]
    url: str | None = Field(None, description="The URL, when it is not a secret.")
    url_env: str | None = Field(None, description="Environment variable holding the URL.")
    url_file: Path | None = Field(None, description="Mounted file holding the URL.")
    token_env: str | None = Field(
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


class NoteburstAction(_ActionBase):
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


class OcpsAction(_ActionBase):
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
        bad = [k for k in value if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k)]
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


class TimesSquareAction(_ActionBase):
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
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", value):
            raise ValueError("a page name has letters, digits, '.', '-' and '_' only")
        return value

    def templates(self) -> dict[str, Any]:
        """The parameters may hold placeholders."""
        return {"parameters": self.parameters}


AnyAction = WebhookAction | NoteburstAction | OcpsAction | TimesSquareAction
Action = Annotated[AnyAction, Field(discriminator="type")]
ACTION_TYPES = ("webhook", "noteburst", "ocps", "times_square")


Aggregate = Literal[
    "mean", "min", "max", "last", "first", "count", "sum", "stddev", "spread", "median"
]
AGGREGATES: tuple[str, ...] = get_args(Aggregate)


RESERVED_TAGS = frozenset(
    {
        "rule_id",
        "trigger_id",
        "severity",
        "severity_level",
        "reason",
        "value",
        "window_start",
        "window_stop",
        "source",
        "kind",
        "x",
        "level",
        "held",
        "hasValue",
        "hasHeld",
        "previousLevel",
    }
)
"""Column names the compiled tasks use; tags cannot have them."""


class Source(BaseModel):
    """Which EFD series a condition reads."""

    model_config = ConfigDict(extra="forbid")

    measurement: str = Field(min_length=1, description="Measurement (topic), e.g. lsst.sal...")
    field: str = Field(min_length=1, description="Field to evaluate.")
    tags: dict[str, str] = Field(
        default_factory=dict, description="Tag filters: only points with these tag values."
    )
    group_by: list[str] = Field(
        default_factory=list,
        description="Tags that tell series apart (e.g. salIndex): one trigger per series.",
    )

    @field_validator("group_by")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("group_by names a tag twice")
        return value

    @model_validator(mode="after")
    def _tag_names(self) -> Self:
        for name in [*self.tags, *self.group_by]:
            if not name or name.startswith("_") or name in RESERVED_TAGS:
                raise ValueError(
                    f"tag name {name!r} is reserved: Catcher's trigger rows use"
                    f" {', '.join(sorted(RESERVED_TAGS))} and names starting with _"
                )
        return self


class Thresholds(BaseModel):
    """The Watcher's threshold levels.

    A level is entered once the value reaches it, and left once the value is back past it by
    ``hysteresis``.
    """

    model_config = ConfigDict(extra="forbid")

    warning: float | None = Field(None, description="Level of WARNING.")
    serious: float | None = Field(None, description="Level of SERIOUS.")
    critical: float | None = Field(None, description="Level of CRITICAL.")
    big_is_bad: bool = Field(True, description="True: high values are bad; false: low ones.")
    hysteresis: float = Field(0.0, ge=0, description="How far back past a level to leave it.")
    held_for: Duration | None = Field(
        None, description="Only raise a level the value has held for this long."
    )

    def levels(self) -> list[tuple[Severity, float]]:
        """(severity, level) from the most severe, for the levels that are set."""
        found = [
            (Severity.CRITICAL, self.critical),
            (Severity.SERIOUS, self.serious),
            (Severity.WARNING, self.warning),
        ]
        return [(s, v) for s, v in found if v is not None]

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        levels = self.levels()
        if not levels:
            raise ValueError("set at least one of warning, serious and critical")
        for (high, high_value), (low, low_value) in itertools.pairwise(levels):
            worse = high_value > low_value if self.big_is_bad else high_value < low_value
            if not worse:
                direction = "above" if self.big_is_bad else "below"
                raise ValueError(
                    f"{high.name.lower()} ({high_value:g}) must be {direction}"
                    f" {low.name.lower()} ({low_value:g}) when big_is_bad is"
                    f" {str(self.big_is_bad).lower()}"
                )
        if self.held_for is not None and self.held_for <= timedelta(0):
            raise ValueError("held_for must be longer than zero")
        return self


class Deadman(BaseModel):
    """No data for ``timeout`` raises ``severity``."""

    model_config = ConfigDict(extra="forbid")

    timeout: Duration = Field(description="How long without data before the alarm.")
    severity: Annotated[Severity, BeforeValidator(_severity)] = Field(
        Severity.SERIOUS, description="Severity when the data stops."
    )
    lookback: Duration = Field(
        timedelta(days=1),
        description="How far back to look for series; a series silent for longer is forgotten.",
    )

    @model_validator(mode="after")
    def _sensible(self) -> Self:
        if self.timeout <= timedelta(0):
            raise ValueError("timeout must be longer than zero")
        if self.severity == Severity.NONE:
            raise ValueError("severity must be WARNING, SERIOUS or CRITICAL")
        if self.lookback <= self.timeout:
            raise ValueError("lookback must be longer than timeout")
        return self


class Condition(BaseModel):
    """What a rule evaluates: a window of a source, aggregated, then thresholds or a deadman."""

    model_config = ConfigDict(extra="forbid")

    source: Source
    window: Duration = Field(timedelta(minutes=1), description="Evaluated window of data.")
    aggregate: Aggregate = Field("mean", description="How the window's points become one value.")
    thresholds: Thresholds | None = None
    deadman: Deadman | None = None
    engine: Literal["flux", "stream"] | None = Field(
        None,
        description="Who evaluates the condition: a Flux task on InfluxDB, or the worker on"
        " the telemetry stream (default: CATCHER_DEFAULT_ENGINE).",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if (self.thresholds is None) == (self.deadman is None):
            raise ValueError("give exactly one of thresholds or deadman")
        if self.window <= timedelta(0):
            raise ValueError("window must be longer than zero")
        return self

    def samples_span(self) -> timedelta:
        """How far before an evaluation its samples count: the window or ``held_for``."""
        held_for = self.thresholds.held_for if self.thresholds else None
        return max(self.window, held_for or timedelta(0))

    def history_needed(self) -> timedelta:
        """How much data before the first evaluation a reader of the past must fetch.

        The samples' span, or the deadman's lookback (how far back the last sample is
        looked for), whichever is longer.
        """
        lookback = self.deadman.lookback if self.deadman else timedelta(0)
        return max(self.samples_span(), lookback)


class Schedule(BaseModel):
    """When a rule's task runs."""

    model_config = ConfigDict(extra="forbid")

    every: Duration = Field(timedelta(minutes=1), description="How often the task runs.")
    offset: Duration = Field(
        timedelta(0), description="Delay after each period, to let late data arrive."
    )

    @model_validator(mode="after")
    def _positive(self) -> Self:
        if self.every <= timedelta(0):
            raise ValueError("every must be longer than zero")
        return self


class Rule(BaseModel):
    """A rule: what it watches (its condition, run on a schedule) and what to do when it fires."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Unique id of the rule.")
    description: str = Field(min_length=1, description="What the rule watches, for people.")
    owner: str | None = Field(None, description="Who to ask about the rule.")
    condition: Condition | None = Field(
        None, description="What the rule evaluates; without one it only fires by hand."
    )
    schedule: Schedule = Field(default_factory=Schedule)
    actions: list[Action] = Field(default_factory=list)
    alarm: AlarmSettings = Field(
        default_factory=AlarmSettings,
        description="The rule's alarms (one per series): timers and escalation.",
    )

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError(
                "use 1 to 128 letters, digits, '.', '-' and '_', starting with a letter or digit"
            )
        return value

    @model_validator(mode="after")
    def _name_actions(self) -> Self:
        seen: set[str] = set()
        for action in self.actions:
            action.name = action.name or action.type
            if action.name in seen:
                raise ValueError(
                    f"two actions are named {action.name!r}; give each a distinct `name`"
                )
            seen.add(action.name)
        return self

    def engine(self, default: str = "flux") -> str | None:
        """Who evaluates the rule: ``flux``, ``stream``, or None for a rule fired by hand."""
        if self.condition is None:
            return None
        return self.condition.engine or default

    def action(self, name: str) -> AnyAction | None:
        """The action with this name, if the rule has it."""
        return next((a for a in self.actions if a.name == name), None)


class RulesFile(BaseModel):
    """One rules YAML file: ``rules:`` followed by a list of rules."""

    model_config = ConfigDict(extra="forbid")

    rules: list[Rule]


class _RulesLoader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false, so that the key ``on`` stays the string "on"."""


_RulesLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_RulesLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def _describe(error: ErrorDetails, raw: Any, path: Path) -> str:
    loc = list(error["loc"])
    where = str(path)
    if loc[:1] == ["rules"] and len(loc) > 1 and isinstance(loc[1], int):
        index = loc[1]
        rule_id = None
        if isinstance(raw, dict) and isinstance(raw.get("rules"), list):
            rules = raw["rules"]
            if index < len(rules) and isinstance(rules[index], dict):
                rule_id = rules[index].get("id")
        where += f": rule {rule_id!r}" if rule_id else f": rule #{index + 1}"
        loc = loc[2:]
        # Drop the discriminator tag pydantic inserts (actions.1.webhook.url -> actions[1].url).
        if loc[:1] == ["actions"] and set(loc[2:3]) & set(ACTION_TYPES):
            loc = loc[:2] + loc[3:]
    field = ""
    for part in loc:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {field}: {message}" if field else f"{where}: {message}"


class RuleSet:
    """All rules Catcher knows, by id."""

    def __init__(self, rules: list[Rule], sources: dict[str, Path] | None = None) -> None:
        self.rules = {r.id: r for r in rules}
        self.sources = sources or {}

    def __len__(self) -> int:
        return len(self.rules)

    def get(self, rule_id: str) -> Rule | None:
        """The rule with this id, if any."""
        return self.rules.get(rule_id)

    def action(self, rule_id: str, name: str) -> AnyAction | None:
        """A rule's action by name; None when the rule or the action is gone."""
        rule = self.rules.get(rule_id)
        return rule.action(name) if rule else None

    def by_engine(self, engine: str, default: str) -> list[Rule]:
        """The rules that ``engine`` evaluates (``default`` for rules that do not say)."""
        return [rule for rule in self.rules.values() if rule.engine(default) == engine]

    @staticmethod
    def load_file(path: Path) -> list[Rule]:
        """Rules of one YAML file; raises RuleError with every problem in it."""
        try:
            raw = yaml.load(path.read_text(), Loader=_RulesLoader)  # noqa: S506 - a SafeLoader
        except OSError as exc:
            raise RuleError(f"{path}: cannot read the rules file: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise RuleError(f"{path}: not valid YAML: {exc}") from None
        try:
            parsed = RulesFile.model_validate(raw, context={"base_dir": path.parent})
        except ValidationError as exc:
            problems = [_describe(e, raw, path) for e in exc.errors()]
            raise RuleError("\n".join(problems)) from None
        return parsed.rules

    @classmethod
    def from_path(cls, path: Path) -> RuleSet:
        """Rules of a file, or of every *.yaml / *.yml file in a directory."""
        if path.is_dir():
            files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
            if not files:
                raise RuleError(f"{path}: no *.yaml or *.yml rules files in this directory")
        elif path.exists():
            files = [path]
        else:
            raise RuleError(f"{path}: no such rules file or directory")
        rules: list[Rule] = []
        sources: dict[str, Path] = {}
        problems: list[str] = []
        for file in files:
            try:
                loaded = cls.load_file(file)
            except RuleError as exc:
                problems.append(str(exc))
                continue
            for rule in loaded:
                if rule.id in sources:
                    problems.append(
                        f"{file}: rule {rule.id!r}: id: already defined in {sources[rule.id]}"
                    )
                    continue
                sources[rule.id] = file
                rules.append(rule)
        if problems:
            raise RuleError("\n".join(problems))
        return cls(rules, sources)
