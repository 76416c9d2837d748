"""Import an encoder file the way ``python file.py`` runs it: with its folder first on ``sys.path``.

So ``from mynet import Net`` beside the file works. Sibling modules are imported fresh for each
file and forgotten afterwards: two encoder files in different folders that both import a
``mynet`` get their own, never the other's stale one.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def script_folder_importable(path: Path, keep: str) -> Iterator[None]:
    """While active, ``path.parent`` is importable; modules newly imported from it (but ``keep``)
    are dropped after. Ones loaded before from there (say the package of a checkout) stay."""
    folder = path.parent.resolve()
    siblings = {p.stem if p.suffix == ".py" else p.name for p in folder.iterdir()
                if p.suffix == ".py" or (p / "__init__.py").is_file()}
    shadowed = {name: module for name, module in sys.modules.items()
                if name.split(".")[0] in siblings and not _inside(module, folder)}
    for name in shadowed:  # a same-named module from elsewhere must not answer for the sibling
        del sys.modules[name]
    before = set(sys.modules)
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(folder))
        for name, module in list(sys.modules.items()):
            if name != keep and name not in before and _inside(module, folder):
                del sys.modules[name]
        for name, module in shadowed.items():
            sys.modules.setdefault(name, module)


def _inside(module: object, folder: Path) -> bool:
    file = getattr(module, "__file__", None)
    if not file:
        return False
    try:
        return Path(file).resolve().is_relative_to(folder)
    except OSError:
        return False
