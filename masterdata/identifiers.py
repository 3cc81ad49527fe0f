"""Identifier checks for the base libraries: the citizen identity number (公民身份号码, GB 11643-1999)
and the unified social credit code (统一社会信用代码, GB 32100-2015) with the organisation code
(组织机构代码, GB 11714-1997) embedded in it.

Pure functions, no I/O. Every check normalises first (`normalize`), never raises on bad input, and
returns a frozen result whose `reasons` say why a value is invalid and whose `warnings` flag what is
accepted but worth a data-quality finding. Reason and warning codes are stable strings; the store and
the reports key on them.

Deliberately not python-stdnum: it rejects credit codes whose embedded organisation code starts with
a letter (e.g. 91350100M0001TGQXM), which GB 11714 allows.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import date

__all__ = [
    "CodeCheck",
    "IdCheck",
    "check_credit_code",
    "check_id_number",
    "credit_check_char",
    "id_check_digit",
    "normalize",
    "organization_check_char",
    "upgrade_id_15",
]

# --- GB 11643-1999 -------------------------------------------------------------------------------

# ISO 7064 MOD 11-2: weight of position i (1-based, left to right) is 2**(18 - i) mod 11.
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"  # indexed by the weighted sum mod 11
_ID_EARLIEST_BIRTH = date(1890, 1, 1)
# GB/T 2260 province-level codes (the first two digits of a division). Only these are checked:
# a full county table changes every year and is not shipped here.
_PROVINCES = frozenset(
    [str(n) for n in (*range(11, 16), *range(21, 24), *range(31, 38), *range(41, 47), *range(50, 55),
                      *range(61, 66), 71, 81, 82)]
)

# --- GB 32100-2015 and GB 11714-1997 --------------------------------------------------------------

_CODE_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # no I, O, Z, S, V
_CODE_VALUE = {c: i for i, c in enumerate(_CODE_ALPHABET)}
_CODE_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)  # 3**(i-1) mod 31
# Registration department (1st character) -> its organisation type codes (2nd character): the
# table in use for GB 32100 (twelve departments; 1, 5, 9 and Y are the ones of the 2015 text).
_REGISTRATION_TYPES: dict[str, str] = {
    "1": "1239",    # 机构编制: 机关, 事业单位, 中央编办直接管理机构编制的群众团体, 其他
    "2": "19",      # 外交: 外国常驻新闻机构, 其他
    "3": "123459",  # 司法行政: 律师执业机构, 公证处, 基层法律服务所, 司法鉴定机构, 仲裁委员会, 其他
    "4": "19",      # 文化: 外国在华文化中心, 其他
    "5": "1239",    # 民政: 社会团体, 民办非企业单位, 基金会, 其他
    "6": "129",     # 旅游: 外国旅游部门常驻代表机构, 港澳台地区旅游部门常驻内地（大陆）代表机构, 其他
    "7": "129",     # 宗教: 宗教活动场所, 宗教院校, 其他
    "8": "19",      # 工会: 基层工会, 其他
    "9": "123",     # 工商: 企业, 个体工商户, 农民专业合作社
    "A": "19",      # 中央军委改革和编制办公室: 军队事业单位, 其他
    "N": "1239",    # 农业: 组级, 村级, 乡镇级集体经济组织, 其他
    "Y": "1",       # 其他
}
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_ORG_BODY = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")

_NONCONFORMING = "code_nonconforming_check_character"


@dataclass(frozen=True, slots=True)
class IdCheck:
    """The verdict on one identity number.

    `value` is the normalised 18-character number (upgraded from 15 digits if need be) whenever the
    input has the right length and characters, even if invalid; None otherwise. `valid` is True iff
    `reasons` is empty. `birth_date`, `sex` ("1" male, "2" female, GB/T 2261.1) and `division` (the
    six-digit GB/T 2260 code of the place of first registration) are derived only when `valid`.
    """

    value: str | None
    valid: bool
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    birth_date: date | None = None
    sex: str | None = None
    division: str | None = None


@dataclass(frozen=True, slots=True)
class CodeCheck:
    """The verdict on one unified social credit code.

    `value` is the normalised 18-character code whenever the input has the right length and
    characters, even if invalid; None otherwise. `valid` is True iff `reasons` is empty; a valid code
    may still carry the warning code_nonconforming_check_character. `organization_code`
    ("XXXXXXXX-X", GB 11714) and `division` (characters 3-8, the registration authority's GB/T 2260
    code) are given only when `valid`.
    """

    value: str | None
    valid: bool
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    organization_code: str | None = None
    division: str | None = None


def normalize(text: str) -> str:
    """Return `text` in NFKC (full-width digits and letters become ASCII), without any whitespace
    (ASCII, ideographic or non-breaking), upper-cased (so a trailing x becomes X)."""
    return "".join(unicodedata.normalize("NFKC", text).split()).upper()


def id_check_digit(body17: str) -> str:
    """Return the GB 11643 check character ("0"-"9" or "X") of the 17 leading digits `body17`.

    Raises ValueError unless `body17` is exactly 17 ASCII digits.
    """
    if len(body17) != 17 or not (body17.isascii() and body17.isdigit()):
        raise ValueError(f"expected the 17 leading digits of an identity number, got {body17!r}")
    return _ID_CHECK[sum(int(d) * w for d, w in zip(body17, _ID_WEIGHTS)) % 11]


def upgrade_id_15(id15: str) -> str:
    """Return the 18-character form of a 15-digit identity number (issued before 1999): "19" goes
    before its YYMMDD birth date and the check digit is computed. The input is normalised first.

    Raises ValueError unless it is 15 digits. The date itself is not checked (check_id_number does).
    """
    digits = normalize(id15)
    if len(digits) != 15 or not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"expected a 15-digit identity number, got {id15!r}")
    body = digits[:6] + "19" + digits[6:]
    return body + id_check_digit(body)


def check_id_number(text: str | None, *, today: date | None = None) -> IdCheck:
    """Check a citizen identity number (GB 11643-1999); never raises.

    Reasons (invalid), in this order:
    - id_missing: None, or nothing left after normalisation.
    - id_length: neither 18 characters nor 15 (a 15-digit number is upgraded, see below).
    - id_characters: not 17 digits and a check character 0-9/X (a 15-character input: not 15 digits).
    - id_check_digit: the ISO 7064 MOD 11-2 check character does not match. Any change of a single
      character is caught: each weight is non-zero mod 11 and 11 is prime.
    - id_birth_date: characters 7-14 are not a real YYYYMMDD date, or it is before 1890-01-01 or
      after `today` (default: the local date).
    - id_division: the first two digits are not a GB/T 2260 province code (11-15, 21-23, 31-37,
      41-46, 50-54, 61-65, 71, 81, 82). Only the province is checked: a full GB/T 2260 county table
      is not shipped, so a well-formed number with an unknown county passes.
    id_check_digit, id_birth_date and id_division are reported together when several apply.

    Warnings (valid all the same):
    - id_upgraded_from_15: the input had 15 digits and `value` is its 18-character upgrade
      (century 19, check digit computed), so its check digit proves nothing about the input.
    """
    if text is None or not (value := normalize(text)):
        return IdCheck(None, False, ("id_missing",))
    warnings: tuple[str, ...] = ()
    if len(value) == 15:
        if not (value.isascii() and value.isdigit()):
            return IdCheck(None, False, ("id_characters",))
        value = upgrade_id_15(value)
        warnings = ("id_upgraded_from_15",)
    elif len(value) != 18:
        return IdCheck(None, False, ("id_length",))
    body = value[:17]
    if not (body.isascii() and body.isdigit()) or value[17] not in _ID_CHECK:
        return IdCheck(None, False, ("id_characters",))

    reasons = []
    if id_check_digit(body) != value[17]:
        reasons.append("id_check_digit")
    born = _birth_date(value[6:14], today or date.today())
    if born is None:
        reasons.append("id_birth_date")
    if value[:2] not in _PROVINCES:
        reasons.append("id_division")
    if reasons:
        return IdCheck(value, False, tuple(reasons), warnings)
    return IdCheck(value, True, (), warnings, born, "1" if int(value[16]) % 2 else "2", value[:6])


def _birth_date(yyyymmdd: str, today: date) -> date | None:
    """The birth date if it is a real date within [1890-01-01, today], else None."""
    try:
        born = date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    except ValueError:
        return None
    return born if _ID_EARLIEST_BIRTH <= born <= today else None


def credit_check_char(body17: str) -> str:
    """Return the GB 32100 check character of the 17 leading characters `body17`
    (C18 = 31 - sum(value * weight) mod 31, mapped back through the code alphabet; 31 -> "0").

    Raises ValueError unless `body17` is 17 characters of "0123456789ABCDEFGHJKLMNPQRTUWXY".
    """
    if len(body17) != 17 or any(c not in _CODE_VALUE for c in body17):
        raise ValueError(f"expected the 17 leading characters of a credit code (no I, O, Z, S, V), got {body17!r}")
    total = sum(_CODE_VALUE[c] * w for c, w in zip(body17, _CODE_WEIGHTS))
    return _CODE_ALPHABET[-total % 31]


def organization_check_char(body8: str) -> str:
    """Return the GB 11714 check character of an organisation code's 8 body characters
    (digits 0-9, letters A=10 .. Z=35; C9 = 11 - sum(value * weight) mod 11; 10 -> "X", 11 -> "0").

    Raises ValueError unless `body8` is 8 ASCII digits or upper-case letters.
    """
    if len(body8) != 8 or any(c not in _ORG_BODY for c in body8):
        raise ValueError(f"expected the 8 body characters of an organisation code, got {body8!r}")
    check = 11 - sum(int(c, 36) * w for c, w in zip(body8, _ORG_WEIGHTS)) % 11
    return "X" if check == 10 else str(check % 11)


def check_credit_code(text: str | None) -> CodeCheck:
    """Check a unified social credit code (GB 32100-2015); never raises.

    Reasons (invalid):
    - code_missing: None, or nothing left after normalisation.
    - code_length: not 18 characters.
    - code_characters: a character outside "0123456789ABCDEFGHJKLMNPQRTUWXY" (I, O, Z, S, V unused).
    - code_registration_department: the 1st character is not a registration department code
      (1 机构编制, 2 外交, 3 司法行政, 4 文化, 5 民政, 6 旅游, 7 宗教, 8 工会, 9 工商,
      A 中央军委改革和编制办公室, N 农业, Y 其他).
    - code_organization_type: the 2nd character is not an organisation type code of that department
      (e.g. 9 工商 has 1 企业, 2 个体工商户, 3 农民专业合作社 only; Y has 1 only).
    - code_division: characters 3-8 are not six digits.
    - code_organization_check: the embedded GB 11714 organisation code (characters 9-17) has a wrong
      check character (its 9th character is not organization_check_char of the 8 before it).
    - code_check_character: the final MOD 31 check character is wrong AND one of the reasons above
      applies too. (A wrong final check character on an otherwise sound code is only a warning.)

    Warnings (valid all the same):
    - code_nonconforming_check_character: the known anomaly of early codes issued with check
      characters that do not follow the standard (e.g. 91350100M0001TGQXM, whose computed check
      character is "1"). Rule: when characters 1-17 are sound (department and type codes from the
      table, six-digit division, an organisation code whose GB 11714 check holds) and only the 18th
      character disagrees, the code is accepted with this warning, for a data-quality finding.
      Consequence, exactly: a single-character typo is still rejected when it falls on the
      organisation check character (position 17), on a department/type code making a pair not in the
      table, on a division digit becoming a letter, or on an organisation body character whose GB 11714
      value changes by other than a multiple of 11 (0/B/M/X, 1/C/N/Y, 3/E/P, ... are interchangeable
      there); every other single-character change, including any change of the 18th character, is
      accepted with the warning, never silently. The MOD 31 check alone would have caught them all.
    """
    if text is None or not (value := normalize(text)):
        return CodeCheck(None, False, ("code_missing",))
    if len(value) != 18:
        return CodeCheck(None, False, ("code_length",))
    if any(c not in _CODE_VALUE for c in value):
        return CodeCheck(None, False, ("code_characters",))

    reasons = []
    types = _REGISTRATION_TYPES.get(value[0])
    if types is None:
        reasons.append("code_registration_department")
    elif value[1] not in types:
        reasons.append("code_organization_type")
    division = value[2:8]
    if not division.isdigit():
        reasons.append("code_division")
    organization = value[8:17]
    if organization_check_char(organization[:8]) != organization[8]:
        reasons.append("code_organization_check")
    conforming = credit_check_char(value[:17]) == value[17]
    if reasons:
        if not conforming:
            reasons.append("code_check_character")
        return CodeCheck(value, False, tuple(reasons))
    warnings = () if conforming else (_NONCONFORMING,)
    return CodeCheck(value, True, (), warnings, f"{organization[:8]}-{organization[8]}", division)
