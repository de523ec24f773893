"""Alert rules: --alert NAME=QUESTION, --rules TOML (errors name the line), words and /regex/ matches."""

from __future__ import annotations

from pathlib import Path

import pytest

from camcap.alerts.rules import Rule, RuleError, is_yes, load_rules, parse_alert, parse_rules

RULES = """\
# two rules
[[rule]]
name = "person"
question = "Is there a person at the door?"
cameras = ["door"]
k = 3
cooldown_s = 10

[[rule]]
name = "red"
match = "/\\\\bred\\\\b/"
"""


def test_an_alert_flag_is_a_question_rule_on_every_camera_with_the_defaults():
    rule = parse_alert("person=Is there a person at the door?")
    assert rule == Rule(name="person", question="Is there a person at the door?")
    assert (rule.cameras, rule.k, rule.cooldown_s, rule.enabled) == (("*",), 2, 30.0, True)
    assert rule.watches("anything")


@pytest.mark.parametrize("text", ["person", "=Is there?", "person=", "bad name=Is there?", "a/b=Is there?"])
def test_a_malformed_alert_flag_says_what_is_expected(text):
    with pytest.raises(RuleError, match="--alert"):
        parse_alert(text)


def test_a_rules_file_gives_each_table_its_fields(tmp_path: Path):
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    person, red = load_rules(path)
    assert person == Rule("person", ("door",), "Is there a person at the door?", None, 3, 10.0, True)
    assert (red.name, red.match, red.question, red.cameras) == ("red", "/\\bred\\b/", None, ("*",))
    assert red.matches("a red circle on the left") and not red.matches("a reddish circle")
    assert person.watches("door") and not person.watches("garage")


@pytest.mark.parametrize(
    ("bad", "line", "says"),
    [
        ("k = 0", 6, "k"),  # replaces "k = 3" on line 6
        ('k = "two"', 6, "k"),
        ("cooldown_s = -1", 7, "cooldown_s"),
        ('colour = "red"', 7, "colour"),  # an unknown key, in place of cooldown_s
        ('cameras = ["front door"]', 5, "camera"),
        ("cameras = []", 5, "cameras"),
    ],
)
def test_a_bad_field_names_its_file_and_line(tmp_path: Path, bad: str, line: int, says: str):
    lines = RULES.splitlines()
    key = bad.split(" =")[0]
    target = {"k": 5, "cooldown_s": 6, "colour": 6, "cameras": 4}[key]
    lines[target] = bad
    path = tmp_path / "rules.toml"
    path.write_text("\n".join(lines))
    with pytest.raises(RuleError) as caught:
        load_rules(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: rule 'person'"), message
    assert says in message


def test_a_second_rule_table_error_points_into_that_table():
    text = RULES.replace('match = "/\\\\bred\\\\b/"', 'match = "/[unclosed/"')
    with pytest.raises(RuleError, match=r"^rules:11: rule 'red': .*not a valid regular expression"):
        parse_rules(text)


def test_a_rule_needs_exactly_one_of_question_or_match():
    text = RULES.replace('match = "/\\\\bred\\\\b/"', 'match = "red"\nquestion = "Is it red?"')
    with pytest.raises(RuleError, match=r"^rules:9: rule 'red': .*exactly one of 'question'"):
        parse_rules(text)
    with pytest.raises(RuleError, match=r"^rules:9: rule 'red': .*exactly one"):
        parse_rules(RULES.replace('match = "/\\\\bred\\\\b/"', ""))


def test_toml_syntax_errors_and_names_point_at_their_line():
    with pytest.raises(RuleError, match=r"line 3"):
        parse_rules(RULES.replace('name = "person"', 'name = "person'))
    with pytest.raises(RuleError, match=r"^rules:9: a second rule named 'person' \(the first is at line 2\)"):
        parse_rules(RULES.replace('name = "red"', 'name = "person"'))
    with pytest.raises(RuleError, match=r"^rules:9: this \[\[rule\]\] needs a name"):
        parse_rules(RULES.replace('name = "red"', ""))
    with pytest.raises(RuleError, match=r"^rules:10: .*'a b' is not allowed"):
        parse_rules(RULES.replace('name = "red"', 'name = "a b"'))
    with pytest.raises(RuleError, match=r"unknown top-level key 'rules'"):
        parse_rules("[[rules]]\nname = 'x'\n")


def test_a_word_match_needs_every_word_whole_in_any_case():
    rule = Rule("r", match="Red circle")
    assert rule.matches("a red circle on the left")
    assert rule.matches("A CIRCLE, red")
    assert not rule.matches("a red square")
    assert not rule.matches("a redder circles")


@pytest.mark.parametrize(
    ("answer", "truth"),
    [("yes", True), ("Yes.", True), ("yes, a red circle", True), ("no", False), ("red triangle", False), ("", False)],
)
def test_an_answer_is_true_when_it_starts_with_yes(answer, truth):
    assert is_yes(answer) is truth


def test_watch_and_serve_refuse_a_bad_rules_file_before_loading_the_model(tmp_path: Path, capsys):
    from camcap.cli import main

    rules = tmp_path / "rules.toml"
    rules.write_text(RULES.replace("k = 3", "k = 0"))
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    for command in (["watch", str(clip), "--realtime"], ["serve", "--port", "0", "--no-open"]):
        assert main([*command, "--model", "random:nope", "--rules", str(rules)]) != 0
        error = capsys.readouterr().err
        assert f"{rules}:6: rule 'person': k:" in error, error
    assert main(["watch", str(clip), "--realtime", "--alert", "oops", "--model", "random:nope"]) != 0
    assert "expected NAME=QUESTION" in capsys.readouterr().err
