"""Semantic checks of a tenant file, beyond its schema and its mapping's checks.

The source matches the mapping's kind and is complete, and its URL names a database dialect that
SQLAlchemy can load here (engine.config.dialects; references in it are not resolved); no literal
secret hides in a URL or in params, and no reference where it would not be resolved; the dedup order names known fields; dates, the cron expression, the time zone and the
window make sense; thresholds are plausible (implausible but possible values are warnings), and a
code table of the overrides is one that a map_values reads (else a warning: a misspelt name).
"""
from __future__ import annotations

import datetime as dt
import re
import typing
import zoneinfo
from typing import Any, Iterator
from urllib.parse import unquote_plus

from croniter import CroniterError, croniter

from engine.config._report import Report
from engine.config._text import did_you_mean
from engine.config.dialects import url_dialect_problem, url_query_problem
from engine.config.model import EmailDedup
from engine.config.secrets import REFERENCE, SECRET_FIELDS

_POLICIES = typing.get_args(typing.get_type_hints(EmailDedup)["policy"])
"""The dedup e-mail policies (engine.config.model.EmailDedup)."""

SERVER_FIELDS = ("host", "port", "database", "username", "password", "driver", "encrypt",
                 "trust_server_certificate", "host_name_in_certificate", "login_timeout",
                 "application_intent", "tds_version")
ID_PATTERN = r"[a-z0-9][a-z0-9_-]*"
DEDUP_ORDER_BUILTIN = ("role", "start_date", "external_id")
_SECRET_KEY = re.compile(r"(?i)(pass(word|wd)?|pwd|secret|token|api_?key|credential)")
_URL_SECRET_PARAM = re.compile(r"(?i)(?:[?&;]|^)(?:password|passwd|pwd|token|api_?key|secret)=([^&;]*)")


def check_tenant(data: Any, report: Report, *, mapping: Any, file_stem: str | None,
                 file_name: str | None = None) -> None:
    if not isinstance(data, dict):
        return
    file_name = file_name or f"{file_stem}.yaml"
    tenant_id = data.get("id")
    if file_stem and isinstance(tenant_id, str) and re.fullmatch(ID_PATTERN, tenant_id) and tenant_id != file_stem:
        report.error(("id",), f"the tenant id '{data['id']}' differs from its file name '{file_name}': the id "
                              "keys the tenant's run history, lock, e-mail winners and memory of what was written, "
                              "so a copy that keeps another tenant's id would share them; make the two equal")
    if "target" not in data:
        report.warning(("id",), "the tenant declares no target: validate, doctor and discover work without one, "
                                "but plan and run need one (a target section, docs/config.md)")
    _source(data.get("source"), report, mapping if isinstance(mapping, dict) else {})
    state_url = data.get("state_url")
    if isinstance(state_url, str) and (problem := url_dialect_problem(state_url)):
        report.error(("state_url",), problem)   # else every run, history and status stops at it (exit 10)
    for path, url in _urls(data):
        if isinstance(url, str) and url_has_literal_secret(url):
            report.error(path, "the URL contains a literal password or token: write a reference such as "
                               "${env:ACME_SQL_PASSWORD} in its place")
    _unresolved_references(data, report)
    _reference_names(data, report)
    _unused_code_tables(data, report, mapping if isinstance(mapping, dict) else {})
    _dedup(data.get("dedup"), report, mapping if isinstance(mapping, dict) else {})
    _window(data.get("contract_window"), report)
    _deletion(data.get("deletion"), report)
    _schedule(data.get("schedule"), report)


def _unused_code_tables(data: dict, report: Report, mapping: dict) -> None:
    """A warning for a code table of the tenant's overrides that no map_values(..., 'table') of
    the mapping (as merged) reads: it changes nothing, and the codes it was written for are still
    reported as code_not_in_table every night. Almost always a misspelt table name."""
    overrides = data.get("overrides")
    tables = overrides.get("code_tables") if isinstance(overrides, dict) else None
    if not isinstance(tables, dict) or not isinstance(mapping.get("entities"), dict):
        return
    used = _tables_read(mapping["entities"])
    known = mapping["code_tables"] if isinstance(mapping.get("code_tables"), dict) else {}
    for name in tables:
        if isinstance(name, str) and name not in used:
            hint = did_you_mean(name, sorted(set(known) - {name})) or (
                f"The mapping reads the code tables {', '.join(map(repr, sorted(used)))}" if used
                else "The mapping reads no code table")
            report.warning(("overrides", "code_tables", name),
                           f"no map_values(..., '{name}') of the mapping or the overrides reads the code table "
                           f"'{name}', so it changes nothing. {hint}")


def _tables_read(entities: dict) -> set[str]:
    """The code tables that the entities' expressions (fields, contract, filter expr) name in
    map_values(value, 'table')."""
    import jmespath
    from jmespath.exceptions import JMESPathError
    texts = []
    for spec in entities.values():
        if not isinstance(spec, dict):
            continue
        texts += list(spec["fields"].values()) if isinstance(spec.get("fields"), dict) else []
        texts.append(spec.get("contract"))
        texts += [f.get("expr") for f in spec.get("filters") or () if isinstance(f, dict)]
    found: set[str] = set()
    for text in texts:
        try:
            nodes = [jmespath.compile(text).parsed] if isinstance(text, str) else []
        except JMESPathError:
            continue                # the mapping's checks report it
        while nodes:
            node = nodes.pop()
            children = node.get("children") or []
            if node.get("type") == "function_expression" and node.get("value") == "map_values" \
                    and len(children) == 2 and children[1].get("type") == "literal" \
                    and isinstance(children[1].get("value"), str):
                found.add(children[1]["value"])
            nodes += [c for c in children if isinstance(c, dict)]
    return found


def _resolved_here(path: tuple) -> bool:
    """Whether a reference at `path` is resolved (engine.config._compile, the state store's URL)."""
    return path == ("state_url",) or (len(path) >= 2 and path[-1] in SECRET_FIELDS and
                                      path[:-1] in (("source",), ("source", "auth"), ("target",)))


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _texts(value: Any, path: tuple = ()) -> Iterator[tuple[tuple, str]]:
    """(path, text) of every string in a tenant document, in document order."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _texts(item, (*path, key))
    elif isinstance(value, list):
        for k, item in enumerate(value):
            yield from _texts(item, (*path, k))
    elif isinstance(value, str):
        yield path, value


def _reference_names(data: dict, report: Report) -> None:
    """An error for each ${env:NAME} whose NAME no shell or service manager can set (a space, a
    dash, a leading digit): the run would only say that it is not set, on the night."""
    for path, text in _texts(data):
        for kind, name in REFERENCE.findall(text) if _resolved_here(path) else ():
            if kind == "env" and not _ENV_NAME.fullmatch(name):
                suggestion = re.sub(r"\W", "_", name.strip())
                report.error(path, f"${{env:{name}}}: '{name}' cannot be the name of an environment variable "
                                   "(letters, digits and _, not starting with a digit; `export` and systemd's "
                                   f"Environment= cannot set it): write e.g. ${{env:{suggestion}}} and set that")


def _unresolved_references(data: dict, report: Report) -> None:
    """An error for each ${env:...} or ${file:...} where nothing resolves it: it would be sent or
    run as written (a query parameter, an endpoint, a SQL text), not as its value."""
    for path, text in _texts(data):
        if _resolved_here(path) or not (found := REFERENCE.search(text)):
            continue
        problem = report.loc.problem(path, "")
        if any(p.json_path == problem.json_path for p in report.problems):
            continue                    # e.g. a misspelt field, named once
        report.error(path, f"{found.group(0)} is not resolved here, it would be used as written: references are "
                           f"resolved only in {', '.join(sorted(SECRET_FIELDS))} of source, source.auth and target, "
                           "and in state_url. Write the value itself, or put a credential in the source's auth "
                           "settings")


def url_has_literal_secret(url: str) -> bool:
    """True if a URL carries a password (user:password@ or password=...) that is not a reference."""
    text = REFERENCE.sub("REF", url)
    match = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)@", text)
    if match and ":" in match.group(1) and match.group(1).split(":", 1)[1] not in ("", "REF"):
        return True
    # also in a percent-encoded query (odbc_connect=...%3BPWD%3D...%3B, as SQLAlchemy documents it)
    return any(value not in ("", "REF") for value in _URL_SECRET_PARAM.findall(text) + _URL_SECRET_PARAM.findall(
        unquote_plus(text.partition("?")[2])))


def _urls(data: dict) -> list[tuple[tuple, Any]]:
    out: list[tuple[tuple, Any]] = [(("state_url",), data.get("state_url"))]
    for section, keys in (("source", ("url", "base_url")), ("target", ("base_url",))):
        if isinstance(data.get(section), dict):
            out += [((section, k), data[section].get(k)) for k in keys]
    auth = data.get("source", {}).get("auth") if isinstance(data.get("source"), dict) else None
    if isinstance(auth, dict):
        out.append((("source", "auth", "token_url"), auth.get("token_url")))
    return out


def _source(source: Any, report: Report, mapping: dict) -> None:
    if not isinstance(source, dict):
        return
    kind, wanted = source.get("type"), mapping.get("source_type")
    if kind in ("sql", "api") and wanted in ("sql", "api") and kind != wanted:
        report.error(("source", "type"), f"the mapping '{mapping.get('name')}' reads {wanted} sources "
                                         f"(source_type: {wanted}), but this source is {kind}")
    if kind == "sql":
        has_url, has_host = "url" in source, "host" in source
        if not has_url and not has_host:
            report.error(("source",), "the sql source needs either 'url' (a SQLAlchemy URL) or 'host' with "
                                      "'database', 'username' and 'password'")
        elif has_url:
            extra = [key for key in SERVER_FIELDS if key in source]
            if extra:
                names = ", ".join(f"'{k}'" for k in extra)
                report.error(("source", extra[0]), f"{names} cannot be used together with 'url': give either 'url' "
                                                   "or the SQL Server fields (host, database, username, password, ...)")
            if isinstance(source["url"], str) and (problem := url_dialect_problem(source["url"])
                                                   or url_query_problem(source["url"])):
                report.error(("source", "url"), problem)
        else:
            _freetds_values(source, report)
    params = source.get("params")
    for key, value in (params.items() if isinstance(params, dict) else ()):
        if isinstance(value, str) and _SECRET_KEY.search(str(key)) and value and not REFERENCE.fullmatch(value):
            report.error(("source", "params", key), f"'{key}' looks like a secret: params are sent as written, "
                                                    "so credentials belong in the source's auth settings")


def _freetds_values(source: dict, report: Report) -> None:
    """An error for a host, database or username that FreeTDS cannot be given: FreeTDS versions
    read a '}' inside a braced value differently (engine.sources.odbc.escape_freetds_value), so
    the run could only refuse it at the connection. The password is a secret and is checked when
    it is resolved."""
    from engine.sources.odbc import driver_kind, escape_freetds_value
    driver = source.get("driver")
    if not isinstance(driver, str) or driver_kind(driver) != "freetds":
        return
    for name in ("host", "database", "username"):
        value = source.get(name)
        if not isinstance(value, str) or REFERENCE.search(value):
            continue
        try:
            escape_freetds_value(value)
        except ValueError:
            report.error(("source", name), f"FreeTDS (driver '{driver}') cannot be given this {name}: it holds a "
                                           "'}' together with a ';' (or starts with '{'), which FreeTDS versions "
                                           f"read differently; use Microsoft's ODBC Driver 18 for SQL Server "
                                           f"(source.driver), or a {name} without one of those characters")


def _dedup(dedup: Any, report: Report, mapping: dict) -> None:
    email = dedup.get("email") if isinstance(dedup, dict) else None
    if not isinstance(email, dict):
        return
    entities = mapping.get("entities") if isinstance(mapping.get("entities"), dict) else {}
    users = entities.get("users") if isinstance(entities.get("users"), dict) else {}
    user_fields = users.get("fields") if isinstance(users.get("fields"), dict) else {}
    known = list(DEDUP_ORDER_BUILTIN) + [f for f in user_fields if f not in DEDUP_ORDER_BUILTIN]
    order = email.get("order")
    for i, item in enumerate(order if isinstance(order, list) else ()):
        if isinstance(item, str) and item.lstrip("-") not in known:
            name = item.lstrip("-")
            hint = did_you_mean(name, known) or "Valid items are: " + ", ".join(known)
            report.error(("dedup", "email", "order", i), f"unknown field '{name}' in the dedup order. {hint}")
    policy = email.get("policy")
    if policy == "merge_partnership":
        occupancies = entities.get("occupancies") if isinstance(entities.get("occupancies"), dict) else {}
        if entities and "contract" not in occupancies:
            report.error(("dedup", "email", "policy"), "merge_partnership needs the occupancies' 'contract' "
                                                       "expression in the mapping (it tells which persons share a contract)")
    elif "fallback" in email and policy in _POLICIES:   # an unknown policy is the schema's error alone
        report.warning(("dedup", "email", "fallback"), "'fallback' is only used with policy merge_partnership")


def _window(window: Any, report: Report) -> None:
    if not isinstance(window, dict):
        return
    date = window.get("reference_date")
    if isinstance(date, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", date):
        try:
            dt.date.fromisoformat(date)
        except ValueError:
            report.error(("contract_window", "reference_date"), f"'{date}' is not a date of the calendar")
    for key in ("future_days", "grace_days"):
        if isinstance(window.get(key), int) and window[key] > 366:
            report.warning(("contract_window", key), f"{key} {window[key]} is more than a year: is that intended?")


def _deletion(deletion: Any, report: Report) -> None:
    if not isinstance(deletion, dict):
        return
    share, ratio = deletion.get("max_share"), deletion.get("min_source_ratio")
    if isinstance(share, (int, float)) and 0.5 < share <= 1:
        report.warning(("deletion", "max_share"), f"max_share {share} lets one run archive more than half of an "
                                                  "entity's records: the guard exists to stop that after a bad extract")
    if isinstance(ratio, (int, float)) and ratio == 0:
        report.warning(("deletion", "min_source_ratio"), "min_source_ratio 0 switches the guard against a shrunken "
                                                         "extract off")


def _schedule(schedule: Any, report: Report) -> None:
    if not isinstance(schedule, dict):
        return
    tz = schedule.get("timezone")
    if isinstance(tz, str):
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            hint = did_you_mean(tz, sorted(zoneinfo.available_timezones())) or "Use an IANA name such as Europe/Berlin."
            report.error(("schedule", "timezone"), f"unknown time zone '{tz}'. {hint}")
    cron = schedule.get("cron")
    if not isinstance(cron, str):
        return
    times = _cron_times(cron, report)
    window = schedule.get("window")
    if not times or not isinstance(window, dict):
        return
    start, end = _hhmm(window.get("start")), _hhmm(window.get("end"))
    if start is None or end is None:
        return
    if start == end:
        report.error(("schedule", "window"), "the window is empty: start and end are the same time")
        return
    outside = [t for t in times if not (start <= t < end if start < end else (t >= start or t < end))]
    if outside:
        first = outside[0]
        report.error(("schedule", "cron"), f"'{cron}' runs at {first // 60:02d}:{first % 60:02d}, outside the window "
                                           f"{window['start']}-{window['end']}")


def _cron_times(cron: str, report: Report) -> list[int]:
    """The minutes of the day at which `cron` runs in one week (sorted), or [] if invalid."""
    fields = cron.split()
    if not cron.startswith("@") and len(fields) != 5:
        report.error(("schedule", "cron"), f"'{cron}' is not a valid cron expression: expected five fields "
                                           f"(minute hour day month weekday), found {len(fields)}")
        return []
    try:
        it = croniter(cron, dt.datetime(2026, 1, 5))
        times = set()
        for _ in range(20000):
            when = it.get_next(dt.datetime)
            if when >= dt.datetime(2026, 1, 12):
                break
            times.add(when.hour * 60 + when.minute)
        return sorted(times)
    except (CroniterError, ValueError, KeyError) as exc:
        why = "a value is out of range (minute 0-59, hour 0-23, day 1-31, month 1-12, weekday 0-6)" \
            if "out of range" in str(exc) else "check each of the five fields"
        report.error(("schedule", "cron"), f"'{cron}' is not a valid cron expression: {why}")
        return []


def _hhmm(text: Any) -> int | None:
    if isinstance(text, str) and re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", text):
        return int(text[:2]) * 60 + int(text[3:])
    return None
