"""Statecast's streaming side: the stateful Kafka scorer and everything it stands on.

Import-light on purpose: the scorer's modules are imported where they are used.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
