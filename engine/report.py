"""The run summary: a documented JSON object (docs/summary.md) and its text rendering."""
from __future__ import annotations

import os
import stat
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable

from engine.config.model import ENTITIES
from engine.findings import CATALOGUE, Finding, by_severity, code_info, count_by_code, tenant_codes
from engine.plan import GONE
from engine.plural import counted

SUMMARY_VERSION = 1
STORES = {"portal": "local portal store", "state": "state store"}
"""The stores of `unwritable`, as the text names them."""
SETTLED = ("landed", "sent_again", "refused", "gone")
"""How a complete run finds the writes earlier runs left unconfirmed (engine.record.record)."""


_DRIFT_LABELS = {GONE: "deleted or archived"}
"""The text summary's words for the drift counter's keys that are not fields' names."""

def summary(prepared, *, mode: str, status: str, applied=None, plan_file: str | None = None,
            allow_deletes: bool = False, retries: dict | None = None,
            settled: dict[str, dict[str, int]] | None = None,
            unwritable: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """The documented summary object (docs/summary.md). `retries`: the import API's requests sent
    again (engine.targets.idwell.IdwellTarget.retries), None when there were none; the source's
    (an API source's, engine.sources.api.ApiExtractor.retries) come with `prepared`. `settled`:
    how a run found the writes earlier runs left unconfirmed (engine.record.record), per entity.
    `unwritable`: the stores a plan read that the run could not write (engine.commands.plan.unwritable_stores)."""
    plan = prepared.plan
    excluded: dict[str, Counter] = {e: Counter(d.excluded.values()) + d.unkeyed for e, d in prepared.data.items()}
    rejected = Counter(o.change.entity for o in applied.rejected) if applied else Counter()
    findings = count_by_code(prepared.findings)
    codes = tenant_codes(prepared.tenant)
    return {
        "version": SUMMARY_VERSION,
        "tenant": prepared.tenant.id,
        "mode": mode,
        "status": status,
        "run_date": prepared.run_date.isoformat(),
        "reference_date": (prepared.tenant.window.reference_date or prepared.run_date).isoformat(),
        "entities": {
            e: {"extracted": prepared.data[e].extracted,
                "excluded": dict(sorted(excluded[e].items())),
                "desired": len(prepared.data[e].records),
                **plan.counts()[e],
                "rejected": rejected.get(e, 0)}
            for e in ENTITIES},
        "writes": plan.writes if applied is None else sum(1 for o in applied.outcomes if o.ok),
        "deletes_held": plan.held_reasons,
        "allow_deletes": allow_deletes,
        "drift": {e: dict(sorted(c.items())) for e, c in plan.drift.items() if c},
        "findings": findings,
        "finding_codes": {code: dict(zip(("severity", "advice"), code_info(code, codes))) for code in findings},
        "plan_file": plan_file,
        "unwritable": unwritable or None,
        "retries": retries,
        "source_retries": prepared.source_retries,
        "source_recovered": prepared.source_recovered,
        "settled": settled or None,
        "timings": {k: round(v, 3) for k, v in prepared.timings.items()},
    }


def held_along(s: dict[str, Any]) -> list[str]:
    """The entities whose deletes a summary shows held without a reason of their own: the guard
    holds every entity's deletes when one entity trips it (engine.plan.guard_deletes)."""
    tripped = {reason.split(":", 1)[0] for reason in s["deletes_held"]}
    return [e for e, c in s["entities"].items() if c["held"] and e not in tripped]


_LEFT = (("read", 8, "extracted"), ("excluded", 10, None), ("to send", 9, "desired"))
_RIGHT = (("create", 7, "create"), ("update", 7, "update"), ("delete", 7, "delete"), ("same", 8, "unchanged"),
          ("held", 6, "held"), ("refused", 8, "rejected"))


def _entity_table(entities: dict[str, dict[str, Any]]) -> list[str]:
    """The counts per entity and action, each column as wide as its largest figure needs (at
    least two spaces before it), so that a large tenant's figures never run together."""
    def cells(columns, c):
        return [f"{sum(c['excluded'].values()) if key is None else c[key]:,}" for _, _, key in columns]

    def widths(columns, rows):
        return [max(least, len(title) + 1, *(len(r[k]) + 2 for r in rows)) for k, (title, least, _) in enumerate(columns)]

    left = [cells(_LEFT, c) for c in entities.values()]
    right = [cells(_RIGHT, c) for c in entities.values()]
    lw, rw = widths(_LEFT, left), widths(_RIGHT, right)

    def line(name, lcells, rcells):
        return (f"  {name:<12}" + "".join(f"{v:>{w}}" for v, w in zip(lcells, lw)) + " | "
                + "".join(f"{v:>{w}}" for v, w in zip(rcells, rw)))

    head = line("entity", [t for t, _, _ in _LEFT], [t for t, _, _ in _RIGHT])
    return [head, "  " + "-" * (len(head) - 2),
            *(line(e, lc, rc) for e, lc, rc in zip(entities, left, right))]


def _merged_note(entities: dict[str, dict[str, Any]]) -> list[str]:
    """Where `to send` is more than `read` less `excluded`: the portal users made of partnerships,
    whose persons are counted as excluded (partnership_merged)."""
    lines = []
    for e, c in entities.items():
        made = c["desired"] - (c["extracted"] - sum(c["excluded"].values()))
        if made > 0 and c["excluded"].get("partnership_merged"):
            lines.append(f"  {e}: to send includes {counted(made, 'portal user')} merged from partnerships; their "
                         f"{counted(c['excluded']['partnership_merged'], 'person')} are counted as excluded "
                         "(partnership_merged)")
    return lines


def settled_text(found: dict[str, int]) -> str:
    """`40 writes an earlier run left unconfirmed: 37 had landed, 3 sent again` (history and summary)."""
    total = sum(found.values())
    said = dict(zip(SETTLED, ("had landed", "sent again", "refused now", "no longer sent")))
    parts = [f"{found[k]:,} {said[k]}" for k in SETTLED if found.get(k)]
    return f"{counted(total, 'write')} an earlier run left unconfirmed: " + ", ".join(parts)


def settled_line(settled: dict[str, dict[str, int]]) -> str:
    found = Counter()
    for counts in settled.values():
        found.update(counts)
    return "  " + settled_text(found) + " (sent without an answer; now settled)"


def _retry_line(asked: str, r: dict[str, Any], who: str) -> str:
    """`the import API was asked again 12 times (429 rate_limited 12), 3.0 s waiting: ...`"""
    times = "once" if r["requests"] == 1 else f"{r['requests']:,} times"
    return (f"  {asked} was asked again {times} (" + ", ".join(f"{why} {n:,}" for why, n in r["by_reason"].items())
            + f"), {r['waited_s']:,} s waiting: {who} was throttling or failing")


def render_text(s: dict[str, Any], findings: list[Finding], *, examples: int = 3) -> str:
    verb = "planned" if s["mode"] == "plan" else "applied"
    lines = [f"tenant {s['tenant']}: {s['mode']} {s['status']} (reference date {s['reference_date']})", ""]
    lines += _entity_table(s["entities"])
    lines += _merged_note(s["entities"])
    lines.append("")
    lines.append(f"  {counted(s['writes'], 'write')} {verb}.")
    for u in s.get("unwritable") or ():
        lines.append(f"  WARNING: a run could not write the {STORES[u['store']]} {u['path']}: {u['reason']}")
        lines.append(f"    what to do: {u['hint']} (the plan only reads it)")
    if s.get("source_retries"):
        lines.append(_retry_line("the ERP's API", s["source_retries"], "the ERP's server or the network"))
    if s.get("source_recovered"):
        lines.append("  the second reading of the ERP's pages found records the first had missed ("
                     + ", ".join(f"{e} {n:,}" for e, n in s["source_recovered"].items())
                     + "): records were removed in the ERP while the pages were read; they are "
                     + ("planned as synced, not archived" if s["mode"] == "plan" else "synced, not archived"))
    if s.get("retries"):
        lines.append(_retry_line("the import API", s["retries"], "the portal or the network"))
    if s.get("settled"):
        lines.append(settled_line(s["settled"]))
    if s["deletes_held"]:
        lines.append("  DELETES HELD BACK (if they are intended: `idwell-sync run` the tenant with --allow-deletes):")
        lines += [f"    - {r}" for r in s["deletes_held"]]
        along = held_along(s)
        if along:
            lines.append(f"    - {', '.join(along)}: held with them, not for a reason of their own (the guard holds "
                         "all of a run's deletes or none)")
    if s["drift"]:
        lines.append("  drift (edited in the portal; the run overwrites them with the ERP's values):" if s["mode"] == "plan"
                     else "  drift (edited in the portal, overwritten with the ERP's values):")
        for e, fields in s["drift"].items():
            lines.append(f"    {e}: " + ", ".join(f"{_DRIFT_LABELS.get(f, f)} {n}" for f, n in fields.items()))
    if s["findings"]:
        lines += ["", "  findings (what to fix in the ERP):"]
        by_code: dict[str, list[Finding]] = defaultdict(list)
        for f in findings:
            by_code[f.code].append(f)
        codes = {**CATALOGUE, **{code: (c["severity"], True, c["advice"])
                                 for code, c in s.get("finding_codes", {}).items()}}
        for code, n in by_severity(s["findings"], codes):
            sev, fix = code_info(code, codes)
            lines.append(f"    {sev:<8}{code:<28}{n:>7,}  {fix}")
            for f in by_code[code][:examples]:
                lines.append(f"              e.g. {f.entity} {f.key}: {f.message}")
    return "\n".join(lines)


def write_whole(path: Path, write: Callable[[Any], None], *, encoding: str = "utf-8", newline: str | None = None,
                errors: str = "strict", binary: bool = False) -> None:
    """Write a file whole or not at all: into a temporary file beside it, then renamed over it,
    so that a reader (a mail job sending the report, a review tool) never sees half a file,
    and a failure leaves the previous one. `binary`: `write` gets a file open for bytes (and
    `encoding`, `newline`, `errors` do not apply)."""
    how = {"mode": "wb"} if binary else {"mode": "w", "encoding": encoding, "newline": newline, "errors": errors}
    path = path.resolve() if path.is_symlink() else path       # the file a link names is the one replaced
    if path.exists() and not path.is_file():                   # /dev/stdout, a pipe: written as it is
        with path.open(**how) as fh:
            write(fh)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open(**how) as fh:
            write(fh)
        if path.exists():                                      # keeps the permissions it was given
            os.chmod(temporary, stat.S_IMODE(path.stat().st_mode))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
