"""The data dictionary (数据字典) of the shipped specifications, as standards staff check it.

Every data item the XSD declares is listed once, in the order of the XSD, with its Chinese
name, whether it is required, its length, pattern or digits, its code list with each code's
meaning, and the standard the code list comes from; the JSON says the same as the page, and
the page shows whatever the documentation says as text, never as markup.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from lxml import etree

from schemas.dictionary import as_html, as_json, data_items
from schemas.model import Model, load_model
from schemas.registry import XSD_ROOT
from tests.samples import credit_code, id_number

XS = "{http://www.w3.org/2001/XMLSchema}"
LANG = "{http://www.w3.org/XML/1998/namespace}lang"
PERSON_XSD = XSD_ROOT / "person" / "1.0" / "person.xsd"
LEGAL_XSD = XSD_ROOT / "legal-entity" / "1.0" / "legal-entity.xsd"


@pytest.fixture(scope="module")
def person() -> Model:
    return load_model(PERSON_XSD)


@pytest.fixture(scope="module")
def legal() -> Model:
    return load_model(LEGAL_XSD)


def by_path(model: Model) -> dict[str, dict[str, Any]]:
    return {item["path"]: item for item in data_items(model)}


def codes(item: dict[str, Any]) -> dict[str, str | None]:
    return {c["code"]: c["meaning"] for c in item["codes"]}


def declared(xsd: Path) -> Iterator[tuple[str, str, str, bool]]:
    """(path, kind, Chinese label, required) of every item, read from the XSD itself with
    lxml: the elements of the root's sequence, each followed by the attributes of its type."""
    schema = etree.parse(str(xsd)).getroot()
    types = {t.get("name"): t for t in schema.iterchildren(f"{XS}complexType")}

    def label(node: etree._Element) -> str:
        [text] = [d.text for d in node.iterfind(f"{XS}annotation/{XS}documentation") if d.get(LANG) == "zh"]
        return text

    for root in schema.iterchildren(f"{XS}element"):
        for element in root.iterfind(f"{XS}complexType/{XS}sequence/{XS}element"):
            path = f"/{root.get('name')}/{element.get('name')}"
            yield path, "element", label(element), element.get("minOccurs", "1") != "0"
            named = types.get((element.get("type") or "").partition(":")[2])
            for attribute in named.iter(f"{XS}attribute") if named is not None else ():
                yield f"{path}/@{attribute.get('name')}", "attribute", label(attribute), attribute.get("use") == "required"


# -- every item, once, in order, with its Chinese name ----------------------------------------


@pytest.mark.parametrize("xsd", [PERSON_XSD, LEGAL_XSD], ids=["person", "legal-entity"])
def test_every_item_once_in_document_order_with_its_chinese_name(xsd: Path) -> None:
    expected = list(declared(xsd))
    assert len(expected) >= 10
    listed = [(i["path"], i["kind"], i["label"], i["required"]) for i in data_items(load_model(xsd))]
    assert listed == expected
    assert all(re.search(r"[\u4e00-\u9fff]", label) for _, _, label, _ in listed)


def test_person_items_as_a_standards_officer_reads_them(person: Model) -> None:
    assert [(i["path"], i["label"], i["required"]) for i in data_items(person)] == [
        ("/Person/IdNumber", "公民身份号码", True),
        ("/Person/Name", "姓名", True),
        ("/Person/Sex", "性别", False),
        ("/Person/BirthDate", "出生日期", False),
        ("/Person/Ethnicity", "民族", False),
        ("/Person/Division", "户籍地行政区划", False),
        ("/Person/Address", "户籍地址", False),
        ("/Person/Phone", "联系电话", False),
        ("/Person/MaritalStatus", "婚姻状况", False),
        ("/Person/RecordUpdatedAt", "源记录更新时间", False),
    ]
    items = by_path(person)
    assert {p: i["type"] for p, i in items.items() if i["type"] != "string"} == {
        "/Person/BirthDate": "date", "/Person/RecordUpdatedAt": "dateTime",
    }
    assert not any(i["repeats"] for i in items.values())


# -- lengths, patterns, digits ----------------------------------------------------------------


def test_lengths(person: Model, legal: Model) -> None:
    p, le = by_path(person), by_path(legal)
    assert (p["/Person/Name"]["min_length"], p["/Person/Name"]["max_length"], p["/Person/Name"]["length"]) == (1, 50, 50)
    assert p["/Person/Address"]["max_length"] == 200
    assert le["/LegalEntity/Name"]["max_length"] == 200
    assert le["/LegalEntity/LegalRepresentative"]["max_length"] == 50
    assert le["/LegalEntity/RegistrationAuthority"]["max_length"] == 100
    assert le["/LegalEntity/BusinessScope"]["max_length"] == 4000
    # a code or a date has no length of its own to print
    assert p["/Person/Sex"]["length"] is None and p["/Person/BirthDate"]["length"] is None


def test_patterns_are_the_xsds_and_admit_real_identifiers(person: Model, legal: Model) -> None:
    id_pattern = PERSON_XSD.read_text(encoding="utf-8").split('<xs:pattern value="', 1)[1].split('"', 1)[0]
    id_item = by_path(person)["/Person/IdNumber"]
    assert id_item["patterns"] == [id_pattern]
    assert id_item["standard"] == "GB 11643-1999"
    assert re.fullmatch(id_item["patterns"][0], id_number())
    assert re.fullmatch(id_item["patterns"][0], id_number(birth="20010101", sequence=7)[:-1] + "X")
    assert not re.fullmatch(id_item["patterns"][0], "44040219901307231X")  # month 13

    code_item = by_path(legal)["/LegalEntity/CreditCode"]
    assert code_item["standard"] == "GB 32100-2015"
    assert re.fullmatch(code_item["patterns"][0], credit_code())
    assert not re.fullmatch(code_item["patterns"][0], "91440400MA4UH3C2I" + "0")  # I is never used

    phone = by_path(person)["/Person/Phone"]["patterns"]
    assert len(phone) == 1 and re.fullmatch(phone[0], "13926981234") and re.fullmatch(phone[0], "0756-2212345")


def test_registered_capital_digits_and_its_currency_attribute(legal: Model) -> None:
    items = data_items(legal)
    paths = [i["path"] for i in items]
    capital = items[paths.index("/LegalEntity/RegisteredCapital")]
    assert (capital["label"], capital["type"], capital["total_digits"], capital["fraction_digits"], capital["min"]) == (
        "注册资本（万元）", "decimal", 18, 6, "0",
    )
    assert capital["codes"] is None and not capital["required"]

    # the attribute comes right after its element, as an item of its own
    currency = items[paths.index("/LegalEntity/RegisteredCapital") + 1]
    assert currency["path"] == "/LegalEntity/RegisteredCapital/@currency"
    assert (currency["kind"], currency["name"], currency["label"], currency["default"], currency["required"]) == (
        "attribute", "currency", "币种", "CNY", False,
    )
    assert (currency["patterns"], currency["standard"]) == (["[A-Z]{3}"], "GB/T 12406-2008")
    assert paths.count("/LegalEntity/RegisteredCapital/@currency") == 1


# -- code lists and their standards -----------------------------------------------------------


def test_sex_codes_of_gb_t_2261_1(person: Model) -> None:
    sex = by_path(person)["/Person/Sex"]
    assert sex["standard"] == "GB/T 2261.1-2003"
    assert sex["codes"] == [
        {"code": "0", "meaning": "未知的性别"}, {"code": "1", "meaning": "男性"},
        {"code": "2", "meaning": "女性"}, {"code": "9", "meaning": "未说明的性别"},
    ]


def test_ethnicity_codes_of_gb_3304(person: Model) -> None:
    ethnicity = by_path(person)["/Person/Ethnicity"]
    assert ethnicity["standard"] == "GB 3304-1991"
    found = codes(ethnicity)
    assert len(ethnicity["codes"]) == 58
    assert list(found) == [f"{n:02d}" for n in range(1, 57)] + ["97", "98"]
    assert (found["01"], found["56"], found["97"], found["98"]) == ("汉族", "基诺族", "其他", "外国血统中国籍人士")
    assert all(meaning for meaning in found.values())
    assert len(set(found.values())) == 58


def test_marital_status_codes_of_gb_t_4766(person: Model) -> None:
    marital = by_path(person)["/Person/MaritalStatus"]
    assert marital["standard"] == "GB/T 4766-1984"
    assert codes(marital) == {
        "10": "未婚", "20": "已婚", "21": "初婚", "22": "再婚", "23": "复婚", "30": "丧偶", "40": "离婚",
        "90": "未说明的婚姻状况",
    }


def test_code_lists_of_legal_entity(legal: Model) -> None:
    items = by_path(legal)
    entity_type = items["/LegalEntity/EntityType"]
    assert len(entity_type["codes"]) == 25 and codes(entity_type)["173"] == "私营有限责任公司"
    assert "关于划分企业登记注册类型的规定" in entity_type["standard"]
    assert codes(items["/LegalEntity/Division"]) == {"440400": "珠海市", "440402": "香洲区", "440403": "斗门区", "440404": "金湾区"}
    assert items["/LegalEntity/Division"]["standard"] == "GB/T 2260"
    assert list(codes(items["/LegalEntity/Status"])) == ["存续", "在业", "停业", "吊销", "注销", "撤销", "迁出"]
    # items without a code list say so, and claim no standard they do not have
    assert items["/LegalEntity/Name"]["codes"] is None and items["/LegalEntity/Name"]["standard"] is None


# -- the JSON and the page say the same ---------------------------------------------------------


def test_json_is_the_dictionary_for_programs(person: Model) -> None:
    text = as_json("person", "1.0", "published", person)
    assert "公民身份号码" in text  # readable as it is, not \\u escapes
    document = json.loads(text)
    assert (document["specification"], document["version"], document["status"]) == ("person", "1.0", "published")
    assert document["namespace"] == "urn:zhuhai:govbus:person"
    assert document["roots"] == ["Person"]
    assert document["title"].startswith("人口基础信息数据规范 1.0")
    assert document["items"] == data_items(person)


def html_rows(page: str) -> list[list[str]]:
    document = lxml.html.document_fromstring(page.encode("utf-8"))
    return [[cell.text_content() for cell in row.iterfind("td")] for row in document.iter("tr") if row.find("td") is not None]


@pytest.mark.parametrize("name, xsd", [("person", PERSON_XSD), ("legal-entity", LEGAL_XSD)])
def test_the_page_has_a_row_per_item_in_chinese(name: str, xsd: Path) -> None:
    model = load_model(xsd)
    page = as_html(name, "1.0", "published", model)
    document = lxml.html.document_fromstring(page.encode("utf-8"))
    assert document.get("lang") == "zh-CN"
    assert f"{name} 1.0 数据字典" in document.findtext(".//title")
    headers = [th.text_content() for th in document.iter("th")]
    assert headers == ["序号", "信息项", "中文名称", "类型", "长度/格式", "必填", "代码表", "代码标准"]
    rows = html_rows(page)
    items = data_items(model)
    assert len(rows) == len(items)
    for number, (row, item) in enumerate(zip(rows, items, strict=True), 1):
        assert row[:3] == [str(number), item["path"], item["label"]]
        assert row[5].startswith("是" if item["required"] else "否")
        assert row[7] == (item["standard"] or "")
        for code in item["codes"] or []:
            assert f"{code['code']} {code['meaning']}" in row[6]
    assert "已发布" in page


def test_the_page_shows_widths_digits_and_codes(person: Model, legal: Model) -> None:
    people = {row[1]: row for row in html_rows(as_html("person", "1.0", "published", person))}
    assert people["/Person/Name"][3:5] == ["字符", "1–50 字符"]
    assert people["/Person/BirthDate"][3] == "日期"
    assert "97 其他" in people["/Person/Ethnicity"][6] and "98 外国血统中国籍人士" in people["/Person/Ethnicity"][6]
    assert people["/Person/Ethnicity"][7] == "GB 3304-1991"
    assert "格式" in people["/Person/IdNumber"][4] and "(18|19|20)" in people["/Person/IdNumber"][4]
    entities = {row[1]: row for row in html_rows(as_html("legal-entity", "1.0", "deprecated", legal))}
    assert "18 位数字，6 位小数" in entities["/LegalEntity/RegisteredCapital"][4]
    assert entities["/LegalEntity/RegisteredCapital/@currency"][2] == "币种"


# -- documentation is text, never markup ------------------------------------------------------

ANN = "urn:zhuhai:govbus:annotation"


def write_spec(tmp_path: Path, *body: str, title: str = "测试规范") -> Path:
    main = tmp_path / "notes.xsd"
    main.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:n="urn:t:notes" xmlns:ann="{ANN}"'
        ' targetNamespace="urn:t:notes" elementFormDefault="qualified">\n'
        f'  <xs:annotation><xs:documentation xml:lang="zh">{title}</xs:documentation></xs:annotation>\n'
        '  <xs:element name="Notes"><xs:complexType><xs:sequence>\n'
        + "\n".join(body)
        + "\n  </xs:sequence></xs:complexType></xs:element>\n</xs:schema>\n",
        encoding="utf-8",
    )
    return main


def test_markup_in_documentation_is_escaped_on_the_page(tmp_path: Path) -> None:
    main = write_spec(
        tmp_path,
        '    <xs:element name="Amount">',
        '      <xs:annotation><xs:documentation xml:lang="zh">金额 &lt;b&gt;万元&lt;/b&gt; &amp; 币种</xs:documentation></xs:annotation>',
        "      <xs:simpleType>",
        '        <xs:annotation><xs:appinfo><ann:standard>GB &lt;T&gt; 1 &amp; 2</ann:standard></xs:appinfo></xs:annotation>',
        '        <xs:restriction base="xs:string">',
        '          <xs:enumeration value="A&amp;B"><xs:annotation><xs:documentation xml:lang="zh">甲 &lt;i&gt;乙&lt;/i&gt; &amp;amp;</xs:documentation></xs:annotation></xs:enumeration>',
        '          <xs:enumeration value="&lt;C&gt;"/>',
        "        </xs:restriction>",
        "      </xs:simpleType>",
        "    </xs:element>",
        title="标题 &lt;script&gt;alert(1)&lt;/script&gt; &amp; 说明",
    )
    model = load_model(main)
    page = as_html("notes", "1.0", "draft", model)
    document = lxml.html.document_fromstring(page.encode("utf-8"))
    assert not document.xpath("//script | //b | //i | //c")
    [row] = html_rows(page)
    assert row[2] == "金额 <b>万元</b> & 币种"
    assert row[7] == "GB <T> 1 & 2"
    assert "A&B 甲 <i>乙</i> &amp;" in row[6] and "<C>" in row[6]
    assert "标题 <script>alert(1)</script> & 说明" in document.text_content()
    assert "草稿" in page
    # the JSON carries the same text, unescaped
    [item] = json.loads(as_json("notes", "1.0", "draft", model))["items"]
    assert (item["label"], item["standard"]) == ("金额 <b>万元</b> & 币种", "GB <T> 1 & 2")
    assert item["codes"] == [{"code": "A&B", "meaning": "甲 <i>乙</i> &amp;"}, {"code": "<C>", "meaning": None}]


def test_documentation_with_markup_inside_keeps_all_its_text(tmp_path: Path) -> None:
    # xs:documentation may hold mixed content; its name is all of the text, not the part
    # before the first child element.
    main = write_spec(
        tmp_path,
        '    <xs:element name="Capital" type="xs:decimal">',
        '      <xs:annotation><xs:documentation xml:lang="zh">注册<b>资本</b>（万元）</xs:documentation></xs:annotation>',
        "    </xs:element>",
    )
    [item] = data_items(load_model(main))
    assert item["label"] is not None and "资本" in item["label"] and item["label"].endswith("（万元）")
    [row] = html_rows(as_html("notes", "1.0", "draft", load_model(main)))
    assert "注册" in row[2] and "资本" in row[2] and "（万元）" in row[2]


def test_the_chinese_documentation_names_the_item(tmp_path: Path) -> None:
    main = write_spec(
        tmp_path,
        '    <xs:element name="Email" type="xs:string" minOccurs="0" maxOccurs="unbounded">',
        '      <xs:annotation><xs:documentation xml:lang="en">E-mail address</xs:documentation>'
        '<xs:documentation xml:lang="zh">电子邮箱</xs:documentation></xs:annotation>',
        "    </xs:element>",
        '    <xs:element name="Fax" type="xs:string">',
        '      <xs:annotation><xs:documentation xml:lang="en">Fax number</xs:documentation></xs:annotation>',
        "    </xs:element>",
    )
    email, fax = data_items(load_model(main))
    assert (email["label"], email["required"], email["repeats"]) == ("电子邮箱", False, True)
    assert (fax["label"], fax["required"], fax["repeats"]) == ("Fax number", True, False)
