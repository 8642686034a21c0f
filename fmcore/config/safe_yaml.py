"""Total YAML reading for params files: any bytes give a plain value tree or one ``ParamsError`` line.

``yaml.safe_load`` alone builds no arbitrary objects, but still accepts what a params file
must not hold: duplicate keys (the last one silently wins), keys that are not strings,
timestamps/binary/sets, non-finite floats (``.inf``, ``.nan``), integers beyond 64 bits,
aliases that expand to millions of values ("billion laughs": cheap to parse, then every
walk over the tree is exponential), and nesting deep enough to exhaust the recursion limit.
:func:`load_yaml_file` refuses each of them with the file, the key path and what was expected,
in bounded time and memory (``MAX_BYTES``, ``MAX_VALUES``, ``MAX_DEPTH``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_INT", "MAX_STRING", "MAX_VALUES", "ParamsError", "check_tree",
           "load_yaml_file"]

MAX_BYTES = 1 << 20  # a params file is a few KB; 1 MiB bounds the parser's time and memory
MAX_VALUES = 100_000  # values after alias expansion
MAX_DEPTH = 32  # nesting levels (params nest 5 deep)
MAX_STRING = 4096
MAX_INT = 2**63 - 1  # what torch, numpy and SLURM accept as an integer


class ParamsError(ValueError):
    """A params file is unreadable or does not match the schema (one-line message)."""


class _Loader(yaml.SafeLoader):
    """``SafeLoader`` that refuses duplicate keys (merge keys ``<<`` may still be overridden)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {seen[key].start_mark.line + 1}; "
                    "YAML would silently keep the last one)", key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_tree(value: Any, source: str) -> None:
    """Refuse what JSON Schema cannot see: non-string keys, odd types, non-finite or huge numbers.

    Raises:
        ParamsError: naming ``source``, the key path and what was expected.
    """
    budget = [MAX_VALUES]

    def walk(v: Any, path: str, depth: int) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise ParamsError(f"{source}: more than {MAX_VALUES} values (YAML aliases expanding?); "
                              "expected a params file of a few KB")
        if depth > MAX_DEPTH:
            raise ParamsError(f"{source}: {path or '<top level>'}: nested more than {MAX_DEPTH} levels deep")
        where = path or "<top level>"
        if isinstance(v, dict):
            for k, item in v.items():
                if not isinstance(k, str):
                    raise ParamsError(f"{source}: {where}: key {_describe(k)} is a {type(k).__name__}, "
                                      "expected a string (quote it)")
                walk(item, f"{path}.{k}" if path else k, depth + 1)
        elif isinstance(v, list):
            for i, item in enumerate(v):
                walk(item, f"{path}.{i}", depth + 1)
        elif isinstance(v, bool) or v is None:
            return
        elif isinstance(v, int):
            if abs(v) > MAX_INT:
                raise ParamsError(f"{source}: {where}: {_describe(v)} is out of range, expected an integer "
                                  f"of at most {MAX_INT}")
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise ParamsError(f"{source}: {where}: {v} is not a finite number")
        elif isinstance(v, str):
            if len(v) > MAX_STRING:
                raise ParamsError(f"{source}: {where}: a string of {len(v)} characters, expected at most "
                                  f"{MAX_STRING}")
            bad = next((c for c in v if ord(c) < 32 and c not in "\t\n"), None)
            if bad is not None:
                raise ParamsError(f"{source}: {where}: {_describe(v)} holds the control character "
                                  f"{bad!r}, expected printable text")
        else:
            raise ParamsError(f"{source}: {where}: {_describe(v)} is a YAML {type(v).__name__}, expected a "
                              "string, number, boolean, list or mapping (quote it if it is text)")

    walk(value, "", 0)


def load_yaml_file(path: str | Path) -> Any:
    """Read ``path`` as a params YAML file and return its checked value tree.

    Raises:
        ParamsError: unreadable, too large, not UTF-8, not YAML, or holding a value
            :func:`check_tree` refuses (one line naming the file and where).
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ParamsError(f"{path}: cannot read params file ({exc.strerror or exc})") from None
    if len(data) > MAX_BYTES:
        raise ParamsError(f"{path}: larger than {MAX_BYTES // 1024} KiB, expected a params file of a few KB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ParamsError(f"{path}: not UTF-8 text (byte {data[exc.start]:#04x} at line {line})") from None
    try:
        value = yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None)
        detail = f": {problem}" if problem and "duplicate key" in str(problem) else ""
        raise ParamsError(f"{path}: not valid YAML{where}{detail}") from None
    except RecursionError:
        raise ParamsError(f"{path}: nested too deeply to parse, expected at most {MAX_DEPTH} levels") from None
    check_tree(value, str(path))
    return value
