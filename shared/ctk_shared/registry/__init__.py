"""The OCI distribution client: ``client.RegistryClient`` (on requests), ``hosts`` (TLS and scheme per
registry, from certs.d / hosts.toml), ``tokens`` (WWW-Authenticate, bearer tokens) and ``errors``
(HTTP answers → ctk errors with the OCI error code kept).

Import the sub-modules directly; this package imports nothing so ``import ctk_shared.registry`` stays cheap.
"""
