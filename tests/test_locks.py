"""The two locks: requirements.lock for `make run`, requirements-dev.lock for `make test`.

`make test` installs the dev lock on top of a venv that `make run` set up. If the two pinned a
runtime package differently, that would silently swap the version the tests run against (and
`make run` afterwards would not swap it back: its stamp is newer). So every runtime pin must be in
the dev lock as it is, and every dependency pyproject.toml names must be pinned, within its range,
in the lock that installs it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]

# The dev tools that made a runtime venv weigh 447 MB before the split; none is needed to run.
DEV_ONLY = {"playwright", "mypy", "ruff", "schemathesis", "pytest", "hypothesis"}


def pins(lock: str) -> set[tuple[str, str, str]]:
    """(name, version, marker) of each pin in a lock made by `make lock` (uv pip compile)."""
    found = set()
    for line in (ROOT / lock).read_text().splitlines():
        if not line.strip() or line.startswith(("#", " ")):
            continue
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1, f"{lock}: {line!r} is not one exact pin"
        assert specifiers[0].operator == "==", f"{lock}: {line!r} is not one exact pin"
        marker = str(requirement.marker) if requirement.marker else ""
        found.add((canonicalize_name(requirement.name), specifiers[0].version, marker))
    return found


def versions(lock_pins: set[tuple[str, str, str]]) -> dict[str, set[str]]:
    by_name: dict[str, set[str]] = {}
    for name, version, _ in lock_pins:
        by_name.setdefault(name, set()).add(version)
    return by_name


def pyproject() -> dict[str, list[str]]:
    """pyproject.toml's requirements by the lock that must pin them."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {
        "requirements.lock": data["project"]["dependencies"]
        + data["dependency-groups"]["build"]
        + data["build-system"]["requires"],
        "requirements-dev.lock": data["project"]["optional-dependencies"]["dev"],
    }


def test_every_runtime_pin_is_in_the_dev_lock_as_it_is() -> None:
    runtime, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    assert runtime, "requirements.lock pins nothing"
    assert runtime - dev == set(), "pinned otherwise (or not at all) in requirements-dev.lock"
    # Nor does the dev lock add a second version of a runtime package under some other marker.
    dev_versions = versions(dev)
    for name, runtime_versions in versions(runtime).items():
        assert dev_versions[name] == runtime_versions, name


def test_every_dependency_in_pyproject_is_pinned_within_its_range() -> None:
    for lock, requirements in pyproject().items():
        pinned = versions(pins(lock))
        for line in requirements:
            requirement = Requirement(line)
            name = canonicalize_name(requirement.name)
            assert name in pinned, f"{line!r} is not pinned in {lock}"
            for version in pinned[name]:
                assert requirement.specifier.contains(version, prereleases=True), (
                    f"{lock} pins {name}=={version}, outside {line!r}: run `make lock`"
                )


def test_the_runtime_lock_leaves_the_dev_tools_out() -> None:
    runtime = versions(pins("requirements.lock"))
    assert DEV_ONLY & runtime.keys() == set()
    assert DEV_ONLY - versions(pins("requirements-dev.lock")).keys() == set()
