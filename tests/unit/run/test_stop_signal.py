"""The stop signal a new container gets from its image (Docker's Config.StopSignal)."""
from __future__ import annotations

import pytest
from ctk_run.create import _image_stop_signal


@pytest.mark.parametrize("config, expected", [
    ({"StopSignal": "SIGQUIT"}, "SIGQUIT"),  # nginx
    ({"StopSignal": "SIGINT"}, "SIGINT"),  # postgres
    ({"StopSignal": "quit"}, "quit"),
    ({"StopSignal": "3"}, "3"),
    ({"StopSignal": "SIGNOPE"}, None),  # would make every later stop fail: the default (SIGTERM) instead
    ({"StopSignal": ""}, None),
    ({"StopSignal": 3}, None),
    ({}, None),
    (None, None),
])
def test_image_stop_signal(config, expected):
    assert _image_stop_signal(config) == expected
