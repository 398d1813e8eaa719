"""The API source's paging styles (none, page_number, offset, cursor, link_header; the paginator
of an entity's mapping): `pages` reads an endpoint page by page, once, to its end, and stops with
an error that says what to set where the paging cannot end well (an API that ignores the page
parameter or caps its pages, a cursor or next-page link that comes back). Which records of the
pages to map, and whether they are read a second time: engine.sources._readings and
ApiExtractor.batches.
"""
from __future__ import annotations

import json
import logging
from typing import Iterator

import httpx
import jmespath

from engine.config.model import EntityMapping, Paginator
from engine.errors import SourceError
from engine.plural import counted
from engine.sources._api_requests import ApiRequests, look_hint

log = logging.getLogger("engine.sources.api")     # the API source's log, under the name its lines have always had


Place = tuple[str, "dict | None"]
"""Where a page is asked for: the URL (relative to base_url, or a next-page link) and the query."""


def pages(requests: ApiRequests, entity: EntityMapping) -> Iterator[tuple[httpx.URL | None, list[dict],
                                                                           httpx.URL | None, Place]]:
    """Each page's records, with the next-page link (link_header) that led to the page and the one
    the page names (None for the first page and the last, and for the other paging styles), and
    where it was asked for, so that page_at can ask for it again."""
    source, tenant_id = requests.source, requests.tenant_id
    params = {**source.params, **entity.params}
    pager = entity.paginator or Paginator(type="none")
    url: str | None = entity.endpoint.lstrip("/")
    link: httpx.URL | None = None
    page, offset, cursor = pager.start, 0, None
    size = source.page_size
    previous: list | None = None          # the last page's records: a page that repeats them ends or fails
    short_at: int | None = None           # the page_number page that came back short (the end, or a cap)
    seen_cursors: set = set()
    capped = False
    for _ in range(1_000_000):
        query = dict(params)
        if pager.type == "page_number":
            query[pager.page_param or "page"] = page
            query[pager.size_param or "pageSize"] = size
        elif pager.type == "offset":
            query[pager.offset_param or "offset"] = offset
            query[pager.size_param or "limit"] = size
        elif pager.type == "cursor" and cursor:
            query[pager.cursor_param or "cursor"] = cursor
        place = (url, query if pager.type != "link_header" or page == pager.start else None)
        response, body, records = _ask(requests, entity, place)
        if pager.type in ("page_number", "offset") and records and records == previous:
            if len(records) < size:
                return                      # the last page again: the API repeats it past the end
            where, parameter = (f"page {page}", "page") if pager.type == "page_number" else (f"offset {offset}", "offset")
            raise _paging_error(tenant_id, entity, f"{where} answered the same records as the page before: the "
                                f"API ignores the {parameter} parameter",
                                "check the paginator's parameter names against the API's documentation")
        if short_at is not None and records:
            raise _paging_error(tenant_id, entity, f"page {short_at} answered {counted(len(previous or ()), 'record')} for "
                                f"{pager.size_param or 'pageSize'}={size}, and page {page} more: the API "
                                f"caps its pages at {counted(len(previous or ()), 'record')}, so page numbers for "
                                f"{size} would skip records",
                                f"set source.page_size to {len(previous or ())} (or less)")
        following = None
        if pager.type == "link_header" and (nxt := response.links.get("next", {}).get("url")):
            following = response.url.join(nxt)
        if records:
            yield link, records, following, place
        if pager.type == "none":
            return
        if pager.type in ("page_number", "offset"):
            if not records:                 # asked past the end: every page is read
                return
            if pager.type == "offset" and previous is not None and len(previous) < size and not capped:
                capped = True               # offsets count records: reading on is right, said once
                log.warning("tenant '%s': %s: %s answers at most %d records for a limit of %d; reading on "
                            "until an empty page (set source.page_size to %d to save requests)", tenant_id,
                            entity.name, entity.endpoint, len(previous), size, len(previous))
            if len(records) < size and pager.type == "page_number":
                short_at = page             # the last page, or the API caps its pages: the next one says
            page, offset, previous = page + 1, offset + len(records), records
        elif pager.type == "cursor":
            cursor = jmespath.search(pager.cursor_path or "next_cursor", body)
            if not cursor:
                return
            if str(cursor) in seen_cursors:
                raise _paging_error(tenant_id, entity, f"the cursor {str(cursor)[:40]!r} came back a second "
                                    "time: the pages would repeat without end",
                                    f"check cursor_path against a response ({look_hint(tenant_id)})")
            seen_cursors.add(str(cursor))
        else:
            if following is None:
                return
            link = following
            url, page = requests.same_origin(link, entity.name), page + 1
            if url in seen_cursors:
                raise _paging_error(tenant_id, entity, "the next-page link points to a page read already: the "
                                    "pages would repeat without end", "ask the vendor about the API's Link header")
            seen_cursors.add(url)
    raise SourceError(f"tenant '{tenant_id}': entity '{entity.name}': pagination did not end", cause="config")


def page_at(requests: ApiRequests, entity: EntityMapping, place: Place) -> list[dict]:
    """The records of the page asked for at `place` (as `pages` gave it), asked for again."""
    return _ask(requests, entity, place)[2]


def _ask(requests: ApiRequests, entity: EntityMapping, place: Place) -> tuple[httpx.Response, object, list[dict]]:
    """The answer to a page's request, its body and its records (the entity's record_selector);
    a selector that yields no list of JSON objects stops the extract."""
    tenant_id = requests.tenant_id
    response, body = requests.get_json(place[0], place[1], entity.name)
    records = jmespath.search(entity.record_selector, body) if entity.record_selector else body
    if not isinstance(records, list):
        raise SourceError(f"tenant '{tenant_id}': entity '{entity.name}': the record selector "
                          f"{entity.record_selector!r} did not yield a list from {entity.endpoint}",
                          cause="config", hint=f"check record_selector against a response ({look_hint(tenant_id)})")
    odd = next((r for r in records if not isinstance(r, dict)), records)
    if odd is not records:
        raise SourceError(f"tenant '{tenant_id}': entity '{entity.name}': {entity.endpoint} answered "
                          f"a record that is not a JSON object: {json.dumps(odd)[:40]}",
                          cause="config", hint=f"check record_selector against a response "
                                               f"({look_hint(tenant_id)}): it must select the list of the "
                                               "records themselves")
    return response, body, records


def _paging_error(tenant_id: str, entity: EntityMapping, problem: str, hint: str) -> SourceError:
    """Paging that cannot end well: stopped, so that the run neither loops for hours nor takes a
    part of the records for all of them."""
    return SourceError(f"tenant '{tenant_id}': entity '{entity.name}': {entity.endpoint}: {problem}",
                       cause="config", hint=hint)
