"""Cards that stay true: what each person's interaction card should show as its instruction moves on, and
the update (message/update_template_card) that shows it in place.

WeCom's rules: an update needs a response_code — one comes with the card's send, one with every click —
and each works once, for 72 hours, only on interaction cards. So an action updates each card that has a
code left, in its own transaction (storage claims the code there and queues the update in the outbox).
An updated card keeps what it carried, says where the instruction stands in one line (已由 刘红 签收,
已转派给 张伟, 已结案：劝阻成功) and has a 刷新 button instead of its old ones: a click on it, or on any
stale button, brings a fresh code, and the bot answers by showing the card's current state with it.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.render import Renderer
from domain.cards import REFRESH_KEY, UPDATE_PURPOSE, CardUpdate, StoredCard
from domain.lifecycle import STATE_LABELS
from domain.models import RISK_PRIORITY, Instruction, OutboxMessage

_TEXTS = "wecom/card_update.j2"
_CARD = "wecom/card_update.json.j2"

def card_status(renderer: Renderer, i: Instruction, card: StoredCard, active: bool, handed_to: str | None,
                name: Callable[[str | None], str]) -> str | None:
    """The line a card should show now; None while its original content is still true.

    `active`: whether the card's person still holds an assignment; `handed_to`: whom a re-assignment gave
    their part to.
    """
    if i.state == "closed":
        return renderer.macro(_TEXTS, "closed", outcome=i.outcome)
    if i.state == "resolved":
        return renderer.macro(_TEXTS, "resolved", outcome=i.outcome, by=name(i.reported_by))
    if card.purpose == "feedback_card":
        return None  # still the way to report
    if not active and handed_to:
        return renderer.macro(_TEXTS, "handed_over", to=name(handed_to))
    if i.reported_by and i.outcome:
        return renderer.macro(_TEXTS, "reported", outcome=i.outcome, by=name(i.reported_by),
                              state=STATE_LABELS.get(i.state, i.state))
    if i.acked_by:
        return renderer.macro(_TEXTS, "signed", by=name(i.acked_by))
    return None


def card_update(renderer: Renderer, agent_id: int, i: Instruction, card: StoredCard, status: str,
                prefer: str | None = None, still_to_sign: bool = False) -> CardUpdate:
    """The update that shows `status` on `card` (storage adds the response_code it claims).

    `still_to_sign`: the card's person has a task of their own not yet signed for (the officer's phone call
    when the grid worker signed the visit): the card keeps its 签收 button beside 刷新."""
    buttons = card.card.get("button_list", []) if still_to_sign and card.purpose == "assignee_card" else []
    new_card = renderer.json(_CARD, card=card.card, status=status, buttons=buttons,
                             refresh_key=REFRESH_KEY.format(id=i.id))
    body = {"userids": [card.userid], "agentid": agent_id, "template_card": new_card}
    # No rate bucket: an update changes a card the person has, it is not a message against their limits.
    message = OutboxMessage(UPDATE_PURPOSE, "app", card.userid, card.userid, body, (), RISK_PRIORITY[i.risk_level],
                            card.task_id)
    return CardUpdate(i.id, card.task_id, status, message, prefer)
