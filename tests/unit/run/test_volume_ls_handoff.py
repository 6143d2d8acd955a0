"""``volume ls`` through its handoff function, without click: its ``client`` is a factory, called only when a
``dangling=`` filter needs containerd (so a plain ``volume ls`` never loads grpc), and it returns records for
the cli to print instead of printing them."""
from __future__ import annotations

from typing import NoReturn

import pytest
from ctk_run import volumes
from ctk_run.options import VolumeLsOptions
from ctk_shared.config import GlobalOptions
from ctk_shared.errors import UsageError


def _no_client() -> NoReturn:
    raise AssertionError("volume ls connected to containerd without a dangling= filter")


def test_volume_ls_returns_records_and_never_calls_the_client_factory(tmp_path, capsys):
    gopts = GlobalOptions(data_root=str(tmp_path), namespace="t")
    volumes.create(str(tmp_path), "t", "alpha", labels={"k": "v"})
    volumes.create(str(tmp_path), "t", "beta")
    found = volumes.volume_ls(_no_client, gopts, VolumeLsOptions(filters=("label=k",)))
    assert [r["Name"] for r in found.records] == ["alpha"] and found.records[0]["Labels"] == "k=v"
    assert capsys.readouterr().out == ""  # the cli prints, not the function


def test_volume_ls_refuses_a_bad_template_before_reading_anything(tmp_path):
    with pytest.raises(UsageError):
        volumes.volume_ls(_no_client, GlobalOptions(data_root=str(tmp_path)),
                          VolumeLsOptions(fmt="{{.Nope}}"))
