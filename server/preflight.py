"""Checks made before the rest of Frontdesk is imported, for problems that would otherwise end in a traceback.

Importing this module runs them: ``server/__init__.py`` imports it before any
module that imports ``hl7``, so the ``frontdesk`` command (and anything else
importing ``server``) stops with one line and exit status 1 instead. Only the
standard library is used here, so nothing can fail to import first.

The PyPI package ``hl7`` (python-hl7) installs a top-level package named
``hl7``, like ours. Installed in the same environment it is found first, and
the first ``from hl7.… import …`` fails with an ImportError that says nothing
useful. Frontdesk's own ``hl7`` package always sits beside ``server``, so
anything else found under that name is the intruder.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

OWN_HL7 = Path(__file__).resolve().parent.parent / "hl7"

# Modules python-hl7 has and we do not: also caught when it was unpacked over our own directory.
_FOREIGN_MODULES = ("containers.py", "accessor.py")


def hl7_package_problem() -> str | None:
    """One line saying why the importable ``hl7`` is not ours, with the remedy; ``None`` when it is ours."""
    spec = importlib.util.find_spec("hl7")
    if spec is None or spec.origin is None:
        return f"Frontdesk's hl7 package is missing from {OWN_HL7.parent}; reinstall Frontdesk"
    found = Path(spec.origin).resolve().parent
    if found == OWN_HL7 and not any((found / name).exists() for name in _FOREIGN_MODULES):
        return None
    return (f"the package 'hl7' in {found} (python-hl7, PyPI name 'hl7') hides Frontdesk's own hl7 package; "
            "remove it with 'pip uninstall hl7' or install it in another virtual environment")


def require_own_hl7() -> None:
    """Stop with one line (exit status 1) when the ``hl7`` package that would be imported is not ours."""
    problem = hl7_package_problem()
    if problem is not None:
        raise SystemExit(f"frontdesk: error: {problem}")


require_own_hl7()
