"""WeCom's markdown subset and text messages as safe HTML, and one-line previews of them.

Everything is HTML-escaped first; only the few constructs WeCom renders are then turned into fixed tags,
so nothing from message content can open a tag or an attribute of its own. Links keep http(s) URLs only.
"""

from __future__ import annotations

import html
import re

from markupsafe import Markup

_HEADING_RE = re.compile(r"^(#{1,6})\s+(.*)$")
_QUOTE_RE = re.compile(r"^&gt;\s?(.*)$")
_CODE_RE = re.compile(r"`([^`\n]+)`")
# The patterns below run on escaped text: " is &quot; and ' is &#x27; there.
_Q = r"(?:&quot;|&#x27;)"
_FONT_RE = re.compile(rf"&lt;font\s+color={_Q}?(info|comment|warning){_Q}?\s*&gt;(.*?)&lt;/font&gt;", re.IGNORECASE)
_MD_LINK_RE = re.compile(r"\[([^\[\]\n]+)\]\(((?:https?://)[^()\s]+)\)", re.IGNORECASE)
_A_TAG_RE = re.compile(rf"&lt;a\s+href={_Q}(https?://(?:(?!{_Q}).)+){_Q}\s*&gt;(.*?)&lt;/a&gt;", re.IGNORECASE)
# A ** run of more than two stars is no delimiter, so a masked phone like 138****8000 stays as it is.
_BOLD_RE = re.compile(r"(?<!\*)\*\*(?![*\s])(.+?)(?<![*\s])\*\*(?!\*)")
_TOKEN_RE = re.compile(r"\x00(\d+)\x00")
_SAFE_URL_RE = re.compile(r"https?://\S+", re.IGNORECASE)


def safe_url(url: object) -> str | None:
    """Return `url` if it is a plain http(s) URL a link may point to, else None."""
    return url if isinstance(url, str) and _SAFE_URL_RE.fullmatch(url) else None


def render_markdown(source: str) -> Markup:
    """Render WeCom markdown: # headings, **bold**, > quotes, [text](url), <font color>, `code`, line breaks."""
    blocks: list[tuple[str, str]] = []
    for raw_line in _lines(source):
        line = html.escape(raw_line)
        if heading := _HEADING_RE.match(raw_line):
            level = len(heading.group(1))
            blocks.append(("h", f'<div class="md-h md-h{level}">{_inline(html.escape(heading.group(2)))}</div>'))
        elif quote := _QUOTE_RE.match(line):
            blocks.append(("quote", _inline(quote.group(1))))
        else:
            blocks.append(("line", _inline(line)))
    out: list[str] = []
    index = 0
    while index < len(blocks):
        kind, first = blocks[index]
        if kind == "h":
            out.append(first)
            index += 1
            continue
        run = [first]
        index += 1
        while index < len(blocks) and blocks[index][0] == kind:
            run.append(blocks[index][1])
            index += 1
        tag = ("<blockquote>", "</blockquote>") if kind == "quote" else ('<div class="md-p">', "</div>")
        out.append(tag[0] + "<br>".join(run) + tag[1])
    return Markup("".join(out))


def render_text(source: str) -> Markup:
    """Render a text message: escaped, line breaks kept, <a href="http(s)://…">…</a> as links."""
    escaped = html.escape(source)
    linked = _A_TAG_RE.sub(lambda m: _link(m.group(1), m.group(2)), escaped)
    return Markup("<br>".join(_lines(linked)))


def render_textcard_description(source: str) -> Markup:
    """Render a textcard description: WeCom's <div class="gray|normal|highlight"> lines as plain lines."""
    text = re.sub(r"<br\s*/?>|</div>", "\n", source, flags=re.IGNORECASE)
    text = re.sub(r"<div(\s+class=[\"']?\w+[\"']?)?\s*>", "", text, flags=re.IGNORECASE)
    return render_text(text.strip("\n"))


def plain_text(source: str) -> str:
    """Return a text message as the plain text a chat list preview shows (links without their tags)."""
    return re.sub(r"</?a\b[^>]*>", "", source, flags=re.IGNORECASE)


def plain_markdown(source: str) -> str:
    """Return markdown as the plain text a chat list preview shows."""
    text = re.sub(r"</?font[^>]*>", "", source, flags=re.IGNORECASE)
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)
    text = _BOLD_RE.sub(r"\1", text).replace("`", "")
    return " ".join(re.sub(r"^\s*(#{1,6}\s+|>\s?)", "", line).strip() for line in _lines(text) if line.strip())


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _inline(escaped: str) -> str:
    """Inline markdown on already escaped text; `code` spans are left alone."""
    parts = _CODE_RE.split(escaped)
    # split() alternates: text, code, text, code, ...
    return "".join(
        f'<code class="md-code">{part}</code>' if odd else _inline_text(part) for odd, part in _alternate(parts)
    )


def _inline_text(escaped: str) -> str:
    # Links become tokens first so that bold or font markers inside a URL cannot touch its href.
    links: list[str] = []

    def keep_link(match: re.Match[str]) -> str:
        links.append(_link(match.group(2), _styles(match.group(1))))
        return f"\x00{len(links) - 1}\x00"

    text = _MD_LINK_RE.sub(keep_link, escaped.replace("\x00", ""))
    text = _styles(text)
    return _TOKEN_RE.sub(lambda m: links[int(m.group(1))], text)


def _styles(escaped: str) -> str:
    text = _FONT_RE.sub(lambda m: f'<span class="md-{m.group(1).lower()}">{m.group(2)}</span>', escaped)
    return _BOLD_RE.sub(r"<strong>\1</strong>", text)


def _link(escaped_url: str, inner_html: str) -> str:
    return f'<a href="{escaped_url}" target="_blank" rel="noopener noreferrer">{inner_html}</a>'


def _alternate(parts: list[str]) -> list[tuple[bool, str]]:
    return [(index % 2 == 1, part) for index, part in enumerate(parts)]
