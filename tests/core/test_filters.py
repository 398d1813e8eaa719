"""Each filter kind (in, not_in, flag, regex, range, expr), declared in a tenant's overrides: which ERP
records it excludes, how many per rule, and that they are absent from the portal.

The expected keys are computed from the ERP rows with the rule's documented semantics; filters run in
order and the first match excludes, so records an earlier rule already took are not counted again.
"""
from __future__ import annotations

import re

TEST_RANGE = range(9000, 10000)
TRUTHY = ("1", "true", "j", "y", "x", "ja", "yes")      # the flag kind's set values (schema, FilterRule)


def units_filter(*rules: dict) -> dict:
    return {"overrides": {"entities": {"units": {"filters": list(rules)}}}}


def run_with(ws, entity: str, *rules: dict, **more):
    overrides = {"overrides": {"entities": {entity: {"filters": list(rules)}}}}
    if entity == "buildings":     # keep the demo tenant's own building filter unless a rule replaces it
        names = {r["name"] for r in rules}
        if "other_mandant" not in names:
            overrides["overrides"]["entities"]["buildings"]["filters"].insert(
                0, {"name": "other_mandant", "reason": "out_of_scope", "field": "Mandant", "not_in": [1, 2]})
    result = ws.run(ws.tenant(**overrides, **more))
    assert result.exit_code == 0, result.summary
    return result


def assert_excluded(result, portal, entity: str, rule: str, reason: str, expected: set[str]) -> None:
    assert expected, "the rule must match something in the demo"
    found = {f.key for f in result.findings if f.code == reason and f.entity == entity}
    assert found == expected, (sorted(found - expected)[:5], sorted(expected - found)[:5])
    assert all(f"filter '{rule}'" in f.message for f in result.findings if f.code == reason)
    assert result.prepared.data[entity].filtered[rule] == len(expected)
    assert result.summary["entities"][entity]["excluded"][reason] == len(expected)
    if entity != "occupancies":
        assert not expected & set(portal[entity]), "an excluded record reached the portal"


def test_in_compares_trimmed_text_case_insensitively(ws):
    result = run_with(ws, "occupancies", {"name": "no_tenants", "reason": "tenant_contract", "field": "Art", "in": ["m"]})
    expected = {f"{r['vertragnr']}/{r['adressnr']}" for r in ws.erp_rows(
        "SELECT p.vertragnr, p.adressnr FROM vertragpartner p JOIN vertrag v USING (vertragnr) WHERE v.art = 'M'")}
    portal = ws.portal()
    assert_excluded(result, portal, "occupancies", "no_tenants", "tenant_contract", expected)
    assert {o["role"] for o in portal["occupancies"].values()} == {"owner"}


def test_not_in_replaces_the_tenants_rule_by_name(ws):
    result = run_with(ws, "buildings", {"name": "other_mandant", "reason": "out_of_scope", "field": "Mandant",
                                        "not_in": [1]})
    expected = {str(r["objektnr"]) for r in ws.erp_rows("SELECT objektnr, mandant FROM objekt")
                if r["mandant"] != 1 and r["objektnr"] not in TEST_RANGE}
    assert any(r["mandant"] == 2 for r in ws.erp_rows("SELECT mandant FROM objekt"))
    portal = ws.portal()
    assert_excluded(result, portal, "buildings", "other_mandant", "out_of_scope", expected)
    kept = {str(r["objektnr"]) for r in ws.erp_rows("SELECT objektnr FROM objekt WHERE mandant = 1")
            if r["objektnr"] not in TEST_RANGE}
    assert set(portal["buildings"]) == kept
    excluded_units = {str(r["einheitid"]) for r in ws.erp_rows(
        "SELECT einheitid FROM einheit WHERE objektnr IN (%s)" % ",".join(expected))}
    assert excluded_units and not excluded_units & set(portal["units"])


def test_not_in_excludes_an_empty_value_and_trims(ws):
    ws.erp_execute("UPDATE objekt SET land = NULL WHERE objektnr = (SELECT max(objektnr) FROM objekt "
                   "WHERE mandant = 1 AND objektnr < 9000)")
    assert ws.erp_rows("SELECT count(*) FROM objekt WHERE land = ' de'")[0][0] >= 1, "the demo has a ' de'"
    result = run_with(ws, "buildings", {"name": "german_only", "reason": "foreign", "field": "Land", "not_in": ["DE"]})
    expected = {str(r["objektnr"]) for r in ws.erp_rows("SELECT objektnr, land, mandant FROM objekt")
                if (r["land"] is None or r["land"].strip().lower() != "de")
                and r["mandant"] in (1, 2) and r["objektnr"] not in TEST_RANGE}
    assert_excluded(result, ws.portal(), "buildings", "german_only", "foreign", expected)


def test_flag_treats_the_documented_values_as_set(ws):
    ordinary = [r["einheitid"] for r in ws.erp_rows(
        "SELECT einheitid FROM einheit WHERE typcode = 1 AND fiktiv = 0 ORDER BY einheitid DESC LIMIT 6")]
    for uid, value in zip(ordinary, ("J", "ja", "X", "N", "nein", "0")):
        ws.erp_execute(("UPDATE einheit SET fiktiv = ? WHERE einheitid = ?", (value, uid)))
    off = [{"name": n, "enabled": False} for n in ("phantom_type", "phantom_flag", "phantom_name")]
    result = ws.run(ws.tenant(**units_filter(*off, {"name": "fictitious", "reason": "fictitious", "flag": "Fiktiv"})))
    expected = {str(r["einheitid"]) for r in ws.erp_rows("SELECT einheitid, fiktiv FROM einheit")
                if str(r["fiktiv"]).strip().lower() in TRUTHY}
    assert {str(u) for u in ordinary[:3]} <= expected and not {str(u) for u in ordinary[3:]} & expected
    portal = ws.portal()
    assert_excluded(result, portal, "units", "fictitious", "fictitious", expected)
    assert {str(u) for u in ordinary[3:]} <= set(portal["units"])
    assert not [f for f in result.findings if f.code == "phantom_unit"], "the mapping's phantom rules are off"


def test_regex_searches_the_source_column(ws):
    pattern = r"(?i)\b(gmbh|kg)\b"
    result = run_with(ws, "users", {"name": "companies", "reason": "company", "field": "Nachname", "regex": pattern})
    expected = {str(r["adressnr"]) for r in ws.erp_rows("SELECT adressnr, nachname FROM adresse")
                if re.search(pattern, r["nachname"])}
    assert not any(re.search(r"(?i)^\s*(leerstand|leerstehend|n\.\s*n\.)\s*$", n)
                   for (n,) in ws.erp_rows("SELECT nachname FROM adresse WHERE adressnr IN (%s)" % ",".join(expected)))
    portal = ws.portal()
    assert_excluded(result, portal, "users", "companies", "company", expected)
    assert not [u for u in portal["users"].values() if re.search(pattern, u["last_name"])]
    for key in expected:          # their contracts are dropped with the reason
        for (v,) in ws.erp_rows("SELECT vertragnr FROM vertragpartner WHERE adressnr = ?", (key,)):
            assert not [o for o in portal.occupancies_of_contract(v) if o["user_id"] == key]


def test_range_is_inclusive_at_both_ends(ws):
    kellerraum, stellplatz = (ws.erp_rows("SELECT flaeche FROM einheit WHERE bezeichnung = ?", (n,))[0][0]
                              for n in ("Kellerraum 1", "TG-Stellplatz 1"))
    lo, hi = sorted((kellerraum, stellplatz))
    result = ws.run(ws.tenant(**units_filter({"name": "small_units", "reason": "small_unit", "field": "Flaeche",
                                              "range": {"min": lo, "max": hi}})))
    phantoms = {f.key for f in result.findings if f.code == "phantom_unit"}
    expected = {str(r["einheitid"]) for r in ws.erp_rows("SELECT einheitid, flaeche FROM einheit")
                if r["flaeche"] is not None and lo <= r["flaeche"] <= hi} - phantoms
    edges = {str(r["einheitid"]) for r in ws.erp_rows(
        "SELECT einheitid FROM einheit WHERE bezeichnung IN ('Kellerraum 1', 'TG-Stellplatz 1')")}
    assert edges <= expected
    assert_excluded(result, ws.portal(), "units", "small_units", "small_unit", expected)


def test_expr_combines_columns(ws):
    expression = "TypCode == `3` || starts_with(Bezeichnung, 'Keller')"
    result = ws.run(ws.tenant(**units_filter({"name": "no_side_units", "reason": "side_unit", "expr": expression})))
    phantoms = {f.key for f in result.findings if f.code == "phantom_unit"}
    expected = {str(r["einheitid"]) for r in ws.erp_rows("SELECT einheitid, typcode, bezeichnung FROM einheit")
                if r["typcode"] == 3 or (r["bezeichnung"] or "").startswith("Keller")} - phantoms
    portal = ws.portal()
    assert_excluded(result, portal, "units", "no_side_units", "side_unit", expected)
    assert "parking" not in {u["type"] for u in portal["units"].values()}


def test_the_demo_mapping_counts_each_phantom_rule(demo_erp, ws, manifest):
    result = ws.run()
    filtered = result.prepared.data["units"].filtered
    for rule, code in (("phantom_type", "phantom_by_type"), ("phantom_flag", "phantom_by_flag"),
                       ("phantom_name", "phantom_by_name")):
        assert filtered[rule] == len(manifest.keys(code, "einheitid")), rule
    total = sum(len(manifest.keys(c, "einheitid")) for c in ("phantom_by_type", "phantom_by_flag", "phantom_by_name"))
    assert result.summary["entities"]["units"]["excluded"]["phantom_unit"] == total


def test_filters_that_exclude_every_row_of_an_entity_are_a_warning(ws):
    """not_in: ['01', '02'] (YAML 1.2 reads 01 as text) matches no Mandant 1 of the number column:
    every building is out of scope, and the run says so instead of sending nothing quietly."""
    filters = [{"name": "other_mandant", "reason": "out_of_scope", "field": "Mandant", "not_in": ["01", "02"]}]
    result = ws.run(ws.tenant(overrides={"entities": {"buildings": {"filters": filters}}}))
    buildings = result.summary["entities"]["buildings"]
    assert buildings["desired"] == 0 and sum(buildings["excluded"].values()) == buildings["extracted"] > 0
    [warning] = [f for f in result.findings if f.code == "filter_excludes_all"]
    assert (warning.entity, warning.severity) == ("buildings", "warning")
    assert f"the filters excluded all {buildings['extracted']:,} rows of buildings (other_mandant " \
        f"{buildings['excluded']['out_of_scope']:,}, test_objects 1)" in warning.message
    assert not [f for f in ws.run().findings if f.code == "filter_excludes_all"]     # the demo's own filters
