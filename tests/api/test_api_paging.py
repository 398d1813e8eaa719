"""The link_header paginator against real HTTP servers on 127.0.0.1: it follows the API's `Link:
<...>; rel="next"` from page to page, and never sends the credentials to another server."""
from __future__ import annotations

import pytest

from engine.config.model import ApiAuth
from engine.config.secrets import Secret
from engine.errors import SourceError
from pages_server import Server, read_ids

KEY = "paging-key-0815"


def extract(base_url: str, monkeypatch) -> list[int]:
    monkeypatch.setenv("PAGING_KEY", KEY)
    return read_ids(base_url, ApiAuth(type="api_key", key=Secret("${env:PAGING_KEY}")), "link_header")


def test_link_header_pages_are_followed_relative_and_absolute(monkeypatch):
    with Server({}) as api:
        api.pages.update({"/v1/objects": ([{"id": 1}, {"id": 2}], "/v1/objects?after=2"),
                          "/v1/objects?after=2": ([{"id": 3}], f"{api.url}/v1/objects?after=3"),
                          "/v1/objects?after=3": ([{"id": 4}], None)})
        assert extract(api.url, monkeypatch) == [1, 2, 3, 4]
        assert [path for path, _ in api.seen] == ["/v1/objects", "/v1/objects?after=2", "/v1/objects?after=3"]
        assert all(key == KEY for _, key in api.seen)


def test_a_next_link_to_another_server_stops_the_extract_without_sending_it_the_key(monkeypatch):
    with Server({}) as api, Server({"/steal": ([{"id": 99}], None)}) as other:
        api.other_url = other.url
        api.pages.update({"/v1/objects": ([{"id": 1}], "/v1/objects?after=1"),
                          "/v1/objects?after=1": ([{"id": 2}], "{other}/steal")})
        with pytest.raises(SourceError) as caught:
            extract(api.url, monkeypatch)
        assert other.seen == [], "the other server must not be asked, with or without the key"
        message = str(caught.value)
        assert f"points to {other.url}, not to {api.url}" in message and "entity 'buildings'" in message
        assert KEY not in message


# -- pages that cannot end well: a cap on the page size, a page or cursor that repeats --------------
def ids(first: int, count: int) -> list[dict]:
    return [{"id": i} for i in range(first, first + count)]


def capped(path: str, cap: int, total: int, by_offset: bool) -> tuple[list[dict], None]:
    """An API that answers at most `cap` records however many are asked for (`total` in all)."""
    from urllib.parse import parse_qs, urlsplit
    q = {k: int(v[0]) for k, v in parse_qs(urlsplit(path).query).items()}
    start = q["offset"] if by_offset else (q["page"] - 1) * cap
    return ids(start + 1, max(0, min(cap, total - start))), None


def test_a_page_number_api_that_caps_its_pages_stops_the_extract_with_the_size_to_set(monkeypatch):
    """Pages of 50 for pageSize=100: taking the short first page for the last would send the
    first 50 of 120 records and call it the whole extract."""
    with Server({}) as api:
        api.fallback = lambda path: capped(path, 50, 120, by_offset=False)
        monkeypatch.setenv("PAGING_KEY", KEY)
        with pytest.raises(SourceError) as caught:
            read_ids(api.url, ApiAuth(type="api_key", key=Secret("${env:PAGING_KEY}")), "page_number", page_size=100)
        assert "page 1 answered 50 records for pageSize=100, and page 2 more: the API caps its pages at 50" \
            in caught.value.message
        assert caught.value.hint == "set source.page_size to 50 (or less)"


def test_an_offset_api_that_caps_its_pages_is_read_to_the_end(monkeypatch, caplog):
    with Server({}) as api:
        api.fallback = lambda path: capped(path, 50, 120, by_offset=True)
        monkeypatch.setenv("PAGING_KEY", KEY)
        got = read_ids(api.url, ApiAuth(type="api_key", key=Secret("${env:PAGING_KEY}")), "offset", page_size=100)
    assert got == list(range(1, 121))
    assert "answers at most 50 records for a limit of 100" in caplog.text


def test_the_last_short_page_ends_the_extract_after_one_empty_page(monkeypatch):
    with Server({}) as api:
        api.fallback = lambda path: capped(path, 100, 130, by_offset=False)
        monkeypatch.setenv("PAGING_KEY", KEY)
        assert read_ids(api.url, ApiAuth(type="api_key", key=Secret("${env:PAGING_KEY}")), "page_number",
                        page_size=100) == list(range(1, 131))
        assert [p for p, _ in api.seen] == [f"/v1/objects?page={n}&pageSize=100" for n in (1, 2, 3)] * 2, \
            "read to the end twice: the second reading finds what a record removed meanwhile moved back"


@pytest.mark.parametrize("paginator", ["page_number", "offset"])
def test_an_api_that_ignores_the_page_parameter_stops_at_the_second_page(monkeypatch, paginator):
    with Server({}) as api:
        api.fallback = lambda path: (ids(1, 100), None)              # page 1, whatever is asked
        monkeypatch.setenv("PAGING_KEY", KEY)
        with pytest.raises(SourceError) as caught:
            read_ids(api.url, ApiAuth(type="api_key", key=Secret("${env:PAGING_KEY}")), paginator, page_size=100)
        assert len(api.seen) == 2
        assert "answered the same records as the page before: the API ignores the" in caught.value.message


def test_an_api_that_repeats_its_last_page_past_the_end_is_read_once(monkeypatch):
    with Server({}) as api:
        api.fallback = lambda path: capped(path, 100, 130, by_offset=False) if "page=1&" in path else (ids(101, 30), None)
        monkeypatch.setenv("PAGING_KEY", KEY)
        assert read_ids(api.url, ApiAuth(type="api_key", key=Secret("${env:PAGING_KEY}")), "page_number",
                        page_size=100) == list(range(1, 131))


def test_a_cursor_that_comes_back_stops_the_extract_instead_of_looping(monkeypatch):
    with Server({}) as api:
        api.pages.update({"/v1/objects": (ids(1, 2), "cursor:0"), "/v1/objects?cursor=0": (ids(3, 2), "cursor:0")})
        monkeypatch.setenv("PAGING_KEY", KEY)
        with pytest.raises(SourceError) as caught:
            read_ids(api.url, ApiAuth(type="api_key", key=Secret("${env:PAGING_KEY}")), "cursor")
        assert "the cursor '0' came back a second time" in caught.value.message
        assert len(api.seen) == 2


def test_a_link_header_back_to_a_page_read_already_stops_the_extract(monkeypatch):
    with Server({}) as api:
        api.pages.update({"/v1/objects": (ids(1, 1), "/v1/objects?after=1"),
                          "/v1/objects?after=1": (ids(2, 1), "/v1/objects?after=1")})
        with pytest.raises(SourceError) as caught:
            extract(api.url, monkeypatch)
        assert "the next-page link points to a page read already" in caught.value.message


def erp_changing(versions: dict[int, list[dict]], size: int, link: str | None = None):
    """An endpoint in pages of `size` (by page number or offset, or by next-page links: `link` with
    {page} and {offset} in it, on each full page) whose records are versions[n] once n requests
    are answered (the highest such n); its `asked` lists the requests."""
    from urllib.parse import parse_qs, urlsplit
    asked: list[str] = []

    def answer(path):
        q = {k: int(v[0]) for k, v in parse_qs(urlsplit(path).query).items()}
        records = versions[max(n for n in versions if n <= len(asked))]
        asked.append(path)
        start = next((q[k] for k in ("offset", "$skip", "startIndex") if k in q), None)
        start = (next((q[k] for k in ("page", "page[number]") if k in q), 1) - 1) * size if start is None else start
        page = records[start:start + size]
        return page, link.format(page=start // size + 2, offset=start + size) if link and len(page) == size else None
    answer.asked = asked
    return answer


@pytest.mark.parametrize("paginator", ["page_number", "offset"])
def test_a_record_that_moves_to_the_next_page_while_the_pages_are_read_is_read_once(monkeypatch, caplog, paginator):
    """A record added in the ERP between two pages pushes the last record of page 1 onto page 2:
    read twice, it was a duplicate_key error telling the property manager to make a unique key
    unique. It is read once, and the run says that the pages moved; the second reading has the
    added record."""
    with Server({}) as api:
        api.fallback = erp_changing({0: ids(1, 3), 1: ids(0, 4)}, size=2)
        monkeypatch.setenv("PAGING_KEY", KEY)
        got = read_ids(api.url, ApiAuth(type="api_key", key=Secret("${env:PAGING_KEY}")), paginator, page_size=2)
    assert got == [1, 2, 3, 0]
    assert "tenant 'api-test': buildings: 1 record from /v1/objects came again on a later page (key 2): " \
           "the records changed while their pages were read" in caplog.text


def test_two_records_with_one_key_across_a_page_end_are_both_read(monkeypatch):
    """Record 2 twice, the last of page 1 and the first of page 2, in both readings: not a record
    that moved, but two ERP records with one key, both mapped for the run to report."""
    with Server({}) as api:
        api.fallback = erp_changing({0: [*ids(1, 2), *ids(2, 2)]}, size=2)
        monkeypatch.setenv("PAGING_KEY", KEY)
        got = read_ids(api.url, ApiAuth(type="api_key", key=Secret("${env:PAGING_KEY}")), "page_number", page_size=2)
    assert sorted(got) == [1, 2, 2, 3]


@pytest.mark.parametrize("paginator", ["page_number", "offset"])
def test_a_record_twice_on_one_page_is_not_taken_for_one_that_moved(monkeypatch, caplog, paginator):
    """Only a record read on an earlier page has moved; the same record twice within one page (a
    join in the ERP's export) is read as it comes, so that the run reports the duplicate key."""
    def doubled(path):
        first = "page=1&" in path or "offset=0&" in path
        return ([{"id": 1}, {"id": 1}], None) if first else ([], None)
    with Server({}) as api:
        api.fallback = doubled
        monkeypatch.setenv("PAGING_KEY", KEY)
        got = read_ids(api.url, ApiAuth(type="api_key", key=Secret("${env:PAGING_KEY}")), paginator, page_size=3)
    assert got == [1, 1]
    assert "came again on a later page" not in caplog.text


@pytest.mark.parametrize("paginator", ["page_number", "offset"])
def test_a_record_removed_while_the_pages_are_read_does_not_hide_the_one_after_it(monkeypatch, caplog, paginator):
    """Record 1 is removed after page 1 (1, 2) is read: 3 moves onto page 1, and page 2 answers
    4, 5. The second reading of the pages has 3; 1, read before it was removed, stays."""
    with Server({}) as api:
        api.fallback = erp_changing({0: ids(1, 5), 1: ids(2, 4)}, size=2)
        monkeypatch.setenv("PAGING_KEY", KEY)
        got = read_ids(api.url, ApiAuth(type="api_key", key=Secret("${env:PAGING_KEY}")), paginator, page_size=2)
    assert got == [1, 2, 4, 5, 3]
    assert "tenant 'api-test': buildings: the second reading of /v1/objects found 1 record that the first had " \
           "missed (key 3): records were removed in the ERP while the pages were read" in caplog.text
    assert len(api.fallback.asked) == 3 + 3


@pytest.mark.parametrize("verify, got", [(None, [0, 1, 2, 3]), (False, [1, 2, 2, 3])])
def test_a_record_that_changes_while_it_moves_onto_the_next_page_is_one_record(monkeypatch, verify, got):
    """Record 0 is added and record 2 changes after page 1 (1, 2) is read: 2 comes again on page 2,
    with other values, as a second ERP record with its key would. The second reading has it once:
    it moved, and is read once, not reported as a duplicate key. Read once (`verify: false`, for an
    API that serves a snapshot, where nothing moves), it is read twice, and reported."""
    changed = [{"id": 0}, {"id": 1}, {"id": 2, "end": "2030-06-30"}, {"id": 3}]
    with Server({}) as api:
        api.fallback = erp_changing({0: ids(1, 3), 1: changed}, size=2)
        monkeypatch.setenv("PAGING_KEY", KEY)
        options = {} if verify is None else {"verify": verify}
        read = read_ids(api.url, ApiAuth(type="api_key", key=Secret("${env:PAGING_KEY}")), "page_number",
                        page_size=2, **options)
    assert sorted(read) == got


def test_a_record_the_second_reading_adds_is_added_once_though_it_changes_and_moves_on(monkeypatch):
    """Record 1 is removed after page 1 is read: 3 moves back onto it, and the first reading misses
    it. While the second reading reads, 0 is added and 3 changes, so that it comes again on the
    second reading's page 2, with other values: it is added once."""
    versions = {0: ids(1, 5), 1: ids(2, 4), 4: [{"id": 0}, {"id": 2}, {"id": 3, "end": "2030-06-30"}, *ids(4, 2)]}
    with Server({}) as api:
        api.fallback = erp_changing(versions, size=2)
        monkeypatch.setenv("PAGING_KEY", KEY)
        got = read_ids(api.url, ApiAuth(type="api_key", key=Secret("${env:PAGING_KEY}")), "page_number", page_size=2)
    assert got == [1, 2, 4, 5, 3]


@pytest.mark.parametrize("link", ["/v1/objects?page={page}", "/v1/objects?offset={offset}&limit=2",
                                  "/v1/objects?$skip={offset}", "/v1/objects?page[number]={page}&page[size]=2",
                                  "/v1/objects?startIndex={offset}"])
def test_next_page_links_that_count_positions_are_read_a_second_time(monkeypatch, caplog, link):
    """Next-page links that name a page by its number or by its first record's position move as
    page_number and offset do: record 1 removed after page 1 is read hides 3 from the first
    reading of the links; the second reading has it."""
    with Server({}) as api:
        api.fallback = erp_changing({0: ids(1, 5), 1: ids(2, 4)}, size=2, link=link)
        assert extract(api.url, monkeypatch) == [1, 2, 4, 5, 3]
    assert "the second reading of /v1/objects found 1 record that the first had missed (key 3)" in caplog.text


def test_next_page_links_are_read_as_verify_says_whatever_they_look_like(monkeypatch):
    """`verify: false` reads links that count pages once (a record removed meanwhile hides the next
    one until the next run); `verify: true` reads links that name a record (`?after=2`) twice."""
    monkeypatch.setenv("PAGING_KEY", KEY)
    auth = ApiAuth(type="api_key", key=Secret("${env:PAGING_KEY}"))
    with Server({}) as api:
        api.fallback = erp_changing({0: ids(1, 5), 1: ids(2, 4)}, size=2, link="/v1/objects?page={page}")
        assert read_ids(api.url, auth, "link_header", verify=False) == [1, 2, 4, 5]
        assert len(api.fallback.asked) == 3
    with Server({"/v1/objects": (ids(1, 2), "/v1/objects?after=2"), "/v1/objects?after=2": (ids(3, 1), None)}) as api:
        assert read_ids(api.url, auth, "link_header", verify=True) == [1, 2, 3]
        assert [path for path, _ in api.seen] == ["/v1/objects", "/v1/objects?after=2"] * 2


def test_records_read_by_cursor_are_read_once(monkeypatch, caplog):
    """A cursor names the last record read: a record removed meanwhile moves nothing under it."""
    with Server({}) as api:
        api.pages.update({"/v1/objects": (ids(1, 2), "cursor:2"), "/v1/objects?cursor=2": (ids(3, 1), None)})
        monkeypatch.setenv("PAGING_KEY", KEY)
        got = read_ids(api.url, ApiAuth(type="api_key", key=Secret("${env:PAGING_KEY}")), "cursor")
    assert got == [1, 2, 3]
    assert [path for path, _ in api.seen] == ["/v1/objects", "/v1/objects?cursor=2"]
    assert "second reading" not in caplog.text


@pytest.mark.parametrize("link", ["/v1/objects?cursor=c{last}&page={page}", "/v1/objects?page={page}&after={last}",
                                  "/v1/objects?page[number]={page}&page[after]={last}",
                                  "/v1/objects?$skiptoken=t{last}&pageIndex={page}"])
def test_next_page_links_that_name_the_last_record_read_are_read_once_though_they_number_the_page(
        monkeypatch, caplog, link):
    """A next-page link that names the last record read (a cursor, ?after=, $skiptoken) and also
    numbers the page (?page=2, as some APIs add for display) pages by the record it names: nothing
    moves under it. It was read twice for its page number, every page asked for again of an API
    that limits requests."""
    pages = {"/v1/objects": (ids(1, 2), link.format(last=2, page=2)),
             link.format(last=2, page=2): (ids(3, 2), link.format(last=4, page=3)),
             link.format(last=4, page=3): (ids(5, 1), None)}
    with Server(pages) as api:
        assert extract(api.url, monkeypatch) == [1, 2, 3, 4, 5]
        assert [path for path, _ in api.seen] == list(pages), "each page once"
    assert "second reading" not in caplog.text


def test_a_record_that_moves_on_in_both_readings_is_one_record_not_a_duplicate(monkeypatch, caplog):
    """Record 0 is added after the first reading's page 1 (1, 2) is read, and 5 after the second
    reading's page 1 (0, 2; 1 was removed between the readings): 2 comes again on page 2 in both
    readings, as two records with one key across a page's end would. It was reported as a
    duplicate key. The two pages are read a third time: 2 comes once, it moved, and is read once."""
    versions = {0: ids(1, 3), 1: ids(0, 4), 3: [{"id": 0}, *ids(2, 2)], 4: [{"id": 5}, {"id": 0}, *ids(2, 2)]}
    with Server({}) as api:
        api.fallback = erp_changing(versions, size=2)
        monkeypatch.setenv("PAGING_KEY", KEY)
        got = read_ids(api.url, ApiAuth(type="api_key", key=Secret("${env:PAGING_KEY}")), "page_number", page_size=2)
    assert sorted(got) == [0, 1, 2, 3], "2 once: no duplicate_key"
    assert "1 record from /v1/objects came again on a later page (key 2)" in caplog.text
    assert api.fallback.asked[6:] == ["/v1/objects?page=1&pageSize=2", "/v1/objects?page=2&pageSize=2"], \
        "the third reading asks for the two pages in dispute, and only them"


def test_a_duplicate_key_that_only_the_second_reading_has_on_two_pages_is_reported_that_night(monkeypatch):
    """Records 3 and 3 are two ERP records with one key, the first two of page 2. Record 1 is
    removed after page 1 is read: the first 3 moves back onto page 1, read already, and the first
    reading has the key once; the second has it on pages 1 and 2, as a record that moved on while
    it read them would. It was reported the next night. The two pages are read a third time: 3
    comes twice, and both records are mapped, so that the run reports the duplicate key."""
    doubled = [{"id": 1}, {"id": 2}, {"id": 3, "unit": "A"}, {"id": 3, "unit": "B"}, {"id": 4}]
    with Server({}) as api:
        api.fallback = erp_changing({0: doubled, 1: doubled[1:]}, size=2)
        monkeypatch.setenv("PAGING_KEY", KEY)
        got = read_ids(api.url, ApiAuth(type="api_key", key=Secret("${env:PAGING_KEY}")), "offset", page_size=2)
    assert sorted(got) == [1, 2, 3, 3, 4]


def test_a_record_that_moves_on_while_the_second_reading_reads_is_still_read_once(monkeypatch, caplog):
    """Record 0 is added while the second reading reads: 2, last of page 1, comes again on page 2
    of the second reading only. The third reading of the two pages has it once: one record."""
    with Server({}) as api:
        api.fallback = erp_changing({0: ids(1, 4), 4: ids(0, 5)}, size=2)
        monkeypatch.setenv("PAGING_KEY", KEY)
        got = read_ids(api.url, ApiAuth(type="api_key", key=Secret("${env:PAGING_KEY}")), "page_number", page_size=2)
    assert sorted(got) == [1, 2, 3, 4]
