"""What a campaign run sends to whom, and why. Pure: no I/O, so a dry run is the real plan unsent."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from bot.render import Renderer, fit_bytes
from bot.scheduler import SHANGHAI
from domain.awareness import (
    AWARENESS_PRIORITY,
    AWARENESS_PURPOSE,
    Campaign,
    GroupHistory,
    Item,
    Library,
    Push,
    RunPlan,
    Target,
)
from domain.directory import ResidentGroup
from domain.models import OutboxMessage

# WeCom's limits for what one push can carry (UTF-8 bytes) and for one add_msg_template call.
_ROBOT_MARKDOWN = 4096
_APP_MARKDOWN = 2048
_GROUPMSG_TEXT = 4000
_GROUPMSG_CHATS = 2000
_NO_HISTORY = GroupHistory()


def audience(campaign: Campaign, groups: Iterable[ResidentGroup]) -> list[ResidentGroup]:
    """The groups a campaign reaches: every non-empty filter must match (any of its values)."""
    a = campaign.audience
    return [
        g for g in groups
        if g.channel in campaign.channels
        and (not a.stations or g.station_code in a.stations)
        and (not a.communities or g.community in a.communities)
        and (not a.tags or any(t in g.tags for t in a.tags))
        and (not a.groups or g.code in a.groups)
    ]


def choose(campaign: Campaign, group: ResidentGroup, library: Library, history: GroupHistory,
           trend: Sequence[tuple[str, int]]) -> tuple[Item, str] | str:
    """The item for one group and why it was chosen, or why nothing fits."""
    if campaign.selection == "fixed":
        item = library.by_id.get(campaign.item or "")
        if item is None:
            return f"内容库中没有编号为 {campaign.item} 的内容"
        return item, f"固定内容「{item.title}」"
    pool = library.pool(group.tags, campaign.fraud_types)
    if not pool:
        return "内容库中没有适合该群受众的内容"
    if campaign.selection == "trend":
        picked = _by_trend(campaign, pool, history, trend)
        if picked is not None:
            return picked
    item, note = _rotate(pool, history)
    if campaign.selection == "trend":
        return item, f"近{campaign.trend_days}天本所没有内容库能对应的预警类型，按轮换选取：{note}"
    return item, f"轮换选取：{note}"


def _rotate(pool: Sequence[Item], history: GroupHistory) -> tuple[Item, str]:
    """The least-sent item (never-sent first, then the longest ago): no repeat until the pool is used up."""
    fewest = min(history.times(i.id) for i in pool)
    fresh = [i for i in pool if history.times(i.id) == fewest]
    item = min(fresh, key=lambda i: history.last(i.id))  # min() keeps library order among equals
    used = len(pool) - len(fresh)
    if fewest == 0:
        return item, f"该群尚未收到过的内容（内容池{len(pool)}条，已推{used}条）"
    return item, f"内容池{len(pool)}条已全部推送过，开始第{fewest + 1}轮（本轮已推{used}条）"


def _by_trend(campaign: Campaign, pool: Sequence[Item], history: GroupHistory,
              trend: Sequence[tuple[str, int]]) -> tuple[Item, str] | None:
    """The most frequent local fraud type that still has an item this group has not had in this round."""
    total = sum(n for _, n in trend)
    ranked = [(ftype, n) for ftype, n in trend if any(i.fraud_type == ftype for i in pool)]
    if not ranked:
        return None
    trend_pool = [i for i in pool if i.fraud_type in {t for t, _ in ranked}]
    fewest = min(history.times(i.id) for i in trend_pool)
    for rank, (ftype, n) in enumerate(ranked, start=1):
        fresh = [i for i in trend_pool if i.fraud_type == ftype and history.times(i.id) == fewest]
        if not fresh:
            continue
        item = min(fresh, key=lambda i: history.last(i.id))
        share = round(100 * n / total)
        reason = f"近{campaign.trend_days}天本所预警{total}起，{ftype}{n}起（占{share}%，第{rank}位）"
        if rank > 1:
            earlier = "、".join(t for t, _ in ranked[: rank - 1])
            reason += f"；{earlier}的内容本轮已推过"
        return item, reason
    raise AssertionError("the least-sent item of the trend pool has a type")


def plan_run(campaign: Campaign, trigger: str, slot: float | None, groups: Iterable[ResidentGroup],
             library: Library, histories: Mapping[str, GroupHistory],
             trends: Mapping[str, Sequence[tuple[str, int]]], renderer: Renderer,
             station_names: Mapping[str, str], agent_id: int) -> RunPlan:
    """Choose an item for every group of the campaign's audience and build the WeCom calls."""
    targets: list[Target] = []
    left_out: list[tuple[str, str]] = []
    for group in audience(campaign, groups):
        choice = choose(campaign, group, library, histories.get(group.code, _NO_HISTORY),
                        trends.get(group.station_code, ()))
        if isinstance(choice, str):
            left_out.append((group.code, choice))
        else:
            targets.append(Target(group, *choice))
    pushes = build_pushes(campaign, targets, renderer, station_names, agent_id)
    return RunPlan(campaign, trigger, slot, targets, pushes, left_out)


def build_pushes(campaign: Campaign, targets: Sequence[Target], renderer: Renderer,
                 station_names: Mapping[str, str], agent_id: int) -> list[Push]:
    """One call per robot or app group; customer groups of one staff member with the same text share a task."""
    hold = () if campaign.urgent or not campaign.quiet_hours else (f"quiet:{campaign.quiet_hours}",)
    pushes: list[Push] = []
    tasks: dict[tuple[str, str, str], list[Target]] = {}
    for t in targets:
        g = t.group
        sender = station_names.get(g.station_code, g.station_code)
        if g.channel == "customer_group":
            tasks.setdefault((g.owner or "", t.item.id, sender), []).append(t)
            continue
        content = renderer.macro("awareness/push.j2", "markdown", item=t.item, sender=sender)
        if g.channel == "webhook":
            body = {"msgtype": "markdown", "markdown": {"content": fit_bytes(content, _ROBOT_MARKDOWN)}}
            keys = (f"robot:{g.code}",)
        else:
            body = {"touser": g.address, "msgtype": "markdown", "agentid": agent_id,
                    "markdown": {"content": fit_bytes(content, _APP_MARKDOWN)}}
            keys = tuple(f"app:{u}" for u in g.members)
        message = OutboxMessage(AWARENESS_PURPOSE, g.channel, g.address, g.code, body, keys + hold,
                                AWARENESS_PRIORITY)
        pushes.append(Push(message, (g.code,)))
    for (owner, _, sender), group_targets in tasks.items():
        content = renderer.macro("awareness/push.j2", "text", item=group_targets[0].item, sender=sender)
        for start in range(0, len(group_targets), _GROUPMSG_CHATS):
            chunk = group_targets[start:start + _GROUPMSG_CHATS]
            chats = [t.group.address for t in chunk]
            body = {"chat_type": "group", "sender": owner, "chat_id_list": chats, "allow_select": False,
                    "text": {"content": fit_bytes(content, _GROUPMSG_TEXT)}}
            keys = tuple(f"groupmsg:{chat}" for chat in chats)
            label = chunk[0].group.code if len(chunk) == 1 else f"{chunk[0].group.code} 等{len(chunk)}个客户群"
            message = OutboxMessage(AWARENESS_PURPOSE, "customer_group", owner, label, body, keys + hold,
                                    AWARENESS_PRIORITY)
            pushes.append(Push(message, tuple(t.group.code for t in chunk)))
    return pushes


def describe_slot(slot: float | None) -> str:
    return datetime.fromtimestamp(slot, SHANGHAI).strftime("%Y-%m-%d %H:%M") if slot else "手动"
