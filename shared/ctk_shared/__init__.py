"""The library every ctk tool shares: containerd client, registry client, OCI models and CLI conventions.

Nothing in here prints, exits or imports click, except ``ctk_shared.cli``.
"""

from .dataclass_code import install as _install_dataclass_code

_install_dataclass_code()
