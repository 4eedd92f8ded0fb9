"""YAML for rule files and configuration: duplicate keys, aliases and anchors are errors.

PyYAML keeps the last of two equal keys (`{BVR: SAU, BVR: IPS}` silently becomes `{BVR: IPS}`)
and expands aliases without limit (a 4 kB file can expand to gigabytes). Here aliases and anchors
are refused from the parser's events, before any node is built, so hostile input fails within
milliseconds and the file size cap bounds memory; duplicate keys are refused as mappings are built.

Keys of one mapping are compared as raw cells are ("1", 1 and 1.0 are one code; see
`ipdpool.harmonize.values.code_key`): a mapping may not hold two keys with the same text.
"""

from __future__ import annotations

from pathlib import Path

import yaml

MAX_BYTES = 1 << 20  # a rule file or config is a few kB; more is a mistake or an attack
MAX_DEPTH = 50  # rule files nest about 6 deep; PyYAML recurses once per level


class StrictYAMLError(yaml.YAMLError):
    pass


def key_text(key) -> str:
    """The text a mapping key is compared by: 1, 1.0 and "1" are the same key; true is "true"."""
    if isinstance(key, bool):
        return str(key).lower()
    if isinstance(key, float) and key.is_integer():
        return str(int(key))
    return str(key).strip()


def _line(node) -> int:
    return node.start_mark.line + 1


def check_events(text: str) -> None:
    """Aliases, anchors and deep nesting refused from the event stream (libyaml's parser: a
    rule file is read at every workflow start, and the pure-Python parser costs 0.1 s per file)."""
    open_collections = 0
    for event in _events(text):
        if isinstance(event, yaml.CollectionEndEvent):
            open_collections -= 1
            continue
        if not isinstance(event, yaml.NodeEvent):
            continue
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            raise StrictYAMLError(f"line {line}: aliases (*{event.anchor}) are not allowed; write the value out")
        if event.anchor:
            raise StrictYAMLError(f"line {line}: anchors (&{event.anchor}) are not allowed; write the value out")
        if open_collections >= MAX_DEPTH:
            raise StrictYAMLError(f"line {line}: nested more than {MAX_DEPTH} levels deep")
        if isinstance(event, yaml.CollectionStartEvent):
            open_collections += 1


def _events(text: str):
    """libyaml's events; its own nesting limit (1000 levels, met while it reads ahead) is reported as ours."""
    events = yaml.parse(text, Loader=yaml.CSafeLoader)
    while True:
        try:
            yield next(events)
        except StopIteration:
            return
        except yaml.MarkedYAMLError as error:
            if "maximum nesting depth" not in str(error.problem):
                raise
            raise StrictYAMLError(
                f"line {error.problem_mark.line + 1}: nested more than {MAX_DEPTH} levels deep"
            ) from None


class StrictLoader(yaml.CSafeLoader):
    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise StrictYAMLError(f"line {_line(key_node)}: merge keys (<<) are not allowed")
            key = self.construct_object(key_node, deep=True)
            text = key_text(key)
            if text in seen:
                first = seen[text]
                raise StrictYAMLError(
                    f"line {_line(key_node)}: duplicate key {text!r} (first at line {first}); "
                    'keys 1, 1.0 and "1" are the same key'
                )
            seen[text] = _line(key_node)
        return super().construct_mapping(node, deep=deep)


def loads(text: str):
    if len(text.encode("utf-8")) > MAX_BYTES:
        raise StrictYAMLError(f"more than {MAX_BYTES} bytes")
    check_events(text)
    return yaml.load(text, Loader=StrictLoader)


def load(path: Path):
    path = Path(path)
    if path.stat().st_size > MAX_BYTES:
        raise StrictYAMLError(f"{path}: more than {MAX_BYTES} bytes")
    return loads(path.read_text(encoding="utf-8"))


def check_files(paths) -> None:
    """Raise StrictYAMLError for the first file with a duplicate key, alias or anchor."""
    for path in paths:
        load(path)
