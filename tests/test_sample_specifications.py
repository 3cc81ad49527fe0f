"""The data specifications of the departments beyond the two base libraries: social insurance,
marriage registration, organisation codes, tax registration, electricity and water use.

Each is checked as the registry takes it (it passes the safety inspection and reads as a data
model, every item named in Chinese), as a department uses it (its sample payload under
examples/payloads/ validates inside an envelope; a payload breaking a code list or pattern is
refused), and as standards staff read it (a code list from a national standard names that
standard; a platform code list says it is one and claims no standard).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lxml import etree

from bus.envelope import build_envelope
from schemas import SafeParser, SchemaSet, SchemaViolation
from schemas.model import Model, load_model
from schemas.registry import XSD_ROOT
from schemas.safety import inspect_specification
from tests.samples import credit_code, id_number

PAYLOADS = Path(__file__).resolve().parent.parent / "examples" / "payloads"
PARSER = SafeParser()
SCHEMAS = SchemaSet()
XS = "{http://www.w3.org/2001/XMLSchema}"
CHINESE = re.compile(r"[\u4e00-\u9fff]")

# specification -> (sending department, its resource)
SPECS = {
    "social-insurance": ("RS", "RS-001"),
    "marriage-registration": ("MZ", "MZ-001"),
    "organization-code": ("ZJ", "ZJ-001"),
    "tax-registration": ("GSW", "GSW-001"),
    "electricity-usage": ("GD", "GD-001"),
    "water-usage": ("SW", "SW-001"),
}

ID_NUMBER = "GB 11643-1999"
CREDIT_CODE = "GB 32100-2015"
DIVISION = "GB/T 2260"
ENTITY_TYPE = "国家统计局、国家工商行政管理总局《关于划分企业登记注册类型的规定》（2011）"

# every item whose code list or format comes from a standard, and that standard
STANDARDS = {
    "social-insurance": {
        "/SocialInsurance/IdNumber": ID_NUMBER,
        "/SocialInsurance/EmployerCreditCode": CREDIT_CODE,
        "/SocialInsurance/Division": DIVISION,
    },
    "marriage-registration": {
        "/MarriageRegistration/Party/IdNumber": ID_NUMBER,
        "/MarriageRegistration/Party/Sex": "GB/T 2261.1-2003",
        "/MarriageRegistration/Party/Nationality": "GB/T 2659-2000",
        "/MarriageRegistration/Party/PriorMaritalStatus": "GB/T 4766-1984",
    },
    "organization-code": {
        "/OrganizationCode/Code": "GB 11714-1997",
        "/OrganizationCode/CreditCode": CREDIT_CODE,
        "/OrganizationCode/Division": DIVISION,
    },
    "tax-registration": {
        "/TaxRegistration/CreditCode": CREDIT_CODE,
        "/TaxRegistration/RegistrationType": ENTITY_TYPE,
        "/TaxRegistration/Division": DIVISION,
    },
    "electricity-usage": {
        "/ElectricityUsage/CreditCode": CREDIT_CODE,
        "/ElectricityUsage/IdNumber": ID_NUMBER,
        "/ElectricityUsage/Division": DIVISION,
    },
    "water-usage": {
        "/WaterUsage/CreditCode": CREDIT_CODE,
        "/WaterUsage/IdNumber": ID_NUMBER,
        "/WaterUsage/Division": DIVISION,
    },
}

# (specification, what the sample says, what a department might wrongly send instead, rule)
BROKEN = [
    ("social-insurance", "<si:InsuranceType>基本养老保险<", "<si:InsuranceType>养老保险<", "cvc-enumeration-valid"),
    ("social-insurance", "<si:ParticipationStatus>参保缴费<", "<si:ParticipationStatus>正常<", "cvc-enumeration-valid"),
    ("social-insurance", "<si:Division>440402<", "<si:Division>440401<", "cvc-enumeration-valid"),
    ("social-insurance", "<si:IdNumber>440402199003072315<", "<si:IdNumber>440402199013072315<", "cvc-pattern-valid"),
    ("social-insurance", "<si:EmployerCreditCode>91440400MA4UH3C254<",
     "<si:EmployerCreditCode>91440400MA4UH3CI54<", "cvc-pattern-valid"),
    ("social-insurance", "<si:ContributionBase>6800.00<", "<si:ContributionBase>6800.005<", "cvc-fractionDigits-valid"),
    ("marriage-registration", "<mr:RegistrationType>结婚登记<", "<mr:RegistrationType>登记结婚<", "cvc-enumeration-valid"),
    ("marriage-registration", "<mr:Sex>1<", "<mr:Sex>M<", "cvc-enumeration-valid"),
    ("marriage-registration", "<mr:PriorMaritalStatus>10<", "<mr:PriorMaritalStatus>11<", "cvc-enumeration-valid"),
    ("marriage-registration", "<mr:Nationality>CHN<", "<mr:Nationality>CN<", "cvc-pattern-valid"),
    ("marriage-registration", "<mr:IdNumber>440403199208151822<", "<mr:IdNumber>44040319920815182x<", "cvc-pattern-valid"),
    ("organization-code", "<oc:Code>73044521-2<", "<oc:Code>730445212<", "cvc-pattern-valid"),
    ("organization-code", "<oc:Code>73044521-2<", "<oc:Code>73044521-Y<", "cvc-pattern-valid"),
    ("organization-code", "<oc:OrganizationType>事业法人<", "<oc:OrganizationType>事业单位<", "cvc-enumeration-valid"),
    ("organization-code", "<oc:Status>已换发<", "<oc:Status>正常<", "cvc-enumeration-valid"),
    ("tax-registration", "<tr:TaxpayerId>91440400MA4UH3C254<", "<tr:TaxpayerId>91440400MA4UH3C2541<", "cvc-pattern-valid"),
    ("tax-registration", "<tr:RegistrationType>173<", "<tr:RegistrationType>175<", "cvc-enumeration-valid"),
    ("tax-registration", "<tr:TaxpayerStatus>正常<", "<tr:TaxpayerStatus>正常户<", "cvc-enumeration-valid"),
    ("tax-registration", "<tr:GeneralTaxpayer>true<", "<tr:GeneralTaxpayer>是<", "cvc-datatype-valid.1.2.1"),
    ("electricity-usage", "<eu:AccountStatus>正常<", "<eu:AccountStatus>停用<", "cvc-enumeration-valid"),
    ("electricity-usage", "<eu:BillingMonth>2026-10<", "<eu:BillingMonth>2026-10-01<", "cvc-datatype-valid.1.2.1"),
    ("electricity-usage", "<eu:Consumption>12850.500<", "<eu:Consumption>-1<", "cvc-minInclusive-valid"),
    ("water-usage", "<wu:AccountStatus>正常<", "<wu:AccountStatus>欠费停电<", "cvc-enumeration-valid"),
    ("water-usage", "<wu:Division>440402<", "<wu:Division>440000<", "cvc-enumeration-valid"),
    ("water-usage", "<wu:IdNumber>440402199003072315<", "<wu:IdNumber>44040219900307231<", "cvc-pattern-valid"),
]


def xsd(name: str) -> Path:
    return XSD_ROOT / name / "1.0" / f"{name}.xsd"


def sample(name: str) -> bytes:
    return (PAYLOADS / f"{name}.xml").read_bytes()


def envelope(name: str, payload: bytes) -> bytes:
    """The payload file as its department sends it: parsed (the file's declaration and comment
    stay behind) and wrapped in a new envelope."""
    sender, resource = SPECS[name]
    return build_envelope(sender, resource, "1.0", PARSER.parse(payload)).body


def check(name: str, payload: bytes) -> None:
    body = envelope(name, payload)
    SCHEMAS.validator(name, "1.0").check(PARSER.parse(body), body)


def refused(name: str, payload: bytes) -> SchemaViolation:
    with pytest.raises(SchemaViolation) as caught:
        check(name, payload)
    return caught.value


def replaced(name: str, old: str, new: str, count: int = 1) -> bytes:
    text = sample(name).decode("utf-8")
    assert old in text, f"the {name} sample no longer says {old}"
    return text.replace(old, new, count).encode("utf-8")


def organization_code_valid(code: str) -> bool:
    """GB 11714: eight characters (digits, then A=10 ... Z=35), weighted 3 7 9 10 5 8 4 2;
    the check is 11 minus the sum modulo 11, written X for 10 and 0 for 11."""
    body, check_char = code[:8], code[-1]
    value = 11 - sum(int(c, 36) * w for c, w in zip(body, [3, 7, 9, 10, 5, 8, 4, 2])) % 11
    return check_char == {10: "X", 11: "0"}.get(value, str(value))


def id_number_valid(value: str) -> bool:
    return id_number(value[:6], value[6:14], int(value[14:17])) == value


def credit_code_valid(value: str) -> bool:
    return credit_code(value[:17]) == value


@pytest.fixture(params=sorted(SPECS), scope="module")
def name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def model(name: str) -> Model:
    return load_model(xsd(name))


# -- as the registry takes it ------------------------------------------------------------------


def test_passes_the_safety_inspection_as_one_file(name: str) -> None:
    assert inspect_specification(xsd(name)) == [xsd(name).resolve()]


def test_follows_the_platform_conventions(name: str, model: Model) -> None:
    root = etree.parse(str(xsd(name))).getroot()
    assert root.get("targetNamespace") == model.namespace == f"urn:zhuhai:govbus:{name}"
    assert (root.get("elementFormDefault"), root.get("version")) == ("qualified", "1.0")
    assert len(model.roots) == 1 and model.title and CHINESE.search(model.title)
    for simple in root.iterfind(f"{XS}simpleType"):
        description = simple.findtext(f"{XS}annotation/{XS}documentation")
        assert description and CHINESE.search(description), simple.get("name")


def test_every_item_has_its_chinese_name(model: Model) -> None:
    leaves = [item for item in model.items.values() if not item.complex]
    assert len(leaves) >= 9
    for item in model.items.values():
        assert item.label and CHINESE.search(item.label), item.path


# -- as standards staff read it ----------------------------------------------------------------


def test_code_lists_from_standards_say_which(name: str, model: Model) -> None:
    assert {path: item.standard for path, item in model.items.items() if item.standard} == STANDARDS[name]


def test_platform_code_lists_say_so_and_every_code_its_meaning(model: Model) -> None:
    for item in model.items.values():
        if item.enumeration is None:
            continue
        assert set(item.labels) == set(item.enumeration), item.path
        assert all(CHINESE.search(meaning) for meaning in item.labels.values()), item.path
        if item.standard is None:
            assert "平台代码表" in (item.description or ""), item.path
        else:
            assert "平台代码表" not in (item.description or ""), item.path


def test_identifiers_reuse_the_base_libraries_patterns(model: Model) -> None:
    person, legal = load_model(xsd("person")), load_model(xsd("legal-entity"))
    for item in model.items.values():
        if item.standard == ID_NUMBER:
            assert item.patterns == person.items["/Person/IdNumber"].patterns, item.path
        if item.standard == CREDIT_CODE:
            assert item.patterns == legal.items["/LegalEntity/CreditCode"].patterns, item.path


def test_tax_registration_types_are_the_legal_entity_codes() -> None:
    tax = load_model(xsd("tax-registration")).items["/TaxRegistration/RegistrationType"]
    legal = load_model(xsd("legal-entity")).items["/LegalEntity/EntityType"]
    assert (tax.enumeration, tax.labels, tax.standard) == (legal.enumeration, legal.labels, legal.standard)


def test_the_organization_code_pattern_admits_real_codes_only() -> None:
    (pattern,) = load_model(xsd("organization-code")).items["/OrganizationCode/Code"].patterns
    assert organization_code_valid("D2143569-X")  # the standard's own example
    for code in ("D2143569-X", "73044521-2", "MA4UH3C2-5"):
        assert re.fullmatch(pattern, code)
    for code in ("730445212", "73044521-Y", "7304452-12", "d2143569-X", "D2143569-x"):
        assert not re.fullmatch(pattern, code)


def test_taxpayer_identification_numbers_of_15_18_and_20_characters() -> None:
    (pattern,) = load_model(xsd("tax-registration")).items["/TaxRegistration/TaxpayerId"].patterns
    for value in ("440400730445212", credit_code(), id_number() + "01"):
        assert re.fullmatch(pattern, value)
    for value in ("44040073044521", "4404007304452120", id_number() + "1", "91440400ma4uh3c254"):
        assert not re.fullmatch(pattern, value)


# -- as a department sends it ------------------------------------------------------------------


def test_the_sample_payload_validates(name: str) -> None:
    check(name, sample(name))


def test_the_sample_identifiers_carry_correct_check_characters(name: str, model: Model) -> None:
    payload = PARSER.parse(sample(name))
    checked = 0
    for element in payload.iter():
        if not isinstance(element.tag, str):
            continue
        path = "/" + "/".join(etree.QName(e).localname for e in [*reversed(list(element.iterancestors())), element])
        standard = model.items[path].standard
        value = element.text or ""
        if standard == ID_NUMBER:
            assert id_number_valid(value), (path, value)
        elif standard == CREDIT_CODE:
            assert credit_code_valid(value), (path, value)
        elif standard == "GB 11714-1997":
            assert organization_code_valid(value), (path, value)
        else:
            continue
        checked += 1
    assert checked >= 1


def test_the_organization_code_is_the_body_of_its_credit_code() -> None:
    payload = PARSER.parse(sample("organization-code"))
    ns = {"oc": "urn:zhuhai:govbus:organization-code"}
    code, credit = payload.findtext("oc:Code", namespaces=ns), payload.findtext("oc:CreditCode", namespaces=ns)
    assert credit[8:17] == code.replace("-", "")


@pytest.mark.parametrize(
    ("spec", "old", "new", "rule"), BROKEN, ids=[f"{s}-{new.split('>')[0].split(':')[1]}-{n}" for n, (s, _, new, _) in enumerate(BROKEN)]
)
def test_a_payload_breaking_a_code_list_or_pattern_is_refused(spec: str, old: str, new: str, rule: str) -> None:
    error = refused(spec, replaced(spec, old, new))
    assert error.rule == rule
    assert new.split(">")[0].split(":")[1] in error.message  # names the element


def test_a_marriage_party_without_an_identity_card_gives_the_document_instead() -> None:
    macau = (
        "<mr:DocumentType>港澳居民来往内地通行证</mr:DocumentType>"
        "<mr:DocumentNumber>M12345678</mr:DocumentNumber>"
    )
    check("marriage-registration", replaced("marriage-registration", "<mr:IdNumber>440403199208151822</mr:IdNumber>", macau))
    both = replaced("marriage-registration", "<mr:Name>李晓燕", macau + "<mr:Name>李晓燕")
    assert refused("marriage-registration", both).rule == "cvc-complex-type.2.4"
    unknown = macau.replace("港澳居民来往内地通行证", "回乡证")
    error = refused("marriage-registration", replaced("marriage-registration", "<mr:IdNumber>440403199208151822</mr:IdNumber>", unknown))
    assert error.rule == "cvc-enumeration-valid"


def test_a_marriage_registration_has_exactly_two_parties() -> None:
    text = sample("marriage-registration").decode("utf-8")
    first = text[text.index("  <mr:Party>"):text.index("  <mr:Party>", text.index("</mr:Party>"))]
    assert refused("marriage-registration", text.replace(first, "").encode()).rule == "cvc-complex-type.2.4"
    assert refused("marriage-registration", text.replace(first, first * 2).encode()).rule == "cvc-complex-type.2.4"


@pytest.mark.parametrize(
    ("spec", "holder", "other"),
    [
        ("electricity-usage", "<eu:CreditCode>91440400MA4UH3C254</eu:CreditCode>", f"<eu:IdNumber>{id_number()}</eu:IdNumber>"),
        ("water-usage", "<wu:IdNumber>440402199003072315</wu:IdNumber>", f"<wu:CreditCode>{credit_code()}</wu:CreditCode>"),
    ],
)
def test_a_utility_account_names_its_holder_by_one_identifier(spec: str, holder: str, other: str) -> None:
    check(spec, replaced(spec, holder, other))  # the other identifier instead
    assert refused(spec, replaced(spec, holder, holder + other)).rule == "cvc-complex-type.2.4"
    assert refused(spec, replaced(spec, holder, "")).rule == "cvc-complex-type.2.4"
