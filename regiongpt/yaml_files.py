"""Reading the YAML files users write (recipes, mix files), strictly.

PyYAML's safe loader keeps the last of two equal keys in a mapping without a word, so a stray
line (a second ``model:``, a pasted ``seed:``) silently replaces what the file says above it.
:func:`load_yaml_text` reads like ``yaml.safe_load`` but rejects such a file, naming the key and
both lines.
"""

from __future__ import annotations

from typing import Any

import yaml


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping in the file names one key twice."""


class _StrictSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping with a repeated key."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                seen = first_line.get(key)
            except TypeError:  # an unhashable key: construct_mapping below reports it
                continue
            line = key_node.start_mark.line + 1
            if seen is not None:
                raise DuplicateKeyError(
                    None,
                    None,
                    f"key {key!r} appears twice in one mapping (lines {seen} and {line}); delete one of them",
                    key_node.start_mark,
                )
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml_text(text: str) -> Any:
    """Parse YAML like ``yaml.safe_load``, but raise :class:`DuplicateKeyError` on repeated keys.

    Merge keys (``<<: *anchor``) still override as YAML defines; only keys written twice in the
    same mapping are refused.
    """
    # A SafeLoader subclass: tests/reliability/test_security.py allows exactly this yaml.load.
    return yaml.load(text, Loader=_StrictSafeLoader)
