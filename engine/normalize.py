"""Normalise records to the import API's rules before anything else looks at them.

Which fields get which treatment is derived from the spec (engine.contract): fields with
`format: email` are parsed as login addresses, fields with the E.164 pattern are normalised as
phone numbers, strings with `maxLength` are truncated or rejected by the tenant's rule. Every
change is a finding; a record that still breaks a rule is reported and not sent.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from engine import contract
from engine.config.model import Rules
from engine.findings import Finding
from engine.mapping import EntityData

E164 = r"^\+[1-9][0-9]{6,14}$"


def _spec_fields(entity: str) -> tuple[list[str], list[str], list[tuple[str, int]], list[str], list[str]]:
    emails, phones, limited, texts, numbers = [], [], [], [], []
    for name, prop in contract.record_schema(entity)["properties"].items():
        types = prop.get("type", [])
        types = [types] if isinstance(types, str) else types
        if "string" in types:
            texts.append(name)
        elif "number" in types or "integer" in types:
            numbers.append(name)
        if prop.get("format") == "email":
            emails.append(name)
        elif prop.get("pattern") == E164:
            phones.append(name)
        if "maxLength" in prop and name != "external_id":
            limited.append((name, prop["maxLength"]))
    return emails, phones, limited, texts, numbers


def _as_text(value: Any) -> Any:
    """Database values in string fields: dates as ISO dates, whole floats without '.0'."""
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()[:10]
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return str(int(value))
    return str(value)


def _as_number(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.replace(",", ".")) if value.strip() else None
        except ValueError:
            return value          # left for the record check to report
    return value


def normalize_entity(data: EntityData, rules: Rules, findings: list[Finding]) -> None:
    """Normalise every record of one entity in place; records that break a rule are dropped."""
    from engine.contract.rules import check_record
    from engine.expr.emails import analyze_email
    from engine.expr.phones import normalize_phone

    entity = data.entity
    emails, phones, limited, texts, numbers = _spec_fields(entity)
    add = findings.append
    dropped: list[str] = []
    for external_id, rec in data.records.items():
        d = rec.data
        for name in texts:
            value = d.get(name)
            if value is not None and value.__class__ is not str:
                d[name] = _as_text(value)
        for name in numbers:
            value = d.get(name)
            if value is not None and value.__class__ is not float and value.__class__ is not int:
                d[name] = _as_number(value)
        for name in emails:
            raw = d.get(name)
            if raw is None:
                continue
            info = analyze_email(raw)
            d[name] = info.login
            if info.invalid:
                what = "no valid address" if info.login is None else f"ignored invalid part(s) {list(info.invalid)}"
                add(Finding("email_invalid", entity, rec.key, f"{what} in {raw!r}", field=name))
            if info.annotated:
                add(Finding("email_annotated", entity, rec.key, f"annotation removed from {raw!r}", field=name))
            if info.multiple and len(info.addresses) > 1:
                add(Finding("email_multiple", entity, rec.key,
                            f"{len(info.addresses)} addresses in {raw!r}; login is {info.login}", field=name))
        for name in phones:
            raw = d.get(name)
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                d[name] = None
                continue
            e164 = normalize_phone(raw)
            d[name] = e164
            if e164 is None:
                add(Finding("phone_invalid", entity, rec.key, f"{raw!r} is not a phone number; sent empty", field=name))
        for name, limit in limited:
            value = d.get(name)
            if isinstance(value, str) and len(value) > limit:
                if rules.long_names == "truncate":
                    d[name] = value[:limit].rstrip()
                    add(Finding("name_truncated", entity, rec.key,
                                f"{len(value)} characters, cut to {limit}: {d[name]!r}", field=name))
                else:
                    add(Finding("name_too_long", entity, rec.key,
                                f"{len(value)} characters, at most {limit} allowed; not sent", field=name))
                    dropped.append(external_id)
                    break
        else:
            for v in check_record(entity, d):
                add(Finding("invalid_record", entity, rec.key, f"{v.message}; not sent", field=v.field))
                dropped.append(external_id)
                break
    for external_id in dropped:
        del data.records[external_id]
        data.excluded[external_id] = "invalid_record"
