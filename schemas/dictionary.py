"""The data dictionary (数据字典) of a specification version: one page for people, one
document for programs.

Each data item (信息项) is listed with its Chinese name, type, length or pattern, code list
and the standard the code list comes from. The catalogue derives a resource's data items
from `data_items`, so that they are never typed twice.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from schemas.model import Item, Model

_TYPES_ZH = {
    "string": "字符", "decimal": "数值", "integer": "整数", "date": "日期", "dateTime": "日期时间",
    "boolean": "布尔", "time": "时间", "float": "浮点数", "double": "浮点数",
}


def _length(item: Item) -> int | None:
    """The width a catalogue shows: maximum length for text, total digits for numbers."""
    if item.length is not None:
        return item.length
    if item.max_length is not None:
        return item.max_length
    return item.total_digits


def data_items(model: Model) -> list[dict[str, Any]]:
    """Every element or attribute carrying a value, in document order."""
    out = []
    for item in model.items.values():
        if item.complex:
            continue
        out.append({
            "path": item.path,
            "name": item.name,
            "label": item.label,
            "kind": item.kind,
            "required": item.required,
            "repeats": item.max_occurs is None or item.max_occurs > 1,
            "type": item.base,
            "type_name": item.type_name,
            "description": item.description,
            "length": _length(item),
            "min_length": item.min_length if item.length is None else item.length,
            "max_length": item.max_length if item.length is None else item.length,
            "total_digits": item.total_digits,
            "fraction_digits": item.fraction_digits,
            "min": _text(item.min_inclusive if item.min_inclusive is not None else item.min_exclusive),
            "max": _text(item.max_inclusive if item.max_inclusive is not None else item.max_exclusive),
            "patterns": list(item.patterns),
            "codes": [{"code": c, "meaning": item.labels.get(c)} for c in item.enumeration] if item.enumeration else None,
            "standard": item.standard,
            "default": item.default,
        })
    return out


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def as_json(name: str, version: str, status: str, model: Model) -> str:
    return json.dumps(
        {"specification": name, "version": version, "status": status, "namespace": model.namespace,
         "title": model.title, "roots": list(model.roots), "items": data_items(model)},
        ensure_ascii=False, indent=2,
    )


def as_html(name: str, version: str, status: str, model: Model) -> str:
    """One self-contained page, in Chinese, as standards staff would print it."""
    rows = []
    for number, item in enumerate(data_items(model), 1):
        width = []
        if item["length"] is not None and item["type"] == "string":
            low = item["min_length"] or 0
            width.append(f"{low}–{item['max_length']} 字符" if low and low != item["max_length"] else f"最长 {item['length']} 字符")
        if item["total_digits"] is not None:
            width.append(f"{item['total_digits']} 位数字" + (f"，{item['fraction_digits']} 位小数" if item["fraction_digits"] else ""))
        if item["min"] is not None or item["max"] is not None:
            width.append(f"取值 {item['min'] or '…'}–{item['max'] or '…'}")
        width += [f"格式 <code>{escape(p)}</code>" for p in item["patterns"]]
        codes = ""
        if item["codes"]:
            codes = "<br>".join(f"{escape(c['code'])} {escape(c['meaning'] or '')}" for c in item["codes"])
        kind = _TYPES_ZH.get(item["type"] or "", item["type"] or "")
        rows.append(
            "<tr>"
            f"<td>{number}</td><td><code>{escape(item['path'])}</code></td><td>{escape(item['label'] or '')}</td>"
            f"<td>{escape(kind)}</td><td>{'<br>'.join(width)}</td>"
            f"<td>{'是' if item['required'] else '否'}{'（可重复）' if item['repeats'] else ''}</td>"
            f"<td class=codes>{codes}</td><td>{escape(item['standard'] or '')}</td>"
            "</tr>"
        )
    title = f"数据规范 {escape(name)} {escape(version)} 数据字典"
    return f"""<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: "Noto Sans CJK SC", "Microsoft YaHei", sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border: 1px solid #999; padding: 4px 8px; vertical-align: top; text-align: left; }}
th {{ background: #eee; }}
td.codes {{ font-size: 90%; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>{escape(model.title or '')}</p>
<p>命名空间：<code>{escape(model.namespace)}</code>　状态：{escape({'draft': '草稿', 'published': '已发布', 'deprecated': '已废弃'}.get(status, status))}</p>
<table>
<tr><th>序号</th><th>信息项</th><th>中文名称</th><th>类型</th><th>长度/格式</th><th>必填</th><th>代码表</th><th>代码标准</th></tr>
{chr(10).join(rows)}
</table>
</body>
</html>
"""
