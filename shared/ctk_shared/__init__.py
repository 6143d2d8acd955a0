"""The library every ctk tool shares: containerd client, registry client, OCI models and CLI conventions.

Nothing in here prints, exits or imports click, except ``ctk_shared.cli``. Importing the package sets up two
import-time savings for the whole process: stand-ins for stdlib modules a command rarely uses
(``stdlib_standins``, first: before click or dataclasses load), and the compiled dataclass methods
(``dataclass_code``). Each tool's cli module imports this package before click, so both are in place first.
"""

from .dataclass_code import install as _install_dataclass_code
from .stdlib_standins import install as _install_standins

_install_standins()
_install_dataclass_code()
