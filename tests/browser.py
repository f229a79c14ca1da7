"""Headless chromium for the browser tests: Debian's chromium driven by Playwright (no browser download)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from playwright.async_api import BrowserContext, async_playwright

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}


def chromium_path() -> str:
    """Where Debian's chromium is; scripts/browser installs it."""
    path = shutil.which("chromium")
    if path is None:
        raise RuntimeError("chromium is not installed; run scripts/browser (sudo apt-get install -y chromium)")
    return path


@asynccontextmanager
async def chromium(
    *, viewport: dict[str, int] | None = None, timeout_ms: float = 5000, **context_options: object
) -> AsyncIterator[BrowserContext]:
    """Launch headless chromium with a fresh profile; yield its context, a phone-sized one by default.

    Everything is closed on the way out, even when the test failed: the context (and so the browser),
    the Playwright driver, and the temporary profile directory.
    """
    executable = chromium_path()
    with tempfile.TemporaryDirectory(prefix="quanzu-chromium-", ignore_cleanup_errors=True) as profile:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                profile,
                executable_path=executable,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport=viewport or PHONE,
                locale="zh-CN",
                timezone_id="Asia/Shanghai",
                timeout=30_000,
                **context_options,
            )
            try:
                context.set_default_timeout(timeout_ms)
                context.set_default_navigation_timeout(timeout_ms * 2)
                yield context
            finally:
                await context.close()
