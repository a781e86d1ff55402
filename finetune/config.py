"""Typed configs: dataclasses loaded from YAML with ``key=value`` overrides (``feedback.config`` holds the loader).

>>> from dataclasses import dataclass
>>> @dataclass
... class C:
...     steps: int = 10
>>> load_config(C, None, ["steps=5"])
C(steps=5)
"""

from feedback.config import config_dict, load_config, read_yaml

__all__ = ["config_dict", "load_config", "read_yaml"]
