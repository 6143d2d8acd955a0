"""ctk-run: containers on containerd (run, ps, logs, stop/start/restart/kill, rm, exec, inspect, wait)."""
