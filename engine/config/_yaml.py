"""Read a YAML file into plain data plus the line and column of every key and value.

The loader follows YAML 1.2's core schema, not PyYAML's YAML 1.1 default: only true/false are
booleans (`encrypt: yes` stays the string "yes", country `NO` stays "NO"), `03:00` is a string,
not the sexagesimal number 180, dates stay strings (the schema checks their format), and a
number with a leading zero (`01067`) stays a string. Duplicate keys are errors, not silently
dropped.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]  # a JSON path as a tuple of keys and list indexes


@dataclass(frozen=True)
class Mark:
    line: int   # 1-based
    col: int    # 1-based


@dataclass(frozen=True)
class Spot:
    """Where a value sits in its file: its key (None for list items and the root) and value."""
    key: Mark | None
    value: Mark
    style: str | None = None       # the scalar's style: None (plain), "'", '"', "|", ">"
    single_line: bool = True
    flow: bool = False             # a mapping or list written in braces or brackets ({a: 1}, [1, 2])


@dataclass
class Document:
    file: str                       # the path as shown in messages
    path: Path
    text: str
    data: Any = None
    spots: dict[Path_, Spot] | None = None
    error: tuple[Mark, str, Path_] | None = None   # a YAML error: where, what, and the path

    def mark_at(self, path: Path_, offset: int | None = None) -> Mark:
        """The key's position (or the value's, for list items); with `offset`, the position of
        that character inside a scalar value where it can be told exactly."""
        spot = (self.spots or {}).get(path)
        if spot is None:
            return Mark(1, 1)
        if offset is None:
            return spot.key or spot.value
        return self._inside(spot, offset)

    def _inside(self, spot: Spot, offset: int) -> Mark:
        value = spot.value
        if spot.style in (None, "'", '"') and spot.single_line:
            return Mark(value.line, value.col + offset + (1 if spot.style else 0))
        if spot.style == "|":
            lines = self.text.splitlines()
            first = value.line  # 0-based index of the line after the '|' indicator
            if first >= len(lines):
                return value
            indent = len(lines[first]) - len(lines[first].lstrip(" "))
            before = "\n".join(line[indent:] for line in lines[first:])[:offset]
            return Mark(first + 1 + before.count("\n"), indent + 1 + len(before) - (before.rfind("\n") + 1))
        return value


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars (see the module docstring)."""


_Loader.yaml_implicit_resolvers = {}
for tag, regexp, first in [
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?(?:0|[1-9][0-9]*)|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    ("tag:yaml.org,2002:float",
     r"^(?:[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)(?:[eE][-+]?[0-9]+)?|[-+]?[0-9]+[eE][-+]?[0-9]+"
     r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", list("-+0123456789.")),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
]:
    _Loader.add_implicit_resolver(tag, re.compile(regexp), first)


def display_name(path: Path) -> str:
    """The path as messages show it: relative to the working directory if it is inside it or
    close by (at most two `../`), otherwise absolute."""
    try:
        relative = Path(os.path.relpath(path.resolve(), Path.cwd().resolve()))
    except ValueError:  # another drive
        return path.as_posix()
    return relative.as_posix() if relative.parts[:3].count("..") < 3 else path.resolve().as_posix()


def load_document(path: Path, file: str | None = None) -> Document:
    """Parse one YAML file. A syntax error is recorded in `error`, never raised."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return Document(file=file or display_name(path), path=path, text=raw.decode("utf-8", "replace"), spots={},
                        error=(Mark(line, col), "the file is not UTF-8 text (byte "
                               f"0x{raw[exc.start]:02x}); save it as UTF-8", ()))
    doc = Document(file=file or display_name(path), path=path, text=text, spots={})
    try:
        node = yaml.compose(text, Loader=_Loader)
        if node is None:
            doc.data = None
            return doc
        doc.spots[()] = Spot(None, _mark(node.start_mark))
        doc.data = _convert(node, (), doc.spots, _Loader(""))
    except _Duplicate as dup:
        doc.error = (dup.mark, dup.message, dup.path)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if opened := _open_quote(text, exc) or _open_bracket(exc):
            doc.error = (opened[0], "invalid YAML: " + opened[1], ())
            return doc
        doc.error = (_mark(mark) if mark else Mark(1, 1),
                     "invalid YAML: " + (_deeper_key(text, mark) or _tab(text, mark) or _explain(exc)), ())
    except yaml.YAMLError as exc:
        doc.error = (Mark(1, 1), f"invalid YAML: {exc}", ())
    return doc


# PyYAML's wording for the usual mistakes, said the way a person fixes them
_YAML_PROBLEMS = (
    ("expected <block end>", "this line is not indented like the lines around it"),
    ("mapping values are not allowed here", "unexpected ':' (quote a value that contains ': ')"),
    ("could not find expected ':'", "a line without 'key: value' (is a ':' missing?)"),
    ("found character '\\t' that cannot start any token", "a tab character: YAML needs spaces; write spaces instead"),
    ("found undefined alias", "an undefined alias (*name)"),
    ("found unexpected end of stream", "the file ends inside a quoted value (is a closing quote missing?)"),
)


def _open_quote(text: str, exc: yaml.MarkedYAMLError) -> tuple[Mark, str] | None:
    """For a quote that is never closed: where it opens, which is where the fix goes. PyYAML
    points at the end of the file, or, when a later value is quoted, at the line after that
    value's first quote, which closed the open one: a line that has nothing wrong with it."""
    if exc.context == "while scanning a quoted scalar" and exc.context_mark is not None \
            and (exc.problem or "").startswith("found unexpected end of stream"):
        return (_mark(exc.context_mark), "this quoted value has no closing quote: the file ends inside it; "
                                         "add the closing quote")
    problem = exc.problem_mark
    if problem is None or (exc.problem or "").startswith("mapping values are not allowed here"):
        return None                     # a quoted value over two lines, then ': ': the quote is closed
    before = None
    try:
        for token in yaml.scan(text):
            if token.start_mark.index >= problem.index:
                break
            before = token
    except yaml.YAMLError:
        pass
    if not isinstance(before, yaml.ScalarToken) or before.style not in ("'", '"') \
            or before.start_mark.line == before.end_mark.line:
        return None
    start, end = before.start_mark, before.end_mark
    return (_mark(start), f"the quoted value that starts here runs on to line {end.line + 1}, where the next "
                          f"{before.style} closes it: is the closing {before.style} missing on this line?")


_FLOWS = {"while parsing a flow sequence": ("[", "]"), "while parsing a flow mapping": ("{", "}")}


def _open_bracket(exc: yaml.MarkedYAMLError) -> tuple[Mark, str] | None:
    """For a `[` or `{` that is never closed: where it opens, which is where the fix goes. PyYAML
    points at the first line after it that cannot belong inside (often the next key's ':'),
    a line with nothing wrong with it."""
    brackets = _FLOWS.get(exc.context or "")
    opened, problem = exc.context_mark, exc.problem_mark
    if brackets is None or opened is None or problem is None or opened.line == problem.line:
        return None
    return (_mark(opened), f"the '{brackets[0]}' here is not closed before line {problem.line + 1}: add the closing "
                           f"'{brackets[1]}' (quote a value that has a ',', ':' or brackets in it)")


def _explain(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or exc.context or "cannot parse"
    for start, friendly in _YAML_PROBLEMS:
        if problem.startswith(start):
            return friendly
    return problem


_KEY_LINE = re.compile(r"^( *)(?:- +)?([^\s#:'\"][^:#]*?) *:(?: |$)")


def _deeper_key(text: str, mark: yaml.Mark | None) -> str | None:
    """For PyYAML's "mapping values are not allowed here" at the ':' of a key that starts its
    own line: that key is indented deeper than the key above it, which has a value of its own,
    so YAML read the line as the rest of that value. Says which two lines to align (None: the
    ':' is elsewhere, e.g. inside an unquoted value)."""
    if mark is None:
        return None
    lines = text.splitlines()
    if mark.line >= len(lines):
        return None
    here = _KEY_LINE.match(lines[mark.line])
    if not here or lines[mark.line].index(":", here.end(2)) != mark.column or set("'\"") & set(here.group(2)):
        return None                     # not a key at the start of its line (a quote: the end of a quoted value)
    for number in range(mark.line - 1, -1, -1):
        above = lines[number]
        if not above.strip() or above.lstrip().startswith("#"):
            continue
        key = _KEY_LINE.match(above)
        if key is None or len(here.group(1)) <= len(key.group(1)):
            return None
        return (f"'{here.group(2)}:' is indented deeper than '{key.group(2)}:' on line {number + 1}, which has "
                "a value already, so YAML reads this line as part of that value: indent the two keys alike "
                "if they belong to the same section")
    return None


_KEY_BEFORE = re.compile(r"([^\s{,\[]+:)[ \t]*$")


def _tab(text: str, mark: yaml.Mark | None) -> str | None:
    """For a tab PyYAML cannot read (it takes none outside quotes; YAML 1.2 allows some): where the tab
    sits in its line, said the way a person fixes it. None: not a tab."""
    if mark is None:
        return None
    lines = text.splitlines()
    if mark.line >= len(lines) or mark.column >= len(lines[mark.line]) or lines[mark.line][mark.column] != "\t":
        return None
    before, after = lines[mark.line][:mark.column], lines[mark.line][mark.column:].lstrip(" \t")
    if not before.strip():
        return "a tab character in the indentation: YAML needs spaces; indent with spaces"
    if not after:
        return f"a tab character at the end of the line, after '{before.strip()}': YAML needs spaces; remove the tab"
    if after.startswith("#"):
        return "a tab character before the comment: YAML needs spaces; write a space instead"
    if key := _KEY_BEFORE.search(before):
        return (f"a tab character after '{key.group(1)}': YAML needs spaces; write a space between "
                f"'{key.group(1)}' and its value")
    return (f"a tab character after '{before.strip()}': YAML needs spaces outside quotes; write a space instead "
            "(a value that must hold a tab goes in quotes)")


class _Duplicate(Exception):
    def __init__(self, mark: Mark, message: str, path: Path_ = ()):
        self.mark, self.message, self.path = mark, message, path


def _mark(m: yaml.Mark) -> Mark:
    return Mark(m.line + 1, m.column + 1)


def _convert(node: yaml.Node, path: Path_, spots: dict[Path_, Spot], loader: _Loader) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        firsts: dict[Any, tuple[Any, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = _convert(key_node, path, {}, loader)
            if isinstance(key, (dict, list)):
                raise _Duplicate(_mark(key_node.start_mark), "invalid YAML: a key must be a plain value", path)
            if key in out:
                first_key, first_node = firsts[key]
                shown = key if type(key) in (str, int) else key_node.value
                raise _Duplicate(_mark(key_node.start_mark), _duplicate(key, key_node, first_key, first_node),
                                 path + (shown,))
            firsts[key] = (key, key_node)
            child = path + (key,)
            spots[child] = _spot(value_node, _mark(key_node.start_mark))
            out[key] = _convert(value_node, child, spots, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            child = path + (index,)
            spots[child] = _spot(item, None)
            items.append(_convert(item, child, spots, loader))
        return items
    return loader.construct_object(node, deep=True)


def _duplicate(key: Any, node: yaml.Node, first_key: Any, first_node: yaml.Node) -> str:
    """A key that is already in its mapping, named as written: `true` and `True` are one key to YAML,
    `true` and `1` (or `1` and `1.0`) two keys that Python's dict cannot keep apart."""
    written, first = node.value, first_node.value
    line = first_node.start_mark.line + 1
    if written == first:
        return f"duplicate key '{written}' (first defined on line {line}): remove one of them"
    if type(key) is type(first_key):
        return (f"duplicate key '{written}' (first defined on line {line} as '{first}'; YAML reads both as "
                f"{_reads_as(key)}): remove one of them")
    return (f"duplicate key '{written}' (first defined on line {line} as '{first}'; YAML reads '{first}' as "
            f"{_reads_as(first_key)} and '{written}' as {_reads_as(key)}, which count as one key here): remove one "
            f"of them, or quote both (\"{first}\": and \"{written}\":) if they are two keys")


def _reads_as(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    return f"the text '{value}'"


def _spot(node: yaml.Node, key: Mark | None) -> Spot:
    style = getattr(node, "style", None) if isinstance(node, yaml.ScalarNode) else None
    return Spot(key, _mark(node.start_mark), style, node.start_mark.line == node.end_mark.line,
                flow=bool(getattr(node, "flow_style", False)) and not isinstance(node, yaml.ScalarNode))
