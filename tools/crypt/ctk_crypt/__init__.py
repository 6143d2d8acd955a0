"""ctk-crypt: ocicrypt-compatible OCI layer encryption."""
