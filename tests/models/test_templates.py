from __future__ import annotations

import pytest

from catcher.models.templates import check_template, render

CONTEXT = {
    "rule_id": "r1",
    "severity": "SERIOUS",
    "value": 2.0,
    "window_start": None,
    "tags": {"salIndex": "3"},
}


def test_whole_placeholder_keeps_the_type() -> None:
    assert render({"v": "{value}", "w": "{window_start}", "s": ["{tags.salIndex}"]}, CONTEXT) == {
        "v": 2.0,
        "w": None,
        "s": ["3"],
    }


def test_placeholders_inside_text_and_escapes() -> None:
    assert render("{rule_id} is {severity} ({value}) {{literal}} [{window_start}]", CONTEXT) == (
        "r1 is SERIOUS (2.0) {literal} []"
    )
    assert render(42, CONTEXT) == 42


def test_missing_tag_names_the_tags_it_has() -> None:
    with pytest.raises(KeyError) as info:
        render("{tags.salindex}", CONTEXT)
    assert info.value.args[0] == "the trigger has no tag 'salindex' (its tags: salIndex)"


def test_check_template() -> None:
    assert check_template("{rule_id} {tags.a.b} {{x}}") == []
    assert check_template("{bogus}")[0].startswith("unknown placeholder {bogus}; known")
    assert check_template("x } y") == ["unbalanced '}' (write }} for a literal brace)"]
    assert check_template("{tags.}")[0].startswith("unknown placeholder {tags.}")
