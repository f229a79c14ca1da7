"""Settings of the simulated WeCom corp, app and callback endpoint."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

_TOKEN_RE = re.compile(r"[A-Za-z0-9]{1,32}")
_AES_KEY_RE = re.compile(r"[A-Za-z0-9]{43}")


@dataclass
class SimulatorConfig:
    """The corp, app and callback settings that WeCom would hold for a self-built app."""

    corp_id: str = "wwdemo0000000001"
    corp_secret: str = "demo-secret"
    agent_id: int = 1000002
    token: str = "QuanzuDemoToken"
    encoding_aes_key: str = "QuanzuDemoEncodingAesKey0123456789abcdefgh0"
    callback_url: str | None = None
    token_ttl: int = 7200
    callback_timeout: float = 5.0
    callback_retries: int = 3
    # The app's name as members see it on its messages (the chat view's sender label).
    app_name: str = "劝阻"
    # Whether the admin put this app on 客户联系 → "可调用应用": without it every externalcontact/* call
    # answers 48002, as for a freshly created app (tests and the demo grant it; /_sim/app changes it).
    customer_contact: bool = False
    # The app's trusted domain (可信域名) for web OAuth, matched exactly, port included ("host:port");
    # None means the host of callback_url, i.e. the bot's public host.
    trusted_domain: str | None = None

    def __post_init__(self) -> None:
        if not _TOKEN_RE.fullmatch(self.token):
            raise ValueError("token must be 1..32 characters from [A-Za-z0-9]")
        if not _AES_KEY_RE.fullmatch(self.encoding_aes_key):
            raise ValueError("encoding_aes_key must be exactly 43 characters from [A-Za-z0-9]")
        try:
            key = base64.b64decode(self.encoding_aes_key + "=", validate=True)
        except binascii.Error as err:
            raise ValueError("encoding_aes_key is not valid base64") from err
        if len(key) != 32:
            raise ValueError("encoding_aes_key must decode to 32 bytes")
        if self.token_ttl <= 0:
            raise ValueError("token_ttl must be positive")
        if self.callback_timeout <= 0 or self.callback_retries < 0:
            raise ValueError("callback_timeout must be positive and callback_retries non-negative")

    def oauth_domain(self) -> str | None:
        """The trusted domain web OAuth redirects must use: the configured one, else the callback URL's host."""
        if self.trusted_domain:
            return self.trusted_domain.lower()
        return urlsplit(self.callback_url).netloc.lower() if self.callback_url else None
