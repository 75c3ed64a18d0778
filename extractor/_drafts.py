"""Read a JSON Schema of any draft people write into one form: Draft 2020-12, `$defs` only.

Users bring the schemas they have: Draft-04/06/07 or 2020-12, definitions under
`definitions` or `$defs`, `$ref`s to any JSON pointer inside the document (a property, an
array's items, the root itself), `$anchor`s, OpenAPI's `nullable`. `normalize` rewrites
every reference to `#/$defs/<name>`, hoisting what it points to when that is not already a
definition, and turns the draft-specific forms into 2020-12 ones (Draft-04's boolean
`exclusiveMinimum`, `nullable: true`), so the dialects downstream read one shape and a
wrapped root (a list target) keeps its references working.

What is not rewritten is left exactly as written (key order included): a schema already
in that form comes back equal. A `$ref` that leaves the document (another file, a URL)
is refused with `SchemaError` naming where it is: it cannot be sent.
"""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import unquote

from extractor._errors import SchemaError

__all__ = ["normalize", "pointer"]

JSON = dict[str, Any]

#: Keywords whose value is a map of name → subschema.
_MAPS: Final = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
#: Keywords whose value is a subschema.
_ONE: Final = (
    "items",
    "additionalProperties",
    "additionalItems",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
    "unevaluatedItems",
    "unevaluatedProperties",
)
#: Keywords whose value is a list of subschemas.
_MANY: Final = ("allOf", "anyOf", "oneOf", "prefixItems")
_NAME: Final = re.compile(r"[^A-Za-z0-9_.-]+")


def pointer(document: Any, ref: str) -> Any:
    """The value a local JSON pointer (`#/a/b/0`) names in `document`; KeyError if none."""
    fragment = ref.partition("#")[2]
    node = document
    if not fragment:
        return node
    for raw in fragment.lstrip("/").split("/"):
        token = unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(token)]
        elif isinstance(node, dict):
            node = node[token]
        else:
            raise KeyError(ref)
    return node


def normalize(schema: JSON) -> JSON:
    """`schema` in Draft 2020-12 with every definition in the root's `$defs` (see module)."""
    return _Reader(schema).read()


class _Reader:
    def __init__(self, document: JSON) -> None:
        self.original = document
        self.base = str(document.get("$id") or document.get("id") or "").partition("#")[0]
        self.defs: JSON = {}
        self.names: dict[str, str] = {}  # a pointer (its fragment) → its name in $defs
        self.anchors = self._anchors(document)
        self.changed = False

    def read(self) -> JSON:
        document = self.original
        for key in ("$defs", "definitions"):
            given = document.get(key)
            if isinstance(given, dict):
                for name in given:
                    self._name(f"/{key}/{_escape(name)}", name)
        body = self._walk(document, "", top=True)
        if not self.changed and "definitions" not in document:
            return document  # already in the one form: as written
        out = {k: v for k, v in body.items() if k not in ("$defs", "definitions")}
        if self.defs:
            out["$defs"] = self.defs
        return out

    # --- references ---------------------------------------------------------------------

    def _name(self, fragment: str, wanted: str) -> str:
        """The `$defs` name for what `fragment` points to, chosen once."""
        name = self.names.get(fragment)
        if name is None:
            base = _NAME.sub("_", wanted).strip("_") or "definition"
            name, n = base, 2
            while name in self.names.values():
                name, n = f"{base}_{n}", n + 1
            self.names[fragment] = name
        return name

    def _ref(self, ref: str, path: str) -> str:
        """The rewritten `$ref`: `#/$defs/<name>`, with what it points to hoisted."""
        target, _, fragment = ref.partition("#")
        if target and target.rstrip("/") != self.base.rstrip("/"):
            raise SchemaError(
                f"$ref {ref!r} points outside this schema; inline what it refers to", path=path
            )
        if fragment and not fragment.startswith("/"):  # a plain-name fragment: an anchor
            found = self.anchors.get(fragment)
            if found is None:
                raise SchemaError(f"$ref {ref!r} names no $anchor in this schema", path=path)
            fragment = found
        fragment = fragment.rstrip("/") if fragment != "/" else fragment
        parts = fragment.lstrip("/").split("/") if fragment else []
        if len(parts) == 2 and parts[0] in ("$defs", "definitions"):
            wanted = unquote(parts[1]).replace("~1", "/").replace("~0", "~")
        else:
            wanted = "root" if not parts else "_".join(unquote(p) for p in parts[-2:])
        try:
            target_node = pointer(self.original, "#" + fragment)
        except (KeyError, IndexError, ValueError):
            raise SchemaError(f"$ref {ref!r} points to nothing in this schema", path=path) from None
        name = self._name(fragment, wanted)
        if name not in self.defs:
            self.defs[name] = {}  # reserved first: a recursive reference ends here
            if not parts:  # the root itself: its body, without the definitions beside it
                target_node = {
                    k: v for k, v in target_node.items() if k not in ("$defs", "definitions")
                }
            self.defs[name] = self._walk(target_node, f"$defs.{name}")
        new = f"#/$defs/{name}"
        self.changed = self.changed or new != ref
        return new

    def _anchors(self, document: Any) -> dict[str, str]:
        found: dict[str, str] = {}

        def visit(node: Any, at: str) -> None:
            if isinstance(node, dict):
                anchor = node.get("$anchor")
                if isinstance(anchor, str):
                    found.setdefault(anchor, at)
                for key in ("id", "$id"):  # Draft-04 "id" / Draft-06,07 "$id": "#name"
                    legacy = node.get(key) if at else None
                    if isinstance(legacy, str) and legacy.startswith("#") and len(legacy) > 1:
                        found.setdefault(legacy[1:], at)
                for key, value in node.items():
                    visit(value, f"{at}/{_escape(key)}")
            elif isinstance(node, list):
                for i, value in enumerate(node):
                    visit(value, f"{at}/{i}")

        visit(document, "")
        return found

    # --- subschemas ---------------------------------------------------------------------

    def _walk(self, node: Any, path: str, *, top: bool = False) -> Any:
        if not isinstance(node, dict):
            return node  # true / false: 2020-12 reads them as they are
        out: JSON = {}
        for key, value in node.items():
            if key in ("$id", "id", "$schema") and isinstance(value, str):
                # every reference is to the root now: a base URI inside would move it
                self.changed = True
                continue
            if key == "$ref" and isinstance(value, str):
                out[key] = self._ref(value, path)
            elif key in ("$defs", "definitions") and not top:
                # nested definitions: whichever are referenced were hoisted to the root
                self.changed = True
            elif key in _MAPS and isinstance(value, dict):
                if top and key in ("$defs", "definitions"):
                    for name, sub in value.items():
                        fragment = f"/{key}/{_escape(name)}"
                        defined = self.names[fragment]
                        if defined not in self.defs:
                            self.defs[defined] = {}
                            self.defs[defined] = self._walk(sub, f"$defs.{defined}")
                    out[key] = value
                    continue
                out[key] = {
                    name: self._walk(sub, _join(path, name) if key == "properties" else path)
                    for name, sub in value.items()
                }
            elif key in _ONE and isinstance(value, list):  # Draft-04..07 tuple `items`
                out[key] = [self._walk(sub, f"{path}[]") for sub in value]
            elif key in _ONE:
                out[key] = self._walk(value, f"{path}[]" if key == "items" else path)
            elif key in _MANY and isinstance(value, list):
                out[key] = [self._walk(sub, path) for sub in value]
            else:
                out[key] = value
        return self._draft(out)

    def _draft(self, node: JSON) -> JSON:
        """Draft-04 and OpenAPI forms in their 2020-12 spelling."""
        for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
            flag = node.get(exclusive)
            if isinstance(flag, bool):
                self.changed = True
                node = dict(node)
                if flag and bound in node:
                    node[exclusive] = node.pop(bound)
                else:
                    node.pop(exclusive)
        if node.get("nullable") is True:
            self.changed = True
            node = {k: v for k, v in node.items() if k != "nullable"}
            kind = node.get("type")
            if isinstance(kind, str):
                node["type"] = [kind, "null"]
            elif isinstance(kind, list) and "null" not in kind:
                node["type"] = [*kind, "null"]
            elif "enum" in node and None not in node["enum"]:
                node["enum"] = [*node["enum"], None]
            elif kind is None and "enum" not in node:
                node = {"anyOf": [node, {"type": "null"}]}
        if isinstance(node.get("items"), list):  # Draft-04..07 tuples: 2020-12 prefixItems
            self.changed = True
            node = dict(node)
            node["prefixItems"] = node.pop("items")
            if "additionalItems" in node:
                node["items"] = node.pop("additionalItems")
        return node


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
