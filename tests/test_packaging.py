"""Packaging: one version, a light `import mulap`, configs in the package, and the wheel working from
a fresh venv that cannot see the source tree (`mulap embed`, `mulap tag` and the Python API there)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

import mulap
from mulap.infra.config import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=os.environ,
                          timeout=300, **kw)


def test_version_has_one_source():
    out = subprocess.run([sys.executable, "-m", "mulap", "--version"], capture_output=True, text=True, env=os.environ)
    assert out.returncode == 0 and out.stdout.strip() == f"mulap {mulap.__version__}"
    text = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in text and 'version = { attr = "mulap.__version__" }' in text
    assert "\nversion =" not in text.split("[tool.setuptools.dynamic]")[0]  # no second, literal version


def test_import_mulap_is_light_and_names_load_lazily():
    out = _python("""
        import sys, mulap
        heavy = [m for m in ("torch", "lightning", "transformers", "sklearn", "matplotlib", "omegaconf") if m in sys.modules]
        print("heavy:", heavy)
        print("version:", mulap.__version__)
        assert callable(mulap.load) and "torch" in sys.modules       # first use of mulap.load brings torch
        assert mulap.hear.load_model and "mulap.inference.hear" in sys.modules  # submodules without importing them
        try:
            mulap.no_such_thing
        except AttributeError as exc:
            print("error:", exc)
    """)
    assert out.returncode == 0, out.stderr
    assert "heavy: []" in out.stdout
    assert "error: module 'mulap' has no attribute 'no_such_thing'" in out.stdout
    assert {"load", "Model", "__version__"} <= set(dir(mulap))


def test_configs_are_package_data():
    assert CONFIG_DIR == Path(mulap.__file__).resolve().parent / "configs"
    assert (ROOT / "configs").resolve() == CONFIG_DIR  # the seed's ./configs still reads
    # every YAML must match a package-data pattern of pyproject (configs/*.yaml, configs/*/*.yaml)
    deep = [p for p in CONFIG_DIR.rglob("*.yaml") if len(p.relative_to(CONFIG_DIR).parts) > 2]
    assert not deep, deep


def _build_wheel(tmp: Path) -> Path:
    """The wheel of the tracked package files, built from a copy (the tree gets no build/ or egg-info)."""
    src = tmp / "src"
    src.mkdir()
    for rel in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / rel, src / rel)
    shutil.copytree(ROOT / "mulap", src / "mulap", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp / "dist")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (wheel,) = (tmp / "dist").glob("mulap-*.whl")
    return wheel


@pytest.mark.slow
def test_wheel_installs_and_works_outside_the_tree(tmp_path, demo_world):
    wheel = _build_wheel(tmp_path)
    assert wheel.name == f"mulap-{mulap.__version__}-py3-none-any.whl"
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n for n in names if n.startswith("mulap/configs/")}
    assert shipped == {f"mulap/configs/{p.relative_to(CONFIG_DIR)}" for p in CONFIG_DIR.rglob("*.yaml")}
    assert not [n for n in names if n.startswith(("tests/", "tools/", "benchmarks/"))]

    # a fresh venv; the dependencies (torch, ...) come from this interpreter's site-packages via a .pth file
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True,
                          text=True, check=True).stdout.strip()
    Path(site, "zz_mulap_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr

    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MULAP_ROOT")}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), cwd=run_dir, env=env, capture_output=True, text=True, timeout=600)

    version = run(str(venv / "bin" / "mulap"), "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"mulap {mulap.__version__}", version.stderr

    audio = demo_world / "raw" / "nsynth" / "nsynth-test" / "audio"
    files = sorted(audio.glob("*.wav"))[:3]
    embed = run(str(venv / "bin" / "mulap"), "embed", "supervised_mtt", *map(str, files), "-o", "emb.npz",
                "training.num_workers=0")
    assert embed.returncode == 0, embed.stderr
    tag = run(str(py), "-m", "mulap", "tag", str(files[0]), "--top", "2", "-o", "tags.csv")
    assert tag.returncode == 0, tag.stderr
    assert len((run_dir / "tags.csv").read_text().splitlines()) == 3

    api = run(str(py), "-c", textwrap.dedent(f"""
        import json, sys
        import numpy as np, soundfile as sf
        import mulap
        from mulap.infra.config import load_config
        from mulap.infra.paths import project_root
        model = mulap.load("supervised_mtt", device="cpu")
        files = {[str(f) for f in files]!r}
        wave, rate = sf.read(files[0], dtype="float32")
        emb = model.embed(wave, rate)
        on_disk = np.load("emb.npz")
        cfg = load_config(None, [])
        print(json.dumps({{"file": mulap.__file__, "sys_path": sys.path, "project_root": str(project_root()),
                          "save_dir": cfg.env.save_dir, "shape": list(emb.shape),
                          "embed_vs_cli": float(np.abs(model.embed_files(files) - on_disk["track_embeddings"]).max()),
                          "array_matches_file": bool(np.allclose(emb[0], on_disk["track_embeddings"][0], rtol=1e-5, atol=1e-5))}}))
    """))
    assert api.returncode == 0, api.stderr
    got = json.loads(api.stdout.strip().splitlines()[-1])
    assert Path(got["file"]).is_relative_to(venv)  # the installed copy, not the source tree
    # no path into the source tree (its .venv's site-packages, seen through the .pth, holds dependencies only)
    assert not [p for p in got["sys_path"] if p and Path(p).resolve().is_relative_to(ROOT)
                and not Path(p).resolve().is_relative_to(ROOT / ".venv")]
    assert got["project_root"] == "None" and got["save_dir"] == str(run_dir / "save")  # wheel: defaults from the cwd
    assert got["shape"] == [1, 1506]
    assert got["embed_vs_cli"] < 1e-5 and got["array_matches_file"]


def test_supervised_weights_without_the_musicnn_package_say_the_install_line(tmp_path, monkeypatch, capsys):
    """The supervised weights are read from musicnn==0.1.0 (installed with --no-deps); without it, one clear line."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "musicnn" else real(name, *a))
    wav = tmp_path / "a.wav"
    import soundfile as sf

    sf.write(wav, np.zeros(16000, np.float32), 16000)
    from mulap.cli import main

    assert main(["tag", str(wav)]) == 2
    err = capsys.readouterr().err
    assert "pip install --no-deps musicnn==0.1.0" in err and "Traceback" not in err
