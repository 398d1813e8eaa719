"""E-mail fields as the ERP holds them, and the login the portal gets."""
import pytest

from engine.expr import EmailInfo, analyze_email, normalize_email


@pytest.mark.parametrize("raw", ["max@web.de", "Max@Web.DE", "  max@web.de\t", "MAX@WEB.DE ",
                                 "max@web.de\u00a0", "<Max@web.de>", "mailto:max@web.de"])
def test_case_and_whitespace_variants_collapse_to_one_login(raw):
    assert normalize_email(raw) == "max@web.de"


@pytest.mark.parametrize("raw", ["max@web.de; erika@web.de", "max@web.de, erika@web.de",
                                 "max@web.de erika@web.de", "max@web.de;erika@web.de;",
                                 "max@web.de / erika@web.de"])
def test_several_addresses_give_the_first_as_login_and_are_flagged(raw):
    info = analyze_email(raw)
    assert (info.login, info.addresses, info.multiple) == ("max@web.de", ("max@web.de", "erika@web.de"), True)
    assert info.invalid == ()


@pytest.mark.parametrize("raw", ["max@web.de (Büro)", "(Büro) max@web.de", "Büro: max@web.de",
                                 "max@web.de [privat]", "Max Mustermann <max@web.de>",
                                 "<max@web.de>", "privat max@web.de"])
def test_annotations_are_stripped_and_flagged(raw):
    info = analyze_email(raw)
    assert (info.login, info.annotated, info.multiple, info.invalid) == ("max@web.de", True, False, ())


def test_a_plain_address_is_neither_annotated_nor_multiple():
    assert analyze_email("max@web.de") == EmailInfo("max@web.de", ("max@web.de",))


@pytest.mark.parametrize("raw", ["max@@web", "max@web", "max.web.de@", "max@web..de", "max.@web.de",
                                 "max mustermann at web.de", "jürgen@web.de"])
def test_invalid_addresses_give_no_login_and_are_kept_as_written(raw):
    info = analyze_email(raw)
    assert info.login is None
    assert info.invalid == (raw,)


def test_an_umlaut_before_the_at_sign_is_invalid_but_an_idn_domain_is_fine():
    assert normalize_email("jürgen@web.de") is None
    assert normalize_email("juergen@müller-bau.de") == "juergen@müller-bau.de"
    assert normalize_email("Juergen@XN--MLLER-BAU-Q9A.DE") == "juergen@müller-bau.de"


def test_a_valid_address_next_to_an_invalid_one_is_the_login():
    info = analyze_email("max@@web; erika@web.de")
    assert (info.login, info.invalid, info.multiple) == ("erika@web.de", ("max@@web",), True)


def test_repeated_addresses_in_one_field_are_listed_once():
    assert analyze_email("max@web.de; MAX@web.de").addresses == ("max@web.de",)


@pytest.mark.parametrize("raw", [None, "", "   ", "-", "keine", "n/a", "k.A."])
def test_empty_fields_and_placeholders_have_no_login_and_nothing_invalid(raw):
    assert analyze_email(raw) == EmailInfo()


def test_less_common_but_valid_addresses_pass_the_slow_path():
    assert normalize_email("o'brien@example.ie") == "o'brien@example.ie"
    assert normalize_email("max+portal@sub.web.de") == "max+portal@sub.web.de"


def test_a_repeated_value_is_analysed_once():
    first = analyze_email("Erika.Muster@Web.de (privat)")
    assert analyze_email("Erika.Muster@Web.de (privat)") is first


def test_a_non_text_value_is_an_invalid_address_not_a_crash():
    assert analyze_email(4711) == EmailInfo(invalid=("4711",))


def test_a_spelled_out_at_is_an_invalid_address_not_an_annotation():
    assert analyze_email("max(at)web.de") == EmailInfo(invalid=("max(at)web.de",))
    info = analyze_email("max@web.de; erika(at)web.de")
    assert (info.login, info.invalid, info.annotated, info.multiple) == (
        "max@web.de", ("erika(at)web.de",), False, True)
