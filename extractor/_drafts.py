r"""Read a JSON Schema of any draft people write into one form: Draft 2020-12, `$defs` only.

Users bring the schemas they have: Draft-04/06/07 or 2020-12, definitions under
`definitions` or `$defs`, `$ref`s to any JSON pointer inside the document (a property, an
array's items, the root itself), `$anchor`s, OpenAPI's `nullable`. `normalize` rewrites
every reference to `#/$defs/<name>`, hoisting what it points to when that is not already a
definition, and turns the draft-specific forms into 2020-12 ones (Draft-04's boolean
`exclusiveMinimum`, `nullable: true`), so the dialects downstream read one shape and a
wrapped root (a list target) keeps its references working.

References resolve as the drafts say: against the base URI of the resource they stand
in (`$id`, Draft-04's `id`), so a schema bundling several resources under their own
`$id`s works; `$dynamicRef` and `$recursiveRef` are read statically, as the outermost
resource's anchor (what they mean when the schema is used on its own). A reference to
one of the JSON Schema metaschemas (an OpenAPI document's `#/properties/title` of
Draft-04, say) is read from the copies `jsonschema` ships. What is not rewritten is left
exactly as written (key order included): a schema already in that form comes back
equal. A `$ref` to any other document (a file, a URL) is refused with `SchemaError`
naming where it is: it cannot be sent, nor checked.

`python_patterns` reads a schema's regular expressions, written for ECMA 262 (the
drafts' dialect), as Python's `re` takes them: named groups `(?<name>...)` are spelled
`(?P<name>...)`; a pattern Python cannot read at all (`\p{...}` classes, recursion) is
left out, with a warning, since it could be neither sent nor checked.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urljoin

from extractor._errors import SchemaError

__all__ = ["bundle", "normalize", "pointer", "python_patterns"]

logger = logging.getLogger("extractor")

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
#: Keywords whose value is data, not schemas: no `$id`, anchor or `$ref` inside counts.
_DATA: Final = ("enum", "const", "examples", "default")


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
        self.root = _id_of(document, "") or ""
        self.docs: dict[str, Any] = {}  # resource URI → its schema
        self.anchors: dict[str, dict[str, str]] = {}  # resource URI → anchor → its pointer
        self.dynamic: dict[str, dict[str, str]] = {}  # the same for `$dynamicAnchor`s
        self.recursive: set[str] = set()  # resources whose root says `$recursiveAnchor`
        self._index(document, self.root, "")
        self.defs: JSON = {}
        self.names: dict[tuple[str, str], str] = {}  # (resource, pointer) → its name in $defs
        self.changed = False

    def read(self) -> JSON:
        document = self.original
        for key in ("$defs", "definitions"):
            given = document.get(key)
            if isinstance(given, dict):
                for name, definition in given.items():
                    self._name(self._defined(key, name, definition), name)
        body = self._walk(document, "", self.root, top=True)
        if not self.changed and "definitions" not in document:
            return document  # already in the one form: as written
        out = {k: v for k, v in body.items() if k not in ("$defs", "definitions")}
        if self.defs:
            out["$defs"] = self.defs
        return out

    # --- resources ----------------------------------------------------------------------

    def _defined(self, key: str, name: str, definition: Any) -> tuple[str, str]:
        """Where a root definition lives, as references reach it: (resource, pointer).

        An embedded resource (a bundled document, with its own `$id`) is reached by its
        URI, so it is keyed by that: one definition in the output, not two.
        """
        own = _id_of(definition, self.root) if isinstance(definition, dict) else None
        return (own, "") if own else (self.root, f"/{key}/{_escape(name)}")

    def _index(self, node: Any, base: str, at: str) -> None:
        """Record the resources (`$id`s) and anchors under `node`, by the URI they live at."""
        if isinstance(node, dict):
            given = _id_of(node, base) if at else None
            if given is not None:
                base, at = given, ""
            if at == "":
                self.docs.setdefault(base, node)
                if node.get("$recursiveAnchor") is True:
                    self.recursive.add(base)
            anchors = self.anchors.setdefault(base, {})
            for key in ("$anchor", "$dynamicAnchor"):
                name = node.get(key)
                if isinstance(name, str):
                    anchors.setdefault(name, at)
                    if key == "$dynamicAnchor":
                        self.dynamic.setdefault(base, {}).setdefault(name, at)
            for key in ("id", "$id"):  # Draft-04 "id" / Draft-06,07 "$id": "#name"
                legacy = node.get(key) if at else None
                if isinstance(legacy, str) and legacy.startswith("#") and len(legacy) > 1:
                    anchors.setdefault(legacy[1:], at)
            for key, value in node.items():
                if key not in _DATA:
                    self._index(value, base, f"{at}/{_escape(key)}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                self._index(value, base, f"{at}/{i}")

    def _resource(self, uri: str, ref: str, path: str) -> Any:
        """The schema at `uri`: one of this document's resources, or a metaschema."""
        found = self.docs.get(uri)
        if found is None:
            found = _metaschema(uri)
            if found is None:
                raise SchemaError(
                    f"$ref {ref!r} points to another document, which is not here: inline "
                    "it, or (on the command line) put it beside the schema file, where "
                    "references are read from",
                    path=path,
                )
            self._index(found, uri, "")
        return found

    # --- references ---------------------------------------------------------------------

    def _name(self, key: tuple[str, str], wanted: str) -> str:
        """The `$defs` name for what `key` (resource, pointer) points to, chosen once."""
        name = self.names.get(key)
        if name is None:
            base = _NAME.sub("_", wanted).strip("_") or "definition"
            name, n = base, 2
            while name in self.names.values():
                name, n = f"{base}_{n}", n + 1
            self.names[key] = name
        return name

    def _dynamic(self, ref: str, base: str, path: str) -> str:
        """A `$dynamicRef` or `$recursiveRef` as the plain `$ref` it means used alone: to
        the outermost resource that declares the anchor, else as written."""
        anchor = ref.partition("#")[2]
        if ref.startswith("#") and anchor and anchor in self.dynamic.get(self.root, {}):
            return self._ref(f"{self.root}#{anchor}", path, self.root)
        if ref == "#" and self.root in self.recursive:
            return self._ref(f"{self.root}#", path, self.root)
        return self._ref(ref, path, base)

    def _ref(self, ref: str, path: str, base: str) -> str:
        """The rewritten `$ref`: `#/$defs/<name>`, with what it points to hoisted."""
        target, _, fragment = ref.partition("#")
        uri = urljoin(base, target) if target else base
        if uri.rstrip("/") == self.root.rstrip("/"):
            uri = self.root
        document = self._resource(uri, ref, path)
        if fragment and not fragment.startswith("/"):  # a plain-name fragment: an anchor
            found = self.anchors.get(uri, {}).get(fragment)
            if found is None:
                raise SchemaError(f"$ref {ref!r} names no $anchor in this schema", path=path)
            fragment = found
        fragment = fragment.rstrip("/") if fragment != "/" else fragment
        parts = fragment.lstrip("/").split("/") if fragment else []
        if len(parts) == 2 and parts[0] in ("$defs", "definitions"):
            wanted = unquote(parts[1]).replace("~1", "/").replace("~0", "~")
        elif parts:
            wanted = "_".join(unquote(p) for p in parts[-2:])
        else:
            wanted = "root" if uri == self.root else uri.rstrip("/").rsplit("/", 1)[-1]
        try:
            target_node = pointer(document, "#" + fragment)
        except (KeyError, IndexError, ValueError):
            raise SchemaError(f"$ref {ref!r} points to nothing in this schema", path=path) from None
        name = self._name((uri, fragment), wanted)
        if name not in self.defs:
            self.defs[name] = {}  # reserved first: a recursive reference ends here
            if not parts and isinstance(target_node, dict):  # a resource's root: its body
                target_node = {
                    k: v for k, v in target_node.items() if k not in ("$defs", "definitions")
                }
            self.defs[name] = self._walk(target_node, f"$defs.{name}", uri)
        new = f"#/$defs/{name}"
        self.changed = self.changed or new != ref
        return new

    # --- subschemas ---------------------------------------------------------------------

    def _walk(self, node: Any, path: str, base: str, *, top: bool = False) -> Any:
        if not isinstance(node, dict):
            return node  # true / false: 2020-12 reads them as they are
        base = (_id_of(node, base) or base) if not top else base
        out: JSON = {}
        for key, value in node.items():
            if key in ("$id", "id", "$schema") and isinstance(value, str):
                # every reference is to the root now: a base URI inside would move it
                self.changed = True
                continue
            if key == "$ref" and isinstance(value, str):
                out[key] = self._ref(value, path, base)
            elif key in ("$dynamicRef", "$recursiveRef") and isinstance(value, str):
                out["$ref"] = self._dynamic(value, base, path)
                self.changed = True
            elif key in ("$defs", "definitions") and not top:
                # nested definitions: whichever are referenced were hoisted to the root
                self.changed = True
            elif key in _MAPS and isinstance(value, dict):
                if top and key in ("$defs", "definitions"):
                    for name, sub in value.items():
                        defined = self.names[self._defined(key, name, sub)]
                        if defined not in self.defs:
                            self.defs[defined] = {}
                            self.defs[defined] = self._walk(sub, f"$defs.{defined}", base)
                    out[key] = value
                    continue
                out[key] = {
                    name: self._walk(sub, _join(path, name) if key == "properties" else path, base)
                    for name, sub in value.items()
                }
            elif key in _ONE and isinstance(value, list):  # Draft-04..07 tuple `items`
                out[key] = [self._walk(sub, f"{path}[]", base) for sub in value]
            elif key in _ONE:
                out[key] = self._walk(value, f"{path}[]" if key == "items" else path, base)
            elif key in _MANY and isinstance(value, list):
                out[key] = [self._walk(sub, path, base) for sub in value]
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
        if "examples" in node and not isinstance(node["examples"], list):  # 2020-12: a list
            self.changed = True
            node = {**node, "examples": [node["examples"]]}
        wrong = [k for k in ("title", "description", "$comment") if k in node]
        wrong = [k for k in wrong if not isinstance(node[k], str)]
        if wrong:  # annotations of the wrong type (Draft-04 did not check them): dropped
            self.changed = True
            node = {k: v for k, v in node.items() if k not in wrong}
        if isinstance(node.get("items"), list):  # Draft-04..07 tuples: 2020-12 prefixItems
            self.changed = True
            node = dict(node)
            node["prefixItems"] = node.pop("items")
            if "additionalItems" in node:
                node["items"] = node.pop("additionalItems")
        return node


def _id_of(node: JSON, base: str) -> str | None:
    """The base URI a schema object sets with `$id` (Draft-04: `id`), made absolute."""
    for key in ("$id", "id"):
        given = node.get(key)
        if isinstance(given, str) and given and not given.startswith("#"):
            return urljoin(base, given).partition("#")[0]
    return None


def _metaschema(uri: str) -> Any:
    """One of the JSON Schema metaschemas (and their vocabularies), from `jsonschema`."""
    if "json-schema.org" not in uri:
        return None
    from jsonschema_specifications import REGISTRY  # type: ignore[import-untyped]  # 100 ms

    for candidate in (uri, uri.rstrip("/") + "#", uri + "#"):
        try:
            return REGISTRY.contents(candidate)
        except LookupError:
            continue
    return None


_NAMED_GROUP: Final = re.compile(r"\(\?<(?![=!])")


def python_patterns(schema: Any) -> Any:
    """`schema` with its regular expressions as Python reads them (see the module doc).

    Returns `schema` itself when nothing needs to change.
    """

    def fixed(pattern: str, where: str) -> str | None:
        translated = _NAMED_GROUP.sub("(?P<", pattern)
        try:
            re.compile(translated)
        except re.error as exc:
            logger.warning(
                "%s: the pattern %r is left out: Python cannot read it (%s), so it could "
                "be neither sent nor checked",
                where or "(root)",
                pattern,
                exc,
            )
            return None
        return translated

    def walk(node: Any, path: str) -> Any:
        if not isinstance(node, dict):
            return node
        out: JSON = {}
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                new = fixed(value, path)
                if new is not None:
                    out[key] = new
            elif key == "patternProperties" and isinstance(value, dict):
                kept = {}
                for pattern, sub in value.items():
                    new = fixed(pattern, path) if isinstance(pattern, str) else pattern
                    if new is not None:
                        kept[new] = walk(sub, path)
                out[key] = kept
            elif key in _MAPS and isinstance(value, dict):
                out[key] = {n: walk(s, _join(path, n)) for n, s in value.items()}
            elif key in _ONE and isinstance(value, list):
                out[key] = [walk(s, path) for s in value]
            elif key in (*_ONE, "dependencies") and isinstance(value, dict):
                if key == "dependencies":
                    out[key] = {n: walk(s, path) for n, s in value.items()}
                else:
                    out[key] = walk(value, path)
            elif key in _MANY and isinstance(value, list):
                out[key] = [walk(s, path) for s in value]
            else:
                out[key] = value
        return out

    if '"pattern' not in _dumps(schema):
        return schema
    result = walk(schema, "")
    return schema if result == schema else result


def _dumps(schema: Any) -> str:
    import json

    return json.dumps(schema)


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def bundle(schema: JSON, path: Path) -> JSON:
    """`schema`, read from the file at `path`, with the documents its `$ref`s name beside it
    embedded, so that it stands alone (a compound document, as Draft 2020-12 bundles).

    A reference to another document resolves, as the drafts say, against the base URI of
    where it stands: the schema's `$id`, or the file itself when it has none. That
    document is looked for on disk: a `file:` URI is its path; any other URI below the
    folder of the root's `$id` is the same path below the schema file's folder (a schema
    published at `https://example.com/s/a.json` refers to `b.json` beside it). Each one
    found is embedded in `$defs` under its URI as its `$id`, and read for references of
    its own. Nothing is fetched from the network; a document not found is left for
    `normalize` to refuse with its path. Metaschema references are `normalize`'s too.
    """
    folder = path.resolve().parent
    file_uri = path.resolve().as_uri()
    root = _id_of(schema, file_uri) or file_uri
    root_folder = root.rpartition("/")[0] + "/"
    known: set[str] = set()
    found: dict[str, JSON] = {}

    def index(node: Any, base: str) -> None:  # the resources a document holds already
        if isinstance(node, dict):
            base = _id_of(node, base) or base
            known.add(base)
            for key, value in node.items():
                if key not in _DATA:
                    index(value, base)
        elif isinstance(node, list):
            for value in node:
                index(value, base)

    def local(uri: str) -> Path | None:
        if uri.startswith("file:"):
            candidate = Path(unquote(uri.removeprefix("file://")))
        elif uri.startswith(root_folder) and not root.startswith("file:"):
            candidate = folder / unquote(uri[len(root_folder) :])
        else:
            return None
        return candidate if candidate.is_file() else None

    def refs(node: Any, base: str) -> None:
        if isinstance(node, dict):
            base = _id_of(node, base) or base
            for key, value in node.items():
                if key == "$ref" and isinstance(value, str):
                    target = urljoin(base, value).partition("#")[0]
                    if target and target not in known and "json-schema.org" not in target:
                        fetch(target)
                elif key not in _DATA:
                    refs(value, base)
        elif isinstance(node, list):
            for value in node:
                refs(value, base)

    def fetch(uri: str) -> None:
        where = local(uri)
        if where is None:
            return
        try:
            document = json.loads(where.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SchemaError(f"cannot read {where}, which a $ref names: {exc}") from None
        if not isinstance(document, dict):
            raise SchemaError(f"{where}, which a $ref names, is not a JSON Schema object")
        document = {**{k: v for k, v in document.items() if k not in ("$id", "id")}, "$id": uri}
        known.add(uri)
        found[uri] = document
        index(document, uri)
        refs(document, uri)

    index(schema, root)
    refs(schema, root)
    if not found:
        return schema
    out = dict(schema)
    if "$id" not in out and "id" not in out:
        out["$id"] = root  # the base the embedded documents' URIs were resolved against
    defs = dict(out.get("$defs") or {})
    for uri, document in found.items():
        stem = uri.rpartition("/")[2].removesuffix(".json").removesuffix(".schema")
        name = _NAME.sub("_", stem) or "document"
        while name in defs:
            name += "_"
        defs[name] = document
    out["$defs"] = defs
    return out
