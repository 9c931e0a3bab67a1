"""BACKWARD compatibility of our schemas, checked locally, without a registry.

Policy (docs/schemas.md): every change to a schema must let the new schema read data
written with every released version, i.e. BACKWARD_TRANSITIVE over the snapshots kept in
``schemas/avro/released/<Name>.v<N>.avsc``. The registry enforces the subject's level
(``Settings.schema_compatibility``) on registration; this module lets a unit test refuse
a breaking change before it is ever registered.

:func:`backward_problems` follows the Avro specification's schema resolution rules for
a reader (the current schema) and a writer (a released one): a field the reader adds
needs a default; types must match or promote (int → long → float → double,
string ↔ bytes); enum symbols the writer may use must exist in the reader unless the
reader's enum has a default; unions must have a reader branch for every writer branch;
named types must keep their name (or list the old one in ``aliases``). Docs, field order
and logical-type annotations do not matter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}
_RELEASED_NAME = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\.v(?P<version>[0-9]+)\.avsc$")


@dataclass(frozen=True, slots=True)
class ReleasedSchema:
    name: str
    """Short record name, e.g. ``CommentPublished``."""
    version: int
    definition: Mapping[str, Any]


def released_schemas() -> Iterator[ReleasedSchema]:
    """Every snapshot in ``schemas/avro/released``, by name then version."""
    folder = resources.files("schemas").joinpath("avro", "released")
    found: list[ReleasedSchema] = []
    for item in folder.iterdir():
        match = _RELEASED_NAME.match(item.name)
        if item.is_file() and match:
            found.append(
                ReleasedSchema(
                    name=match["name"],
                    version=int(match["version"]),
                    definition=json.loads(item.read_text(encoding="utf-8")),
                )
            )
    yield from sorted(found, key=lambda r: (r.name, r.version))


def backward_problems(writer: Any, reader: Any) -> list[str]:
    """Why ``reader`` cannot read data written with ``writer``; empty if it can.

    Both are schema definitions (parsed JSON). Each problem names the path to the
    offending part, e.g. ``CommentPublished.badges: added without a default``.
    """
    checker = _Checker(_named_types(writer), _named_types(reader))
    checker.check(writer, reader, _label(writer))
    return checker.problems


class _Checker:
    def __init__(self, writer_names: dict[str, Any], reader_names: dict[str, Any]) -> None:
        self.writer_names = writer_names
        self.reader_names = reader_names
        self.problems: list[str] = []
        self._seen: set[tuple[str, str]] = set()

    def check(self, writer: Any, reader: Any, path: str) -> None:
        writer = _simplify(_resolve(writer, self.writer_names))
        reader = _simplify(_resolve(reader, self.reader_names))
        if isinstance(reader, list):
            for branch in writer if isinstance(writer, list) else [writer]:
                if not self._union_has_match(branch, reader, path):
                    self.problems.append(f"{path}: union has no branch for {_label(branch)}")
            return
        if isinstance(writer, list):
            for branch in writer:
                self.check(branch, reader, path)
            return
        if isinstance(writer, str) or isinstance(reader, str):
            if writer != reader and reader not in _PROMOTIONS.get(str(writer), ()):
                self.problems.append(f"{path}: {_label(writer)} cannot be read as {_label(reader)}")
            return
        wtype, rtype = writer["type"], reader["type"]
        if wtype != rtype:
            self.problems.append(f"{path}: {wtype} cannot be read as {rtype}")
        elif wtype == "array":
            self.check(writer["items"], reader["items"], f"{path}[]")
        elif wtype == "map":
            self.check(writer["values"], reader["values"], f"{path}{{}}")
        elif not self._same_name(writer, reader, path):
            return
        elif wtype == "record":
            self._check_record(writer, reader, path)
        elif wtype == "enum":
            if "default" not in reader:
                removed = [s for s in writer["symbols"] if s not in reader["symbols"]]
                if removed:
                    self.problems.append(f"{path}: enum symbols removed: {removed}")
        elif wtype == "fixed" and writer["size"] != reader["size"]:
            self.problems.append(f"{path}: fixed size {writer['size']} became {reader['size']}")

    def _check_record(self, writer: dict[str, Any], reader: dict[str, Any], path: str) -> None:
        key = (_full(writer), _full(reader))
        if key in self._seen:  # recursive types: checked once
            return
        self._seen.add(key)
        written = {f["name"]: f for f in writer["fields"]}
        for field in reader["fields"]:
            names = [field["name"], *field.get("aliases", ())]
            source = next((written[n] for n in names if n in written), None)
            if source is not None:
                self.check(source["type"], field["type"], f"{path}.{field['name']}")
            elif "default" not in field:
                self.problems.append(f"{path}.{field['name']}: added without a default")

    def _same_name(self, writer: dict[str, Any], reader: dict[str, Any], path: str) -> bool:
        wname, rname = _full(writer), _full(reader)
        aliases = {_qualify(a, reader.get("namespace")) for a in reader.get("aliases", ())}
        if wname == rname or wname in aliases or writer["name"] == reader["name"]:
            return True
        self.problems.append(f"{path}: {wname} renamed to {rname} without an alias")
        return False

    def _union_has_match(self, writer: Any, union: list[Any], path: str) -> bool:
        for branch in union:
            trial = _Checker(self.writer_names, self.reader_names)
            trial._seen = set(self._seen)
            trial.check(writer, branch, path)
            if not trial.problems:
                return True
        return False


def _named_types(schema: Any, namespace: str | None = None) -> dict[str, Any]:
    names: dict[str, Any] = {}

    def walk(node: Any, ns: str | None) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, ns)
        elif isinstance(node, dict):
            kind = node.get("type")
            if kind in ("record", "error", "enum", "fixed"):
                full = _full(node, ns)
                names[full] = names[node["name"]] = node
                ns = full.rpartition(".")[0] or None
            if kind in ("record", "error"):
                for field in node.get("fields", ()):
                    walk(field["type"], ns)
            elif kind == "array":
                walk(node["items"], ns)
            elif kind == "map":
                walk(node["values"], ns)
            elif isinstance(kind, dict | list):
                walk(kind, ns)

    walk(schema, namespace)
    return names


def _resolve(node: Any, names: dict[str, Any]) -> Any:
    if isinstance(node, str) and node not in _PRIMITIVES:
        return names.get(node, node)
    return node


def _simplify(node: Any) -> Any:
    """``{"type": "long", "logicalType": ...}`` → ``"long"``: annotations do not matter."""
    if isinstance(node, dict) and (node.get("type") in _PRIMITIVES):
        return node["type"]
    if isinstance(node, dict) and isinstance(node.get("type"), dict | list):
        return _simplify(node["type"])
    return node


def _full(node: Mapping[str, Any], namespace: str | None = None) -> str:
    return _qualify(str(node["name"]), node.get("namespace", namespace))


def _qualify(name: str, namespace: str | None) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _label(node: Any) -> str:
    if isinstance(node, dict):
        return str(node.get("name") or node.get("type"))
    if isinstance(node, list):
        return "union"
    return str(node)
