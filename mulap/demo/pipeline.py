"""`mulap demo`: build the demo world, prepare the five tasks, pre-train, probe every backbone,
evaluate, and report - offline, resumable stage by stage.

    <out>/world/                       the demo world (audiocaption corpus + publisher layouts)
    <out>/world_render.json            what rendering the world through each soundfont cost
    <out>/data/datasets/<name>/        prepared downstream datasets
    <out>/save/experiments/<id>/       pre-training runs and their downstream/ probe runs
    <out>/model/                       the pre-trained MuLaP, exported (`mulap export`): the user's first model
    <out>/stages.json                  finished stages and their seconds (a re-run skips them)
    <out>/results.json, report.md, plots/*.png
"""
from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from mulap.data.tasks import get_task
from mulap.infra.config import CONFIG_DIR, ConfigError, load_config
from mulap.infra.experiment import experiment_dir
from mulap.infra.files import atomic_write_text, write_json

log = logging.getLogger(__name__)
PRETRAIN_ID = "mulap"
MODEL_DIR = "model"  # <out>/model: the demo's MuLaP exported, for `mulap search` / `mulap zeroshot` / mulap.load
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
    write_json(out / "world_render.json", {"build_seconds": round(summary.build_seconds, 1), "hours": summary.hours,
                                           "sources": summary.render_costs})


def _export(save_dir: Path, folder: Path) -> None:
    """The pre-trained MuLaP as a portable model folder (what `mulap export mulap <folder>` writes)."""
    from mulap.inference.loading import export_model, load_experiment

    export_model(load_experiment(experiment_dir(save_dir, PRETRAIN_ID)), folder, overwrite=True)
    print(f"[demo] exported the pre-trained MuLaP to {folder}")


def _exported(folder: Path) -> bool:
    from mulap.inference.loading import is_export

    return is_export(folder)


def variant_seeds(s) -> list[int]:
    """Probe seeds of the ablation's extra recipes (`variant_probe_seeds`; default: the first probe seed)."""
    return list(s.get("variant_probe_seeds") or list(s.probe_seeds)[:1])


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
    run_language(out, save_dir, world / "audiocaption", datasets, SHUFFLED_ID, int(cfg.env.seed),
                 int(lang.get("rerank", 10)), other, int(cfg.training.num_workers))


def _pretrain(cfg, name: str) -> None:
    from mulap.training.pretrain import run_pretraining

    run_pretraining(cfg, name)


def probe_id(task: str, init: str, seed: int) -> str:
    return f"{task}-{init}-s{seed}"


def _probe_runs(pretrain_id: str, init: str, tasks: list[str], seeds: list[int], overrides: list[str]):
    """(task, downstream id, overrides, folder) of every probe run of one backbone."""
    from mulap.training.downstream import downstream_config, downstream_dir

    for task in tasks:
        for seed in seeds:
            did = probe_id(task, init, seed)
            over = [*overrides, f"downstream.backbone_init={init}", f"downstream.seed={seed}"]
            yield task, did, over, downstream_dir(downstream_config(task, None, over), pretrain_id, did)


def _missing_probes(pretrain_id: str, init: str, tasks: list[str], seeds: list[int], overrides: list[str]) -> list[str]:
    return [did for _, did, _, folder in _probe_runs(pretrain_id, init, tasks, seeds, overrides)
            if not (folder / "metrics.json").is_file()]


def _probe_all(pretrain_id: str, init: str, tasks: list[str], seeds: list[int], overrides: list[str]) -> None:
    from mulap.training.downstream import run_downstream, run_eval

    for task, did, over, folder in _probe_runs(pretrain_id, init, tasks, seeds, overrides):
        if (folder / "metrics.json").is_file():
            continue
        run_downstream(pretrain_id, task, did, None, over, progress=True)
        run_eval(pretrain_id, did, [o for o in overrides if o.startswith("env.")], progress=False)


# -- seedless check: ridge probe + paired bootstrap on the cached features ---------------------------
def backbone_diagnostics(out: Path, s, variants: dict) -> dict:
    """For every probed backbone (the default run's inits, then each recipe) and task: feature spectrum and a
    ridge probe on the embeddings its first-seed probe run cached, and the paired-bootstrap difference to the
    random-init backbone. Rows and comparisons are kept in <out>/diagnostics/, redone only when a cache key changes."""
    from mulap.data.prepare import load_prepared
    from mulap.evaluation.diagnostics import diagnose_features, paired_bootstrap
    from mulap.inference.cache import embedding_cache_root, read_cached

    save_dir, folder, seed = out / "save", out / "diagnostics", list(s.probe_seeds)[0]
    runs = {init: (PRETRAIN_ID, init) for init in s.inits}
    runs.update({name: (name, "mulap") for name in variants if name != PRETRAIN_ID})
    datasets: dict[str, object] = {}  # task -> PreparedDataset, read once

    def dataset(task: str):
        if task not in datasets:
            datasets[task] = load_prepared(out / "data" / "datasets" / get_task(task).dataset)
        return datasets[task]

    rows: dict[str, dict] = {}
    scored: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    stems: dict[tuple[str, str], Path] = {}
    for label, (exp, init) in runs.items():
        for task in s.tasks:
            did = probe_id(task, init, seed)
            summary = _probe_folder(save_dir, exp, did) / "summary.json"
            if not summary.is_file():
                continue
            key = json.loads(summary.read_text()).get("cache_key")
            stem = folder / f"{exp}-{did}"
            kept = json.loads(stem.with_suffix(".json").read_text()) if stem.with_suffix(".json").is_file() else {}
            npz = stem.with_suffix(".npz")  # test targets and ridge scores, absent when the probe had no valid metric
            if kept.get("cache_key") == key and (kept.get("ridge_test") is None or npz.is_file()):
                row = kept
                arrays = np.load(npz) if npz.is_file() else None
                y, scores = (arrays["y_test"], arrays["scores"]) if arrays is not None else (None, None)
            else:
                emb = read_cached(embedding_cache_root(save_dir), str(key))
                if emb is None:
                    continue
                spec = get_task(task)
                stats, y, scores = diagnose_features(emb.features, emb.track, emb.ids, dataset(task), spec.primary_metric)
                row = {"task": task, "metric": spec.primary_metric, "cache_key": key, **stats}
                folder.mkdir(exist_ok=True)
                if scores is not None:
                    np.savez(npz, y_test=y, scores=scores)
                write_json(stem.with_suffix(".json"), row)
            rows.setdefault(label, {})[task] = row
            stems[label, task] = stem
            if y is not None and scores is not None:  # both read or computed together
                scored[label, task] = (y, scores)
    vs_random: dict[str, dict] = {}
    for label in rows:
        for task in s.tasks:
            if label == "random" or (label, task) not in scored or ("random", task) not in scored:
                continue
            # the bootstrap is kept with the row, keyed by both backbones' caches: a re-written report reuses it
            keys = [rows[label][task]["cache_key"], rows["random"][task]["cache_key"]]
            path = stems[label, task].with_suffix(".vs_random.json")
            kept = json.loads(path.read_text()) if path.is_file() else {}
            if kept.get("keys") != keys:
                spec = get_task(task)
                (y, a), (_, b) = scored[label, task], scored["random", task]
                kept = {"keys": keys, "result": paired_bootstrap(spec.task_type, spec.primary_metric, y, a, b,
                                                                 dataset(task).label_names)}
                write_json(path, kept)
            vs_random.setdefault(label, {})[task] = kept["result"]
    return {"runs": rows, "vs_random": vs_random}


def _probe_folder(save_dir: Path, pretrain_id: str, downstream_id: str) -> Path:
    return experiment_dir(save_dir, pretrain_id) / "downstream" / downstream_id


# -- the report -----------------------------------------------------------------------------------
def collect(save_dir: Path, pretrain_id: str, tasks, inits, seeds) -> dict:
    table: dict[str, dict] = {}
    for task in tasks:
        spec = get_task(task)
        table[task] = {}
        for init in inits:
            values, detail = [], []
            for seed in seeds:
                f = _probe_folder(save_dir, pretrain_id, probe_id(task, init, seed)) / "metrics.json"
                if f.is_file():
                    m = json.loads(f.read_text())
                    values.append(m.get(spec.primary_metric))
                    detail.append({k: v for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
            vals = [v for v in values if v is not None]
            if vals:
                table[task][init] = {"metric": spec.primary_metric, "mean": float(np.mean(vals)), "std": float(np.std(vals)),
                                     "seeds": vals, "all_metrics": _mean_dicts(detail)}
    return table


def _mean_dicts(dicts: list[dict]) -> dict:
    keys = sorted(set().union(*dicts)) if dicts else []
    return {k: float(np.mean([d[k] for d in dicts if d.get(k) is not None])) for k in keys
            if any(d.get(k) is not None for d in dicts)}


def verdicts(table: dict, a: str = "mulap", b: str = "random") -> dict:
    """Per task: does `a` beat `b` by more than the larger of their spreads across probe seeds?"""
    out = {}
    for task, row in table.items():
        if a in row and b in row:
            margin = row[a]["mean"] - row[b]["mean"]
            spread = max(row[a]["std"], row[b]["std"])
            out[task] = {"margin": margin, "spread": spread, "wins": bool(margin > spread)}
    return out


def pretrain_curves(exp: Path) -> dict[str, list[tuple[float, float]]]:
    path = exp / "logs" / "csv" / "metrics.csv"
    curves: dict[str, list] = {}
    if not path.is_file():
        return curves
    with open(path) as fh:
        for row in csv.DictReader(fh):
            for k, v in row.items():
                if v and k.endswith(("_epoch",)) or (v and k.startswith("val/") and k != "val/skipped"):
                    curves.setdefault(k.replace("_epoch", ""), []).append((float(row["epoch"]), float(v)))
    return curves


def write_report(out: Path, s, variants: dict) -> dict:
    """Writes report.md and plots/ and returns the results (run_demo adds the stage times and writes results.json)."""
    from mulap.evaluation import plots

    save_dir = out / "save"
    tasks, inits, seeds = list(s.tasks), list(s.inits), list(s.probe_seeds)
    table = collect(save_dir, PRETRAIN_ID, tasks, inits, seeds)
    ablation = {}
    if len(variants) > 1:  # every recipe on the variants' probe seeds, the default recipe and the random backbone included
        vseeds = variant_seeds(s)
        ablation[f"{PRETRAIN_ID} (default recipe)"] = collect(save_dir, PRETRAIN_ID, tasks, ["mulap"], vseeds)
        ablation["random init"] = {t: {"mulap": c["random"]} for t, c in collect(save_dir, PRETRAIN_ID, tasks, ["random"], vseeds).items()
                                   if "random" in c}
        ablation.update({name: collect(save_dir, name, tasks, ["mulap"], vseeds) for name in variants if name != PRETRAIN_ID})
    plots_dir = out / "plots"
    plots_dir.mkdir(exist_ok=True)
    curves = pretrain_curves(experiment_dir(save_dir, PRETRAIN_ID))
    loss_curves = {k: v for k, v in curves.items() if not k.endswith("acc")}
    acc_curves = {k: v for k, v in curves.items() if k.endswith("acc")}
    plots.plot_curves(loss_curves, plots_dir / "pretrain_losses.png", title="pre-training losses", xlabel="epoch", ylabel="loss")
    plots.plot_curves(acc_curves, plots_dir / "pretrain_accuracy.png", title="held-out ATM / MLM accuracy", xlabel="epoch",
                      ylabel="accuracy")
    plots.plot_grouped_bars(table, plots_dir / "transfer.png")
    world = json.loads((out / "world" / "world.json").read_text()) if (out / "world" / "world.json").is_file() else {}
    results = {"tasks": {t: {i: {k: v for k, v in cell.items() if k != "all_metrics"} for i, cell in row.items()}
                         for t, row in table.items()},
               "details": table, "mulap_vs_random": verdicts(table),
               "supervised_vs_random": verdicts(table, "supervised_mtt", "random"), "ablation": ablation,
               "diagnostics": backbone_diagnostics(out, s, variants),
               "pretrain": {k: v[-1][1] for k, v in curves.items() if v}}
    from mulap.demo import language

    summary = language.read_summary(out)
    results.update(language.results_entries(summary))
    results["zeroshot_generalisation"] = language.generalisation(out, world)
    results["world_timbre"] = world_timbre(out, world)
    results["model"] = first_model(out)
    if results["diagnostics"]["vs_random"]:
        plots.plot_intervals(results["diagnostics"]["vs_random"], plots_dir / "seedless_vs_random.png",
                             title="ridge probe: backbone minus random init (95% paired-bootstrap interval)")
    lines = language.markdown(summary) + language.generalisation_lines(results["zeroshot_generalisation"])
    atomic_write_text(out / "report.md", _markdown(results, s, world, curves, lines))
    return results


def first_model(out: Path) -> dict:
    """Where the exported model is and the commands that use it (the report's first section)."""
    folder = out / MODEL_DIR
    if not _exported(folder):
        return {}
    shown = _shown(folder)
    return {"path": str(folder), "commands": [
        f'mulap search {shown} ~/Music "a slow string quartet"',
        f"mulap zeroshot {shown} nsynth_clf downstream.dataset_dir={_shown(out / 'data' / 'datasets' / 'nsynth')}",
        f'python -c "import mulap; m = mulap.load(\'{shown}\'); print(m.embed_text([\'solo flute\']).shape)"']}


def _shown(path: Path) -> str:
    """`path` as a user in the current folder would type it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def world_timbre(out: Path, world: dict) -> dict:
    """Which soundfonts rendered how many clips of each dataset (world.json) and what each cost (world_render.json)."""
    t = world.get("timbre") or {}
    counts: dict[str, dict[str, int]] = {}
    for rel, timbre in t.get("clips", {}).items():
        parts = rel.split("/")
        dataset = parts[1] if parts[0] == "raw" else parts[0]
        row = counts.setdefault(dataset, {})
        row[timbre["source"]] = row.get(timbre["source"], 0) + 1
    render = json.loads((out / "world_render.json").read_text()) if (out / "world_render.json").is_file() else {}
    return {"sources": t.get("sources", {}), "files": counts, "render": render}


def _markdown(results: dict, s, world: dict, curves: dict, language_lines: Sequence[str] = ()) -> str:
    lines = ["# mulap demo report", "", f"Generated {time.strftime('%Y-%m-%d %H:%M')} on {_machine()}.", ""]
    lines += _model_lines(results.get("model") or {}, results.get("world_timbre") or {})
    lines += _timbre_lines(results.get("world_timbre") or {})
    lines += ["## Transfer: frozen backbone + MLP probe", "",
              "Primary metric per task, mean ± std over probe seeds " + str(list(s.probe_seeds)) + ".", ""]
    inits = list(s.inits)
    lines.append("| task | metric | " + " | ".join(inits) + " |")
    lines.append("|---|---|" + "---|" * len(inits))
    for task, row in results["details"].items():
        metric = next(iter(row.values()))["metric"] if row else ""
        cells = [f"{row[i]['mean']:.3f} ± {row[i]['std']:.3f}" if i in row else "–" for i in inits]
        lines.append(f"| {task} | {metric} | " + " | ".join(cells) + " |")
    v = results["mulap_vs_random"]
    wins = sum(1 for x in v.values() if x["wins"])
    lines += ["", f"MuLaP beats the random-init backbone by more than the seed spread on **{wins} of {len(v)}** tasks.", ""]
    for task, x in v.items():
        lines.append(f"- {task}: margin {x['margin']:+.3f} (spread {x['spread']:.3f}) → {'win' if x['wins'] else 'no clear win'}")
    sup = [(t, row["mulap"]["mean"] - row["supervised_mtt"]["mean"]) for t, row in results["details"].items()
           if "mulap" in row and "supervised_mtt" in row]
    if sup:
        lines += ["", "Distance to the supervised musicnn baseline (MTT-trained, real weights): " +
                  ", ".join(f"{t} {d:+.3f}" for t, d in sup) + "."]
    sv = results.get("supervised_vs_random", {})
    if sv:  # calibrates the criterion: how often does a backbone trained on real labels pass it?
        lines += ["", f"By the same rule the supervised backbone beats random init on {sum(x['wins'] for x in sv.values())} "
                  f"of {len(sv)} tasks (" + ", ".join(f"{t} {x['margin']:+.3f}/{x['spread']:.3f}" for t, x in sv.items()) +
                  "; margin/spread)."]
    lines += _representable(results["details"])
    lines += list(language_lines)
    lines += _seedless(results.get("diagnostics", {}), list(results["details"]))
    if results["ablation"]:
        vseeds = variant_seeds(s)
        tasks = list(results["details"])
        rand = {t: {"random": c["mulap"]} for t, c in results["ablation"].get("random init", {}).items()}
        lines += ["", f"## Ablation: pre-training recipes (probe seeds {vseeds})", "",
                  "Mean ± std over the probe seeds; the last column counts the tasks where the recipe beats the "
                  "random-init backbone by more than the seed spread.", "",
                  "| recipe | " + " | ".join(tasks) + " | wins vs random |", "|---|" + "---|" * (len(tasks) + 1)]
        for name, table in results["ablation"].items():
            cells = [_cell(table[t]["mulap"], len(vseeds)) if "mulap" in table.get(t, {}) else "–" for t in tasks]
            both = {t: {**rand.get(t, {}), **table.get(t, {})} for t in tasks}
            won = "–" if name == "random init" else str(sum(x["wins"] for x in verdicts(both).values()))
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {won} |")
    lines += ["", "## Pre-training", "", "Final values (held-out pairs for val/*): " +
              ", ".join(f"{k} {v[-1][1]:.3f}" for k, v in sorted(curves.items())), "",
              "![losses](plots/pretrain_losses.png) ![accuracy](plots/pretrain_accuracy.png)", "",
              "![transfer](plots/transfer.png)", ""]
    if world:
        corpus = world.get("corpus", {})
        splits: dict[str, int] = {}
        for piece in world.get("pieces", {}).values():
            splits[piece.get("split", "?")] = splits.get(piece.get("split", "?"), 0) + 1
        hours = sum(c.get("duration_s", 0) for c in corpus.values()) / 3600
        lines += ["## Demo world", "",
                  f"{world.get('size')} world, seed {world.get('seed')}: {len(corpus)} captioned clips ({hours:.2f} h) rendered from "
                  f"{len(world.get('pieces', {}))} music21 scores (per split: {splits}); downstream clips: "
                  + ", ".join(f"{k} {len(world[k])}" for k in ("mtt", "jamendo", "fma", "emomusic") if k in world) + ".", ""]
    return "\n".join(lines)


def _model_lines(model: dict, timbre: dict) -> list[str]:
    if not model:
        return []
    corpus = (timbre.get("files") or {}).get("audiocaption", {})
    heard = (f"{sum(corpus.values())} captioned renditions of public-domain scores through {len(corpus)} General MIDI "
             f"soundfont{'s' if len(corpus) != 1 else ''}") if corpus else "captioned renditions of public-domain scores"
    return ["## Your first model", "",
            f"The pre-trained MuLaP is exported to `{model['path']}` (config, weights, tokenizer, model card; what "
            "`mulap export mulap <dir>` writes). Use it for text search, zero-shot and embeddings:", "", "```bash",
            *model["commands"], "```", "",
            f"It has heard only the demo world ({heard}). On real recordings it is a starting point, not a music search engine; for that, "
            "pre-train on real captioned music (`mulap pretrain --pretrain_id run1 "
            "dataset_config.data_dir=<your audiocaption folder>`, README \"Pre-training\") and export that model.", ""]


def _timbre_lines(t: dict) -> list[str]:
    if not t.get("files"):
        return []
    sources = sorted({s for row in t["files"].values() for s in row})
    lines = ["## The world's timbres", "",
             "Every clip is rendered through one soundfont chosen per clip, with per-clip tuning, tempo, EQ, room, "
             "layering and gain (world.json `timbre`). Files per source:", "",
             "| dataset | " + " | ".join(sources) + " |", "|---|" + "---|" * len(sources)]
    for dataset, row in t["files"].items():
        lines.append(f"| {dataset} | " + " | ".join(str(row.get(s, 0)) for s in sources) + " |")
    desc = t.get("sources", {})
    lines += ["", "Sources: " + "; ".join(f"{n}: {d.get('description')} ({d.get('file')}, {d.get('bytes', 0) / 1e6:.0f} MB)"
                                         for n, d in desc.items()) + "."]
    costs = (t.get("render") or {}).get("sources", {})
    if costs:
        lines += ["", "Render cost (wall seconds summed over the render workers; synthesis includes parsing each soundfont "
                  "once per worker): " + "; ".join(
                      f"{n} {int(c['jobs'])} jobs, {c['audio_s'] / 3600:.2f} h of audio, synthesis {c['synth_s']:.0f} s "
                      f"({1000 * c['synth_s'] / max(c['audio_s'], 1e-9):.1f} ms per audio second), effects {c['effects_s']:.0f} s"
                      for n, c in costs.items()) + f"; the whole world stage {t['render'].get('build_seconds', 0):.0f} s."]
    return lines + [""]


def _representable(details: dict) -> list[str]:
    """The report's note on what captions cannot teach a Musicnn, with the Emomusic evidence of this run."""
    lines = ["", "## What captions can and cannot teach this backbone", "",
             "Musicnn max-pools its front-end filters over frequency, so its features are nearly invariant to "
             "transposition: key and major/minor mode are invisible to every backbone here, pre-trained or not. "
             "Captions that name the key or mode cannot change that. In the demo world mode is the largest term of Emomusic valence "
             "and the happy/sad/dark mood tags of MTT and MTG-Jamendo, so those targets are ruled out; what captions "
             "can teach is timbre (NSynth family, FMA genre through instrumentation, instrument tags), tempo and "
             "dynamics (Emomusic arousal, fast/slow/loud/quiet tags)."]
    emo = details.get("emomusic_reg", {})
    parts = [f"{init} arousal {c['all_metrics']['r2_arousal']:.3f} / valence {c['all_metrics']['r2_valence']:.3f}"
             for init, c in emo.items() if {"r2_arousal", "r2_valence"} <= set(c.get("all_metrics", {}))]
    if parts:
        lines += ["", "Emomusic R² per output in this run (mean over probe seeds): " + "; ".join(parts) + "."]
    return lines


def _seedless(diag: dict, tasks: list[str]) -> list[str]:
    runs, vs = diag.get("runs", {}), diag.get("vs_random", {})
    if not runs:
        return []
    lines = ["", "## Seedless check: ridge probe on the same cached features", "",
             "A closed-form ridge probe on track-mean features (alpha chosen on validation) has no seed, so it compares "
             "backbones without the MLP probe's training noise. In brackets: the difference to the random-init backbone "
             "with its 95% paired-bootstrap interval over test tracks; the last column counts tasks whose interval lies "
             "above zero. PR: participation ratio of the training features' correlation spectrum (how many directions "
             "the features use), mean over tasks.", "",
             "![seedless](plots/seedless_vs_random.png)", "",
             "| backbone | " + " | ".join(tasks) + " | better than random | PR |", "|---|" + "---|" * (len(tasks) + 2)]
    for label, row in runs.items():
        cells = []
        for t in tasks:
            r, d = row.get(t), vs.get(label, {}).get(t)
            cell = "–" if r is None or r.get("ridge_test") is None else f"{r['ridge_test']:.3f}"
            if d is not None and d["low"] is not None:
                cell += f" ({d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}])"
            cells.append(cell)
        better = "–" if label == "random" else str(sum((d["low"] or 0) > 0 for d in vs.get(label, {}).values()))
        pr = np.mean([r["participation_ratio"] for r in row.values()])
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {better} | {pr:.1f} |")
    return lines


def _cell(cell: dict, n_seeds: int) -> str:
    return f"{cell['mean']:.3f} ± {cell['std']:.3f}" if n_seeds > 1 else f"{cell['mean']:.3f}"


def _machine() -> str:
    import os
    import platform

    return f"{platform.machine()} {os.cpu_count()} CPU(s), {platform.platform(terse=True)}"


