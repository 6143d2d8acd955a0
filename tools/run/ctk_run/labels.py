"""Container label keys: the state ctk-run keeps in containerd (there is no daemon of ctk's own).

``containerd.io/restart.*`` keys are read by containerd's restart monitor; ``ctk/*`` keys are ctk's.
"""
from __future__ import annotations

# re-exported ("X as X": mypy's explicit export)
from ctk_shared.labels import NAME as NAME  # the container's name (also its spec annotation for ctk-net)
from ctk_shared.labels import NETWORKS as NETWORKS  # the networks a container joins (shared with ctk-net)

# containerd's restart monitor (1.6 reads status + loguri; 1.7+ also reads policy)
RESTART_STATUS = "containerd.io/restart.status"  # "running" | "stopped": the state the monitor enforces
RESTART_LOGURI = "containerd.io/restart.loguri"  # IO of tasks the monitor recreates
RESTART_POLICY_CTD = "containerd.io/restart.policy"  # for 1.7+ monitors; ctk writes it, never relies on it

# ctk's own
CREATED = "ctk/created"  # RFC 3339, when `run`/`create` made the container
IMAGE_REF = "ctk/image"  # the ref the user typed, normalised
PLATFORM = "ctk/platform"
RESTART_POLICY = "ctk/restart.policy"  # no | always | unless-stopped | on-failure[:N]
RESTART_COUNT = "ctk/restart.count"  # restarts done by the policy so far
EXPLICITLY_STOPPED = "ctk/stopped"  # "true" after `stop`/`kill`: the policy never undoes it
AUTO_REMOVE = "ctk/rm"  # "true" with --rm
LOG_PATH = "ctk/log.path"  # the json-file log
STOP_SIGNAL = "ctk/stop-signal"
STOP_TIMEOUT = "ctk/stop-timeout"
HOSTNAME = "ctk/hostname"
NETWORK = "ctk/network"  # none | host | <name>[,<name>…] (the networks themselves: ctk_shared.labels.NETWORKS)
PORTS = "ctk/ports.requested"  # JSON list of the -p/-P mappings asked for (host port 0 = any)
STARTED_AT = "ctk/started-at"  # RFC 3339, set by every start (ctk's or the restart monitor's, via the logger)
# "true" from a first start's beginning until its task has started: a container whose first start failed, or
# whose CLI was killed between task create and start, is still "created" (as in Docker), whatever else is set
NEVER_STARTED = "ctk/never-started"
FINISHED_AT = "ctk/finished-at"  # RFC 3339 of the last exit ctk saw
EXIT_CODE = "ctk/exit-code"  # last exit status ctk saw
KEY_CHECK = "ctk/key-check"  # passed | not-encrypted: the image's decryption keys were checked at create
STDIN_OPEN = "ctk/stdin-open"  # "true" with -i (Docker's Config.OpenStdin)
TTY = "ctk/tty"  # "true" with -t: its restarts need a terminal, which containerd's restart monitor cannot make
VOLUMES = "ctk/volumes"  # JSON list of {Name, Destination, Anonymous}: the volumes the container mounts
