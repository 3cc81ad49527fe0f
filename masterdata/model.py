"""The nouns of the base libraries, shared by the consumers, the store and the queries.

A `Record` is what one department says about one person or legal entity at one time: its
attribute values, with where they came from. The store keeps every record's values as
assertions (one per attribute) and never forgets one; the golden record is computed from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

PERSON = "person"
ENTITY = "entity"
KINDS = (PERSON, ENTITY)

# Attributes by kind, named after the specifications' elements (schemas/xsd/person,
# legal-entity), in the order people read them. The key attribute is not among them.
PERSON_KEY = "IdNumber"
ENTITY_KEY = "CreditCode"
KEY_OF = {PERSON: PERSON_KEY, ENTITY: ENTITY_KEY}
ATTRIBUTES: Mapping[str, tuple[str, ...]] = {
    PERSON: ("Name", "Sex", "BirthDate", "Ethnicity", "Division", "Address", "Phone", "MaritalStatus",
             "SocialInsuranceStatus"),
    ENTITY: ("Name", "EntityType", "LegalRepresentative", "RegisteredCapital", "EstablishedOn", "Status",
             "RegistrationAuthority", "Division", "Address", "BusinessScope", "TaxStatus", "OrganizationCode"),
}
# Chinese names, for stewards and reports
LABELS: Mapping[str, str] = {
    "IdNumber": "公民身份号码", "CreditCode": "统一社会信用代码", "Name": "名称", "Sex": "性别", "BirthDate": "出生日期",
    "Ethnicity": "民族", "Division": "行政区划", "Address": "住址", "Phone": "联系电话", "MaritalStatus": "婚姻状况",
    "SocialInsuranceStatus": "社会保险参保状态", "EntityType": "企业类型", "LegalRepresentative": "法定代表人",
    "RegisteredCapital": "注册资本", "EstablishedOn": "成立日期", "Status": "登记状态", "RegistrationAuthority": "登记机关",
    "BusinessScope": "经营范围", "TaxStatus": "纳税状态", "OrganizationCode": "组织机构代码",
}


@dataclass(frozen=True, slots=True)
class Record:
    """One department's statement about one person or legal entity.

    `key` is the identifier as the department gave it (normalised and checked by the store);
    `values` maps attribute names (ATTRIBUTES[kind]) to their text, as in the specification
    (codes as codes, dates as YYYY-MM-DD); an attribute absent from `values` is not asserted.
    `deleted` says the department no longer holds the record: its assertions stop counting.
    `source_time` is when the department's system last changed the record (the
    specification's RecordUpdatedAt, else the envelope's CreatedAt), in UTC; an older
    `source_time` never overrides a newer one from the same department.
    `message_id` and `position` (the record's index within the message) make it idempotent.
    """

    kind: str
    key: str
    department: str
    source_record_id: str
    source_time: datetime
    message_id: str
    position: int = 0
    values: Mapping[str, str] = field(default_factory=dict)
    deleted: bool = False
