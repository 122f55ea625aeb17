"""Errors edgemm raises. Every one derives from :class:`EdgemmError`.

Catch ``edgemm.errors.EdgemmError`` to handle anything edgemm reports on purpose; the subclasses
say what kind of thing went wrong (a pack, a backend, a source, a compile stage).
"""

from edgemm.runtime.errors import *  # noqa: F403 - this module is the public name of the runtime's errors
from edgemm.runtime.errors import __all__ as __all__
