"""The API source: DOMUS Cloud Connect (or any JSON REST API) read page by page with httpx.

Declared per entity in the mapping: `endpoint`, `record_selector` (jmespath into the response
body) and `paginator` (none, page_number, offset, cursor, link_header; see PAGINATORS). Records
are dicts (nested JSON); mapping expressions read them with dotted paths.

ApiExtractor ties the parts together: the credentials (engine.sources._api_auth), the requests
with their retries (engine.sources._api_requests), the paging styles (engine.sources._api_pages),
the two readings of pages by position (engine.sources._readings) and the names the mapping reads
that no record has (engine.sources.unread_paths).
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any, Callable, Iterator

import httpx

from engine.config.model import ApiSource, EntityMapping
from engine.sources._api_auth import Auth
from engine.sources._api_pages import page_at, pages
from engine.sources._api_requests import ApiRequests
from engine.sources._readings import Readings
from engine.sources.unread_paths import UnreadPaths

log = logging.getLogger(__name__)


class ApiExtractor:
    def __init__(self, source: ApiSource, tenant_id: str, *, run_date: dt.date, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.source, self.tenant_id, self.run_date = source, tenant_id, run_date
        self.recovered: dict[str, int] = {}     # entity -> records only the second reading of its pages had
        self._requests = ApiRequests(source, tenant_id, Auth(source, tenant_id, self._wait_to_retry),
                                     transport=transport, sleep=sleep)

    def retries(self) -> dict | None:
        """The requests sent again so far, token requests too, and the time waited before them,
        for the run summary (ApiRequests.retries); None when each was answered the first time."""
        return self._requests.retries()

    def _wait_to_retry(self, reason: str, seconds: float) -> None:
        """A token request sent again (Auth), counted with the pages' requests."""
        self._requests.wait_to_retry(reason, seconds)

    def batches(self, entity: EntityMapping, extra_params: dict[str, Any]) -> Iterator[tuple[None, list[dict]]]:
        """The entity's records page by page. Once every page is read, a name the mapping reads
        that no record had is warned about: in JSON a misspelt or wrongly cased name is not an
        error, it reads as null in every record (for a query, binding a column that the query
        does not return fails instead).

        Pages by position (page_number, offset, and next-page links that count pages or records:
        engine.sources._readings.positional) are read a second time, unless the paginator's
        `verify` is false: a record removed in the ERP while the pages are read moves the ones
        after it back, so that the first record of the next page lands on a page read already
        and the first reading misses it. Taken for deleted, it would be archived in the portal
        until the next run. A record added moves them on, so that one comes again on the next
        page, with other values if it changed meanwhile, as a second ERP record with its key
        would. Which records of the two readings are mapped, when a few pages are read a third
        time (_third_reading), and why by their external_id, not by the mapping's `key` (which may
        name less than the record): engine.sources._readings.
        A record removed for good is in neither and is deleted as before; one removed while the
        pages are read is at worst deleted a run later. A cursor names the last record read, so
        that nothing moves under it, and so does a next-page link that names one (?after=...):
        read once."""
        unread, seen = UnreadPaths(entity), 0
        readings = Readings(entity.paginator, _id_getter(entity, self.tenant_id))
        for link, records, _, _ in pages(self._requests, entity):
            records = readings.first(records, link)
            unread.see(records)
            seen += len(records)
            yield None, records
        for records in self._second_reading(entity, readings):
            unread.see(records)
            seen += len(records)
            yield None, records
        self._third_reading(entity, readings)
        records = readings.held()
        if records:
            yield None, records
        self._moved(entity, readings)
        missing = unread.missing() if seen else []
        if missing:
            log.warning("tenant '%s': %s: no record from %s has %s; what reads it is null in every record. "
                        "Correct the name in the mapping (names are case-sensitive), unless the API leaves "
                        "the field out when it is empty", self.tenant_id, entity.name, entity.endpoint,
                        "; ".join(missing))

    def first_page(self, entity: EntityMapping) -> tuple[list[dict], httpx.URL | None]:
        """The records of the entity's first page (the first that has records), as batches reads
        them first, and the next-page link that a run judges how to read the pages by (link_header:
        engine.sources._readings.read_twice); None for the other paging styles, and for a single
        page. No other page is asked for. Each record's external_id is made as a run makes it: an
        expression a record breaks raises the run's ConfigError."""
        read = pages(self._requests, entity)
        try:
            for link, records, following, _ in read:
                list(map(_id_getter(entity, self.tenant_id), records))
                return records, link or following
            return [], None
        finally:
            read.close()

    def raw_pages(self, entity: EntityMapping) -> Iterator[list[dict]]:
        """The entity's records page by page as the API sends them (after record_selector), read
        once from the start, with the paginator's checks but no external_id made: discover shows
        them, also those whose external_id the mapping cannot compute (a run stops on them)."""
        read = pages(self._requests, entity)
        try:
            for _, records, _, _ in read:
                yield records
        finally:
            read.close()

    def _second_reading(self, entity: EntityMapping, readings: Readings) -> Iterator[list[dict]]:
        """The second reading of pages by position (batches), page by page, as `readings` takes
        it; how many records the first had missed goes to `recovered`, and a warning names the
        first (by its ERP key)."""
        if not readings.second_reading:
            return
        for _, records, _, place in pages(self._requests, entity):
            records = readings.second(records, place)
            if records:
                yield records
        missed = len(readings.recovered)
        if missed:
            self.recovered[entity.name] = missed
            one = missed == 1
            log.warning("tenant '%s': %s: the second reading of %s found %d record%s that the first had missed (%s): "
                        "records were removed in the ERP while the pages were read, moving the ones after them back "
                        "onto pages read already (or %s added meanwhile); %s kept, not taken for deleted",
                        self.tenant_id, entity.name, entity.endpoint, missed, "" if one else "s",
                        _key_of(entity, readings.recovered[0]), "it was" if one else "they were",
                        "it is" if one else "they are")

    def _third_reading(self, entity: EntityMapping, readings: Readings) -> None:
        """The pages in dispute (Readings.disputed) read a third time, each once: an external_id
        on two pages of the second reading that may be two ERP records with one key or one record
        that moved on while a reading read it. Two records come twice again; one that moved, once
        (it would take a record added next to it while each of the three readings read it)."""
        places = readings.disputed()
        for place in places:
            readings.third(page_at(self._requests, entity, place))
        if places:
            log.info("tenant '%s': %s: read %d page%s of %s a third time, to tell %d external_id%s on two pages "
                     "of the second reading apart: two ERP records with one key, or one record that moved on "
                     "while the pages were read", self.tenant_id, entity.name, len(places),
                     "" if len(places) == 1 else "s", entity.endpoint, readings.in_dispute,
                     "" if readings.in_dispute == 1 else "s")

    def _moved(self, entity: EntityMapping, readings: Readings) -> None:
        """The warning about records that came again on a later page and were read once."""
        moved, changed = readings.moved, readings.changed
        if not moved:
            return
        log.warning("tenant '%s': %s: %d record%s from %s came again on a later page (%s): the records changed "
                    "while their pages were read (a record added before them moves them on); each is read once"
                    + (f" ({changed} with other values, taken as the page it came on first had them: the next run "
                       "reads the change)" if changed else "") + ". "
                    + ("A record removed meanwhile moves them back: the second reading of the pages finds what "
                       "that made the first miss" if readings.second_reading else
                       "One removed meanwhile moves them back, so that a record may be missing from this run "
                       "(the paginator's verify is off): the next run reads it again"),
                    self.tenant_id, entity.name, len(moved), "" if len(moved) == 1 else "s", entity.endpoint,
                    _key_of(entity, moved[0]))

    def close(self) -> None:
        self._requests.close()


def external_id_getter(entity: EntityMapping) -> Callable[[dict], Any]:
    """A record's external_id as the mapping makes it (engine.mapping.Mapper): the identity the
    portal and the plan know the record by. An expression a record breaks raises an
    ExpressionError naming the record (its ERP key), the field and the expression, as the
    Mapper's."""
    from engine.erp_keys import _as_text
    from engine.errors import ExpressionError
    expr = entity.fields["external_id"]
    get = expr.bind(None)

    def id_of(record: dict) -> Any:
        try:
            value = get(record)
        except Exception as exc:        # a jmespath built-in given a null: as the Mapper says it (exit 3)
            raise ExpressionError(entity.name, _key_of(entity, record).removeprefix("key "), "external_id",
                                  expr.source, exc) from exc
        return None if value is None else _as_text(value)
    return id_of


def _id_getter(entity: EntityMapping, tenant_id: str) -> Callable[[dict], Any]:
    """external_id_getter for a run: an expression a record breaks is a ConfigError (exit 3)
    naming the tenant, the record and the expression."""
    from engine.errors import ExpressionError
    get = external_id_getter(entity)

    def id_of(record: dict) -> Any:
        try:
            return get(record)
        except ExpressionError as exc:
            raise exc.for_tenant(tenant_id) from exc.__cause__
    return id_of


def _key_of(entity: EntityMapping, record: dict) -> str:
    """The record's ERP key as findings name it (the mapping's own key getter), for a warning:
    `key 100100`, `key 5000045/1000040`, an empty part as `(empty)`."""
    from engine.erp_keys import _key_getter
    return "key " + _key_getter(entity.key, None)(record)

