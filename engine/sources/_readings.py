"""The two readings (and, for a few pages, a third) of an endpoint whose pages count positions (page_number, offset, and
link_header whose next-page links count pages or records: `positional`): which of the records
read to map (ApiExtractor.batches).

Positions move when the ERP changes while the pages are read. A record added before the pages
read so far pushes the next one onto the next page, where it comes again, with other values if
it changed meanwhile; one removed pulls the next one back onto a page read already, and the
reading misses it. A record is told by its external_id (as the mapping makes it: the portal's
identity of the record), one without an external_id by its content. The rules:

- One page is one answer, one state of the ERP: an external_id twice on one page is two ERP
  records with one key. Both are mapped, so that the run reports the duplicate key.
- An external_id that came on an earlier page of the same reading is, on a later page, the record
  that moved on, or a second ERP record with its key, alike or not. The second reading tells: two
  records come twice in it too, a record that moved comes once. On two neighbouring pages of the
  second reading as well, it may have moved on in both readings: those two pages are read a third
  time, where two records come twice and one that moved once (it would take a record added next
  to it while each of the three readings read it). On two pages far apart it is two records (a
  record moves on by as many places as records are added while one page is read). The record
  keeps the values of the page it came on first, so that each record's values are those of one
  answer; a change that came with the move is read by the next run.
- The second reading maps each record whose external_id the first reading did not have (once,
  by the same rule), and the second of two records with one key on one page when the first
  reading had that key once: the other moved back past the first reading (a record removed
  before it), which had the key once, and the duplicate key is reported that night too. One the
  first reading had once that the second has on two pages is two records of which a removal hid
  one from the first reading, or one record that moved on while the second read it: the pages
  it came on are read a third time, and its copies on the later pages of the second reading are
  mapped when the third reading has it twice.
- The third reading asks for each page in dispute once, in order, and only after the second
  reading: in the common case the two pages of each key that straddles a page's end in both
  readings, at most as many pages as one reading has. A record it brings that neither reading
  had is left to the next run (added after its page was read, as any record added meanwhile).
  Records added or removed between the readings move what they come before: should one of two
  records with one key leave the pages read (two that follow each other, only by a page's worth
  of records), the third reading has it once and the duplicate key is reported the next night.
  One record comes twice only if it moves on while the third reading reads its two pages.
- Read once (`verify: false`, for an API that serves a snapshot, where nothing moves), a record
  that came again alike is read once, and one that came with other values is mapped, so that
  the run reports the duplicate key: there is no other reading to tell them apart.

Next-page links (link_header) are read as their first link says, unless `verify` says: one that
counts pages or records (?page=3, ?offset=200) moves as page numbers do; one that names the last
record read (?after=5000219, ?cursor=...) does not, and is read once, as it comes, also when it
numbers the page as well (?cursor=...&page=3): the record it names decides where the page begins.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from typing import Callable, Hashable

import httpx

from engine.config.model import Paginator

POSITIONS = frozenset({"page", "pagenumber", "pageno", "pageindex", "offset", "pageoffset", "skip", "start",
                       "startindex"})
"""The query parameters by which a next-page link counts pages or records, as their names read in
lower case without other characters: ?page=3, ?offset=200, ?$skip=200 (OData), ?page[number]=3
and ?page[offset]=200 (JSON:API), ?startIndex=201."""

CURSORS = frozenset({"cursor", "after", "startingafter", "afterid", "lastid", "searchafter", "skiptoken",
                     "pagetoken", "nextpagetoken", "nexttoken", "continuation", "continuationtoken", "marker",
                     "pagecursor", "pageafter"})
"""The query parameters by which a next-page link names the last record read (or a place in a
snapshot), read as POSITIONS are: ?cursor=..., ?after=5000219, ?starting_after=..., ?$skiptoken=...
(OData), ?pageToken=..., ?page[cursor]=... and ?page[after]=... (JSON:API). A link that has one
pages by it, whatever page number it carries besides."""


class Readings:
    """Takes the pages of the first reading (`first`), then of the second (`second`, when
    `second_reading`), then of the third (`third`, the pages `disputed()` names, if any), and
    last `held()`; each gives the records to map. Then `moved` holds the records that came again
    and were read once (`changed` of them with other values), and `recovered` those that only the
    second reading had."""

    def __init__(self, paginator: Paginator | None, id_of: Callable[[dict], str | None]):
        self._paginator = paginator
        self._link: httpx.URL | None = None     # the first next-page link
        kind, self._verify = (paginator.type, paginator.verify) if paginator else ("none", None)
        self.tracked = kind in ("page_number", "offset") or (kind == "link_header" and self._verify is True)
        self._undecided = kind == "link_header" and not self.tracked     # until the first next-page link
        self._id_of = id_of
        self._first: dict[Hashable, bytes] = {}    # identity -> the digest of its copy the first reading mapped
        self._doubled: set[Hashable] = set()       # identities on one page of the first reading (or the second) more than once
        self._held: dict[Hashable, list[tuple[dict, bytes]]] = {}     # identity -> its later pages' copies
        self._places: list = []                    # where each page of the second reading was asked for
        self._on: dict[Hashable, list[int]] = {}   # held identity -> the second reading's pages of its copies
        self._met: dict[Hashable, int] = {}        # identity the first reading had once -> its second reading's page
        self._again: dict[Hashable, tuple[list[int], list[dict]]] = {}    # such an identity on more pages: those, and its copies there
        self._disputed: set[Hashable] = set()      # identities the third reading counts
        self._third: Counter = Counter()           # disputed identity -> its copies in the third reading
        self._added: set[Hashable] = set()         # identities the second reading mapped
        self.moved: list[dict] = []
        self.changed = 0
        self.recovered: list[dict] = []

    @property
    def second_reading(self) -> bool:
        return read_twice(self._paginator, self._link)

    def first(self, records: list[dict], link: httpx.URL | None) -> list[dict]:
        """A page of the first reading (and the next-page link that led to it): its records but
        those whose identity came on an earlier page, which are held until the last reading tells
        what they are (held)."""
        if self._link is None:
            self._link = link
        if self._undecided and link is not None:
            self._undecided, self.tracked = False, positional(link)
            if not self.tracked:
                self._first.clear()
                self._doubled.clear()
        if not self.tracked and not self._undecided:
            return records
        fresh, page = [], {}
        for record in records:
            digest = _digest(record)
            identity = self._id_of(record) or digest
            if identity in self._first:
                self._held.setdefault(identity, []).append((record, digest))
                continue
            if identity in page:
                self._doubled.add(identity)
            page.setdefault(identity, digest)
            fresh.append(record)
        self._first.update(page)
        return fresh

    def second(self, records: list[dict], place=None) -> list[dict]:
        """A page of the second reading (asked for at `place`, engine.sources._api_pages): each
        record whose identity the first reading lacked and the second has not had on an earlier
        page, and the copies after the first of an identity twice on the page that the first
        reading had once. Notes the pages of the identities on more than one page of the first
        reading, and of those the first had once that come on another page again. A digest only
        of records without an external_id."""
        self._places.append(place)
        number = len(self._places) - 1
        identities = [self._id_of(record) or _digest(record) for record in records]
        on_page = Counter(identities)
        out, added, twice = [], set(), set()
        for record, identity in zip(records, identities):
            if identity not in self._first:
                if identity in self._added:
                    continue                    # moved on while the second reading read
                if identity not in added:
                    self.recovered.append(record)
                added.add(identity)
                out.append(record)
            elif identity in self._held:
                self._on.setdefault(identity, []).append(number)
            elif identity in self._doubled:
                continue                        # two records, mapped from the first reading
            elif on_page[identity] > 1:
                if identity in twice:
                    out.append(record)
                twice.add(identity)
            elif self._met.setdefault(identity, number) != number:
                pages, copies = self._again.setdefault(identity, ([self._met[identity]], []))
                pages.append(number)
                copies.append(record)
        self._doubled |= twice
        self._added |= added
        return out

    def disputed(self) -> list:
        """After the second reading, where to ask for the pages to read a third time (each once,
        in their order): those of an identity that came on two neighbouring pages of both readings
        (two records with one key across a page's end, or one record that moved on in each
        reading), and those of one the first reading had once and the second on more pages (two
        records of which the first reading missed one, or one record that moved on while the
        second read it). Another identity on two pages of the second reading, far apart, is two
        records: a record moves on by the records added while one page is read."""
        if not self.second_reading:
            return []
        pages: set[int] = set()
        for identity, on in self._on.items():
            if len(on) == 2 and on[1] == on[0] + 1:
                self._disputed.add(identity)
                pages.update(on)
        for identity, (on, _) in self._again.items():
            self._disputed.add(identity)
            pages.update(on)
        return [self._places[number] for number in sorted(pages)]

    def third(self, records: list[dict]) -> None:
        """A page of the third reading: counts the copies of the disputed identities."""
        for record in records:
            identity = self._id_of(record) or _digest(record)
            if identity in self._disputed:
                self._third[identity] += 1

    def held(self) -> list[dict]:
        """After the last reading, the copies that are ERP records of their own: their identity
        came more than once in the second reading (and, disputed, in the third), or (read once)
        with other values than the copy mapped; and the second reading's copies of an identity
        the first had once that the third reading has more than once. The others go to `moved`."""
        out = []
        for identity, copies in self._held.items():
            if identity in self._disputed:
                two = self._third[identity] > 1
            else:
                two = len(self._on.get(identity, ())) > 1
            for record, digest in copies:
                other = digest != self._first[identity]
                if two if self.second_reading else other:
                    out.append(record)
                else:
                    self.moved.append(record)
                    self.changed += other
        for identity, (_, copies) in self._again.items():
            if self._third[identity] > 1:
                out.extend(copies)
        self._held.clear()
        self._again.clear()
        return out

    @property
    def in_dispute(self) -> int:
        """How many identities the third reading was asked to tell (disputed)."""
        return len(self._disputed)


def _digest(record: dict) -> bytes:
    return hashlib.blake2b(json.dumps(record, sort_keys=True).encode(), digest_size=16).digest()


def read_twice(paginator: Paginator | None, link: httpx.URL | None) -> bool:
    """Whether an endpoint's pages are read a second time (Readings.second_reading), `link` its
    first next-page link (None: none yet, or the endpoint has one page): never with `verify`
    false; page_number and offset always else; link_header with `verify` true, or, unset, when
    the link counts positions (positional); a cursor, or no paginator, never."""
    kind, verify = (paginator.type, paginator.verify) if paginator else ("none", None)
    if verify is False:
        return False
    if kind in ("page_number", "offset"):
        return True
    return kind == "link_header" and (verify is True or (link is not None and positional(link)))


def positional(link: httpx.URL) -> bool:
    """Whether a next-page link counts pages or records, by a number in a parameter of POSITIONS,
    so that its pages move as page numbers do; not one that names a record (a parameter of
    CURSORS: ?after=5000219, ?cursor=..., $skiptoken), even beside a page number."""
    return position_param(link) is not None and cursor_param(link) is None


def position_param(link: httpx.URL) -> str | None:
    """The first parameter of a next-page link by which it counts pages or records (a number in a
    parameter of POSITIONS: `page`, `$skip`, `page[number]`), as the link names it; None if none."""
    return next((name for name, value in link.params.multi_items()
                 if re.sub(r"[^a-z]", "", name.lower()) in POSITIONS and value.isdigit()), None)


def cursor_param(link: httpx.URL) -> str | None:
    """The first parameter of a next-page link by which it names the last record read (a
    parameter of CURSORS with a value: `cursor`, `after`, `$skiptoken`), as the link names it;
    None if none."""
    return next((name for name, value in link.params.multi_items()
                 if re.sub(r"[^a-z]", "", name.lower()) in CURSORS and value), None)
