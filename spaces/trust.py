"""Import paths named by a database: built-ins by name, everything else only with the caller's consent.

A study database stores how to rebuild its parts: a workload factory (`"tunelab.trainers.workloads:mnist1d"`),
a strategy class, an Optuna sampler class. Importing and calling a path read from a file someone
handed you is running their code (a trainer factory of `"os:system"` would run a shell command on
`tunelab list`). So every such path goes through `resolve`: tunelab's own built-ins load, and any
other path loads only when its module is inside a package the caller named in `trust`
(`studies.load(..., trust=["mypkg"])`, CLI `--trust mypkg`). Otherwise `UntrustedImportError`
names the path and how to allow it, and nothing is imported.

Trust is given per top-level package or dotted prefix (`"mypkg"` trusts `mypkg` and `mypkg.*`,
`"mypkg.workloads"` only that subtree), never as a wildcard: the caller says which code they
know, the same way `pickle` users are told to load only what they trust.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Collection, Iterable
from typing import Any

from tunelab.spaces.errors import ConfigError, UntrustedImportError

_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_ATTR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Trust = Iterable[str] | str | None


def trusted_prefixes(trust: Trust) -> tuple[str, ...]:
    """Validate `trust` (None, one package name, or several) and return it as a tuple.

    Raises:
        ConfigError: An entry is not a dotted module name (wildcards are refused on purpose).
    """
    if trust is None:
        return ()
    items = [trust] if isinstance(trust, str) else list(trust)
    out = []
    for item in items:
        if not isinstance(item, str) or not _MODULE.match(item):
            raise ConfigError(
                f"trust entries must be package or module names such as 'mypkg' or 'mypkg.workloads', got {item!r}"
                f" (there is no wildcard: name the packages whose code you trust)"
            )
        out.append(item)
    return tuple(out)


def is_trusted(module: str, trust: Trust) -> bool:
    """Whether `module` is one of the trusted packages or inside one."""
    return any(module == p or module.startswith(p + ".") for p in trusted_prefixes(trust))


LEGACY_PACKAGES = ("spaces", "search", "trainers", "studies")  # tunelab's top-level names before 0.4.0


def current_path(path: Any) -> Any:
    """A stored import path as this version names it.

    Studies stored by tunelab 0.3.0 and earlier name tunelab's own code by its old top-level
    packages (`"trainers.workloads:mnist1d"`); since 0.4.0 they live under `tunelab`
    (`"tunelab.trainers.workloads:mnist1d"`). Other paths, and values that are not strings, are
    returned as they are.
    """
    if isinstance(path, str) and path.split(".", 1)[0].split(":", 1)[0] in LEGACY_PACKAGES:
        return f"tunelab.{path}"
    return path


def split_path(path: Any, what: str) -> tuple[str, str]:
    """`"pkg.mod:attr"` -> `("pkg.mod", "attr")`, refusing anything else.

    Raises:
        UntrustedImportError: `path` is not of that form (a database holding it was edited by hand).
    """
    module, sep, attr = str(path).partition(":")
    if not sep or not _MODULE.match(module) or not _ATTR.match(attr):
        raise UntrustedImportError(
            f"the {what} import path {path!r} stored in the database is not of the form 'package.module:name'; "
            f"tunelab refuses it (the database may have been edited)",
            path=str(path),
            what=what,
        )
    return module, attr


def check(path: Any, *, what: str, trust: Trust = None, builtins: Collection[str] = ()) -> tuple[str, str]:
    """Refuse an import path from a database unless it is built in or trusted; import nothing.

    Returns:
        `(module, attribute)` of an allowed path.

    Raises:
        UntrustedImportError: The path is malformed, or neither built in nor trusted.
    """
    path = current_path(path)
    module, attr = split_path(path, what)
    if str(path) not in builtins and not is_trusted(module, trust):
        root = module.split(".")[0]
        raise UntrustedImportError(
            f"the database names the {what} {path!r}, which is not part of tunelab; opening a database never "
            f"imports code you have not trusted. If you trust the package {root!r}, allow it with "
            f"trust=[{root!r}] (CLI: --trust {root}), or pass the object itself instead",
            path=str(path),
            what=what,
        )
    return module, attr


def resolve(path: Any, *, what: str, trust: Trust = None, builtins: Collection[str] = ()) -> Any:
    """Import and return the object an import path from a database names, if the caller allowed it (`check`).

    Args:
        path: `"package.module:name"` as stored.
        what: What it is for, in words ("workload factory", "strategy class", ...), for messages.
        trust: Packages the caller trusts (see the module docstring).
        builtins: Exact paths that are tunelab's own and always allowed.

    Returns:
        The named attribute of the module.

    Raises:
        UntrustedImportError: The path is malformed, or neither built in nor trusted; nothing
            was imported.
        ImportError, AttributeError: A trusted path that does not exist.
    """
    module, attr = check(path, what=what, trust=trust, builtins=builtins)
    return getattr(importlib.import_module(module), attr)


__all__ = ["Trust", "UntrustedImportError", "check", "current_path", "is_trusted", "resolve", "split_path",
           "trusted_prefixes"]
