"""The browser chat page: one static HTML file with its script and styles inline.

It holds no data (everything comes from the API with the caller's own credentials),
so its route can be anonymous. The Content-Security-Policy allows exactly the inline
script and style it ships, by hash, computed once when the page is first served; its icon is a
``data:`` URL, so images may be ``data:`` too (they run no code).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from pathlib import Path

from azurefunctions.extensions.http.fastapi import Response

PAGE_PATH = Path(__file__).with_name("static") / "chat.html"


@functools.cache
def _page() -> tuple[bytes, str]:
    html = PAGE_PATH.read_text(encoding="utf-8")

    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks)

    policy = (
        "default-src 'none'; connect-src 'self'; img-src 'self' data:; "
        f"script-src {hashes('script')}; style-src {hashes('style')}; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return html.encode("utf-8"), policy


def chat_page_response() -> Response:
    """The page, with headers that keep a ``?code=`` key out of referrers and caches."""
    body, policy = _page()
    return Response(
        body,
        status_code=200,
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": policy,
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )
