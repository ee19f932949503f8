"""YAML read safely, with a repeated key refused: PyYAML keeps the last of two equal keys, so a recipe with
two `pat:` sections would silently lose the first one."""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["safe_load"]

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _UniqueKeyLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that raises a ConstructorError (a `yaml.YAMLError`) on a key given twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                repeated = key in first_line
            except TypeError:  # an unhashable key: the base class reports it
                break
            if repeated:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"the key {key!r} appears twice (first on line {first_line[key]}); a second entry would "
                    "replace the first, not add to it: keep one",
                    key_node.start_mark,
                )
            first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def safe_load(text: str) -> Any:
    """`yaml.safe_load(text)`, but a mapping that repeats a key is a `yaml.YAMLError` naming it and its
    line (`problem_mark`)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects
