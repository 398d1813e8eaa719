"""`idwell-sync demo`: generate the demo DOMUS database and sync the demo tenant into the local store."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.commands._common import add_findings_delimiter, output_file
from engine.errors import ExitCode

HELP = "generate the demo ERP (if missing) and run the demo tenant into the local portal store"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", type=Path, default=Path("tenants/demo.yaml"), help="the demo tenant file")
    parser.add_argument("--size", choices=["S", "M", "L"], default=None,
                        help="demo ERP size (S, ~300 units, when generating); an existing demo ERP of another "
                             "size or seed is generated anew, its portal store and state with it, as with "
                             "--fresh. Without --size and --seed an existing demo ERP is kept as it is")
    parser.add_argument("--seed", type=int, default=None, help="the generator's seed (42 when generating; see --size)")
    parser.add_argument("--fresh", action="store_true",
                        help="regenerate the ERP and start with an empty portal store and state")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--findings", type=output_file, default=Path("var/demo/findings.csv"), metavar="FILE",
                        help="where to write the data-quality report (default: var/demo/findings.csv; "
                             "FILE.xlsx: an Excel workbook)")
    add_findings_delimiter(parser)


def main(args) -> int:
    from engine.config import load_tenant
    from engine.demo import generate
    from engine.pipeline import run_tenant
    from engine.progress import Progress
    from engine.demo.report import hard_case_lines
    from engine.report import render_text
    from engine.commands._common import check_findings, open_state, with_failure, write_report
    check_findings(args)
    tenant = load_tenant(args.tenant)
    url = str(tenant.source.url) if tenant.source.type == "sql" and tenant.source.url else None
    if not url or not url.startswith("sqlite:///"):
        print(f"idwell-sync demo: {args.tenant} must read a SQLite file (source.url sqlite:///...)", file=sys.stderr)
        return ExitCode.USAGE
    erp = Path(url[len("sqlite:///"):])
    size = args.size or "S"
    seed = 42 if args.seed is None else args.seed
    if not args.fresh and erp.exists() and (args.size or args.seed is not None) \
            and _generated_as(erp) != (size, seed):
        print(f"idwell-sync demo: {erp} is not a demo ERP of size {size}, seed {seed}: generating it anew, "
              "with an empty portal store and state (as --fresh)", file=sys.stderr)
        args.fresh = True
    if args.fresh:
        for p in (erp, getattr(tenant.target, "path", None)):
            if p is not None and Path(p).exists():
                Path(p).unlink()
    if not erp.exists():
        erp.parent.mkdir(parents=True, exist_ok=True)
        print(f"generating demo ERP (size {size}, seed {seed}) into {erp} ...", file=sys.stderr)
        generate(url, size=size, seed=seed)
    args.state, args.tenant_id = None, tenant.id
    state = open_state(args, tenant)        # the store `idwell-sync run demo` uses: one history, one lock
    if args.fresh:
        state.forget(tenant.id)
    try:
        result = run_tenant(tenant, state, progress=Progress())
    finally:
        state.close()
    report_failed = write_report(result.findings, args.findings, "--findings", result,
                                 delimiter=args.findings_delimiter)
    cases = _hard_cases(erp, tenant, result.findings)
    if args.json:
        out = with_failure(result.summary, report_failed)
        if cases:
            out = {**out, "hard_cases": cases}
        json.dump(out, sys.stdout, ensure_ascii=False, indent=2)
        print()
    else:
        print(render_text(result.summary, result.findings))
        if cases:
            print("\n  hard cases of the demo ERP (docs/demo-erp.md, \"The demo's closing table\"): instances; findings "
                  "on their ERP keys, with the instances each was reported for; their ERP records in the portal")
            print("\n".join(hard_case_lines(cases)))
        print()
        if not report_failed:
            print(f"  data-quality report: {args.findings}")
        print(f"  portal store: {tenant.target.path}  (run `idwell-sync demo` again: zero writes)")
    if report_failed:                 # the run stands as recorded; only its report is missing (exit 2)
        sys.stdout.flush()
        print(f"idwell-sync demo: error: {report_failed}", file=sys.stderr)
        return int(report_failed.exit_code)
    return result.exit_code


def _generated_as(erp: Path) -> tuple[str, int] | None:
    """The size and seed the demo ERP at `erp` was generated with (its manifest), or None."""
    from engine.demo.manifest import Manifest
    try:
        manifest = Manifest.load(erp.with_name(erp.name + ".manifest.json"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return manifest.size, manifest.seed


def _hard_cases(erp: Path, tenant, findings) -> list[dict]:
    """What the run made of each hard case recorded in the ERP's manifest (engine.demo.report)."""
    from engine.demo.manifest import Manifest
    from engine.demo.report import hard_cases
    from engine.targets import open_target
    manifest_file = Path(f"{erp}.manifest.json")
    if not manifest_file.exists():
        return []
    target = open_target(tenant)
    try:
        portal = {e: {r["external_id"] for r in target.read(e)} for e in ("buildings", "units", "users", "occupancies")}
    finally:
        target.close()
    return hard_cases(Manifest.load(manifest_file), findings, portal)
