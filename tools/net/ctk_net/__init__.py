"""ctk-net: CNI networks for containerd containers, and the OCI hook that joins containers to them."""
