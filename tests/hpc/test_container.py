"""The Apptainer definition and the Dockerfile: parsed with spython, checked to agree.

Apptainer itself is not installable on the test machine, so the image is not built here
(``FLYTOMO_BUILD_CONTAINER=1`` with ``apptainer`` on PATH builds it and runs its %test).
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import tomllib

spython = pytest.importorskip("spython", reason="spython (extra 'container') not installed")
from spython.main.parse.parsers import DockerParser, SingularityParser

REPO = Path(__file__).resolve().parents[2]
DEF = REPO / "containers" / "flytomo.def"
DOCKERFILE = REPO / "containers" / "Dockerfile"
PIP_INSTALL = re.compile(r"python -m pip install [^&\n]*?\"?/opt/flytomo/src\[([a-z,]+)\]\"?")


def _recipe(parser, path):
    recipes = parser(str(path), load=True).recipe
    assert len(recipes) == 1, f"{path}: one stage expected, got {list(recipes)}"
    return next(iter(recipes.values()))


@pytest.fixture(scope="module")
def apptainer_recipe():
    return _recipe(SingularityParser, DEF)


@pytest.fixture(scope="module")
def docker_recipe():
    return _recipe(DockerParser, DOCKERFILE)


@pytest.fixture(scope="module")
def pyproject():
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _section(text: str, name: str) -> list[str]:
    """Lines of one ``%name`` section of a definition file, stripped, comments dropped."""
    out, inside = [], False
    for line in text.splitlines():
        if line.startswith("%"):
            inside = line.split()[0] == f"%{name}"
            continue
        if inside and line.strip() and not line.strip().startswith("#"):
            out.append(line.strip())
    return out


def _docker_labels(recipe) -> dict[str, str]:
    labels = {}
    for item in recipe.labels:
        text = " ".join(item) if isinstance(item, list) else item
        text = text.rstrip("\\ ").strip()
        key, _, value = text.partition("=")
        labels[key.strip()] = value.strip().strip('"')
    return labels


def _apptainer_labels(recipe) -> dict[str, str]:
    return dict(line.split(None, 1) for line in recipe.labels)


def _pip_extras(lines) -> list[set[str]]:
    text = "\n".join(lines)
    return [set(m.group(1).split(",")) for m in PIP_INSTALL.finditer(text)]


def test_base_image_is_cuda_pytorch(apptainer_recipe, docker_recipe):
    base = apptainer_recipe.fromHeader
    assert re.fullmatch(r"pytorch/pytorch:[\d.]+-cuda[\d.]+-cudnn\d+-(runtime|devel)", base), base
    assert "Bootstrap: docker" in DEF.read_text()
    assert docker_recipe.fromHeader == base


def test_installs_flytomo_with_extras(apptainer_recipe, docker_recipe, pyproject):
    extras = _pip_extras(apptainer_recipe.install)
    assert len(extras) == 1, apptainer_recipe.install
    assert {"mpi", "dask"} <= extras[0]
    assert extras[0] <= set(pyproject["project"]["optional-dependencies"])
    assert _pip_extras(docker_recipe.install) == extras  # the Dockerfile installs the same
    # the mpi extra brings the PMI2-capable MPICH the jobs rely on
    mpi = " ".join(pyproject["project"]["optional-dependencies"]["mpi"])
    assert "mpi4py" in mpi and "mpich" in mpi


def test_copies_the_same_sources(apptainer_recipe, docker_recipe):
    apptainer_src = {f.split()[0] for f in apptainer_recipe.files}
    docker_src = {f[0] for f in docker_recipe.files}
    assert {"pyproject.toml", "recon", "analysis", "hpc"} <= apptainer_src
    assert apptainer_src == docker_src
    for src in apptainer_src - {"README.md"}:  # README.md is the lead's; pyproject names it
        assert (REPO / src).exists(), src


def test_runscript_runs_flytomo(apptainer_recipe, docker_recipe):
    assert apptainer_recipe.cmd.strip() == 'exec flytomo "$@"'
    assert docker_recipe.entrypoint == ["flytomo"]


def test_test_section_runs_version_and_a_tiny_reconstruction(apptainer_recipe):
    assert apptainer_recipe.test  # spython turns %test into /tests.sh
    lines = _section(DEF.read_text(), "test")
    commands = [shlex.split(line) for line in lines if line.startswith("flytomo ")]
    words = [c[1] for c in commands]
    assert words[0] == "--version"
    assert "simulate" in words and "recon" in words
    assert words.index("simulate") < words.index("recon")
    # the Dockerfile runs the same smoke test at build time
    docker_text = DOCKERFILE.read_text()
    for line in lines:
        if line.startswith("flytomo "):
            assert line in docker_text, line


def test_test_section_commands_parse_with_this_cli():
    """The %test commands use options the CLI has (when the commands exist)."""
    from hpc.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for line in _section(DEF.read_text(), "test"):
        if not line.startswith("flytomo ") or line == "flytomo --version":
            continue
        argv = shlex.split(line.replace("$d", "/tmp/x"))[1:]
        if argv[0] not in sub.choices:
            pytest.skip(f"flytomo {argv[0]} is not written yet")
        parser.parse_args(argv)  # SystemExit on an unknown option fails the test


def test_test_section_runs_here(tmp_path):
    """The %test script itself, run by bash with this checkout's flytomo on PATH."""
    import sys

    script = "\n".join(_section(DEF.read_text(), "test"))
    env = dict(os.environ, PATH=f"{Path(os.path.abspath(sys.executable)).parent}:{os.environ['PATH']}",
               TMPDIR=str(tmp_path))
    p = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env,
                       check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "flytomo container test: ok" in p.stdout


def test_labels_carry_the_version(apptainer_recipe, docker_recipe, pyproject):
    import recon

    assert pyproject["project"]["dynamic"] == ["version"]  # the package's version is recon.__version__
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "recon.__version__"}
    version = recon.__version__
    a = _apptainer_labels(apptainer_recipe)
    d = _docker_labels(docker_recipe)
    assert a["org.opencontainers.image.version"] == version
    assert a["flytomo.version"] == version
    assert a == d


def test_no_slurm_or_munge_needed_inside():
    """PMI2 from the host's srun: the image carries no Slurm and no munge."""
    text = DEF.read_text() + DOCKERFILE.read_text()
    post = "\n".join(_section(DEF.read_text(), "post"))
    assert "slurm" not in post.lower() and "munge" not in post.lower()
    assert "--mpi=pmi2" in text


@pytest.mark.skipif(not (os.environ.get("FLYTOMO_BUILD_CONTAINER") and shutil.which("apptainer")),
                    reason="building needs apptainer (not installable here) and "
                           "FLYTOMO_BUILD_CONTAINER=1")
def test_build_and_self_test(tmp_path):  # pragma: no cover - facility machines only
    image = tmp_path / "flytomo.sif"
    subprocess.run(["apptainer", "build", "--fakeroot", str(image), str(DEF)], cwd=REPO, check=True)
    subprocess.run(["apptainer", "test", str(image)], check=True)
