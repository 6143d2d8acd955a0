"""ctk-build: Dockerfile builds executed natively on containerd."""
