"""The dashboard in a real browser: WeCom OAuth through the simulator, the board, a filter, a detail, an export."""

from __future__ import annotations

from openpyxl import load_workbook
from playwright.async_api import expect

from tests.test_dashboard import submit


async def test_commander_logs_in_through_wecom_filters_opens_a_detail_and_downloads_an_export(dash, browser, tmp_path):
    dm, lh = await submit(dash, "DM", "DM-01"), await submit(dash, "LH", "LH-01")
    page = await browser.new_page()
    await page.goto(str(dash.make_url("/dashboard")))

    # Not logged in: the login page; 企业微信登录 goes to WeCom's (the simulator's) authorize page.
    await page.get_by_test_id("wecom-login").click()
    await page.get_by_test_id("oauth-user").filter(has_text="郑洁").click()
    await expect(page.get_by_test_id("viewer")).to_have_text("郑洁")
    await expect(page.get_by_test_id("board-row")).to_have_count(2)
    await expect(page.get_by_test_id("board")).not_to_contain_text("唐小明")  # lists are masked

    await page.get_by_test_id("filter-station").select_option(label="龙湖派出所")
    await page.get_by_test_id("filter-submit").click()
    await expect(page.get_by_test_id("board-row")).to_have_count(1)
    await expect(page.get_by_test_id("board-link")).to_have_text(f"#{lh}")

    await page.get_by_test_id("board-link").click()
    await expect(page.get_by_test_id("detail-target")).to_contain_text("唐小明 · 13812348000")
    await expect(page.get_by_test_id("timeline")).to_contain_text("received")
    await page.go_back()

    async with page.expect_download() as info:
        await page.get_by_test_id("export-xlsx").click()
    download = await info.value
    assert download.suggested_filename.endswith(".xlsx")
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    rows = list(load_workbook(saved, read_only=True)["指令明细"].iter_rows(values_only=True))
    assert [r[0] for r in rows[1:]] == [lh] and rows[1][3] == "龙湖派出所" and rows[1][9] == "唐某"
    assert dm != lh
