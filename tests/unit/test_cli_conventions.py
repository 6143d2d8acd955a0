"""The shared CLI conventions: stdin refs, templates, the default command, the error contract."""
import io

import click
import pytest
from ctk_shared import cli, config, output
from ctk_shared.errors import CtkError, NotFound, UsageError


def test_refs_from_stdin_accept_bare_refs_and_json_records():
    stdin = io.StringIO('busybox\n\n{"ref": "a:1"}\n{"Name": "b:2"}\n{"Repository": "c", "Tag": "3"}\n')
    assert list(output.refs_from_args(["x", "-"], stdin)) == ["x", "busybox", "a:1", "b:2", "c:3"]


def test_stdin_json_without_ref_field_is_an_error():
    with pytest.raises(CtkError, match="no ref"):
        list(output.refs_from_args(["-"], io.StringIO('{"foo": 1}\n')))


@pytest.mark.parametrize("text", ["", "\n\n", "   \n"])
def test_a_dash_that_reads_no_ref_is_a_usage_error(text):
    with pytest.raises(UsageError, match="no image reference on stdin") as e:
        list(output.refs_from_args(["x", "-"], io.StringIO(text)))
    assert e.value.exit_code == 2


def test_template_rendering():
    rec = {"Repository": "nginx", "Tag": "alpine", "Size": 5, "Labels": {"a": "b"}}
    assert output.render_template("{{.Repository}}:{{.Tag}}", rec) == "nginx:alpine"
    assert output.render_template("{{json .Labels}}", rec) == '{"a":"b"}'
    assert output.render_template("{{ .Size }}|{{.Labels.nope}}", rec) == "5|<no value>"  # a map key: Docker's
    with pytest.raises(UsageError, match="unknown field '.Missing'"):
        output.render_template("{{.Missing}}", rec)


def _group():
    @click.group(cls=cli.DefaultCommandGroup, default_command="pull")
    @cli.global_options
    def g():
        pass

    @g.command()
    @click.argument("refs", nargs=-1)
    @click.option("--platform")
    @cli.global_options
    def pull(refs, platform):
        click.echo(f"pull {list(refs)} {platform} {cli.options().namespace}")

    @g.command()
    @cli.global_options
    def images():
        click.echo(f"images {cli.options().namespace}")

    @g.command()
    def fail():
        raise NotFound("image 'x' not found", hint="pull it first")

    return g


@pytest.mark.parametrize("argv,expected", [
    (["busybox"], "pull ['busybox'] None default"),
    (["--platform", "linux/arm64", "busybox"], "pull ['busybox'] linux/arm64 default"),
    (["-n", "k8s.io", "busybox"], "pull ['busybox'] None k8s.io"),
    (["pull", "busybox", "--namespace", "x"], "pull ['busybox'] None x"),
    (["images"], "images default"),
    (["--namespace", "y", "images"], "images y"),
    (["images", "--namespace", "z"], "images z"),
])
def test_default_command_and_global_options_anywhere(argv, expected, capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("CONTAINERD_NAMESPACE", raising=False)
    (tmp_path / "empty.toml").write_text("")  # no config file of the machine's may set a namespace
    monkeypatch.setenv("CTK_CONFIG", str(tmp_path / "empty.toml"))
    rc = cli.run(_group(), "ctk-test", argv)
    assert rc == 0
    assert capsys.readouterr().out.strip() == expected


def test_errors_are_one_line_with_hint_and_exit_code(capsys):
    rc = cli.run(_group(), "ctk-test", ["fail"])
    err = capsys.readouterr().err
    assert rc == 3  # the exit-code table's "not found"
    assert err.splitlines() == ["ctk-test: error: image 'x' not found", "ctk-test: hint: pull it first"]
    assert "Traceback" not in err


def test_usage_errors_exit_2(capsys):
    rc = cli.run(_group(), "ctk-test", ["images", "--bogus"])
    assert rc == 2


def test_env_and_toml_layers(tmp_path, monkeypatch):
    cfg = tmp_path / "ctk.toml"
    cfg.write_text('namespace = "fromfile"\naddress = "/tmp/x.sock"\n')
    monkeypatch.setenv("CTK_CONFIG", str(cfg))
    monkeypatch.delenv("CONTAINERD_NAMESPACE", raising=False)
    assert config.resolve({}).namespace == "fromfile"
    monkeypatch.setenv("CONTAINERD_NAMESPACE", "fromenv")
    assert config.resolve({}).namespace == "fromenv"
    assert config.resolve({"namespace": "fromflag"}).namespace == "fromflag"
    assert config.resolve({}).address == "/tmp/x.sock"
    cfg.write_text('bogus = 1\n')
    with pytest.raises(CtkError, match="unknown key"):
        config.resolve({})
