"""jobs/redact.py: secrets are masked, messages that only name a placeholder stay readable."""

from __future__ import annotations

import pytest

from jobs.redact import redact_text, redact_url


@pytest.mark.parametrize("text, expected", [
    ("Authorization: Bearer fs-live-9c1f7e", "Authorization: Bearer ***"),
    ("token=abc123&x=1 api_key: k-77", "token=***&x=1 api_key: ***"),
    ("https://u:pw@cdn.example.com/v.mp4?sig=1", "https://***@cdn.example.com/v.mp4?***"),
])
def test_secrets_are_masked(text, expected):
    assert redact_text(text) == expected


@pytest.mark.parametrize("text", [
    "missing or invalid API key: send 'Authorization: Bearer <key>'",
    "set api_key: <your-key> in the file",
])
def test_placeholders_are_not_garbled(text):
    assert redact_text(text) == text


@pytest.mark.parametrize("url, expected", [
    ("https://user:pw@cdn.example.com/a/v.mp4?sig=1&exp=2", "https://***@cdn.example.com/a/v.mp4?***"),
    ("http://example.com:8080/v.mp4", "http://example.com:8080/v.mp4"),
    ("https://token@[::1]:9000/x#secret", "https://***@[::1]:9000/x#***"),
    ("https://cdn.example.com/v.mp4", "https://cdn.example.com/v.mp4"),
])
def test_redact_url(url, expected):
    assert redact_url(url) == expected
