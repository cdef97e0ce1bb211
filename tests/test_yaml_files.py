"""Strict YAML reading: repeated keys are refused; everything else reads as yaml.safe_load."""

from __future__ import annotations

import pytest
import yaml

from regiongpt.yaml_files import DuplicateKeyError, load_yaml_text


def test_it_reads_what_safe_load_reads():
    text = "a: 1\nb: [1, {c: 2}]\nbase: &base {x: 1, y: 2}\nderived:\n  <<: *base\n  y: 3\n"
    assert load_yaml_text(text) == yaml.safe_load(text)
    assert load_yaml_text(text)["derived"] == {"x": 1, "y": 3}


@pytest.mark.parametrize(
    ("text", "key", "lines"),
    [
        ("a: 1\nb: 2\na: 3\n", "'a'", "lines 1 and 3"),
        ("outer:\n  - {k: 1, k: 2}\n", "'k'", "lines 2 and 2"),
        ("1: x\n1: y\n", "1", "lines 1 and 2"),
    ],
)
def test_a_repeated_key_is_an_error_naming_it_and_both_lines(text, key, lines):
    with pytest.raises(DuplicateKeyError, match=rf"key {key} appears twice in one mapping \({lines}\)"):
        load_yaml_text(text)


def test_it_refuses_python_tags_like_safe_load():
    with pytest.raises(yaml.YAMLError):
        load_yaml_text("!!python/object/apply:os.system ['true']\n")
