"""What each real image is: Debian packages, tweaks made inside the root filesystem, and the image metadata.

The metadata follows Docker's official images where one exists (nginx: logs to stdout/stderr, SIGQUIT
stops it gracefully; redis and postgres: run as their own user, data under a VOLUME), so that tests written
against these images meet what users meet with the official ones.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# Bump when a recipe changes in a way the cache key does not see (the key already covers the mmdebstrap
# command line, hooks included, and the apt sources).
RECIPE_VERSION = 1

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Recipe:
    """One image. ``hooks`` are mmdebstrap ``--customize-hook`` shell commands (``$1`` is the new root);
    ``essential_hooks`` run before the packages are installed (to steer their maintainer scripts);
    ``metadata`` are Dockerfile lines after ``ADD rootfs.tar /``; ``files`` go into the build context."""

    name: str
    summary: str
    packages: tuple[str, ...] = ()
    hooks: tuple[str, ...] = ()
    essential_hooks: tuple[str, ...] = ()
    metadata: tuple[str, ...] = ()
    files: dict[str, str] = field(default_factory=dict)
    architecture: str = ""  # a Debian architecture other than the host's (mmdebstrap runs it under QEMU)

    @property
    def platform(self) -> str:
        """The OCI platform ctk-build gives the image (``--platform``); "" for the host's."""
        return {"arm64": "linux/arm64", "armhf": "linux/arm/v7", "amd64": "linux/amd64"}.get(
            self.architecture, f"linux/{self.architecture}" if self.architecture else "")


# Every image: no apt sources (an image must not depend on this machine's mirror; a Dockerfile that
# installs packages COPYs the machine's sources in, as the demo does), and no host resolv.conf/hostname
# (mmdebstrap copies the host's; the runtime bind-mounts its own).
COMMON_HOOKS = (
    'rm -f "$1"/etc/apt/sources.list "$1"/etc/apt/sources.list.d/*',
    'rm -f "$1/etc/resolv.conf" "$1/etc/hostname"',
)

POSTGRES_ENTRYPOINT = r"""#!/bin/sh
# Initialise the data directory on first start (when PGDATA holds no cluster), then run the command.
# Auth: with POSTGRES_PASSWORD set, connections over the network need that password (scram-sha-256) for
# the superuser POSTGRES_USER (default postgres); without it, they are trusted, as the official image's
# POSTGRES_HOST_AUTH_METHOD=trust - fine for tests on a private bridge, never for a shared network.
set -eu
for bin in /usr/lib/postgresql/*/bin; do PATH="$bin:$PATH"; done
export PATH
: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA
if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA"
  chmod 700 "$PGDATA"
  user=${POSTGRES_USER:-postgres}
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 >&2
    rm -f "$pwfile"
    method=scram-sha-256
  else
    initdb --username="$user" --auth-local=trust --auth-host=trust >&2
    method=trust
  fi
  printf "listen_addresses = '*'\n" >> "$PGDATA/postgresql.conf"
  printf 'host all all all %s\n' "$method" >> "$PGDATA/pg_hba.conf"
  if [ -n "${POSTGRES_DB:-}" ] && [ "$POSTGRES_DB" != postgres ]; then
    postgres --single -D "$PGDATA" -c listen_addresses= postgres >/dev/null <<SQL
CREATE DATABASE "$POSTGRES_DB";
SQL
  fi
  echo "ctk-postgres-entrypoint: initialised $PGDATA (host auth: $method)" >&2
fi
exec "$@"
"""

RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe(
        "debian", "minimal Debian (mmdebstrap --variant=minbase), bash as the command",
        metadata=('CMD ["bash"]',),
    ),
    Recipe(
        # for multi-platform builds: maintainer scripts run under QEMU (qemu-user-static + binfmt_misc,
        # registered by scripts/setup), so this takes minutes rather than seconds on a fresh machine
        "debian-arm64", "minimal Debian for arm64 (mmdebstrap --variant=minbase --architectures=arm64)",
        metadata=('CMD ["bash"]',), architecture="arm64",
    ),
    Recipe(
        "tools", "Debian base plus curl, iproute2 and netcat: a client for network checks in tests",
        packages=("curl", "ca-certificates", "iproute2", "netcat-openbsd"),
        metadata=('CMD ["bash"]',),
    ),
    Recipe(
        "nginx", "nginx-light on port 80; logs to stdout/stderr, STOPSIGNAL SIGQUIT (as the official image)",
        packages=("nginx-light",),
        hooks=('ln -sf /dev/stdout "$1/var/log/nginx/access.log"',
               'ln -sf /dev/stderr "$1/var/log/nginx/error.log"'),
        metadata=("EXPOSE 80", "STOPSIGNAL SIGQUIT", 'CMD ["nginx", "-g", "daemon off;"]'),
    ),
    Recipe(
        "redis", "redis-server as user redis on 0.0.0.0:6379, protected mode off, data in /var/lib/redis",
        packages=("redis-server",),
        # later directives win in redis.conf: run in the foreground, log to stdout, listen everywhere
        hooks=("printf '%s\\n' '' '# ctk image: foreground, stdout, all addresses' 'daemonize no' "
               "'supervised no' 'logfile \"\"' 'pidfile \"\"' 'bind 0.0.0.0' 'protected-mode no' "
               "'dir /var/lib/redis' >> \"$1/etc/redis/redis.conf\"",),
        metadata=("VOLUME /var/lib/redis", "WORKDIR /var/lib/redis", "USER redis", "EXPOSE 6379",
                  'CMD ["redis-server", "/etc/redis/redis.conf"]'),
    ),
    Recipe(
        "postgres", "PostgreSQL as user postgres, data in /var/lib/postgresql/data, initialised on first start",
        packages=("postgresql",),
        # no cluster at install time: the entrypoint makes one in PGDATA when a container first starts
        essential_hooks=('mkdir -p "$1/etc/postgresql-common/createcluster.d"',
                         'echo "create_main_cluster = false" '
                         '> "$1/etc/postgresql-common/createcluster.d/ctk-no-main-cluster.conf"'),
        hooks=('chroot "$1" install -d -o postgres -g postgres -m 700 /var/lib/postgresql/data',),
        metadata=("ENV PGDATA=/var/lib/postgresql/data",
                  "COPY --chmod=755 docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh",
                  # the socket directory: mmdebstrap empties /run, and user postgres cannot create it there
                  "RUN --network=none install -d -o postgres -g postgres -m 2775 /run/postgresql",
                  "VOLUME /var/lib/postgresql/data", "USER postgres", "EXPOSE 5432", "STOPSIGNAL SIGINT",
                  'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]', 'CMD ["postgres"]'),
        files={"docker-entrypoint.sh": POSTGRES_ENTRYPOINT},
    ),
)}
