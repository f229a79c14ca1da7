"""The WeCom APIs the simulator answers, by name as they appear under /cgi-bin/."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from . import agent, appchat, externalcontact, media, message, token, webhook

if TYPE_CHECKING:
    from ..simulator import Simulator

Handler = Callable[["Simulator", Mapping[str, str], dict], dict]


@dataclass(frozen=True)
class Endpoint:
    """One API: HTTP method, whether it needs an access_token, and its handler."""

    method: Literal["GET", "POST"]
    needs_token: bool
    handler: Handler
    multipart: bool = False  # the body is a multipart form (files), not JSON
    # 客户联系 APIs: only the 客户联系 secret or an app on its "可调用应用" list may call them, else 48002.
    customer_contact: bool = False


ENDPOINTS: dict[str, Endpoint] = {
    "gettoken": Endpoint("GET", False, token.gettoken),
    "message/send": Endpoint("POST", True, message.send),
    "message/update_template_card": Endpoint("POST", True, message.update_template_card),
    "appchat/create": Endpoint("POST", True, appchat.create),
    "appchat/get": Endpoint("GET", True, appchat.get),
    "appchat/update": Endpoint("POST", True, appchat.update),
    "agent/get": Endpoint("GET", True, agent.get),
    "appchat/send": Endpoint("POST", True, appchat.send),
    "webhook/send": Endpoint("POST", False, webhook.send),
    "externalcontact/add_msg_template": Endpoint("POST", True, externalcontact.add_msg_template,
                                                 customer_contact=True),
    "externalcontact/get_groupmsg_send_result": Endpoint("POST", True, externalcontact.get_groupmsg_send_result,
                                                         customer_contact=True),
    "externalcontact/groupchat/list": Endpoint("POST", True, externalcontact.groupchat_list, customer_contact=True),
    "media/upload": Endpoint("POST", True, media.upload, multipart=True),
    "auth/getuserinfo": Endpoint("GET", True, media.getuserinfo),
}
