"""What an alert rule is, and where rules come from: `--alert "NAME=QUESTION"` and `--rules FILE`.

A rule watches some cameras (`["*"]`: every one) and asks either a yes/no `question` of each frame
the model looks at, or `match`es the caption's text: words (every one must appear, whole words,
any case) or a regular expression written `/.../` (searched, case-insensitive). It triggers after
`k` true answers in a row and clears after `k` false ones (alerts/state.py).

`RuleFields` is the one validator: the REST body (server/alert_messages.py), the TOML file and the
command line all go through it, so a rule is refused for the same reasons wherever it comes from.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from camcap.errors import CamcapError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_K = 2
DEFAULT_COOLDOWN_S = 30.0
ALL_CAMERAS = "*"
# Names end up in MQTT topics, Home Assistant ids and URL paths: no slashes, wildcards or spaces.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)
MAX_TEXT = 500  # as a WebSocket question (server/messages.py)


class RuleError(CamcapError):
    """A rule that cannot be used as written; the message says where and why."""


class RuleFields(BaseModel):
    """A rule without its name: the body of `PUT /v1/rules/{name}` and a table of `--rules FILE`."""

    model_config = ConfigDict(extra="forbid")

    cameras: list[str] = Field(
        default_factory=lambda: [ALL_CAMERAS],
        min_length=1,
        max_length=64,
        description='Camera names (a source name, or a page stream\'s stream_id); ["*"]: every camera.',
    )
    question: str | None = Field(
        None, max_length=MAX_TEXT, description="A yes/no question asked of each frame (answer starting 'yes': true)."
    )
    match: str | None = Field(
        None,
        max_length=MAX_TEXT,
        description="Words that must all appear in the caption (any case), or a regular expression written /.../.",
    )
    k: int = Field(DEFAULT_K, ge=1, le=100, description="True answers in a row to trigger; false ones to clear.")
    cooldown_s: float = Field(
        DEFAULT_COOLDOWN_S, ge=0, le=86400, allow_inf_nan=False, description="Shortest time between two triggers (s)."
    )
    enabled: bool = True

    @field_validator("cameras")
    @classmethod
    def _cameras(cls, cameras: list[str]) -> list[str]:
        for camera in cameras:
            if camera != ALL_CAMERAS and not _NAME.match(camera):
                raise ValueError(
                    f"camera {camera!r} is not a camera name (letters, digits, '_', '.', '-'; at most 64), or '*'"
                )
        return cameras

    @field_validator("question", "match")
    @classmethod
    def _text(cls, text: str | None) -> str | None:
        if text is not None and not text.strip():
            raise ValueError("must not be empty")
        return text

    @field_validator("match")
    @classmethod
    def _match(cls, match: str | None) -> str | None:
        if match is not None:
            compile_match(match)  # ValueError names the problem
        return match

    @model_validator(mode="after")
    def _one_test(self) -> RuleFields:
        if (self.question is None) == (self.match is None):
            raise ValueError("a rule needs exactly one of 'question' (a yes/no question) or 'match' (words or /regex/)")
        return self


@dataclass(frozen=True)
class Rule:
    """A validated rule. Build it with `Rule.build` (or `parse_alert` / `load_rules`)."""

    name: str
    cameras: tuple[str, ...] = (ALL_CAMERAS,)
    question: str | None = None
    match: str | None = None
    k: int = DEFAULT_K
    cooldown_s: float = DEFAULT_COOLDOWN_S
    enabled: bool = True

    @classmethod
    def build(cls, name: str, fields: RuleFields) -> Rule:
        check_name(name)
        return cls(
            name=name,
            cameras=tuple(dict.fromkeys(fields.cameras)),
            question=fields.question.strip() if fields.question is not None else None,
            match=fields.match,
            k=fields.k,
            cooldown_s=fields.cooldown_s,
            enabled=fields.enabled,
        )

    def fields(self) -> dict[str, Any]:
        """The rule as JSON fields (the REST shape, without its states)."""
        return {
            "name": self.name,
            "cameras": list(self.cameras),
            "question": self.question,
            "match": self.match,
            "k": self.k,
            "cooldown_s": self.cooldown_s,
            "enabled": self.enabled,
        }

    def watches(self, camera: str) -> bool:
        return ALL_CAMERAS in self.cameras or camera in self.cameras

    def matches(self, caption: str) -> bool:
        """For a `match` rule: does this caption count as true?"""
        assert self.match is not None, "matches() is for match rules"
        return compile_match(self.match)(caption)


def check_name(name: str) -> None:
    if not _NAME.match(name):
        raise RuleError(
            f"Rule name {name!r} is not allowed: use letters, digits, '_', '.' and '-' (at most 64, "
            "starting with a letter or digit); it becomes part of MQTT topics and URLs."
        )


def compile_match(match: str) -> Callable[[str], bool]:
    """A predicate on caption text for a `match` value. Raises ValueError for a bad regex."""
    if len(match) >= 2 and match.startswith("/") and match.endswith("/"):
        try:
            pattern = re.compile(match[1:-1], re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"match {match!r} is not a valid regular expression: {exc}") from None
        return lambda text: pattern.search(text) is not None
    words = [word.lower() for word in re.findall(r"\w+", match)]
    if not words:
        raise ValueError(f"match {match!r} has no words; give words or a regular expression written /.../")

    def every_word(text: str) -> bool:
        said = set(re.findall(r"\w+", text.lower()))
        return all(word in said for word in words)

    return every_word


def is_yes(answer: str) -> bool:
    """A question's answer counts as true when its first word is "yes" (any case); anything else,
    "no" or words that answer nothing, counts as false."""
    first = re.match(r"\W*(\w+)", answer)
    return first is not None and first.group(1).lower() == "yes"


# --- --alert "NAME=QUESTION" --------------------------------------------------------------------


def parse_alert(text: str) -> Rule:
    """`NAME=QUESTION` from the command line: a question rule on every camera, with defaults."""
    name, sep, question = text.partition("=")
    if not sep or not name.strip() or not question.strip():
        raise RuleError(
            f'--alert {text!r}: expected NAME=QUESTION, e.g. --alert "person=Is there a person at the door?".'
        )
    try:
        return Rule.build(name.strip(), RuleFields(question=question.strip()))
    except ValidationError as exc:
        raise RuleError(f"--alert {text!r}: {_problems(exc)}.") from None
    except RuleError as exc:
        raise RuleError(f"--alert {text!r}: {exc}") from None


# --- --rules FILE -------------------------------------------------------------------------------

_TABLE = re.compile(r"^\s*\[\[\s*rule\s*\]\]")


def load_rules(path: Path) -> list[Rule]:
    """Rules from a TOML file of `[[rule]]` tables (see docs/alerts.md). Errors name the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleError(f"--rules {path}: cannot be read ({exc.strerror}).") from None
    return parse_rules(text, str(path))


def parse_rules(text: str, where: str = "rules") -> list[Rule]:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"{where}: not valid TOML: {exc}.") from None
    extra = sorted(set(document) - {"rule"})
    if extra:
        raise RuleError(
            f"{where}:{_line_of_key(text, extra[0], 0, len(text.splitlines()))}: unknown top-level key {extra[0]!r}; "
            "each rule is a [[rule]] table with a name."
        )
    tables = document.get("rule", [])
    if not isinstance(tables, list):
        raise RuleError(f"{where}: 'rule' must be an array of tables, written [[rule]].")
    starts = [number for number, line in enumerate(text.splitlines(), 1) if _TABLE.match(line)]
    ends = [*starts[1:], len(text.splitlines()) + 1]
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for index, table in enumerate(tables):
        # Inline tables (rule = [{...}]) have no [[rule]] header: point at the file then.
        start, end = (starts[index], ends[index]) if index < len(starts) else (1, len(text.splitlines()) + 1)
        rule = _rule_from_table(table, text, where, start, end)
        if rule.name in seen:
            first = seen[rule.name]
            raise RuleError(f"{where}:{start}: a second rule named {rule.name!r} (the first is at line {first}).")
        seen[rule.name] = start
        rules.append(rule)
    return rules


def _rule_from_table(table: dict[str, Any], text: str, where: str, start: int, end: int) -> Rule:
    name = table.get("name")
    if not isinstance(name, str):
        raise RuleError(f'{where}:{start}: this [[rule]] needs a name, e.g. name = "person".')
    fields = {key: value for key, value in table.items() if key != "name"}
    try:
        parsed = RuleFields.model_validate(fields)
        return Rule.build(name, parsed)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = str(error["loc"][0]) if error["loc"] else None
        line = _line_of_key(text, key, start, end) if key else start
        raise RuleError(f"{where}:{line}: rule {name!r}: {_problems(exc)}.") from None
    except RuleError as exc:
        raise RuleError(f"{where}:{_line_of_key(text, 'name', start, end)}: {exc}") from None


def _line_of_key(text: str, key: str, start: int, end: int) -> int:
    """The line (1-based) within [start, end) where `key = ...` is written, else `start`."""
    pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
    for number, line in enumerate(text.splitlines()[max(0, start - 1) : end - 1], max(1, start)):
        if pattern.match(line):
            return number
    return max(1, start)


def _problems(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)
