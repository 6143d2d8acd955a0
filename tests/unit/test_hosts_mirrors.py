"""hosts.toml mirror entries as containerd reads them: order, capabilities, paths, headers, _default."""
from __future__ import annotations

from pathlib import Path

import pytest
from ctk_shared.errors import InvalidArgument
from ctk_shared.registry.hosts import CAPABILITIES, host_settings


def _write(root: Path, host: str, text: str) -> tuple[str, ...]:
    d = root / host
    d.mkdir(parents=True)
    (d / "hosts.toml").write_text(text)
    return (str(root),)


def test_mirrors_in_file_order_with_their_own_settings(tmp_path):
    dirs = _write(tmp_path, "docker.io", '''
server = "https://registry-1.docker.io"
[host."https://mirror-a.example/cache"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
  [host."https://mirror-a.example/cache".header]
    X-Token = "abc"
    X-Multi = ["1", "2"]
[host."http://mirror-b.example:5000/api/v2"]
  override_path = true
''')
    st = host_settings("docker.io", hosts_dirs=dirs)
    assert st.api_host == "registry-1.docker.io" and st.path == "/v2"
    a, b = st.mirrors
    assert (a.name, a.schemes, a.path, a.verify) == ("mirror-a.example", ("https",), "/cache/v2", False)
    assert a.capabilities == {"pull", "resolve"} and a.namespace == "docker.io"
    assert dict(a.headers) == {"X-Token": "abc", "X-Multi": "1, 2"}
    assert (b.name, b.schemes, b.path, b.capabilities) == ("mirror-b.example:5000", ("http",), "/api/v2", CAPABILITIES)


def test_an_entry_for_the_upstream_itself_is_not_a_mirror(tmp_path):
    dirs = _write(tmp_path, "reg.example", '[host."https://reg.example"]\n  skip_verify = true\n')
    st = host_settings("reg.example", hosts_dirs=dirs)
    assert st.mirrors == () and st.verify is False


def test_default_directory_applies_to_registries_without_their_own(tmp_path):
    dirs = _write(tmp_path, "_default", '[host."https://mirror.example"]\n  capabilities = ["pull"]\n')
    _write(tmp_path, "own.example", 'server = "https://own.example"\n')
    assert [m.name for m in host_settings("any.example", hosts_dirs=dirs).mirrors] == ["mirror.example"]
    assert host_settings("any.example", hosts_dirs=dirs).mirrors[0].namespace == "any.example"
    assert host_settings("own.example", hosts_dirs=dirs).mirrors == ()


@pytest.mark.parametrize("table, words", [
    ('capabilities = ["pull", "fly"]', "unknown capability 'fly'"),
    ('capabilities = "pull"', "capabilities must be a list"),
    ('override_path = "yes"', "override_path must be true or false"),
    ('header = "X: y"', "header must be a table"),
    ('header = {X-A = "a\\nb"}', "on one line"),
    ('ca = "missing.pem"', "does not exist"),
])
def test_bad_mirror_entries_are_refused_naming_the_file(tmp_path, table, words):
    dirs = _write(tmp_path, "reg.example", f'[host."https://m.example"]\n  {table}\n')
    with pytest.raises(InvalidArgument) as e:
        host_settings("reg.example", hosts_dirs=dirs)
    assert words in str(e.value)
