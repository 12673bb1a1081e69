"""`mulap demo`: build the demo world, prepare the five tasks, pre-train, probe every backbone,
evaluate, and report - offline, resumable stage by stage.

    <out>/world/                       the demo world (audiocaption corpus + publisher layouts)
    <out>/world_render.json            what rendering the world through each soundfont cost
    <out>/data/datasets/<name>/        prepared downstream datasets
    <out>/save/experiments/<id>/       pre-training runs and their downstream/ probe runs
    <out>/model/                       the pre-trained MuLaP, exported (`mulap export`): the user's first model
    <out>/stages.json                  finished stages and their seconds (a re-run skips them)
    <out>/results.json, report.md, plots/*.png   (mulap.demo.report; its prose in report.md.j2)
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from omegaconf import OmegaConf

from mulap.data.tasks import get_task
from mulap.demo.report import MODEL_DIR, PRETRAIN_ID, probe_id, variant_seeds, write_report
from mulap.infra.config import CONFIG_DIR, ConfigError, load_config
from mulap.infra.experiment import experiment_dir
from mulap.infra.extras import require_all
from mulap.infra.files import write_json

log = logging.getLogger(__name__)
SHUFFLED_ID = "shuffled"  # the shuffled-captions control of "What language taught"


def demo_settings(size: str):
    path = CONFIG_DIR / "demo" / f"{size}.yaml"
    if not path.is_file():
        raise ConfigError(f"no demo settings {path}")
    return OmegaConf.load(path)


class Stages:
    """Which stages are done (with their seconds), kept in <out>/stages.json."""

    def __init__(self, out: Path):
        self.path = out / "stages.json"
        self.done = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def run(self, name: str, fn, *args, done_when=None, **kwargs):
        """Run `fn` unless `name` finished before (and, with `done_when`, its outputs are all there:
        adding probe seeds to a finished stage re-opens it)."""
        if name in self.done and (done_when is None or done_when()):
            print(f"[demo] stage {name}: done before ({self.done[name]:.0f} s), reused")
            return None
        print(f"[demo] stage {name} ...", flush=True)
        t = time.time()
        result = fn(*args, **kwargs)
        self.done[name] = round(time.time() - t, 1)
        write_json(self.path, self.done)
        print(f"[demo] stage {name}: {self.done[name]:.0f} s", flush=True)
        return result


def run_demo(out: str | Path = "demo_out", size: str = "default", overrides=(), settings=None) -> dict:
    require_all("demo")  # the world, and the zero-shot test set rendered through another soundfont
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    s = settings or demo_settings(size)
    stages = Stages(out)
    t_all = time.time()
    world = out / "world"
    data_root, save_dir = out / "data", out / "save"
    env = [f"env.data_root={data_root}", f"env.save_dir={save_dir}"]

    stages.run("world", _build_world, out, world, s.world.size, int(s.world.seed))
    stages.run("prepare", _prepare_all, world, data_root, list(s.tasks))
    variants = {PRETRAIN_ID: list(s.pretrain), **{k: list(s.pretrain) + list(v) for k, v in (s.variants or {}).items()}}
    lang = s.get("language") or {}
    controls = {SHUFFLED_ID: list(s.pretrain) + list(lang.get("shuffled") or [])} if lang.get("shuffled") else {}
    for name, over in {**variants, **controls}.items():
        cfg = load_config(None, [*over, *env, f"dataset_config.data_dir={world / 'audiocaption'}", *overrides])
        stages.run(f"pretrain:{name}", _pretrain, cfg, name)
        if name == PRETRAIN_ID:
            stages.run("export", _export, save_dir, out / MODEL_DIR, done_when=lambda: _exported(out / MODEL_DIR))
    for name in variants:
        inits = list(s.inits) if name == PRETRAIN_ID else ["mulap"]
        seeds = list(s.probe_seeds) if name == PRETRAIN_ID else variant_seeds(s)
        for init in inits:
            args = (name, init, list(s.tasks), seeds, [*env, *s.downstream])
            stages.run(f"probes:{name}:{init}", _probe_all, *args, done_when=lambda a=args: not _missing_probes(*a))
    if lang:
        stages.run("language", _language, out, s, world, data_root, save_dir, overrides)
    t = time.time()  # the report is always rewritten (cheap), so added variants show up
    results = write_report(out, s, variants)
    results["stages"] = {**stages.done, "report": round(time.time() - t, 1)}
    write_json(out / "results.json", results)
    print(f"[demo] done in {time.time() - t_all:.0f} s: {out / 'report.md'}")
    return results


def _build_world(out: Path, world: Path, size: str, seed: int) -> None:
    """The demo world, and what rendering it through each soundfont cost (<out>/world_render.json; kept out
    of the world folder, whose files are byte-identical for a seed)."""
    from mulap.demo.world import build_demo

    summary = build_demo(world, size=size, seed=seed)
    write_json(
        out / "world_render.json",
        {"build_seconds": round(summary.build_seconds, 1), "hours": summary.hours, "sources": summary.render_costs},
    )


def _export(save_dir: Path, folder: Path) -> None:
    """The pre-trained MuLaP as a portable model folder (what `mulap export mulap <folder>` writes)."""
    from mulap.inference.loading import export_model, load_experiment

    export_model(load_experiment(experiment_dir(save_dir, PRETRAIN_ID)), folder, overwrite=True)
    print(f"[demo] exported the pre-trained MuLaP to {folder}")


def _exported(folder: Path) -> bool:
    from mulap.inference.loading import is_export

    return is_export(folder)


def _prepare_all(world: Path, data_root: Path, tasks: list[str]) -> None:
    from mulap.data.prepare import prepare

    for task in tasks:
        spec = get_task(task)
        report = prepare(task, world / "raw" / spec.raw_name, data_root / "datasets" / spec.dataset)
        print(report.summary())


def _language(out: Path, s, world: Path, data_root: Path, save_dir: Path, overrides) -> None:
    """Retrieval and zero-shot of mulap / shuffled captions / untrained (mulap.demo.language)."""
    from mulap.data.prepare import load_prepared, prepare
    from mulap.demo.language import run_language

    lang = s.language
    cfg = load_config(None, [f"env.save_dir={save_dir}", *overrides])
    datasets = {t: load_prepared(data_root / "datasets" / get_task(t).dataset) for t in s.tasks}
    other = None
    sf2 = lang.get("other_soundfont")
    if sf2 and Path(sf2).is_file():
        from mulap.demo.world.nsynth import build_nsynth_with_soundfont

        raw, prepared = out / "world_other_soundfont", data_root / "datasets" / "nsynth_other_soundfont"
        if not (prepared / "dataset.json").is_file():
            build_nsynth_with_soundfont(raw, sf2, int(s.world.seed), int(lang.get("other_soundfont_notes", 12)))
            print(prepare("nsynth_clf", raw, prepared).summary())
        other = load_prepared(prepared)
    elif sf2:
        log.warning("zero-shot on another soundfont skipped: %s not found (Debian: apt-get install csound-soundfont)", sf2)
    run_language(
        out,
        save_dir,
        world / "audiocaption",
        datasets,
        SHUFFLED_ID,
        int(cfg.env.seed),
        int(lang.get("rerank", 10)),
        other,
        int(cfg.training.num_workers),
    )


def _pretrain(cfg, name: str) -> None:
    from mulap.training.pretrain import run_pretraining

    run_pretraining(cfg, name)


def _probe_runs(pretrain_id: str, init: str, tasks: list[str], seeds: list[int], overrides: list[str]):
    """(task, downstream id, overrides, folder) of every probe run of one backbone."""
    from mulap.training.downstream import downstream_config, downstream_dir

    for task in tasks:
        for seed in seeds:
            did = probe_id(task, init, seed)
            over = [*overrides, f"downstream.backbone_init={init}", f"downstream.seed={seed}"]
            yield task, did, over, downstream_dir(downstream_config(task, None, over), pretrain_id, did)


def _missing_probes(pretrain_id: str, init: str, tasks: list[str], seeds: list[int], overrides: list[str]) -> list[str]:
    return [
        did
        for _, did, _, folder in _probe_runs(pretrain_id, init, tasks, seeds, overrides)
        if not (folder / "metrics.json").is_file()
    ]


def _probe_all(pretrain_id: str, init: str, tasks: list[str], seeds: list[int], overrides: list[str]) -> None:
    from mulap.training.downstream import run_downstream, run_eval

    for task, did, over, folder in _probe_runs(pretrain_id, init, tasks, seeds, overrides):
        if (folder / "metrics.json").is_file():
            continue
        run_downstream(pretrain_id, task, did, None, over, progress=True)
        run_eval(pretrain_id, did, [o for o in overrides if o.startswith("env.")], progress=False)
