"""Semantic checks of a mapping profile (as written, or merged with a tenant's overrides).

What JSON Schema cannot say: every query is one read-only T-SQL SELECT; every expression
compiles with our functions; every regex compiles; the columns a mapping uses are in its query's
select list; the portal fields are the import API's and its required ones are mapped. The checks
read possibly schema-invalid data, so they skip whatever has the wrong shape (the schema already
reported it). Compiled expressions and code tables are kept for the compile step.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError

from engine import contract
from engine.config._merge import FILTER_KINDS
from engine.config._report import Report
from engine.config._text import clash_message, did_you_mean, quoted_list
from engine.config.model import ENTITIES, CodeTable
from engine.config.sql import RUN_PARAMS, bound_names, find_issue, select_columns
from engine.expr import Expr, ExprError, compile_expression
from engine.expr.functions import table_key
from engine.findings import CATALOGUE, FILTER_REASONS


@dataclass
class Compiled:
    code_tables: dict[str, CodeTable] = field(default_factory=dict)
    exprs: dict[tuple, Expr] = field(default_factory=dict)      # path of the text -> compiled
    columns: dict[str, list[str] | None] = field(default_factory=dict)
    reported: set[tuple] = field(default_factory=set)     # code-table entries already reported


def check_mapping(data: Any, report: Report, *, file_stem: str | None = None) -> Compiled:
    compiled = Compiled()
    if not isinstance(data, dict):
        return compiled
    name = data.get("name")
    if file_stem and isinstance(name, str) and name != file_stem:
        report.error(("name",), f"the mapping is named '{name}' but its file is '{file_stem}.yaml': tenants find "
                                "a mapping by its file name, so make the two equal")
    tables = data.get("code_tables")
    for table, spec in (tables.items() if isinstance(tables, dict) else ()):
        if isinstance(spec, dict) and isinstance(spec.get("values"), dict):
            compiled.code_tables[table] = CodeTable(table, dict(spec["values"]), spec.get("default"))
            _clashing_codes(spec["values"], ("code_tables", table, "values"), report)
    entities = data.get("entities")
    for entity in ENTITIES:
        spec = entities.get(entity) if isinstance(entities, dict) else None
        if isinstance(spec, dict):
            _Entity(entity, spec, data.get("source_type"), report, compiled).check()
    _declared_once(entities, report)
    return compiled


def check_reserved_params(at: tuple, params: Any, report: Report) -> None:
    """A parameter declared with the name of one the run binds itself (RUN_PARAMS) would be
    replaced by the run's value without a word (engine.sources.sql: the run's own come last)."""
    if not isinstance(params, dict):
        return
    own = ", ".join(f":{name}" for name in RUN_PARAMS)
    for name in params:
        if name in RUN_PARAMS:
            report.error(at + (name,), f"'{name}' is a reserved name: the run binds {own} itself (docs/config.md, "
                                       f"\"Filters\"), and its :{name} would replace this value; give the parameter "
                                       "another name and bind that in the query")


def check_query_params(merged: Any, source: Any, report: Report) -> None:
    """Each parameter an SQL query binds (`:mandant`) is one the run binds itself (RUN_PARAMS) or one
    the tenant declares, in `source.params` or the entity's `params`: else every plan and run would
    stop at that query (engine.sources.sql.query_params). Checked on the mapping as merged with the
    tenant's overrides, since a mapping's query may bind what its tenants declare."""
    if not isinstance(merged, dict) or merged.get("source_type") != "sql" or not isinstance(source, dict):
        return
    source_params = source.get("params") if isinstance(source.get("params"), dict) else {}
    entities = merged.get("entities")
    for entity in ENTITIES:
        spec = entities.get(entity) if isinstance(entities, dict) else None
        if not isinstance(spec, dict):
            continue
        check_reserved_params(("entities", entity, "params"), spec.get("params"), report)
        if not isinstance(spec.get("query"), str):
            continue
        entity_params = spec.get("params") if isinstance(spec.get("params"), dict) else {}
        declared = [str(k) for k in {**source_params, **entity_params}]
        missing = {name: at for name, at in bound_names(spec["query"]).items()
                   if name not in RUN_PARAMS and name not in declared}
        if not missing:
            continue
        names = ", ".join(f":{name}" for name in missing)
        which = "which is not a declared parameter" if len(missing) == 1 else "which are not declared parameters"
        example = ", ".join(f"{name}: ..." for name in missing)
        own = ", ".join(f":{name}" for name in RUN_PARAMS)
        tenants = ", ".join(f":{name}" for name in declared) if declared else "none"
        report.error(("entities", entity, "query"),
                     f"the query binds {names}, {which}: declare {'it' if len(missing) == 1 else 'them'} under source.params or the entity's params "
                     f"(params: {{{example}}}); the run's own are {own}, and this tenant declares {tenants}",
                     offset=min(missing.values()))


def _report_code_declared(reason: str, key: str) -> str:
    """A filter of one of the report's own codes that declares a severity or advice: refused, since
    the code means the same in every tenant's report (docs/summary.md) and its other filters."""
    severity, _, advice = CATALOGUE[reason]
    has = f"its severity, {severity}," if key == "severity" else f"its advice, '{advice}',"
    return (f"'{reason}' is one of the report's own codes and has {has} in every report: '{key}' is for a "
            f"reason of the tenant's own. Remove '{key}', or give the filter a reason of its own")


def _declared_once(entities: Any, report: Report) -> None:
    """The filters of one reason of the tenant's own (in any entity) declare the same severity and
    advice, or leave them out: the summary and the report show one of each per code."""
    first: dict[tuple[str, str], tuple[Any, tuple]] = {}
    for entity in ENTITIES:
        spec = entities.get(entity) if isinstance(entities, dict) else None
        filters = spec.get("filters") if isinstance(spec, dict) else None
        for i, rule in enumerate(filters if isinstance(filters, list) else ()):
            reason = rule.get("reason") if isinstance(rule, dict) else None
            if not isinstance(reason, str) or reason in CATALOGUE or rule.get("enabled") is False:
                continue
            for key in ("severity", "advice"):
                if rule.get(key) in (None, "") or not isinstance(rule[key], str) \
                        or (key == "severity" and rule[key] not in ("info", "warning")):   # the schema's error
                    continue
                path = ("entities", entity, "filters", i, key)
                seen = first.setdefault((reason, key), (rule[key], path))
                if seen[0] != rule[key]:
                    there, here = report.loc.problem(seen[1], ""), report.loc.problem(path, "")
                    where = f"line {there.line}" if there.file == here.file else f"{there.file}:{there.line}"
                    report.error(path, f"another filter of the reason '{reason}' declares the {key} {seen[0]!r} "
                                       f"({where}): the summary and the report show one {key} per reason; write "
                                       f"the same, or leave '{key}' out here (the one declared counts for every "
                                       "filter of the reason)")


def _clashing_codes(values: dict, path: tuple, report: Report) -> None:
    """Two codes of one table that map_values takes for the same (compared trimmed and lower-cased,
    1 and '1' alike) with different values: only the last would count, without a word. A code YAML
    reads as null (`null:`, `~:`) never matches: map_values gives the default for null."""
    first: dict[str | None, Any] = {}
    for code, value in values.items():
        key = table_key(code)
        if code is None:
            report.warning(path + (code,), "code null (a key written null or ~) never matches: map_values gives the "
                                           "table's default for a missing value; set 'default' for that, or quote the "
                                           "key (\"null\":) if the ERP writes the text null")
        if key in first and values[first[key]] != value:
            other = first[key]
            seen, here = report.loc.problem(path + (other,), ""), report.loc.problem(path + (code,), "")
            where = f"line {seen.line}" if seen.file == here.file else f"{seen.file}:{seen.line}"
            report.error(path + (code,), clash_message(code, other, value, values[other], where))
        first.setdefault(key, code)


class _Entity:
    def __init__(self, name: str, spec: dict, source_type: Any, report: Report, compiled: Compiled):
        self.name, self.spec, self.source_type = name, spec, source_type
        self.report, self.compiled = report, compiled
        self.path = ("entities", name)
        self.columns: list[str] | None = None

    def check(self) -> None:
        self._source()
        self.compiled.columns[self.name] = self.columns
        key = self.spec.get("key")
        if isinstance(key, str):
            self._column(self.path + ("key",), key, "key column")
        elif isinstance(key, list):
            for i, column in enumerate(key):
                if isinstance(column, str):
                    self._column(self.path + ("key", i), column, "key column")
        self._fields()
        if "contract" in self.spec:
            if self.name != "occupancies":
                self.report.error(self.path + ("contract",), "'contract' is only used in occupancies")
            else:
                self._expression(self.path + ("contract",))
        filters = self.spec.get("filters")
        if isinstance(filters, list):
            self._filters(filters)

    def _source(self) -> None:
        spec, report, path = self.spec, self.report, self.path
        if self.source_type == "sql":
            if "query" not in spec:
                report.error(path, "missing field 'query': a mapping with source_type sql reads each entity with a query")
            for key in ("endpoint", "record_selector", "paginator"):
                if key in spec:
                    report.error(path + (key,), f"'{key}' is for API sources; this mapping has source_type sql")
        elif self.source_type == "api":
            if "endpoint" not in spec:
                report.error(path, "missing field 'endpoint': a mapping with source_type api reads each entity from an endpoint")
            if "query" in spec:
                report.error(path + ("query",), "'query' is for SQL sources; this mapping has source_type api")
            self._jmespath(path + ("record_selector",), spec.get("record_selector"))
            paginator = spec.get("paginator")
            if isinstance(paginator, dict):
                self._jmespath(path + ("paginator", "cursor_path"), paginator.get("cursor_path"))
                if paginator.get("type") == "cursor" and "cursor_path" not in paginator:
                    report.error(path + ("paginator",), "missing field 'cursor_path' (required with type cursor)")
        query = spec.get("query")
        if not isinstance(query, str) or self.source_type == "api":
            return
        issue = find_issue(query)
        if issue:
            offset = _offset(query, issue.line, issue.col)
            report.error(path + ("query",), issue.message, offset=offset)
            return
        self.columns = select_columns(query)
        if self.columns is None:
            report.warning(path + ("query",), "the query selects *, so the columns the mapping uses cannot be "
                                              "checked: name the columns in the select list")

    def _fields(self) -> None:
        fields = self.spec.get("fields")
        if not isinstance(fields, dict):
            return
        known = contract.fields(self.name)
        for name in fields:
            path = self.path + ("fields", name)
            if name not in known:
                hint = did_you_mean(str(name), known) or f"The import API's {self.name} fields are: {quoted_list(known)}"
                self.report.error(path, f"unknown field '{name}' for {self.name}. {hint}")
            self._expression(path)
            if name in known:
                self._code_values(name, fields[name])
        for name in contract.required(self.name):
            if name not in fields:
                removed = self.path + ("fields", name)   # unmapped by an override (null): report there
                where = removed if self.report.loc.origin(removed) else self.path + ("fields",)
                self.report.error(where, f"the import API requires '{name}' for {self.name}: map it")

    def _code_values(self, name: str, text: Any) -> None:
        """A field that is map_values(..., 'table') gives the table's values: each one the import API
        does not accept for the field (a typo, 'hobby' for a unit type) would refuse every record
        with that code and send the property manager to fix an ERP that is right."""
        allowed = contract.record_schema(self.name)["properties"][name].get("enum")
        try:
            parsed = jmespath.compile(text).parsed if isinstance(text, str) and allowed else None
        except JMESPathError:
            return
        if not parsed or parsed.get("type") != "function_expression" or parsed.get("value") != "map_values":
            return
        argument = parsed["children"][1] if len(parsed["children"]) == 2 else {}
        table = self.compiled.code_tables.get(argument.get("value")) if argument.get("type") == "literal" else None
        if table is None:
            return
        values = [e for e in allowed if e is not None]
        tables = ("code_tables", table.name)
        wrong = [(tables + ("values", code), f"code '{code}' gives", value) for code, value in table.values.items()]
        wrong.append((tables + ("default",), "the default is", table.default))
        for path, what, value in wrong:
            if value is not None and value not in allowed and path not in self.compiled.reported:
                self.compiled.reported.add(path)
                hint = did_you_mean(str(value), values) or f"The import API's values are: {quoted_list(values)}"
                self.report.error(path, f"{what} {value!r}, which the import API does not accept for {self.name}."
                                        f"{name} (map_values in {'.'.join(self.path)}.fields.{name}). {hint}")

    def _filters(self, filters: list) -> None:
        seen: set[str] = set()
        for i, spec in enumerate(filters):
            if not isinstance(spec, dict):
                continue
            path = self.path + ("filters", i)
            name = spec.get("name")
            if isinstance(name, str):
                if name in seen:
                    self.report.error(path + ("name",), f"the filter name '{name}' is used twice in {self.name}: "
                                                        "give each filter its own name")
                seen.add(name)
            reason = spec.get("reason")
            if isinstance(reason, str) and reason not in CATALOGUE \
                    and (close := did_you_mean(reason, FILTER_REASONS)):
                self.report.warning(path + ("reason",), f"'{reason}' is none of the report's reason codes, so the "
                                    "summary and the data-quality report count the records the filter excludes "
                                    f"under a code of their own, without the report's advice. {close}")
            if isinstance(reason, str) and reason in CATALOGUE:
                for key in ("severity", "advice"):
                    if key in spec:
                        self.report.error(path + (key,), _report_code_declared(reason, key))
            kinds = [k for k in FILTER_KINDS if k in spec]
            if not kinds:
                self.report.error(path, "the filter needs one of: " + ", ".join(FILTER_KINDS))
            elif len(kinds) > 1:
                self.report.error(path, f"the filter has {' and '.join(kinds)}: a filter has exactly one of "
                                        f"{', '.join(FILTER_KINDS)}; split it into separate filters")
            elif kinds[0] in ("flag", "expr") and "field" in spec:
                self.report.error(path + ("field",), f"'field' is not used with '{kinds[0]}'"
                                  + (": 'flag' names the column itself" if kinds[0] == "flag" else ""))
            for key in ("field", "flag"):
                if isinstance(spec.get(key), str):
                    self._column(path + (key,), spec[key], "column")
            if isinstance(spec.get("regex"), str):
                try:
                    re.compile(spec["regex"])
                except re.error as exc:
                    self.report.error(path + ("regex",), f"the regular expression does not compile: {exc.msg}",
                                      offset=exc.pos)
            for kind in ("in", "not_in"):
                for k, value in enumerate(spec.get(kind) if isinstance(spec.get(kind), list) else ()):
                    if isinstance(value, str) and re.fullmatch(r"0\d+", value.strip()):
                        self.report.warning(path + (kind, k), f"'{value}' is text with a leading zero (YAML 1.2 "
                                            f"reads {value} as text): it matches the text '{value}' only, not the "
                                            f"number {int(value)} a number column holds (filters compare values as "
                                            f"text); write {int(value)} if the column holds numbers")
            bounds = spec.get("range")
            if isinstance(bounds, dict) and all(isinstance(bounds.get(k), (int, float)) for k in ("min", "max")):
                if bounds["min"] > bounds["max"]:
                    self.report.error(path + ("range",), f"min {bounds['min']} is greater than max {bounds['max']}")
            if "expr" in spec:
                self._expression(path + ("expr",))

    def _expression(self, path: tuple) -> None:
        text = _get(self.spec, path[len(self.path):])
        if not isinstance(text, str):
            return
        try:
            expr = compile_expression(text, code_tables=self.compiled.code_tables)
        except ExprError as exc:
            self.report.error(path, exc.message, offset=exc.column)
            return
        self.compiled.exprs[path] = expr
        for column in sorted(expr.columns or ()):
            quoted = f'"{column}"' in text      # "de" is a column in jmespath, as in T-SQL; text is 'de'
            self._column(path, column, "column", offset=_word_offset(text, column),
                         text_hint=f"Text is written in single quotes: '{column}'. " if quoted else "")

    def _column(self, path: tuple, name: str, what: str, offset: int | None = None, text_hint: str = "") -> None:
        if self.columns is None or name in self.columns:
            return
        if name.casefold() in {c.casefold() for c in self.columns}:
            return  # SQL Server and the engine compare column names case-insensitively
        hint = text_hint + (did_you_mean(name, self.columns) or f"The query selects: {quoted_list(self.columns)}")
        self.report.error(path, f"{what} '{name}' is not in {self._query_named(path)}. {hint}", offset=offset)

    def _query_named(self, path: tuple) -> str:
        """'the query's select list', with where the query is when another file holds it than the
        problem at `path`: a tenant's query override that drops a column the mapping's fields read
        has its problems reported in the mapping, which the person did not change."""
        query, here = (self.report.loc.problem(p, "") for p in (self.path + ("query",), path))
        return "the query's select list" if query.file == here.file \
            else f"the select list of the query at {query.file}:{query.line}"

    def _jmespath(self, path: tuple, text: Any) -> None:
        if not isinstance(text, str):
            return
        try:
            jmespath.compile(text)
        except JMESPathError as exc:
            what = "it ends too early" if getattr(exc, "token_value", None) is None \
                else f"unexpected '{exc.token_value}'"
            self.report.error(path, f"the jmespath expression does not compile: {what}",
                              offset=getattr(exc, "lex_position", None))


def _get(data: Any, path: tuple) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _offset(text: str, line: int | None, col: int | None) -> int | None:
    """A 1-based line and column inside `text` as a 0-based offset (sqlglot points at the token's end)."""
    if not line or not col:
        return None
    lines = text.split("\n")
    if line > len(lines):
        return None
    return sum(len(x) + 1 for x in lines[: line - 1]) + max(col - 1, 0)


def _word_offset(text: str, word: str) -> int | None:
    match = re.search(r"(?<![\w.'`])" + re.escape(word) + r"(?![\w'`])", text)
    return match.start() if match else None
