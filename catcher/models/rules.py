"""The rules language: YAML files of rules, each with actions to run when it fires."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from ..exceptions import RuleError
from .actions import (
    ACTION_TYPES,
    Action,
    AnyAction,
)
from .alarms import AlarmSettings, Escalation, EscalationRoute
from .conditions import Condition, Schedule

__all__ = ["Rule", "RuleSet", "RulesFile"]


_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


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
        if not _ID.fullmatch(value):
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
    """One rules YAML file: ``rules:``, a list of rules, and an ``escalation:`` table.

    The table (optional) pages responders for alarms by name glob; the first match wins.
    """

    model_config = ConfigDict(extra="forbid")

    rules: list[Rule]
    escalation: list[EscalationRoute] = Field(default_factory=list)


MAX_ROUTES_CACHED = 100_000
"""Alarm names whose escalation route is remembered (then the memory starts again)."""

MAX_RULES_FILE = 1 << 20
"""Largest rules file read, in bytes."""

MAX_YAML_DEPTH = 32
"""Deepest nesting of lists and mappings in a rules file."""


class _RulesLoader(yaml.SafeLoader):
    """A safe loader for rules files, with bounded work whatever the file holds.

    - YAML 1.2 booleans: only true/false, so that the key ``on`` stays the string "on";
    - no aliases (``*name``): one line of them can expand to gigabytes;
    - no duplicate keys: YAML would keep the last one silently;
    - at most :data:`MAX_YAML_DEPTH` levels of nesting.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None,
                None,
                f"aliases (*{event.anchor}) are not allowed in rules files: write the text out",
                event.start_mark,
            )
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"nested more than {MAX_YAML_DEPTH} levels deep",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        keys: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool) and key in keys:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice", key_node.start_mark
                )
            keys.add(key)
        return super().construct_mapping(node, deep=deep)


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
    if error["type"] == "union_tag_not_found":
        message = f"an action needs a type: one of {', '.join(ACTION_TYPES)}"

    return f"{where}: {field}: {message}" if field else f"{where}: {message}"


def _rules_files(paths: Sequence[Path]) -> tuple[list[Path], list[str]]:
    """The files the paths name (a directory's *.yaml and *.yml), and what is wrong."""
    files: list[Path] = []
    problems: list[str] = []
    for path in paths:
        if path.is_dir():
            found = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
            if not found:
                problems.append(f"{path}: no *.yaml or *.yml rules files in this directory")
            files += found
        elif path.exists():
            files.append(path)
        else:
            problems.append(f"{path}: no such rules file or directory")
    return files, problems


class RuleSet:
    """All rules Catcher knows, by id."""

    def __init__(
        self,
        rules: list[Rule],
        sources: dict[str, Path] | None = None,
        escalation: list[EscalationRoute] | None = None,
    ) -> None:
        self.rules = {r.id: r for r in rules}
        self.sources = sources or {}
        self.escalation = escalation or []
        """The escalation tables of the files, in file order: the first match wins."""
        self._routes: dict[str, Escalation | None] = {}

    def alarm_settings(self, rule_id: str, name: str) -> AlarmSettings | None:
        """One alarm's settings (None for an unknown rule).

        Its rule's block, escalated by the escalation table when the rule has no
        ``escalate`` of its own.
        """
        rule = self.rules.get(rule_id)
        if rule is None:
            return None
        if rule.alarm.escalate is not None or not self.escalation:
            return rule.alarm
        if name not in self._routes:
            if len(self._routes) > MAX_ROUTES_CACHED:
                self._routes.clear()
            found = next((r for r in self.escalation if r.covers(name)), None)
            self._routes[name] = found.escalation() if found else None
        route = self._routes[name]
        return rule.alarm if route is None else rule.alarm.model_copy(update={"escalate": route})

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
    def _read(path: Path) -> str:
        """The text of a rules file: UTF-8, and not larger than :data:`MAX_RULES_FILE`."""
        try:
            with path.open("rb") as file:
                data = file.read(MAX_RULES_FILE + 1)
        except OSError as exc:
            raise RuleError(f"{path}: cannot read the rules file: {exc.strerror}") from None
        if len(data) > MAX_RULES_FILE:
            raise RuleError(f"{path}: a rules file is at most {MAX_RULES_FILE // 1024} KiB")
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:
            raise RuleError(
                f"{path}: not UTF-8 text (a binary file?): byte {exc.start} cannot be read"
            ) from None
        if "\x00" in text:
            raise RuleError(f"{path}: not a text file (it holds NUL characters)")
        return text

    @staticmethod
    def load_file(path: Path) -> list[Rule]:
        """Rules of one YAML file; raises RuleError with every problem in it."""
        return RuleSet.parse_file(path).rules

    @staticmethod
    def parse_file(path: Path) -> RulesFile:
        """One YAML file (rules and escalation table); raises RuleError with every problem."""
        text = RuleSet._read(path)
        try:
            raw = yaml.load(text, Loader=_RulesLoader)  # noqa: S506 - a SafeLoader
        except yaml.YAMLError as exc:
            detail = str(exc).replace('in "<unicode string>", ', "at ")
            raise RuleError(f"{path}: not valid YAML: {detail}") from None
        except RecursionError:
            raise RuleError(f"{path}: nested too deeply to read") from None
        if raw is None:
            raise RuleError(f"{path}: the file is empty; write `rules:` and a list of rules")
        try:
            parsed = RulesFile.model_validate(raw, context={"base_dir": path.parent})
        except ValidationError as exc:
            problems = [_describe(e, raw, path) for e in exc.errors()]
            raise RuleError("\n".join(problems)) from None
        return parsed

    @classmethod
    def from_path(cls, path: Path) -> RuleSet:
        """Rules of a file, or of every *.yaml / *.yml file in a directory."""
        return cls.from_paths([path])

    @classmethod
    def from_paths(cls, paths: Sequence[Path]) -> RuleSet:
        """Rules of files and directories; a file given twice, or a rule id, is an error."""
        files, problems = _rules_files(paths)
        seen: dict[Path, Path] = {}
        rules: list[Rule] = []
        escalation: list[EscalationRoute] = []
        sources: dict[str, Path] = {}
        for file in files:
            resolved = file.resolve()
            if resolved in seen:
                problems.append(f"{file}: given twice (also as {seen[resolved]})")
                continue
            seen[resolved] = file
            try:
                parsed = cls.parse_file(file)
            except RuleError as exc:
                problems.append(str(exc))
                continue
            escalation.extend(parsed.escalation)
            for rule in parsed.rules:
                if rule.id in sources:
                    problems.append(
                        f"{file}: rule {rule.id!r}: id: already defined in {sources[rule.id]}"
                    )
                    continue
                sources[rule.id] = file
                rules.append(rule)
        if problems:
            raise RuleError("\n".join(problems))
        return cls(rules, sources, escalation)
