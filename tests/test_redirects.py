"""Safe redirects: only same-site relative paths survive."""

from __future__ import annotations

import pytest

from authapp.web.redirects import safe_next


@pytest.mark.parametrize(
    "target", ["/", "/protected", "/protected?tab=1#top", "/a/b%20c", "/caf%C3%A9"]
)
def test_same_site_paths_are_kept(target: str) -> None:
    assert safe_next(target) == target


@pytest.mark.parametrize(
    "target",
    [
        None, "", "protected", "//evil.example", "///evil.example", "https://evil.example",
        "http:/evil.example", "/\\evil.example", "\\\\evil.example", "javascript:alert(1)",
        "JAVASCRIPT:alert(1)", "%2F%2Fevil.example", "/%2F/evil.example", "/%5Cevil.example",
        "/ok\r\nLocation: https://evil.example", "/ok%0d%0aSet-Cookie:x=y", "/tab\there",
        " /leading-space", "/" + "a" * 3000,
    ],
)  # fmt: skip
def test_everything_else_goes_to_the_default(target: str | None) -> None:
    assert safe_next(target) == "/"
