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
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=os.environ, timeout=300, **kw
    )


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
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist")],
        capture_output=True,
        text=True,
        timeout=300,
    )
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
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True
    ).stdout.strip()
    Path(site, "zz_mulap_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
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
    embed = run(
        str(venv / "bin" / "mulap"), "embed", "supervised_mtt", *map(str, files), "-o", "emb.npz", "training.num_workers=0"
    )
    assert embed.returncode == 0, embed.stderr
    tag = run(str(py), "-m", "mulap", "tag", str(files[0]), "--top", "2", "-o", "tags.csv")
    assert tag.returncode == 0, tag.stderr
    assert len((run_dir / "tags.csv").read_text().splitlines()) == 3

    api = run(
        str(py),
        "-c",
        textwrap.dedent(f"""
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
    """),
    )
    assert api.returncode == 0, api.stderr
    got = json.loads(api.stdout.strip().splitlines()[-1])
    assert Path(got["file"]).is_relative_to(venv)  # the installed copy, not the source tree
    # no path into the source tree (its .venv's site-packages, seen through the .pth, holds dependencies only)
    assert not [
        p
        for p in got["sys_path"]
        if p and Path(p).resolve().is_relative_to(ROOT) and not Path(p).resolve().is_relative_to(ROOT / ".venv")
    ]
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


# -- dependencies: ranges in pyproject, the tested versions in constraints.txt, optional extras ----------------

EXTRAS_INSTALLED_BY_INSTALL_SH = ("demo", "shards", "parquet", "m4a", "test")


def _project() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _pins() -> dict[str, str]:
    from packaging.utils import canonicalize_name

    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = version
    return pins


def test_pyproject_declares_ranges_and_constraints_pin_the_tested_versions():
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project, pins = _project(), _pins()
    core = [Requirement(r) for r in project["dependencies"]]
    extras = {k: [Requirement(r) for r in v] for k, v in project["optional-dependencies"].items()}
    assert set(extras) == set(EXTRAS_INSTALLED_BY_INSTALL_SH)
    for req in core + [r for reqs in extras.values() for r in reqs]:
        ops = {s.operator for s in req.specifier}
        assert ">=" in ops and "==" not in ops, f"{req}: a range with a lower bound, not a pin"
        assert "<" in ops or req.name == "fsspec", f"{req}: no upper bound (fsspec's versions are dates)"
        name = canonicalize_name(req.name)
        if name == "torch":  # installed first by install.sh (a CPU build), not through the constraints
            assert name not in pins and req.specifier.contains("2.13.0")
            continue
        assert name in pins, f"{req.name} has no tested version in constraints.txt"
        assert req.specifier.contains(pins[name]), f"constraints.txt pins {req.name}=={pins[name]}, outside {req}"
    assert "mulap" not in pins
    # the core is what embed, tag, search, the API, pre-training and transfer need: no renderer, shard or parquet
    core_names = {canonicalize_name(r.name) for r in core}
    assert not core_names & {"music21", "pretty-midi", "tinysoundfont", "webdataset", "pyarrow", "av", "pytest"}
    install = (ROOT / "install.sh").read_text()
    assert f'-c constraints.txt -e ".[{",".join(EXTRAS_INSTALLED_BY_INSTALL_SH)}]"' in install


def test_extras_module_lists_match_pyproject_and_install_sh():
    """Every module `require` may be asked for is brought by the extra it names (or installed by install.sh)."""
    from importlib.metadata import packages_distributions

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from mulap.infra.extras import EXTRAS, SEPARATE_INSTALL

    declared = {k: {canonicalize_name(Requirement(r).name) for r in v} for k, v in _project()["optional-dependencies"].items()}
    dists = packages_distributions()
    install = (ROOT / "install.sh").read_text()
    for extra, modules in EXTRAS.items():
        for module in modules:
            if module in SEPARATE_INSTALL:
                pin = SEPARATE_INSTALL[module].split()[-1]  # e.g. tinysoundfont==0.3.7
                assert any("--no-deps" in line and pin in line.split() for line in install.splitlines()), pin
                assert f"{module}=={_pins()[module]}" == pin  # the tested version, recorded once more
            else:
                assert {canonicalize_name(d) for d in dists[module]} & declared[extra], (extra, module)


def _absent(monkeypatch, *modules: str) -> None:
    """Simulate a package that is not installed: `import name` (and its submodules) raise ModuleNotFoundError."""
    for name in modules:
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            monkeypatch.delitem(sys.modules, loaded)
        monkeypatch.setitem(sys.modules, name, None)


def test_require_returns_the_module_or_one_line_naming_the_extra(monkeypatch):
    import pickle

    import pyarrow.parquet

    from mulap.infra.extras import MissingExtra, require

    assert require("parquet", "pyarrow.parquet") is pyarrow.parquet
    _absent(monkeypatch, "music21", "webdataset", "tinysoundfont")
    with pytest.raises(MissingExtra) as err:
        require("demo", "music21")
    assert str(err.value) == "mulap needs the demo extra (music21 is not installed): pip install 'mulap[demo]'"
    assert isinstance(err.value, ImportError) and err.value.name == "music21"
    again = pickle.loads(pickle.dumps(err.value))  # raised in a worker process, it arrives whole
    assert (again.extra, again.module, str(again)) == ("demo", "music21", str(err.value))
    with pytest.raises(MissingExtra) as err:  # a submodule of a missing package names the package
        require("shards", "webdataset.writer", "to write shards")
    assert err.value.line("mulap data shard") == (
        "mulap data shard needs the shards extra to write shards (webdataset is not installed): pip install 'mulap[shards]'"
    )
    with pytest.raises(MissingExtra) as err:  # the extra cannot install it: its own pip line too
        require("demo", "tinysoundfont")
    assert str(err.value).endswith("pip install 'mulap[demo]' and pip install --no-deps tinysoundfont==0.3.7")
    with pytest.raises(ValueError, match="not a module of the 'demo' extra"):
        require("demo", "pyarrow")


def test_require_keeps_an_import_error_from_inside_an_installed_package(monkeypatch):
    """A dependency missing under an installed package is its own error, not 'install the extra'."""
    import importlib

    from mulap.infra.extras import MissingExtra, require

    def broken(name, package=None):
        raise ModuleNotFoundError("No module named 'mido'", name="mido")

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(ModuleNotFoundError) as err:
        require("demo", "pretty_midi")
    assert not isinstance(err.value, MissingExtra) and err.value.name == "mido"


@pytest.mark.parametrize(
    "argv, absent, line",
    [
        (
            ["data", "demo", "--size", "small", "--out", "{tmp}/world"],
            "music21",
            "mulap data demo needs the demo extra (music21 is not installed): pip install 'mulap[demo]'",
        ),
        (
            ["demo", "--size", "small", "--out", "{tmp}/demo_out"],
            "pretty_midi",
            "mulap demo needs the demo extra (pretty_midi is not installed): pip install 'mulap[demo]'",
        ),
        (
            ["data", "nsynth-soundfont", "{tmp}/x.sf2", "--out", "{tmp}/nsynth"],
            "tinysoundfont",
            "mulap data nsynth-soundfont needs the demo extra (tinysoundfont is not installed): pip install 'mulap[demo]' "
            "and pip install --no-deps tinysoundfont==0.3.7",
        ),
        (
            ["data", "shard", "{tmp}/corpus", "{tmp}/shards"],
            "webdataset",
            "mulap data shard needs the shards extra to write shards (webdataset is not installed): pip install 'mulap[shards]'",
        ),
        (
            ["embed", "random", "{tmp}/a.wav", "-o", "{tmp}/e.parquet"],
            "pyarrow",
            "mulap embed needs the parquet extra to write .parquet (pyarrow is not installed): pip install 'mulap[parquet]'",
        ),
        # a bare `mulap pretrain` builds its example corpus with the demo world
        (
            ["pretrain", "training.epochs=1"],
            "music21",
            "mulap pretrain needs the demo extra to build the default example corpus (music21 is not installed): "
            "pip install 'mulap[demo]'",
        ),
    ],
)
def test_a_missing_extra_is_one_line_before_any_work(argv, absent, line, tmp_path, monkeypatch, capsys):
    import soundfile as sf

    from mulap.cli import main

    sf.write(tmp_path / "a.wav", np.zeros(16000, np.float32), 16000)
    monkeypatch.delenv("MULAP_DEBUG", raising=False)
    monkeypatch.setenv("MULAP_ROOT", str(tmp_path / "root"))  # pretrain: the default corpus folder, empty, in here
    _absent(monkeypatch, absent)
    before = sorted(tmp_path.rglob("*"))
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == line and "Traceback" not in err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, nothing built


def test_reading_shards_without_webdataset_says_the_extra(tmp_path, monkeypatch):
    from mulap.data.shards import ShardDataset
    from mulap.infra.extras import MissingExtra

    _absent(monkeypatch, "webdataset")
    with pytest.raises(MissingExtra, match=r"to read shards \(webdataset is not installed\): pip install 'mulap\[shards\]'"):
        ShardDataset(tmp_path, "train", batch_size=2)


# -- the wheel without the extras ---------------------------------------------------------------------------

# the packages of the optional extras (demo, shards, parquet, m4a) and the demo's synthesizer
EXTRA_PACKAGES = ("music21", "pretty_midi", "tinysoundfont", "webdataset", "pyarrow", "av")


def _core_view(tmp: Path) -> Path:
    """This interpreter's site-packages as a folder of links, less mulap (its editable install) and the packages of
    the optional extras: what `pip install mulap` (no extra) gives, without downloading it again."""
    view = tmp / "core-site-packages"
    view.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        top = entry.name.split(".")[0].split("-")[0].lower()
        if (
            top in EXTRA_PACKAGES
            or top in ("mulap", "__editable__")
            or entry.name.startswith("__editable__")
            or entry.suffix == ".pth"
        ):
            continue
        (view / entry.name).symlink_to(entry)
    return view


def _venv_with_wheel(tmp: Path, deps: str) -> Path:
    """A fresh venv with the wheel installed without any extra; returns its bin folder.
    deps "view": the dependencies seen through _core_view (seconds). deps "pip": installed by pip as a user would,
    torch==2.13.0 first (CPU), musicnn --no-deps (the taggers' weights), then the wheel with -c constraints.txt."""
    wheel = _build_wheel(tmp)
    venv = tmp / "venv"
    py = venv / "bin" / "python"

    def pip(*args: str) -> None:
        out = subprocess.run([str(py), "-m", "pip", "install", "-q", *args], capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stderr[-3000:]

    if deps == "view":
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
        site = subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        Path(site, "zz_mulap_deps.pth").write_text(f"{_core_view(tmp)}\n")
        out = subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        pip("torch==2.13.0")
        pip("--no-deps", "musicnn==0.1.0")
        pip("-c", str(ROOT / "constraints.txt"), str(wheel))
    return venv / "bin"


@pytest.mark.slow
@pytest.mark.parametrize("deps", ["view", "pip"])
def test_wheel_without_the_extras_runs_embed_tag_search_and_the_api(tmp_path, deps):
    """`pip install mulap` with no extra: embed, tag, search --like and mulap.load run; music21 & co. are absent
    and the commands that need them say which extra. deps "pip" installs every dependency from the package index
    (about 4 minutes): opt-in with MULAP_WHEEL_PIP=1."""
    if deps == "pip" and not os.environ.get("MULAP_WHEEL_PIP"):
        pytest.skip("installs the wheel's dependencies with pip (about 4 minutes); set MULAP_WHEEL_PIP=1 to run it")
    import soundfile as sf

    bin_dir = _venv_with_wheel(tmp_path, deps)
    work = tmp_path / "elsewhere"
    music = work / "music"
    music.mkdir(parents=True)
    t = np.arange(16000 * 7) / 16000
    sf.write(music / "a.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    sf.write(music / "b.wav", (0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 2 * t)).astype(np.float32), 16000)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MULAP_ROOT", "MULAP_DEBUG")}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), cwd=work, env=env, capture_output=True, text=True, timeout=600)

    mulap_cli, py = str(bin_dir / "mulap"), str(bin_dir / "python")
    absent = run(py, "-c", f"import importlib.util as u; print([m for m in {EXTRA_PACKAGES!r} if u.find_spec(m)])")
    assert absent.returncode == 0 and absent.stdout.strip() == "[]", absent.stdout + absent.stderr
    music21 = run(py, "-c", "import music21")
    assert music21.returncode != 0 and "No module named 'music21'" in music21.stderr

    embed = run(mulap_cli, "embed", "random", "music/a.wav", "-o", "e.npz", "training.num_workers=0")
    assert embed.returncode == 0, embed.stderr
    tag = run(mulap_cli, "tag", "music/a.wav", "--top", "2", "-o", "tags.csv")
    assert tag.returncode == 0, tag.stderr
    assert len((work / "tags.csv").read_text().splitlines()) == 3
    search = run(mulap_cli, "search", "random", "music", "--like", "music/a.wav", "--json", "training.num_workers=0")
    assert search.returncode == 0, search.stderr
    assert [Path(h["file"]).name for h in json.loads(search.stdout)] == ["b.wav"]  # the query file is not a result
    api = run(
        py,
        "-c",
        textwrap.dedent("""
        import json, sys
        import numpy as np, soundfile as sf
        import mulap
        model = mulap.load("random", device="cpu", seed=42)  # the config's env.seed, as `mulap embed` loads it
        wave, rate = sf.read("music/a.wav", dtype="float32")
        emb = model.embed(wave, rate)
        print(json.dumps({"file": mulap.__file__, "shape": list(emb.shape),
                          "vs_cli": float(np.abs(emb - np.load("e.npz")["track_embeddings"]).max()),
                          "demo_loaded": [m for m in ("music21", "pretty_midi") if m in sys.modules]}))
    """),
    )
    assert api.returncode == 0, api.stderr
    got = json.loads(api.stdout.strip().splitlines()[-1])
    assert Path(got["file"]).is_relative_to(bin_dir.parent) and got["shape"][0] == 1
    assert got["vs_cli"] < 1e-5 and got["demo_loaded"] == []

    # what needs an extra says which, in one line
    demo = run(mulap_cli, "data", "demo", "--size", "small", "--out", "world")
    assert (
        demo.returncode == 2
        and demo.stderr.strip() == "mulap data demo needs the demo extra (music21 is not installed): pip install 'mulap[demo]'"
    )
    parquet = run(mulap_cli, "embed", "random", "music/a.wav", "-o", "e.parquet")
    assert parquet.returncode == 2 and parquet.stderr.strip().endswith("pip install 'mulap[parquet]'")
    assert not (work / "world").exists() and not (work / "e.parquet").exists()
