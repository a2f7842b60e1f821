"""Which code a run ran: vmb's version, a digest of its source and canonical configs, and the git commit when
the package is a git checkout.

The source digest is the same for an editable checkout and a wheel install of the same files: the package's
*.py and *.yaml files are named `vmb/<path>` and the canonical configs `configs/<path>`, wherever
vmb.rules.CONFIG_DIR finds them (the repository's configs/ or the installed vmb/configs/).
"""
from __future__ import annotations

import functools
import hashlib
import subprocess
from pathlib import Path

import vmb
from vmb import rules
from vmb.files import sha256_file

PACKAGE_DIR = Path(vmb.__file__).resolve().parent
SOURCE_SUFFIXES = (".py", ".yaml")
_GIT_TIMEOUT_S = 10


def source_files(package_dir: Path = PACKAGE_DIR, config_dir: Path = rules.CONFIG_DIR) -> dict[str, Path]:
    """name -> file for every *.py and *.yaml of the package (`vmb/...`, __pycache__ skipped) and every *.yaml
    of the canonical configs (`configs/...`); a config folder inside the package is counted as configs only."""
    package_dir, config_dir = package_dir.resolve(), config_dir.resolve()
    files = {}
    for path in sorted(package_dir.rglob("*")):
        if (path.suffix in SOURCE_SUFFIXES and path.is_file() and "__pycache__" not in path.parts
                and not path.is_relative_to(config_dir)):
            files[f"vmb/{path.relative_to(package_dir).as_posix()}"] = path
    for path in sorted(config_dir.rglob("*.yaml")):
        if path.is_file():
            files[f"configs/{path.relative_to(config_dir).as_posix()}"] = path
    return files


def tree_digest(files: dict[str, Path]) -> str:
    """`sha256:<hex>` over the sorted (name, sha256 of the file's bytes) pairs."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name} {sha256_file(files[name])[0]}\n".encode())
    return f"sha256:{digest.hexdigest()}"


def _git(folder: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                              timeout=_GIT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):  # no git, or it hangs
        return None
    return proc.stdout if proc.returncode == 0 else None


def git_state(folder: Path, paths: tuple[Path, ...] = ()) -> tuple[str | None, bool | None]:
    """(HEAD commit, whether `paths` have uncommitted changes) when `folder` is the top of a git work tree
    (not merely inside one, as a virtual environment in a checkout is); (None, None) otherwise."""
    top = _git(folder, "rev-parse", "--show-toplevel")
    if top is None or Path(top.strip()).resolve() != folder.resolve():
        return None, None
    commit = _git(folder, "rev-parse", "HEAD")
    status = _git(folder, "status", "--porcelain", "--", *map(str, paths))
    if commit is None or status is None:
        return None, None
    return commit.strip(), bool(status.strip())


@functools.lru_cache(maxsize=None)
def _provenance() -> tuple[str, str | None, bool | None]:
    files = source_files()
    commit, dirty = git_state(PACKAGE_DIR.parent, (PACKAGE_DIR, rules.CONFIG_DIR))
    return tree_digest(files), commit, dirty


def code_provenance() -> dict:
    """{"vmb_version", "source_digest", "git_commit", "git_dirty"} of the running vmb (computed once per
    process); git_dirty covers the package and the canonical configs, the files the digest covers."""
    digest, commit, dirty = _provenance()
    return {"vmb_version": vmb.__version__, "source_digest": digest, "git_commit": commit, "git_dirty": dirty}
