"""Identifier checks (masterdata.identifiers): the standards' worked examples, one bad input per reason
code, the known anomaly of early credit codes, and property tests over generated identifiers and every
single-character change of them. The check characters are recomputed here from the standards' formulas,
independently of the module, so that the module is tested against the standard and not against itself."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from masterdata.identifiers import (
    check_credit_code,
    check_id_number,
    credit_check_char,
    id_check_digit,
    normalize,
    organization_check_char,
    upgrade_id_15,
)

TODAY = date(2024, 6, 30)
PROVINCES = ["11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41", "42",
             "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71", "81", "82"]
CODE_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
# GB 32100: registration department -> its organisation type codes
DEPARTMENT_TYPES = {"1": "1239", "2": "19", "3": "123459", "4": "19", "5": "1239", "6": "129", "7": "129",
                    "8": "19", "9": "123", "A": "19", "N": "1239", "Y": "1"}
ANOMALY = "91350100M0001TGQXM"
NONCONFORMING = ("code_nonconforming_check_character",)


# --- reference formulas, from the standards' text -----------------------------------------------

ID_WEIGHTS = [2 ** (17 - i) % 11 for i in range(17)]  # ISO 7064 MOD 11-2
CODE_WEIGHTS = [3 ** i % 31 for i in range(17)]  # GB 32100
ORG_WEIGHTS = [3, 7, 9, 10, 5, 8, 4, 2]  # GB 11714


def ref_id_check(body17: str) -> str:
    return "10X98765432"[sum(int(d) * w for d, w in zip(body17, ID_WEIGHTS)) % 11]


def ref_org_check(body8: str) -> str:
    c9 = 11 - sum(int(c, 36) * w for c, w in zip(body8, ORG_WEIGHTS)) % 11
    return {10: "X", 11: "0"}.get(c9, str(c9))


def ref_credit_check(body17: str) -> str:
    return CODE_ALPHABET[(31 - sum(CODE_ALPHABET.index(c) * w for c, w in zip(body17, CODE_WEIGHTS)) % 31) % 31]


def id_number(body17: str) -> str:
    return body17 + ref_id_check(body17)


def credit_code(head8: str, org_body8: str, org_check: str | None = None) -> str:
    body = head8 + org_body8 + (org_check or ref_org_check(org_body8))
    return body + ref_credit_check(body)


# --- normalisation and the worked examples --------------------------------------------------------

def test_normalize_folds_full_width_drops_spaces_and_upper_cases():
    assert normalize("１１０１０５１９４９１２３１００２ｘ") == "11010519491231002X"
    assert normalize(" 110105 19491231\u3000002x\t") == "11010519491231002X"
    assert normalize("９１１１００００６０００３７３４１ｌ") == "91110000600037341L"


def test_worked_identity_number():
    result = check_id_number("11010519491231002X", today=TODAY)
    assert result.valid and result.reasons == () and result.warnings == ()
    assert result.value == "11010519491231002X"
    assert result.birth_date == date(1949, 12, 31)
    assert result.sex == "2"  # 17th digit 2: even, female (GB/T 2261.1)
    assert result.division == "110105"
    assert id_check_digit("11010519491231002") == "X"


def test_odd_17th_digit_is_male():
    assert check_id_number(id_number("44040219800101001"), today=TODAY).sex == "1"


def test_full_width_identity_number_is_normalised_and_valid():
    result = check_id_number("１１０１０５１９４９１２３１００２ｘ", today=TODAY)
    assert result.valid and result.value == "11010519491231002X"


def test_upgrade_from_15_digits():
    assert upgrade_id_15("110105491231002") == "11010519491231002X"
    result = check_id_number("110105491231002", today=TODAY)
    assert result.valid and result.value == "11010519491231002X"
    assert result.warnings == ("id_upgraded_from_15",)
    assert result.birth_date == date(1949, 12, 31) and result.sex == "2"


def test_worked_credit_code():
    result = check_credit_code("91110000600037341L")
    assert result.valid and result.reasons == () and result.warnings == ()
    assert result.organization_code == "60003734-1"
    assert result.division == "110000"
    assert credit_check_char("91110000600037341") == "L"
    assert organization_check_char("60003734") == "1"


def test_full_width_lower_case_credit_code_is_normalised_and_valid():
    assert check_credit_code("９１１１００００６０００３７３４１ｌ").value == "91110000600037341L"
    assert check_credit_code("９１１１００００６０００３７３４１ｌ").valid


def test_check_characters_at_the_ends_of_their_ranges():
    assert organization_check_char("00000000") == "0"  # C9 = 11 -> 0
    assert organization_check_char("M0001TGQ") == "X"  # C9 = 10 -> X
    assert credit_check_char("0" * 17) == "0"  # 31 - 0 -> 31 -> 0


@pytest.mark.parametrize("call, arg", [
    (id_check_digit, "1101051949123100"), (id_check_digit, "1101051949123100X"),
    (upgrade_id_15, "11010519491231002X"), (upgrade_id_15, "11010549123100X"),
    (credit_check_char, "9111000060003734I"), (credit_check_char, "911100006000373"),
    (organization_check_char, "6000373"), (organization_check_char, "6000373a"),
])
def test_helpers_refuse_malformed_input(call, arg):
    with pytest.raises(ValueError, match="expected"):
        call(arg)


# --- one bad input per reason code ------------------------------------------------------------------

@pytest.mark.parametrize("text, reasons", [
    (None, ("id_missing",)),
    (" \u3000 ", ("id_missing",)),
    ("1101051949123100", ("id_length",)),
    ("11010519491231002X1", ("id_length",)),
    ("11010519491231002A", ("id_characters",)),
    ("1101051949123100X2", ("id_characters",)),
    ("11010549123100A", ("id_characters",)),
    ("110105194912310021", ("id_check_digit",)),
    (id_number("11010519490231002"), ("id_birth_date",)),  # 31 February
    (id_number("11010520990101002"), ("id_birth_date",)),  # after TODAY
    (id_number("11010518891231002"), ("id_birth_date",)),  # before 1890
    ("110105490231002", ("id_birth_date",)),  # 15 digits, 31 February 1949
    (id_number("99010519491231002"), ("id_division",)),  # no province 99
    ("990105194902310021", ("id_check_digit", "id_birth_date", "id_division")),
])
def test_identity_number_reason(text, reasons):
    result = check_id_number(text, today=TODAY)
    assert not result.valid
    assert result.reasons == reasons
    assert (result.birth_date, result.sex, result.division) == (None, None, None)


def test_birth_date_bounds_are_inclusive():
    assert check_id_number(id_number("11010518900101002"), today=TODAY).valid
    assert check_id_number(id_number("11010520240630002"), today=TODAY).valid
    assert not check_id_number(id_number("11010520240701002"), today=TODAY).valid


@pytest.mark.parametrize("text, reasons", [
    (None, ("code_missing",)),
    ("  ", ("code_missing",)),
    ("91110000600037341", ("code_length",)),
    ("91110000600037341LL", ("code_length",)),
    ("91110000600037341I", ("code_characters",)),  # I, O, Z, S, V are not used
    ("911100006O0037341L", ("code_characters",)),
    (credit_code("B1110000", "60003734"), ("code_registration_department",)),
    (credit_code("94110000", "60003734"), ("code_organization_type",)),  # 工商 has 1, 2, 3
    (credit_code("Y2110000", "60003734"), ("code_organization_type",)),  # 其他 has 1 only
    (credit_code("911100A0", "60003734"), ("code_division",)),
    (credit_code("91110000", "60003734", org_check="2"), ("code_organization_check",)),
    ("91110000600037342L", ("code_organization_check", "code_check_character")),
    ("B1110000600037341L", ("code_registration_department", "code_check_character")),
])
def test_credit_code_reason(text, reasons):
    result = check_credit_code(text)
    assert not result.valid
    assert result.reasons == reasons
    assert (result.organization_code, result.division) == (None, None)


# --- the known anomaly ----------------------------------------------------------------------------

def test_early_code_with_nonconforming_check_character_is_accepted_with_warning():
    assert credit_check_char(ANOMALY[:17]) == "1"  # the standard's check character; "M" was issued
    assert organization_check_char("M0001TGQ") == "X"  # the embedded organisation code is sound
    result = check_credit_code(ANOMALY)
    assert result.valid and result.reasons == ()
    assert result.warnings == NONCONFORMING
    assert result.organization_code == "M0001TGQ-X" and result.division == "350100"


def test_anomaly_rule_on_the_worked_example():
    # another final character: accepted, flagged
    assert check_credit_code("91110000600037341A").warnings == NONCONFORMING
    # a typo in a division digit keeps the structure: accepted, flagged (the cost of the rule)
    assert check_credit_code("91110001600037341L").warnings == NONCONFORMING
    # a typo in the organisation code is caught by GB 11714
    assert check_credit_code("91110000600037351L").reasons == ("code_organization_check", "code_check_character")


# --- properties -------------------------------------------------------------------------------------

def test_mod_11_2_catches_every_single_digit_change_by_construction():
    """Each weight is non-zero mod 11, 11 is prime, and a digit changes by 1..9: the weighted sum
    mod 11 always moves; the 11 check characters are distinct, so the expected one always moves."""
    assert all(w % 11 for w in ID_WEIGHTS)
    assert all((d * w) % 11 for w in ID_WEIGHTS for d in range(1, 10))
    assert len(set("10X98765432")) == 11


def test_mod_31_catches_every_single_character_change_by_construction():
    assert all((d * w) % 31 for w in CODE_WEIGHTS for d in range(1, 31))
    assert CODE_WEIGHTS == [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]


valid_ids = st.builds(
    lambda province, county, born, sequence: id_number(f"{province}{county}{born:%Y%m%d}{sequence}"),
    st.sampled_from(PROVINCES), st.from_regex(r"[0-9]{4}", fullmatch=True),
    st.dates(min_value=date(1890, 1, 1), max_value=TODAY), st.from_regex(r"[0-9]{3}", fullmatch=True),
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(valid_ids)
def test_every_generated_identity_number_passes_and_every_single_change_fails(number):
    result = check_id_number(number, today=TODAY)
    assert result.valid and result.value == number and result.warnings == ()
    assert result.birth_date.strftime("%Y%m%d") == number[6:14]
    assert result.sex == ("1" if int(number[16]) % 2 else "2") and result.division == number[:6]
    if number[6:8] == "19":  # born in the 1900s: its 15-digit form upgrades back to it
        assert check_id_number(number[:6] + number[8:17], today=TODAY).value == number
    for position in range(18):
        for char in "0123456789X".replace(number[position], ""):
            changed = number[:position] + char + number[position + 1:]
            verdict = check_id_number(changed, today=TODAY)
            assert not verdict.valid, changed
            if position < 17 and char == "X":
                assert verdict.reasons == ("id_characters",)
            else:
                assert "id_check_digit" in verdict.reasons, changed


org_bodies = st.from_regex(r"[0-9A-HJ-NPQRTUWXY]{8}", fullmatch=True)
valid_codes = st.builds(
    lambda pair, division, org: credit_code(pair + division, org),
    st.sampled_from([d + t for d, types in DEPARTMENT_TYPES.items() for t in types]),
    st.from_regex(r"[0-9]{6}", fullmatch=True), org_bodies,
)


def accepted_with_warning(code: str, position: int, char: str) -> bool:
    """Whether the anomaly rule accepts `code` with `char` at `position` (0-based): exactly when
    characters 1-17 stay sound, since MOD 31 rejects every such change (see above)."""
    if position == 0:
        return code[1] in DEPARTMENT_TYPES.get(char, "")
    if position == 1:
        return char in DEPARTMENT_TYPES[code[0]]
    if position < 8:  # division: any digit
        return char.isdigit()
    if position < 16:  # organisation body: GB 11714 misses a value change by a multiple of 11
        return (int(char, 36) - int(code[position], 36)) % 11 == 0
    # position 16, the organisation check character, is determined by the body: never accepted;
    # position 17, the final check character alone, is the anomaly itself: always accepted
    return position == 17


@settings(max_examples=60, deadline=None, derandomize=True)
@given(valid_codes)
def test_every_generated_credit_code_passes_and_single_changes_fail_unless_the_anomaly_rule_applies(code):
    result = check_credit_code(code)
    assert result.valid and result.warnings == () and result.value == code
    assert result.organization_code == f"{code[8:16]}-{code[16]}" and result.division == code[2:8]
    for position in range(18):
        for char in CODE_ALPHABET.replace(code[position], ""):
            changed = code[:position] + char + code[position + 1:]
            verdict = check_credit_code(changed)
            if accepted_with_warning(code, position, char):
                assert verdict.valid and verdict.reasons == () and verdict.warnings == NONCONFORMING, changed
            else:
                assert not verdict.valid and "code_check_character" in verdict.reasons, changed
