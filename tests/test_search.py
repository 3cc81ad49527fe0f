"""Catalogue search as a department or a catalogue admin uses it: keyword (exact, substring,
pinyin, typos), browsing by department, classification and theme, ranking and paging."""

from __future__ import annotations

import random

import pytest
from pypinyin import lazy_pinyin

from catalog_registry.search import MAX_PAGE_SIZE, Document, SearchIndex


def doc(
    code: str, name: str, classification: str = "0101", themes: tuple[str, ...] = (), text: str = ""
) -> Document:
    provider = code.split("-")[0]
    return Document(
        key=code,
        code=code,
        name=name,
        provider=provider,
        provider_name=f"{provider} 部门",
        classification=classification,
        themes=themes,
        text=text,
    )


CATALOGUE = [
    doc("GA-001", "户籍人口信息", "010100101", ("T-RK",), "公民户籍登记的基本信息：姓名、身份证号、住址"),
    doc("GA-002", "户籍人口变动信息", "010100102", ("T-RK",)),
    doc("GA-003", "流动人口居住登记信息", "010100201", ("T-RK",)),
    doc("GA-004", "机动车登记信息", "010200101", ("T-JT",)),
    doc("DA-001", "历史户籍人口信息", "010100901", ("T-RK",)),
    doc("TJ-001", "户籍人口信息统计", "010100501", ("T-RK", "T-TJ")),
    doc("TJ-002", "人口普查数据", "010100502", ("T-RK", "T-TJ")),
    doc("RS-001", "社保参保人员信息", "020100101", ("T-SB",)),
    doc("RS-002", "社保缴费明细", "020100102", ("T-SB",)),
    doc("RS-003", "失业登记信息", "020200101", ("T-JY",)),
    doc("MZ-001", "婚姻登记信息", "030100101", ("T-HY",)),
]


@pytest.fixture(scope="module")
def index() -> SearchIndex:
    return SearchIndex(CATALOGUE)


def codes(page) -> list[str]:
    return [hit.document.code for hit in page.hits]


def test_pinyin_initials_find_the_resource_first(index):
    page = index.search("hjrk")
    assert page.hits[0].document.name == "户籍人口信息"
    assert page.hits[0].reason == "pinyin-initials"
    # initials that start with the query rank above initials that merely contain it
    assert codes(page) == ["GA-001", "GA-002", "TJ-001", "DA-001"]


def test_full_width_input_is_normalised(index):
    assert codes(index.search("ＨＪＲＫ")) == codes(index.search("hjrk"))
    assert codes(index.search("\u3000户籍人口信息\u3000"))[0] == "GA-001"


def test_name_prefix_and_substring(index):
    prefix = index.search("户籍")
    assert prefix.hits[0].document.name == "户籍人口信息"
    assert {h.reason for h in prefix.hits[:3]} == {"name-prefix"}
    assert codes(prefix)[-1] == "DA-001"  # 历史户籍人口信息 only contains it

    substring = index.search("人口")
    assert codes(substring)[0] == "TJ-002"  # 人口普查数据 starts with it
    assert "GA-001" in codes(substring)
    assert {h.reason for h in substring.hits[1:]} == {"name-substring"}


def test_exact_name_ranks_above_prefix_and_substring(index):
    page = index.search("户籍人口信息")
    assert [(h.document.code, h.reason) for h in page.hits] == [
        ("GA-001", "name"),
        ("TJ-001", "name-prefix"),
        ("DA-001", "name-substring"),
    ]
    assert page.hits[0].score > page.hits[1].score > page.hits[2].score


def test_full_pinyin_and_its_typos(index):
    exact = index.search("hujirenkou")
    assert exact.hits[0].document.code == "GA-001"
    assert exact.hits[0].reason == "pinyin"

    typo = index.search("hujirenkuo")
    assert typo.hits[0].document.code == "GA-001"
    assert typo.hits[0].reason == "typo"


def test_a_wrong_character_is_tolerated(index):
    page = index.search("户藉人口")
    assert page.hits[0].document.name == "户籍人口信息"
    assert page.hits[0].reason == "typo"


def test_short_words_are_not_typo_matched(index):
    assert index.search("户藉").total == 0


def test_exact_code(index):
    for query in ("RS-002", "rs-002", " ＲＳ－００２ "):
        page = index.search(query)
        assert codes(page) == ["RS-002"], query
        assert page.hits[0].reason == "code"


def test_secondary_text_ranks_below_names(index):
    page = index.search("身份证号")
    assert codes(page) == ["GA-001"]
    assert page.hits[0].reason == "text"
    assert codes(index.search("登记"))[-1] == "GA-001"  # only its text says 登记


def test_every_word_must_match_and_scores_add_up(index):
    page = index.search("社保 参保")
    assert codes(page) == ["RS-001"]
    alone = index.search("社保").hits[0].score + index.search("参保").hits[0].score
    assert page.hits[0].score == alone
    assert index.search("社保 婚姻").total == 0


def test_filters_narrow_the_matches(index):
    assert codes(index.search("信息", department="RS")) == ["RS-001", "RS-003"]
    assert codes(index.search("人口", department="TJ")) == ["TJ-002", "TJ-001"]
    assert set(codes(index.search("登记", classification="0101"))) == {"GA-003", "GA-001"}
    assert codes(index.search("信息", theme="T-SB")) == ["RS-001"]
    assert index.search("社保", department="GA").total == 0


def test_browse_a_department_in_code_order(index):
    page = index.search("", department="GA")
    assert codes(page) == ["GA-001", "GA-002", "GA-003", "GA-004"]
    assert {(h.reason, h.score) for h in page.hits} == {("browse", 0.0)}
    assert page.total == 4


def test_browse_by_classification_prefix_and_theme(index):
    assert codes(index.search(classification="0102")) == ["GA-004"]
    assert codes(index.search(classification="02")) == ["RS-001", "RS-002", "RS-003"]
    assert codes(index.search(classification="01", department="TJ")) == ["TJ-001", "TJ-002"]
    assert codes(index.search(theme="T-TJ")) == ["TJ-001", "TJ-002"]
    assert codes(index.search(theme="T-TJ", classification="02")) == []
    assert index.search().total == len(CATALOGUE) == len(index)


def test_nothing_matches(index):
    page = index.search("量子计算机")
    assert (page.total, page.hits) == (0, ())
    assert index.search("", department="XX").total == 0


def test_paging():
    index = SearchIndex(doc(f"GS-{n:03d}", f"企业年报数据{n}") for n in range(45))
    pages = [index.search("企业年报", page=p, size=20) for p in (1, 2, 3, 4)]
    assert [p.total for p in pages] == [45, 45, 45, 45]
    assert [len(p.hits) for p in pages] == [20, 20, 5, 0]
    assert (pages[1].page, pages[1].size) == (2, 20)
    assert [code for p in pages for code in codes(p)] == [f"GS-{n:03d}" for n in range(45)]
    assert len(index.search("企业年报", size=MAX_PAGE_SIZE).hits) == 45


@pytest.mark.parametrize(
    ("page", "size", "message"),
    [
        (0, 20, "page must be 1 or more"),
        (-1, 20, "page must be 1 or more"),
        (1, 0, "page size must be between 1 and 200"),
        (1, MAX_PAGE_SIZE + 1, "page size must be between 1 and 200"),
    ],
)
def test_bad_paging_is_refused(index, page, size, message):
    with pytest.raises(ValueError, match=message):
        index.search("人口", page=page, size=size)
    with pytest.raises(ValueError, match=message):
        index.search("", page=page, size=size)


def test_keys_must_be_unique():
    with pytest.raises(ValueError, match="GA-001"):
        SearchIndex([CATALOGUE[0], CATALOGUE[0]])


def test_an_empty_index_answers():
    assert SearchIndex([]).search("hjrk").total == 0


# A catalogue of the size the platform is benchmarked with: names built from real subjects.

DEPARTMENTS = [("GA", "市公安局"), ("MZ", "市民政局"), ("RS", "市人力资源和社会保障局"), ("WJ", "市卫生健康委员会"),
               ("JY", "市教育局"), ("ZJ", "市住房和城乡建设局"), ("SC", "市市场监督管理局"), ("TJ", "市统计局")]
SUBJECTS = ["户籍人口", "流动人口", "常住人口", "社保参保", "社保缴费", "婚姻登记", "出生医学证明", "企业登记",
            "个体工商户", "学籍", "不动产登记", "住房公积金", "医保结算", "疫苗接种", "机动车", "纳税人",
            "低保救助", "养老机构", "失业登记", "职业资格"]
QUALIFIERS = ["", "年度", "月度", "全市", "区县", "历史"]
SUFFIXES = ["信息", "数据", "明细", "统计", "台账", "名录", "变更记录"]
ITEMS = ["姓名", "身份证号", "性别", "出生日期", "住址", "单位名称", "统一社会信用代码", "金额", "状态"]


def synthetic(count: int = 5000) -> list[Document]:
    rnd = random.Random(20240501)
    docs = [doc("GA-00000", "户籍人口信息", "0101001", ("T0",), "户籍人口的基本信息")]
    for n in range(1, count):
        provider, provider_name = DEPARTMENTS[n % len(DEPARTMENTS)]
        name = rnd.choice(QUALIFIERS) + rnd.choice(SUBJECTS) + rnd.choice(SUFFIXES)
        docs.append(Document(
            key=f"{provider}-{n:05d}", code=f"{provider}-{n:05d}", name=name, provider=provider,
            provider_name=provider_name,
            classification=f"{n % 4 + 1:02d}{n % 9 + 1:02d}{n % 13 + 1:03d}",
            themes=(f"T{n % 7}",), text=f"{provider_name}：" + "、".join(rnd.sample(ITEMS, 3)),
        ))
    return docs


@pytest.fixture(scope="module")
def large() -> tuple[list[Document], SearchIndex]:
    docs = synthetic()
    return docs, SearchIndex(docs)


def test_a_large_catalogue(large):
    docs, index = large
    assert len(index) == 5000

    exact = index.search("户籍人口信息")
    assert (exact.hits[0].document.key, exact.hits[0].reason) == ("GA-00000", "name")
    assert exact.total == sum("户籍人口信息" in d.name or "户籍人口信息" in d.text for d in docs)

    initials = index.search("hjrk", size=200)
    assert initials.hits[0].document.key == "GA-00000"
    expected = {d.key for d in docs if "hjrk" in "".join(s[0] for s in lazy_pinyin(d.name))}
    assert initials.total == len(expected)
    assert all(h.document.key in expected for h in initials.hits)

    typo = index.search("hujirenkuo", size=200)
    assert typo.hits[0].document.key == "GA-00000"
    assert all(h.document.name.startswith("户籍人口") for h in typo.hits)

    assert codes(index.search("rs-00010")) == ["RS-00010"]


def test_a_large_catalogue_filtered_and_paged(large):
    docs, index = large
    wanted = [d for d in docs if d.provider == "RS" and ("人口" in d.name or "人口" in d.text)]
    first = index.search("人口", department="RS", size=50)
    assert first.total == len(wanted)
    reasons = [h.reason for h in first.hits]
    assert reasons == sorted(reasons, key=["name-prefix", "name-substring", "text"].index)

    every = []
    for page in range(1, first.total // 50 + 2):
        every += codes(index.search("人口", department="RS", page=page, size=50))
    assert sorted(every) == sorted(d.code for d in wanted)

    by_theme = index.search("", theme="T3", classification="02", page=2, size=10)
    chosen = [d for d in docs if "T3" in d.themes and d.classification.startswith("02")]
    expected = sorted(d.code for d in chosen)
    assert by_theme.total == len(expected)
    assert codes(by_theme) == expected[10:20]


def test_a_typo_finds_a_name_that_begins_with_its_department():
    # real catalogues often name a resource after its department first
    index = SearchIndex([
        Document(key=code, code=code, name=name, provider=provider, provider_name=provider_name,
                 classification="0101", themes=(), text="")
        for code, name, provider, provider_name in [
            ("101001-0001", "金湾区公安局户籍人口信息", "JWGA", "金湾区公安局"),
            ("101001-0002", "金湾区公安局机动车登记信息", "JWGA", "金湾区公安局"),
            ("201002-0001", "市民政局婚姻登记信息", "MZ", "市民政局"),
        ]
    ])
    assert codes(index.search("户藉人口信息")) == ["101001-0001"]
    assert codes(index.search("hujirenkuo")) == ["101001-0001"]
    assert codes(index.search("婚烟登记")) == ["201002-0001"]
    assert index.search("婚烟登记").hits[0].reason == "typo"
