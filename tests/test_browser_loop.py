"""The whole loop in a real browser, as on a phone: the real bot, the simulator's chat view, headless chromium."""

from __future__ import annotations

from playwright.async_api import expect

from tests.helpers import AUTH, instruction, wait_state


async def test_grid_worker_signs_reports_and_the_officer_closes_in_the_browser(bot, sim_server, browser):
    resp = await bot.post("/api/v1/instructions", json=instruction(), headers=AUTH)
    assert resp.status == 202
    number = (await resp.json())["id"]
    await wait_state(bot, number, "dispatched")
    sim_url = str(sim_server.make_url("")).rstrip("/")

    # 刘红, the grid worker, opens her chat with the app and taps 签收 on the card.
    worker = await browser.new_page()
    await worker.goto(f"{sim_url}/_sim/chat/liuhong?c=app")
    card = worker.get_by_test_id("card").filter(has_text=f"预警劝阻 #{number}")
    await expect(card).to_contain_text("唐小明")
    await card.get_by_test_id("card-button").filter(has_text="签收").click()
    await expect(card.get_by_test_id("card-replace-text")).to_have_text("已签收")

    # The station group, seen by the station leader on another phone, reads the sign-for.
    leader = await browser.new_page()
    await leader.goto(f"{sim_url}/_sim/chat/chenlong?c=dmstation")
    await expect(leader.get_by_test_id("messages")).to_contain_text(f"网格员〈刘红〉已签收 #{number}")
    await expect(leader.get_by_test_id("messages")).not_to_contain_text("唐小明")  # masked in groups

    # The outcome card arrives in her chat without a reload; she reports 上门 · 劝阻成功.
    feedback = worker.get_by_test_id("card").filter(has_text=f"劝阻结果反馈 #{number}")
    await feedback.get_by_test_id("card-select-method").select_option(label="上门")
    await feedback.get_by_test_id("card-select-outcome").select_option(label="劝阻成功")
    await feedback.get_by_test_id("card-submit").click()
    await expect(feedback.get_by_test_id("card-replace-text")).to_have_text("已反馈")
    detail = await wait_state(bot, number, "resolved")
    assert (detail["outcome"]["method"], detail["outcome"]["result"], detail["outcome"]["by"]) == (
        "上门", "劝阻成功", "liuhong")
    await expect(leader.get_by_test_id("messages")).to_contain_text(f"【反馈】#{number}")

    # 王强, the on-duty officer, closes it by typing the command; the group gets the summary.
    officer = await browser.new_page()
    await officer.goto(f"{sim_url}/_sim/chat/wangqiang?c=app")
    await officer.get_by_test_id("chat-input").fill(f"结案 {number}")
    await officer.get_by_test_id("chat-send").click()
    await expect(officer.get_by_test_id("messages")).to_contain_text(f"已结案 #{number}")
    await expect(leader.get_by_test_id("messages")).to_contain_text(f"【结案】#{number}")
    await wait_state(bot, number, "closed")
