#!/usr/bin/env python3
"""Synthetic extracts of five Zhuhai departments for the base libraries, with the truth they imply.

    python examples/masterdata/generate.py --out DIR [--people N] [--entities M] [--seed S]
        [--conflict-share 0.05] [--bad-id-share 0.01] [--anomalies K]

`generate(out, ...)` writes into `out` (created if need be; same seed and arguments, same bytes):
- one CSV per department (UTF-8, header row): person-GA.csv, person-MZ.csv, person-RS.csv,
  entity-GS.csv, entity-GSW.csv. Columns: the key (IdNumber or CreditCode) as the department typed
  it, the attributes it holds (names from masterdata.model.ATTRIBUTES), SourceRecordId and
  RecordUpdatedAt (ISO 8601, +08:00);
- golden-person.csv, golden-entity.csv: per valid key, the golden value of every attribute some
  department provides (empty: no value) and the departments holding the key (Departments, "|");
- truth.json: parameters, extracts, source ranks, planted conflicts, invalid identifiers, anomalies,
  identity-number mismatches and the expected statistics;
and returns the same as a `Truth`. Raises ValueError (one line, with the fix) for impossible asks.
Every identifier is built and checked with masterdata.identifiers.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
import tomllib
from bisect import bisect
from calendar import monthrange
from collections import Counter
from collections.abc import Callable
from datetime import date
from functools import cache
from itertools import accumulate
from pathlib import Path
from random import Random
from typing import Any

from masterdata.identifiers import (
    check_credit_code, check_id_number, credit_check_char, id_check_digit, organization_check_char,
)
from masterdata.model import ATTRIBUTES, ENTITY, KEY_OF, PERSON

# synthetic_truth.py sits beside this file, whether it runs as a script or is imported by path
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_truth import Anomaly, Conflict, Extract, IdMismatch, InvalidIdentifier, Truth  # noqa: E402

REFERENCE_DATE = date(2024, 12, 31)  # ages (and so age bands) are counted on this day
DISTRICTS = {"440402": "香洲区", "440403": "斗门区", "440404": "金湾区"}
AGE_BANDS = ("0-17", "18-34", "35-59", "60+")
BANDS = [AGE_BANDS[0]] * 18 + [AGE_BANDS[1]] * 17 + [AGE_BANDS[2]] * 25 + [AGE_BANDS[3]] * 100  # by age in years
MZ_SHARE, MZ_FROM_AGE = 0.8, 20  # MZ holds 80% of the people aged 20 or more
RS_SHARE, RS_FROM_AGE = (0.7, 0.55), 16  # RS holds 70% of those aged 16-59, 55% of those aged 60 or more
# Department -> (kind, attributes it holds). The order is also the source rank of every attribute
# (GA first for a person's name, sex, birth date, ...; GS first for an entity's name): the default
# rules of issue 6. The tax department is 国税 (GSW); 地税 holds no extract here.
DEPARTMENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "GA": (PERSON, ("Name", "Sex", "BirthDate", "Ethnicity", "Division", "Address")),
    "MZ": (PERSON, ("Name", "Sex", "BirthDate", "MaritalStatus")),
    "RS": (PERSON, ("Name", "BirthDate", "Phone", "SocialInsuranceStatus")),
    "GS": (ENTITY, ("Name", "EntityType", "LegalRepresentative", "RegisteredCapital", "EstablishedOn",
                    "Status", "Division", "Address")),
    "GSW": (ENTITY, ("Name", "TaxStatus")),
}


def columns(department: str) -> tuple[str, ...]:
    """The CSV header of a department's extract."""
    kind, held = DEPARTMENTS[department]
    return (KEY_OF[kind], *(a for a in ATTRIBUTES[kind] if a in held), "SourceRecordId", "RecordUpdatedAt")


def ranks(kind: str) -> dict[str, tuple[str, ...]]:
    """Attribute -> the departments providing it, first-ranked first (only attributes someone provides)."""
    return {a: r for a in ATTRIBUTES[kind]
            if (r := tuple(d for d, (k, held) in DEPARTMENTS.items() if k == kind and a in held))}


class _Pick:
    """A weighted choice from "value:weight ..." driven by one uniform draw in [0, 1)."""

    def __init__(self, table: str) -> None:
        pairs = [item.rsplit(":", 1) for item in table.split()]
        self.values = [v for v, _ in pairs]
        self.cum = list(accumulate(float(w) for _, w in pairs))

    def __call__(self, u: float) -> str:
        return self.values[bisect(self.cum, u * self.cum[-1])]


_WORDS = tomllib.loads(Path(__file__).with_name("vocabulary.toml").read_text(encoding="utf-8"))
_P, _E = _WORDS["people"], _WORDS["entities"]
TOWNS = {d: v.split() for d, v in _WORDS["places"]["towns"].items()}
ROADS = {d: v.split() for d, v in _WORDS["places"]["roads"].items()}
PERSON_DISTRICT, SURNAMES, ETHNICITY = _Pick(_P["districts"]), _Pick(_P["surnames"]), _Pick(_P["ethnicity"])
BIRTH_YEAR = _Pick(" ".join(f"{y}:{w}" for decade, w in (i.split(":") for i in _P["birth_decades"].split())
                            for y in range(int(decade), min(int(decade) + 10, 2021))))
MALE, FEMALE = ({pair[0]: pair[1] for pair in _P[sex].split()} for sex in ("male", "female"))
VARIANT = {**MALE, **FEMALE}
MALE_CHARS, FEMALE_CHARS, GIVEN = list(MALE), list(FEMALE), list(VARIANT)
PHONE_PREFIXES = _P["phone_prefixes"].split()
MARITAL = [(limit, _Pick(table)) for limit, table in _P["marital"]]
INSURANCE = {False: _Pick(_P["insurance"][0]), True: _Pick(_P["insurance"][1])}  # by age >= 60
ENTITY_DISTRICT, ORG_TYPE = _Pick(_E["districts"]), _Pick(_E["organisation_types"])
ENTITY_TYPE, STATUS = _Pick(_E["entity_types"]), _Pick(_E["statuses"])
ESTABLISHED_YEAR = _Pick(" ".join(f"{y}:{(y - 1985) ** 2}" for y in range(1990, 2025)))  # growing every year
SHOP_WORDS = sorted(set("".join(_E["trade_name_characters"].split())))
INDUSTRIES, SHOPS, COOPS = (_E[k].split() for k in ("industries", "shops", "cooperatives"))
NAME_SUFFIX, TAX_COVERAGE = _E["name_suffix"], _E["tax_coverage"]
CAPITAL = {t: _Pick(table) for t, table in _E["capital"].items()}
TAX_STATUS = {status: _Pick(table) for status, table in _E["tax_status"].items()}
CODE_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # GB 32100 (no I, O, Z, S, V)
BAD_ID_DATES = ("0230", "0231", "0431", "0631", "0931", "1131", "1301", "1315", "0000", "0132")
TIMESTAMPS_FROM = date(2016, 1, 1).toordinal()  # records were last changed between this day and REFERENCE_DATE
COVERAGE = {
    "GA": "every person (the household register; it issues the identity numbers, so none is invalid)",
    "MZ": f"{MZ_SHARE:.0%} of the people aged {MZ_FROM_AGE} or more",
    "RS": f"{RS_SHARE[0]:.0%} of the people aged {RS_FROM_AGE}-59, {RS_SHARE[1]:.0%} of those aged 60 or more",
    "GS": "every legal entity (the register; it issues the credit codes, so none is invalid)",
    "GSW": "by Status: " + ", ".join(f"{share:.0%} of {status}" for status, share in TAX_COVERAGE.items()),
}


def planted_count(share: float, total: int) -> int:
    """How many of `total` items a share plants: share x total, rounded half up."""
    return int(share * total + 0.5)


def _age(birth: str, on: date = REFERENCE_DATE) -> int:
    """Whole years from `birth` (YYYY-MM-DD) to `on`."""
    return on.year - int(birth[:4]) - ((on.month, on.day) < (int(birth[5:7]), int(birth[8:10])))


def age_band(birth: str, on: date = REFERENCE_DATE) -> str:
    """The age band ("0-17", "18-34", "35-59", "60+") of someone born on `birth` (YYYY-MM-DD) on day `on`."""
    return BANDS[_age(birth, on)]


@cache
def _iso_days() -> tuple[int, list[str]]:
    """(first ordinal, ISO text of every day from 1929-01-01 to 2025-12-31): formatting once, not per record."""
    first = date(1929, 1, 1).toordinal()
    return first, [date.fromordinal(o).isoformat() for o in range(first, date(2026, 1, 1).toordinal())]


class _Sink:
    """The open CSV writers, the record counters and the planted facts of one run."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.rand: Callable[[], float]  # the random stream of the phase running (people, then entities)
        self.first, self.iso = _iso_days()
        self.last, self.clock = REFERENCE_DATE.toordinal(), _clock()
        self.files = {d: open(out / f"{k}-{d}.csv", "w", 1 << 20, "utf-8", newline="") for d, (k, _) in DEPARTMENTS.items()}
        self.files.update({k: open(out / f"golden-{k}.csv", "w", 1 << 20, "utf-8", newline="") for k in (PERSON, ENTITY)})
        self.writers = {name: csv.writer(f, lineterminator="\n") for name, f in self.files.items()}
        self.rows = {name: w.writerow for name, w in self.writers.items()}
        for d in DEPARTMENTS:
            self.writers[d].writerow(columns(d))
        self.held = {d: columns(d)[1:-2] for d in DEPARTMENTS}
        self.attributes = {k: tuple(ranks(k)) for k in (PERSON, ENTITY)}
        for k in (PERSON, ENTITY):
            self.writers[k].writerow([KEY_OF[k], *self.attributes[k], "Departments"])
        self.records = dict.fromkeys(DEPARTMENTS, 0)
        self.blanks = [""] * max(map(len, self.attributes.values()))
        self.conflicts: list[Conflict] = []
        self.invalid: list[InvalidIdentifier] = []
        self.anomalies: list[Anomaly] = []
        self.mismatches: list[IdMismatch] = []

    def close(self) -> None:
        for f in self.files.values():
            f.close()

    def day(self, ordinal: int) -> str:
        return self.iso[ordinal - self.first]

    def emit(self, kind: str, key: str, held: dict[str, dict[str, str]], bad: dict[str, tuple[str, str]] | None,
             since: int, plant: tuple[str, str, str] | None) -> dict[str, str]:
        """Write each department's record of one key (`bad`: department -> (reason, invalid key) where
        planted), the golden row and the planted conflict; return the golden values. Each record's
        RecordUpdatedAt falls between day `since` (or TIMESTAMPS_FROM if later) and REFERENCE_DATE."""
        holders, records, low = [], self.records, max(since, TIMESTAMPS_FROM)
        for dept, values in held.items():
            n = records[dept] = records[dept] + 1
            at = int(self.rand() * (self.last - low + 1) * 86400)  # seconds after `low`
            row = [key, *map(values.__getitem__, self.held[dept]), f"{dept}{n:09d}",
                   f"{self.iso[low - self.first + at // 86400]}T{self.clock[at % 86400]}+08:00"]
            if bad and dept in bad:
                reason, row[0] = bad[dept]
                self.invalid.append(InvalidIdentifier(kind, dept, row[-2], row[0], reason, key))
            else:
                holders.append(dept)
            self.rows[dept](row)
        # Every attribute's rank is the departments' order (see DEPARTMENTS): updating with the
        # lowest-ranked first leaves each attribute with the value of the first-ranked holder.
        golden: dict[str, str] = {}
        for dept in reversed(holders):
            golden.update(held[dept])
        self.rows[kind]([key, *map(golden.get, self.attributes[kind], self.blanks), "|".join(holders)])
        if plant:
            attribute, dept, change = plant
            self.conflicts.append(Conflict(kind, key, attribute, {d: held[d][attribute] for d in holders
                                                                  if attribute in held[d]}, dept, change))
        return golden


@cache
def _clock() -> list[str]:
    """"HH:MM:SS" of every second of a day."""
    return [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86400)]


def _years(first: int, last: int) -> dict[int, tuple[int, int, int]]:
    """Year -> (its first day's ordinal, its length in days, the ordinal of its last day whose
    anniversary has come by REFERENCE_DATE's day of the year)."""
    month, day = REFERENCE_DATE.month, REFERENCE_DATE.day
    return {y: (date(y, 1, 1).toordinal(), date(y + 1, 1, 1).toordinal() - date(y, 1, 1).toordinal(),
                date(y, month, min(day, monthrange(y, month)[1])).toordinal()) for y in range(first, last + 1)}


def _sample(rnd: Random, pool: list[int], count: int, what: str, fix: str) -> list[int]:
    if count > len(pool):
        raise ValueError(f"{what}: {count} asked, only {len(pool)} possible; {fix}")
    return sorted(rnd.sample(pool, count))


def _people(sink: _Sink, rnd: Random, n: int, conflict_share: float, bad_id_share: float) -> Counter[tuple[str, str, str]]:
    """Generate `n` people into the person extracts; return the population by (district, sex, age band)."""
    rand, ref = rnd.random, REFERENCE_DATE.toordinal()
    sink.rand = rand
    # Pass 1, the skeleton: who is born when and where, and which departments hold them.
    years = _years(1930, 2020)
    born, ages, sex, district, in_mz, in_rs = [], [], [], [], [], []
    for _ in range(n):
        year = int(BIRTH_YEAR(rand()))
        start, length, cutoff = years[year]
        ordinal = start + int(rand() * length)
        age = REFERENCE_DATE.year - year - (ordinal > cutoff)
        ages.append(age)
        born.append(ordinal)
        sex.append("1" if rand() < 0.51 else "2")
        district.append(PERSON_DISTRICT(rand()))
        in_mz.append(age >= MZ_FROM_AGE and rand() < MZ_SHARE)
        in_rs.append(age >= RS_FROM_AGE and rand() < RS_SHARE[age >= 60])
    # The planted problems: one disagreement per chosen person; bad keys only on other people.
    chosen = _sample(rnd, [i for i in range(n) if in_mz[i] or in_rs[i]], planted_count(conflict_share, n),
                     "people with a disagreement (held by MZ or RS besides GA)", "lower --conflict-share or raise --people")
    plants = {}
    for i in chosen:
        options = [(a, d) for d, cover in (("MZ", in_mz), ("RS", in_rs)) if cover[i] for a in ("Name", "BirthDate")]
        plants[i] = options[int(rand() * len(options))]
    bad: dict[int, dict[str, str]] = {}
    for dept, cover in (("MZ", in_mz), ("RS", in_rs)):
        members = [i for i in range(n) if cover[i]]
        for i in _sample(rnd, [i for i in members if i not in plants], planted_count(bad_id_share, len(members)),
                         f"invalid identity numbers in {dept}", "lower --bad-id-share or --conflict-share"):
            bad.setdefault(i, {})[dept] = "id_check_digit" if rand() < 0.5 else "id_birth_date"
    # Pass 2: the records.
    sequence: dict[str, tuple[int, int]] = {}
    population: Counter[tuple[str, str, str]] = Counter()
    for i in range(n):
        ordinal, sx, div = born[i], sex[i], district[i]
        birth = sink.day(ordinal)
        prefix = f"{div}{birth.replace('-', '')}"
        # Sequence codes (odd: male) of one day, district and sex: a random start, then steps of 7 mod 499
        start, k = sequence.get(prefix + sx) or (int(rand() * 499), 0)
        if k >= 499:
            raise ValueError(f"more than 499 people of one sex born on {birth} in {div}: lower --people")
        sequence[prefix + sx] = (start, k + 1)
        body = f"{prefix}{(start + k * 7) % 499 * 2 + (1 if sx == '1' else 2):03d}"
        key = body + id_check_digit(body)
        chars = MALE_CHARS if sx == "1" else FEMALE_CHARS
        given = chars[int(rand() * len(chars))]
        if rand() < 0.7:
            given += chars[int(rand() * len(chars))]
        name = SURNAMES(rand()) + given
        towns, roads = TOWNS[div], ROADS[div]
        address = (f"广东省珠海市{DISTRICTS[div]}{towns[int(rand() * len(towns))]}{roads[int(rand() * len(roads))]}"
                   f"{1 + int(rand() * 999)}号{1 + int(rand() * 30)}栋{1 + int(rand() * 33)}{1 + int(rand() * 8):02d}房")
        held = {"GA": {"Name": name, "Sex": sx, "BirthDate": birth, "Ethnicity": ETHNICITY(rand()), "Division": div,
                       "Address": address}}
        age = ages[i]
        if in_mz[i]:
            marital = next(pick for limit, pick in MARITAL if age < limit)(rand())
            held["MZ"] = {"Name": name, "Sex": sx, "BirthDate": birth, "MaritalStatus": marital}
        if in_rs[i]:
            phone = f"{PHONE_PREFIXES[int(rand() * len(PHONE_PREFIXES))]}{int(rand() * 1e8):08d}"
            held["RS"] = {"Name": name, "BirthDate": birth, "Phone": phone, "SocialInsuranceStatus": INSURANCE[age >= 60](rand())}
        plant = None
        if i in plants:
            attribute, dept = plants[i]
            if attribute == "Name":
                at = len(name) - len(given) + int(rand() * len(given))
                held[dept]["Name"] = name[:at] + VARIANT[name[at]] + name[at + 1:]
                plant = (attribute, dept, "given name written with a variant character")
            else:
                shift = (-365, -10, -1, 1, 10, 365)[int(rand() * 6)]
                held[dept]["BirthDate"] = sink.day(min(ordinal + shift, ref))
                plant = (attribute, dept, f"birth date shifted by {shift} days")
                sink.mismatches.append(IdMismatch(dept, key, "BirthDate", held[dept]["BirthDate"], birth))
        bad_keys = {d: (r, _bad_id(key, r, rand)) for d, r in bad[i].items()} if i in bad else None
        golden = sink.emit(PERSON, key, held, bad_keys, ordinal, plant)
        population[golden["Division"], golden["Sex"], BANDS[age]] += 1  # golden BirthDate: GA's, the ID's
    return population


def _bad_id(key: str, reason: str, rand: Any) -> str:
    """`key` made invalid for `reason` (id_check_digit: another check digit; id_birth_date: an impossible
    date with a correct check digit); checked with check_id_number."""
    if reason == "id_check_digit":
        others = [c for c in "0123456789X" if c != key[17]]
        value = key[:17] + others[int(rand() * len(others))]
    else:
        body = key[:10] + BAD_ID_DATES[int(rand() * len(BAD_ID_DATES))] + key[14:17]
        value = body + id_check_digit(body)
    if reason not in check_id_number(value).reasons:
        raise AssertionError(f"planted identity number {value} does not fail with {reason}")
    return value


def _bad_code(code: str, reason: str, rand: Any) -> str:
    """`code` made invalid for `reason` (code_organization_check: a typo in the organisation code's
    body, which the anomaly rule cannot excuse; code_length: a character dropped)."""
    while True:
        if reason == "code_length":
            at = int(rand() * 18)
            value = code[:at] + code[at + 1:]
        else:
            at = 8 + int(rand() * 8)
            value = code[:at] + CODE_ALPHABET[int(rand() * 31)] + code[at + 1:]
        if reason in check_credit_code(value).reasons:
            return value


def _entities(sink: _Sink, rnd: Random, m: int, conflict_share: float, bad_id_share: float,
              anomalies: int) -> dict[str, Counter[str]]:
    """Generate `m` legal entities into the entity extracts; return the counts by status, type, district, year."""
    rand = sink.rand = rnd.random
    years = _years(1990, 2024)
    founded, org_type, status, in_tax = [], [], [], []
    for _ in range(m):
        start, length, _ = years[int(ESTABLISHED_YEAR(rand()))]
        founded.append(start + int(rand() * length))
        org_type.append(ORG_TYPE(rand()))
        status.append(STATUS(rand()))
        in_tax.append(rand() < TAX_COVERAGE[status[-1]])
    odd = set(_sample(rnd, [j for j in range(m) if org_type[j] == "1" and founded[j] < date(2017, 1, 1).toordinal()],
                      anomalies, "anomalous credit codes (enterprises founded before 2017)", "lower --anomalies"))
    plants = {j: ("Name", "GSW") for j in _sample(
        rnd, [j for j in range(m) if in_tax[j] and j not in odd], planted_count(conflict_share, m),
        "entities with a disagreement (held by GSW besides GS)", "lower --conflict-share or raise --entities")}
    taxed = [j for j in range(m) if in_tax[j]]
    bad = {j: ("code_organization_check" if rand() < 0.5 else "code_length") for j in _sample(
        rnd, [j for j in taxed if j not in plants and j not in odd], planted_count(bad_id_share, len(taxed)),
        "invalid credit codes in GSW", "lower --bad-id-share or --conflict-share")}
    codes: set[str] = set()
    names: set[str] = set()
    counts: dict[str, Counter[str]] = {"status": Counter(), "type": Counter(), "district": Counter(), "year": Counter()}
    for j in range(m):
        t, div = org_type[j], ENTITY_DISTRICT(rand())
        year = sink.day(founded[j])[:4]
        while True:
            if j in odd:
                org = "M" + "".join(CODE_ALPHABET[int(rand() * (10 if p < 4 else 31))] for p in range(7))
            elif year >= "2015":
                org = "MA" + "".join(CODE_ALPHABET[int(rand() * 31)] for _ in range(6))
            else:
                org = "".join(CODE_ALPHABET[int(rand() * 10)] for _ in range(8))
            body = f"9{t}{div}{org}{organization_check_char(org)}"
            if body not in codes:
                codes.add(body)
                break
        check = credit_check_char(body)
        if j in odd:
            check = [c for c in CODE_ALPHABET if c != check][int(rand() * 30)]
        code = body + check
        entity_type = ENTITY_TYPE(rand()) if t == "1" else "190"
        core = suffix = ""
        for _ in range(50):
            words = SHOP_WORDS[int(rand() * len(SHOP_WORDS))] + SHOP_WORDS[int(rand() * len(SHOP_WORDS))]
            if t == "1":
                core, suffix = words + INDUSTRIES[int(rand() * len(INDUSTRIES))], NAME_SUFFIX.get(entity_type, "有限公司")
                name = f"珠海市{core}{suffix}"
            else:
                trades = SHOPS if t == "2" else COOPS
                name = f"珠海市{DISTRICTS[div]}{words}{trades[int(rand() * len(trades))]}"
            if name not in names:
                names.add(name)
                break
        else:
            raise ValueError(f"ran out of distinct entity names at {j}: lower --entities")
        towns, roads = TOWNS[div], ROADS[div]
        held = {"GS": {
            "Name": name, "EntityType": entity_type,
            "LegalRepresentative": SURNAMES(rand()) + "".join(GIVEN[int(rand() * len(GIVEN))] for _ in range(2)),
            "RegisteredCapital": CAPITAL[t](rand()), "EstablishedOn": sink.day(founded[j]), "Status": status[j],
            "Division": div, "Address": f"珠海市{DISTRICTS[div]}{towns[int(rand() * len(towns))]}"
                                       f"{roads[int(rand() * len(roads))]}{1 + int(rand() * 999)}号"}}
        if in_tax[j]:
            held["GSW"] = {"Name": name, "TaxStatus": TAX_STATUS[status[j]](rand())}
        plant = None
        if j in plants:
            if t == "1" and suffix == "有限公司" and rand() < 0.5:
                held["GSW"]["Name"], change = f"{core}（珠海）{suffix}", "city moved behind the trade name"
            else:
                held["GSW"]["Name"], change = name.replace("珠海市", "珠海", 1), "市 left out of the name"
            plant = ("Name", "GSW", change)
        bad_codes = {"GSW": (bad[j], _bad_code(code, bad[j], rand))} if j in bad else None
        golden = sink.emit(ENTITY, code, held, bad_codes, founded[j], plant)
        if j in odd:
            sink.anomalies.append(Anomaly(code, f"{org}-{body[16]}", tuple(held)))
        for by, value in (("status", golden["Status"]), ("type", golden["EntityType"]), ("district", golden["Division"]),
                          ("year", golden["EstablishedOn"][:4])):
            counts[by][value] += 1
    return counts


def _statistics(sink: _Sink, population: Counter[tuple[str, str, str]], counts: dict[str, Counter[str]]) -> dict[str, Any]:
    """The statistics the base libraries must report for these extracts (see the README)."""
    def tally(pairs: Any) -> dict[str, int]:
        total: Counter[str] = Counter()
        for value, n in pairs:
            total[value] += n
        return dict(sorted(total.items()))

    cross: dict[str, dict[str, dict[str, int]]] = {}
    for (district, sex, band), n in sorted(population.items()):
        cross.setdefault(district, {}).setdefault(sex, {})[band] = n
    rank = {k: ranks(k) for k in (PERSON, ENTITY)}
    departments = {}
    for dept, (kind, _) in DEPARTMENTS.items():
        invalid = sum(1 for i in sink.invalid if i.department == dept)
        mine = [c for c in sink.conflicts if dept in c.values]
        golden = [c.values[next(d for d in rank[kind][c.attribute] if d in c.values)] for c in mine]
        departments[dept] = {"kind": kind, "records": sink.records[dept], "invalid_identifiers": invalid,
                             "valid_records": sink.records[dept] - invalid, "conflicts": len(mine),
                             "disagreements": sum(1 for c, g in zip(mine, golden) if c.values[dept] != g)}
    by_attribute: dict[str, Counter[str]] = {PERSON: Counter(), ENTITY: Counter()}
    for c in sink.conflicts:
        by_attribute[c.kind][c.attribute] += 1
    return {
        "reference_date": REFERENCE_DATE.isoformat(),
        "population": {
            "total": sum(population.values()),
            "by_district": tally((d, n) for (d, _, _), n in population.items()),
            "by_sex": tally((s, n) for (_, s, _), n in population.items()),
            "by_age_band": tally((b, n) for (_, _, b), n in population.items()),
            "by_district_sex_age_band": cross,
        },
        "entities": {"total": sum(counts["status"].values()),
                     **{f"by_{by}": dict(sorted(c.items())) for by, c in counts.items()}},
        "departments": departments,
        "conflicts": {kind: dict(sorted(c.items())) for kind, c in by_attribute.items()},
        "anomalies": len(sink.anomalies),
    }


def generate(out: str | Path, *, people: int = 10_000, entities: int | None = None, seed: int = 0,
             conflict_share: float = 0.05, bad_id_share: float = 0.01, anomalies: int | None = None) -> Truth:
    """Write the five extracts, the golden CSVs and truth.json into `out`; return the Truth.

    `entities` defaults to 16% of `people` (Zhuhai: 0.4 M legal entities, 2.5 M residents).
    `conflict_share`: the share of people, and of entities, given one disagreement between departments.
    `bad_id_share`: the share of each MZ, RS and GSW extract whose key is invalid.
    `anomalies` (default: one per 1,000 entities, at least one): codes with a non-conforming check character.
    Deterministic: the same arguments write the same bytes. Raises ValueError for impossible asks.
    """
    entities = round(people * 0.16) if entities is None else entities
    anomalies = (max(1, round(entities / 1000)) if entities else 0) if anomalies is None else anomalies
    for flag, value in (("--people", people), ("--entities", entities), ("--anomalies", anomalies)):
        if value < 0:
            raise ValueError(f"{flag} must be 0 or more, got {value}")
    for flag, share in (("--conflict-share", conflict_share), ("--bad-id-share", bad_id_share)):
        if not 0 <= share <= 1:
            raise ValueError(f"{flag} is a share between 0 and 1, got {share}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sink = _Sink(out)
    try:
        # Separate streams, so that the entities do not change when only --people does.
        population = _people(sink, Random(f"{seed}:person"), people, conflict_share, bad_id_share)
        counts = _entities(sink, Random(f"{seed}:entity"), entities, conflict_share, bad_id_share, anomalies)
    finally:
        sink.close()
    truth = Truth(
        out,
        {"seed": seed, "people": people, "entities": entities, "conflict_share": conflict_share,
         "bad_id_share": bad_id_share, "anomalies": anomalies, "reference_date": REFERENCE_DATE.isoformat(),
         "districts": DISTRICTS},
        {d: Extract(d, kind, f"{kind}-{d}.csv", columns(d), sink.records[d], COVERAGE[d])
         for d, (kind, _) in DEPARTMENTS.items()},
        {k: ranks(k) for k in (PERSON, ENTITY)},
        sink.conflicts, sink.invalid, sink.anomalies, sink.mismatches, _statistics(sink, population, counts))
    truth.write()
    return truth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write synthetic extracts of five Zhuhai departments (GA, MZ, RS, GS, "
                                                 "GSW) and the truth they imply.")
    parser.add_argument("--out", required=True, type=Path, help="directory for the CSV files and truth.json")
    parser.add_argument("--people", type=int, default=10_000, help="number of people (default 10000)")
    parser.add_argument("--entities", type=int, help="number of legal entities (default 16%% of --people)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0); same seed, same files")
    parser.add_argument("--conflict-share", type=float, default=0.05,
                        help="share of people and of entities given a disagreement between departments (default 0.05)")
    parser.add_argument("--bad-id-share", type=float, default=0.01,
                        help="share of the MZ, RS and GSW records with an invalid key (default 0.01)")
    parser.add_argument("--anomalies", type=int,
                        help="credit codes with a non-conforming check character (default 1 per 1000 entities, at least 1)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        truth = generate(args.out, people=args.people, entities=args.entities, seed=args.seed,
                         conflict_share=args.conflict_share, bad_id_share=args.bad_id_share, anomalies=args.anomalies)
    except ValueError as error:
        parser.error(str(error))
    stats = truth.statistics
    print(f"wrote {truth.parameters['people']} people and {truth.parameters['entities']} legal entities to {args.out} "
          f"in {time.perf_counter() - started:.1f} s: "
          + ", ".join(f"{d} {s['records']}" for d, s in stats["departments"].items())
          + f"; {len(truth.conflicts)} conflicts, {len(truth.invalid_identifiers)} invalid identifiers, "
          f"{len(truth.anomalies)} anomalous credit codes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
