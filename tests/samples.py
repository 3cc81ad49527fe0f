"""Sample data for tests: valid identifiers and envelopes, built the way departments do."""

from __future__ import annotations

import random
from xml.sax.saxutils import escape

from bus.envelope import Envelope, build_envelope

PERSON_NS = "urn:zhuhai:govbus:person"
LEGAL_NS = "urn:zhuhai:govbus:legal-entity"
_ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
_CODE_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CODE_WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]


def id_number(division: str = "440402", birth: str = "19900307", sequence: int = 231) -> str:
    """A GB 11643 identity number with a correct check digit."""
    body = f"{division}{birth}{sequence:03d}"
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, _ID_WEIGHTS)) % 11]


def credit_code(body: str = "91440400MA4UH3C25") -> str:
    """A GB 32100 unified social credit code with a correct check character."""
    value = 31 - sum(_CODE_CHARS.index(c) * w for c, w in zip(body, _CODE_WEIGHTS)) % 31
    return body + _CODE_CHARS[0 if value == 31 else value]


def person(**fields: str) -> bytes:
    """A person payload; keyword arguments override or (with None) remove elements."""
    values = {
        "IdNumber": id_number(),
        "Name": "陈志强",
        "Sex": "1",
        "BirthDate": "1990-03-07",
        "Ethnicity": "01",
        "Division": "440402",
        "Address": "广东省珠海市香洲区凤凰北路88号",
        "Phone": "13926981234",
        "MaritalStatus": "20",
    }
    values.update(fields)
    inner = "".join(f"<p:{k}>{escape(v)}</p:{k}>" for k, v in values.items() if v is not None)
    return f'<p:Person xmlns:p="{PERSON_NS}">{inner}</p:Person>'.encode()


def legal_entity(**fields: str) -> bytes:
    values = {
        "CreditCode": credit_code(),
        "Name": "珠海市海鸥电子科技有限公司",
        "EntityType": "173",
        "LegalRepresentative": "林晓梅",
        "EstablishedOn": "2015-09-18",
        "Status": "存续",
    }
    values.update(fields)
    inner = "".join(f"<le:{k}>{escape(v)}</le:{k}>" for k, v in values.items() if v is not None)
    return f'<le:LegalEntity xmlns:le="{LEGAL_NS}">{inner}</le:LegalEntity>'.encode()


def person_envelope(sender: str = "GA", resource: str = "GA-001", version: str = "1.0", **fields: str) -> Envelope:
    return build_envelope(sender, resource, version, person(**fields))


def random_people(n: int, seed: int = 1) -> list[Envelope]:
    """`n` distinct valid person envelopes from GA (resource GA-001 of tests/data/routes.toml)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        birth = f"{rng.randint(1940, 2010)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        out.append(person_envelope(IdNumber=id_number(rng.choice(["440402", "440403", "440404"]), birth, i % 1000)))
    return out
