"""Docker's prune filters (ctk_shared.prune): until=TIME and label[!]=KEY[=VALUE]."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from ctk_shared.errors import UsageError
from ctk_shared.prune import parse_filters, parse_until

NOW = 1_733_400_000.0


@pytest.mark.parametrize("text, expected", [
    ("24h", NOW - 86400), ("1h30m", NOW - 5400), ("90s", NOW - 90), ("1.5h", NOW - 5400),
    ("1733350000", 1733350000.0), ("1733350000.5", 1733350000.5),
    ("2024-12-05T10:00:00Z", datetime(2024, 12, 5, 10, tzinfo=UTC).timestamp()),
    ("2024-12-05T10:00:00+01:00", datetime(2024, 12, 5, 9, tzinfo=UTC).timestamp()),
])
def test_until_forms(text, expected):
    assert parse_until(text, NOW).timestamp() == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["until=", "until=yesterday", "until!=1h", "dangling=true", "label", "label=",
                                 "foo=bar", "label!=", "until=1x"])
def test_bad_filters_are_usage_errors(bad):
    with pytest.raises(UsageError):
        parse_filters([bad], NOW)


def test_matching():
    f = parse_filters(["until=1h", "label=a", "label!=b=2"], NOW)
    old = datetime.fromtimestamp(NOW - 7200, UTC)
    new = datetime.fromtimestamp(NOW - 60, UTC)
    assert f.matches(old, {"a": "x", "b": "1"})
    assert not f.matches(new, {"a": "x"})  # too new
    assert not f.matches(None, {"a": "x"})  # creation time unknown: never pruned on a guess
    assert not f.matches(old, {"b": "2", "a": ""})  # label!=b=2
    assert not f.matches(old, {})  # label=a missing
    assert parse_filters([], NOW).matches(None, {})
