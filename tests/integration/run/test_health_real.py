"""Issue 21 on real Debian images: postgres ready by ``pg_isready`` (and still checked across a containerd
restart), an image's own ``HEALTHCHECK`` (CMD form, built by ctk-build) merged with the flags, switched off by
``--no-healthcheck``, and a CMD-form check whose program is missing from the image."""
from __future__ import annotations

import secrets

from tests.support.cli import health_record as health
from tests.support.cli import inspect_record as inspect
from tests.support.polling import wait_for


def last_end(run, name: str) -> str:
    log = health(run, name).get("Log") or []
    return log[-1]["End"] if log else ""


def test_postgres_is_healthy_by_pg_isready_across_a_containerd_restart(containerd, run, real_images):
    r = run("run", "-d", "-q", "--network", "none", "--name", "db", "--health-cmd", "pg_isready -U postgres",
            "--health-interval", "2s", "--health-start-period", "90s", "--health-start-interval", "500ms",
            real_images["postgres"].ref)
    assert r.code == 0, r.err
    w = run("wait", "--condition", "healthy", "db", timeout=120)
    assert w.code == 0, (w.err, health(run, "db"), run("logs", "db").err[-2000:])
    h = health(run, "db")
    assert h["Status"] == "healthy" and "accepting connections" in h["Log"][-1]["Output"], h
    ps = run("ps", "--format", "{{.Names}} {{.Status}}").out
    assert "db Up" in ps and ps.rstrip().endswith("(healthy)"), ps

    containerd.restart()
    before = last_end(run, "db")
    assert wait_for(lambda: last_end(run, "db") > before, timeout=30), health(run, "db")
    assert health(run, "db")["Status"] == "healthy"
    assert run("stop", "db").code == 0
    st = inspect(run, "db")["State"]
    assert st["Status"] == "exited" and st["ExitCode"] == 0, st


def _build(run, tmp_path, base: str, healthcheck: str) -> str:
    ctx = tmp_path / secrets.token_hex(3)
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {base}\nHEALTHCHECK {healthcheck}\n")
    ref = f"localhost/health/img:{secrets.token_hex(3)}"
    b = run("-q", "-t", ref, str(ctx), tool="ctk-build")
    assert b.code == 0, b.err
    return ref


def test_image_healthcheck_cmd_form_merge_and_no_healthcheck(run, real_images, tmp_path):
    # the nginx image has no curl: perl-base (in every Debian image) opens a TCP connection to port 80
    ref = _build(run, tmp_path, real_images["nginx"].ref,
                 '--interval=1s --timeout=5s CMD ["perl", "-MIO::Socket::INET", "-e", '
                 '"IO::Socket::INET->new(q(127.0.0.1:80)) or die qq(down: $@); print qq(up)"]')
    assert run("run", "-d", "-q", "--network", "none", "--name", "web", "--health-retries", "7", ref).code == 0
    cfg = inspect(run, "web")["Config"]["Healthcheck"]
    assert cfg["Test"][:2] == ["CMD", "perl"] and cfg["Interval"] == 1_000_000_000 and cfg["Retries"] == 7, cfg
    w = run("wait", "--condition", "healthy", "web", timeout=60)
    assert w.code == 0, (w.err, health(run, "web"))
    assert health(run, "web")["Log"][-1]["Output"] == "up"

    assert run("run", "-d", "-q", "--network", "none", "--name", "off", "--no-healthcheck", ref).code == 0
    doc = inspect(run, "off")
    assert "Health" not in doc["State"] and "Healthcheck" not in doc["Config"]
    assert "(" not in run("ps", "--filter", "name=off", "--format", "{{.Status}}").out


def test_image_healthcheck_whose_program_is_missing(run, real_images, tmp_path):
    ref = _build(run, tmp_path, real_images["tools"].ref, '--interval=1s --retries=2 CMD ["/usr/bin/no-such-probe"]')
    assert run("run", "-d", "-q", "--network", "none", "--name", "m", ref, "sleep", "300").code == 0
    assert wait_for(lambda: health(run, "m").get("Status") == "unhealthy", timeout=30), health(run, "m")
    entry = health(run, "m")["Log"][-1]
    assert entry["ExitCode"] != 0 and "/usr/bin/no-such-probe" in entry["Output"], entry
    w = run("wait", "--condition", "healthy", "m")
    assert w.code != 0 and "unhealthy" in w.err
    # the container itself is fine: an unhealthy container keeps running (no restart, as in Docker)
    assert inspect(run, "m")["State"]["Status"] == "running"
