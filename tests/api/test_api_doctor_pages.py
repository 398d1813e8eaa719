"""`idwell-sync doctor` says, under each endpoint it checks, how a run reads the endpoint's pages:
twice (pages by position move when the ERP changes while they are read) or once, and why. For
next-page links (`link_header`) a run judges by the first link whether they count pages or
records; doctor shows that link and the judgement, so that the onboarding engineer sees when an
API counts its pages by a name the judgement does not know, and sets `verify: true`. The link
comes with the first page, which doctor asks for anyway: no other request is sent.

Against the Cloud Connect stand-in (a real HTTP server on 127.0.0.1), doctor run as the engineer
runs it (a process of its own, text output)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cloud_connect import CloudConnect
from test_api_pages_moved import _moving_tenant
from test_api_source import KEY


def _doctor(folder: Path, tenant: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "CC_KEY": KEY, "HOME": str(folder)}
    return subprocess.run([sys.executable, "-m", "engine", "doctor", str(tenant)],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=300)


def _under(out: str, endpoint: str) -> str:
    """The line under an endpoint's step."""
    lines = out.splitlines()
    at = next(n for n, line in enumerate(lines) if f". endpoint {endpoint} (" in line)
    return lines[at + 1].strip()


@pytest.mark.parametrize("link_param, paginator, shown", [  # link_param: (name, more in the links)
    ("page", {"type": "link_header"},
     "pages: read twice, because the first next-page link (?page=2&pageSize=100) counts pages or records by "
     "'page', and such pages move when records are added or removed in the ERP while the pages are read "
     "(verify: false reads them once, for an API that serves a snapshot)"),
    ("seite", {"type": "link_header"},
     "pages: read once, because the first next-page link (?seite=2&pageSize=100) has no parameter taken to "
     "count pages or records (such as page, offset, $skip or startIndex), so it is taken to name the last "
     "record read. If the API's links count pages or records by another name, set verify: true in the "
     "entity's paginator"),
    (("page", "after=5000219"), {"type": "link_header"},
     "pages: read once, because the first next-page link (?page=2&pageSize=100&after=5000219) names the last "
     "record read by 'after' (its 'page' only numbers the page), so that nothing moves under it. If the API's "
     "pages count positions all the same, set verify: true in the entity's paginator"),
    ("seite", {"type": "link_header", "verify": True}, "pages: read twice, because the paginator's verify is true"),
    ("page", {"type": "link_header", "verify": False}, "pages: read once, because the paginator's verify is false"),
], ids=["counted-by-page", "counted-by-another-name", "naming-a-record", "verify-true", "verify-false"])
def test_doctor_says_how_next_page_links_are_read_from_the_first_page_alone(erp, tmp_path, link_param, paginator,
                                                                            shown):
    link_param, extra = link_param if isinstance(link_param, tuple) else (link_param, "")
    with CloudConnect(str(erp), KEY, links=True, link_param=link_param, link_extra=extra) as cc:
        tenant = _moving_tenant(tmp_path, cc, {"occupancies": {"paginator": paginator}})
        proc = _doctor(tmp_path, tenant)
        requests = cc.requests
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _under(proc.stdout, "/contracts/parties") == shown
    assert requests == 4, "one request per endpoint: the first page's Link header tells"


def test_doctor_says_how_pages_by_number_and_by_cursor_are_read(erp, tmp_path):
    with CloudConnect(str(erp), KEY) as cc:
        tenant = _moving_tenant(tmp_path, cc)
        proc = _doctor(tmp_path, tenant)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _under(proc.stdout, "/objects") == (
        "pages: read twice, because page numbers count positions, which move when records are added or removed "
        "in the ERP while the pages are read (verify: false reads them once, for an API that serves a snapshot)")
    assert _under(proc.stdout, "/persons") == (
        "pages: read once, because a cursor names the last record read, so that nothing moves under it")
