"""Exports as .xlsx (openpyxl, write-only: rows stream to the file) and CSV (UTF-8 with BOM, as Excel opens it).

A table is (title, headers, rows); a workbook holds one sheet per table, a CSV the tables one after another.
Residents' names and phones are masked unless the caller says the viewer may see them in full.

Exports are inert: text is always written as text. In the .xlsx every string is an inline string (openpyxl
would otherwise store "=…" as a formula and "#N/A" as an error), and text a spreadsheet would read as a
formula when edited or typed (starting with = + - @, a tab or a CR, or their full-width forms) also carries
the quote prefix. In the CSV such text starts with a ' (OWASP's CSV injection advice), since a CSV has no
types and Excel and LibreOffice evaluate a field that starts that way. Numbers stay numbers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font

from bot.render import beijing_time
from bot.reports.figures import Figures
from domain.lifecycle import STATE_LABELS
from domain.masking import mask_name, mask_phone
from domain.models import RISK_LABELS
from domain.reports import BoardRow, day_date

Table = tuple[str, list[str], list[list[Any]]]
# What makes a spreadsheet read a text as a formula: = + - @ (and the full-width forms East Asian input
# methods type, which Excel converts as it does the ASCII ones), tab and carriage return.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")
CONTENT_TYPES = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv; charset=utf-8",
}


def instruction_table(rows: Sequence[BoardRow], names: dict[str, str], now: float,
                      full: Callable[[BoardRow], bool]) -> Table:
    """One row per instruction; `full(row)` says whether its resident is shown unmasked."""
    headers = ["编号", "指令编号", "接收时间", "派出所", "网格", "风险等级", "诈骗类型", "预警类型", "状态", "对象",
               "电话", "签收用时(分钟)", "劝阻方式", "劝阻结果", "挽损(元)", "被骗(元)", "当前超时"]
    body = []
    for r in rows:
        shown = full(r)
        body.append([
            r.id, r.instruction_no, beijing_time(r.received_at, "%Y-%m-%d %H:%M:%S"),
            names.get(r.station or "", r.station or "未分派"), r.grid or "", RISK_LABELS[r.risk_level], r.fraud_type,
            r.warning_type, STATE_LABELS.get(r.state, r.state),
            r.target_name if shown else mask_name(r.target_name),
            r.target_phone if shown else mask_phone(r.target_phone),
            round((r.acked_at - r.received_at) / 60, 1) if r.acked_at else None, r.contact_method or "",
            r.outcome or "", r.loss_avoided, r.amount_lost, "是" if r.overdue(now) else "否",
        ])
    return "指令明细", headers, body


def bulletin_tables(f: Figures, names: dict[str, str]) -> list[Table]:
    """A bulletin's figures: the summary, the ranking, outcomes, the daily trend and the overdue list."""
    c, s = f.counts, f.speed
    summary = [
        ["期间", f"{f.period.title} {f.period.label}"], ["接收指令(条)", c.received],
        ["按时签收(条)", c.ack_ontime], ["按时签收率", _rate(c.ontime_rate)], ["已签收(条)", c.signed],
        ["签收用时中位数(分钟)", _minutes(s.sign_p50)], ["签收用时90分位(分钟)", _minutes(s.sign_p90)],
        ["电话联系用时中位数(分钟)", _minutes(s.contact_p50)], ["电话联系用时90分位(分钟)", _minutes(s.contact_p90)],
        ["见面/上门劝阻(起)", c.visits], ["挽损(元)", c.loss_avoided], ["被骗(元)", c.amount_lost],
        ["当前超时未办(条)", f.overdue_total],
    ]
    ranking = [[x.rank, names.get(x.station, x.station), x.counts.received, x.counts.ack_ontime,
                _rate(x.counts.ontime_rate), _minutes(x.speed.sign_p50), _minutes(x.speed.contact_p50),
                x.counts.visits, x.counts.loss_avoided, x.overdue] for x in f.stations]
    trend = [[day_date(d.day).isoformat(), d.received, d.ack_ontime, d.loss_avoided] for d in f.trend]
    overdue = [[o.instruction_id, names.get(o.station or "", o.station or "未分派"), RISK_LABELS[o.risk_level],
                o.fraud_type, STATE_LABELS.get(o.state, o.state), beijing_time(o.due_at, "%Y-%m-%d %H:%M"),
                round((f.now - o.due_at) / 60)] for o in f.overdue]
    return [
        ("概况", ["项目", "数值"], summary),
        ("派出所排名", ["名次", "派出所", "接收", "按时签收", "按时签收率", "签收中位(分钟)", "联系中位(分钟)",
                       "见面/上门", "挽损(元)", "当前超时"], ranking),
        ("劝阻结果", ["结果", "条数"], [[k, v] for k, v in f.outcomes.items()]),
        ("每日趋势", ["日期", "接收", "按时签收", "挽损(元)"], trend),
        ("超时清单", ["编号", "派出所", "风险等级", "诈骗类型", "状态", "应完成时间", "已超(分钟)"], overdue),
    ]


def to_xlsx(tables: Sequence[Table]) -> bytes:
    workbook = Workbook(write_only=True)
    bold = Font(bold=True)
    for title, headers, rows in tables:
        sheet = workbook.create_sheet(title)
        sheet.append([_xlsx_cell(sheet, h, bold) for h in headers])
        for row in rows:
            sheet.append([_xlsx_cell(sheet, value) for value in row])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def to_csv(tables: Sequence[Table]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    for n, (title, headers, rows) in enumerate(tables):
        if len(tables) > 1:
            if n:
                writer.writerow([])
            writer.writerow([f"【{title}】"])
        writer.writerow([_csv_value(h) for h in headers])
        writer.writerows([_csv_value(value) for value in row] for row in rows)
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def _xlsx_cell(sheet, value: Any, font: Font | None = None) -> Any:
    """Numbers, dates and empty cells as they are; text as an inline string, never a formula or an error."""
    if not isinstance(value, str) and font is None:
        return value
    cell = WriteOnlyCell(sheet, value=None)
    if isinstance(value, str):
        # Characters XML cannot carry (control characters) would make openpyxl refuse the whole export.
        cell.value = ILLEGAL_CHARACTERS_RE.sub("", value)
        cell.data_type = "s"
        cell.quotePrefix = value.startswith(FORMULA_TRIGGERS)
    else:
        cell.value = value
    if font is not None:
        cell.font = font
    return cell


def _csv_value(value: Any) -> Any:
    """Text a spreadsheet would evaluate gets a leading ' (shown, not evaluated); everything else as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def _rate(rate: float | None) -> str:
    return "" if rate is None else f"{rate * 100:.1f}%"


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 60, 1)
