"""The checkout is an installable package: `pip install -e .` in a fresh venv gives a working `clo` command, and
pyproject.toml declares exactly the pins of requirements.txt (the install list `make install` uses)."""
from __future__ import annotations

import re
import subprocess
import sysconfig
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pins(lines) -> dict[str, str]:
    """{normalised name: requirement} of ``name==version`` lines (comments and blanks skipped)."""
    out = {}
    for line in lines:
        req = line.split("#", 1)[0].strip()
        if req:
            name = re.split(r"[=<>!~\[; ]", req, maxsplit=1)[0]
            out[re.sub(r"[-_.]+", "-", name).lower()] = req
    return out


def test_pyproject_declares_the_pins_of_requirements_txt():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    declared = _pins(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        declared |= _pins(extra)
    pinned = _pins((ROOT / "requirements.txt").read_text("utf-8").splitlines())
    assert all("==" in req for req in pinned.values()), "requirements.txt pins every package"
    assert declared == pinned
    assert _pins(project["dependencies"])["torch"] == "torch==2.13.0"
    assert project["scripts"]["clo"] == "clo.cli.main:main"


def test_an_editable_install_in_a_fresh_venv_gives_a_working_clo(tmp_path):
    """No network: the fresh venv sees this venv's packages (pip, setuptools, torch, …) through a .pth file and
    installs only the checkout itself, without dependencies or build isolation."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False, symlinks=True)
    site = next(env_dir.glob("lib/python*/site-packages"))
    (site / "project-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    python = env_dir / "bin" / "python"
    env = {"PATH": f"{env_dir / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "PIP_NO_INDEX": "1",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "-e",
                        str(ROOT)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    # away from the checkout: clo comes from the install, not from the working directory
    p = subprocess.run([str(env_dir / "bin" / "clo"), "--help"], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.startswith("usage: clo ")
    for command in ("train", "eval", "serve", "bench"):
        assert re.search(rf"^\s+{command}\s", p.stdout, re.M), p.stdout
    p = subprocess.run([str(python), "-c", "import bench.levers, clo.bench.suite, clo; print(clo.__file__)"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert Path(p.stdout.strip()) == ROOT / "clo" / "__init__.py"
