"""One function per `mulap` command: read the arguments, call the library, print what it made."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

from mulap.infra.config import load_config


def cmd_pretrain(args) -> None:
    from mulap.demo.example_corpus import ensure_pretraining_corpus
    from mulap.infra.experiment import run_dir
    from mulap.training.pretrain import run_pretraining

    args.generated_id = args.pretrain_id is None  # an interrupted run resumes with this id (_same_command)
    pretrain_id = args.pretrain_id = args.pretrain_id or time.strftime("%Y%m%d-%H%M%S")
    probe = load_config(args.config, args.overrides, validate=False)  # only to find the folder: the run checks its config
    saved = run_dir(probe.env.save_dir, pretrain_id) / "config.yaml"
    if saved.is_file():  # resume: the saved config, with this call's overrides on top
        cfg = load_config(saved, args.overrides)
        print(f"resuming pre-training {pretrain_id} from {saved.parent}")
    else:
        cfg = load_config(args.config, args.overrides)
    ensure_pretraining_corpus(cfg)  # the seed's default run builds its example corpus; a missing one stops here
    exp_dir = run_pretraining(cfg, pretrain_id)
    print(f"pretrain_id: {pretrain_id}\nexperiment: {exp_dir}")


def cmd_downstream(args) -> None:
    from mulap.training.downstream import run_downstream

    downstream_id = run_downstream(args.pretrain_id, args.task, args.downstream_id, args.config, args.overrides)
    print(f"downstream_id: {downstream_id}")


def cmd_eval(args) -> None:
    from mulap.training.downstream import run_eval

    run_eval(args.pretrain_id, args.downstream_id, args.overrides)


def cmd_prepare(args) -> None:
    from mulap.data.prepare import prepare
    from mulap.data.tasks import get_task

    if args.audio_dir is not None and args.task != "csv":
        if "=" not in args.audio_dir:  # an override lands here when there is no third positional
            raise ValueError(f"prepare {args.task} takes one folder (the raw dataset); unexpected {args.audio_dir!r}")
        args.overrides = [args.audio_dir, *args.overrides]
    cfg = load_config(None, args.overrides)
    if args.task == "csv":
        from mulap.data.prepare import prepare_csv

        if args.audio_dir is None or args.name is None:
            raise ValueError("usage: mulap prepare csv <labels.csv> <audio_dir> --name NAME")
        report = prepare_csv(
            args.raw_dir,
            args.audio_dir,
            args.name,
            cfg.env.data_root,
            out_dir=args.out,
            num_workers=int(cfg.training.num_workers),
            seed=int(cfg.env.seed),
        )
        print(report.summary())
        return
    spec = get_task(args.task)
    out = Path(args.out) if args.out else Path(cfg.env.data_root) / "datasets" / spec.dataset
    report = prepare(args.task, args.raw_dir, out, num_workers=int(cfg.training.num_workers))
    print(report.summary())


def cmd_embed(args) -> None:
    from mulap.inference.embeddings_file import embed_files
    from mulap.training.extract_ddp import extractor

    cfg = load_config(None, args.overrides)
    out = embed_files(args.model, args.inputs, args.out, cfg, batch_size=args.batch_size, extractor=extractor(cfg))
    print(f"embeddings: {out}")


def cmd_tag(args) -> None:
    from mulap.cli.tag import run_tag

    run_tag(args.inputs, args.model, top=args.top, out=args.out, taggram_dir=args.taggram, batch_size=args.batch_size)


def cmd_export(args) -> None:
    from mulap.inference.api import model_path
    from mulap.inference.loading import export_model, load_experiment

    cfg = load_config(None, args.overrides)
    exp = model_path(args.model, cfg.env.save_dir)  # the id first, as mulap.load resolves it
    out = export_model(load_experiment(exp), args.out, overwrite=args.overwrite)
    size = sum(f.stat().st_size for f in out.iterdir()) / 1e6
    print(f"exported {exp} -> {out} ({size:.1f} MB)")


def _load_model(ref: str, cfg):
    from mulap.inference.api import load
    from mulap.inference.extract import extraction_settings

    device, _ = extraction_settings(cfg)
    return load(ref, save_dir=cfg.env.save_dir, device=device, seed=int(cfg.env.seed))


def _model_out(model, cfg, *parts: str) -> Path:
    """Outputs of a model's evaluation: under its experiment or export folder, else under env.save_dir."""
    home = model.info.get("export") or model.info.get("source")  # an export's `source` is the exporter's folder
    base = Path(home) if home else Path(cfg.env.save_dir) / "models" / model.name.replace("/", "_").replace(":", "_")
    return base.joinpath(*parts)


def cmd_search(args) -> None:
    import json

    from mulap.inference import search

    if args.query is not None and re.match(r"^[A-Za-z_]+\.[\w.]+=", args.query):  # a key=value took the query's place
        args.overrides, args.query = [args.query, *args.overrides], None
    if (args.query is None) == (args.like is None):
        raise ValueError('give either a text query or --like AUDIO (e.g. mulap search run1 ~/Music "calm piano")')
    cfg = load_config(None, args.overrides)
    model = _load_model(args.model, cfg)
    folder, index_path = search.resolve_folder(args.folder, args.index)  # an index folder: the folder holding it
    if not folder.is_dir():
        raise search.SearchError(f"{folder} is not a folder of music")
    # the request is checked (and a --like file embedded) before a folder of music is indexed
    if args.like:
        query = search.like_vector(model, args.like)
    else:
        search.check_text_query(model, args.query)
    index, counts = search.build_or_update(
        model, folder, index_path, rebuild=args.rebuild, num_workers=int(cfg.training.num_workers)
    )
    print(
        f"index {index.folder}: {len(index.files)} file(s) ({counts['added']} added, {counts['changed']} changed, "
        f"{counts['removed']} removed, {counts['kept']} unchanged)",
        file=sys.stderr,
    )
    for bad in index.failed:
        print(f"  unreadable, skipped: {bad['path']}: {bad['reason']}", file=sys.stderr)
    if args.like:
        hits = search.search_like(model, index, args.like, args.top, query=query)
    else:
        hits = search.search_text(model, index, args.query, args.top, args.rerank)
    print(json.dumps([h.to_dict() for h in hits], indent=1) if args.json else search.format_table(hits))


def cmd_zeroshot(args) -> None:
    from mulap.evaluation.prompts import default_prompts
    from mulap.evaluation.zeroshot import run_zeroshot
    from mulap.inference.cache import dataset_embeddings
    from mulap.training.downstream import downstream_config, load_task_data

    cfg = downstream_config(args.task, None, args.overrides)
    if args.write_prompts:
        import yaml

        from mulap.infra.files import atomic_write_text

        ds = load_task_data(cfg)
        atomic_write_text(
            args.write_prompts,
            yaml.safe_dump(default_prompts(ds.task, list(ds.label_names)), sort_keys=False, allow_unicode=True),
        )
        print(f"default prompts of {args.task}: {args.write_prompts}")
        return
    model = _load_model(args.model, cfg)
    model.require_joint("zero-shot")
    ds = load_task_data(cfg)
    emb = dataset_embeddings(model.backbone, ds, cfg)
    out = Path(args.out) if args.out else _model_out(model, cfg, "zeroshot", args.task)
    m = run_zeroshot(model, ds, emb, out, args.prompts, calibrate_classes=not args.raw)
    lo, hi = m["ci95"]
    raw = f" (raw cosines {m['value_raw']:.4f})" if m.get("value_raw") is not None else ""
    print(
        f"{args.task} zero-shot ({model.name}): {m['primary_metric']}={m['value']:.4f} "
        f"[95% {lo:.4f}, {hi:.4f}]{raw}, chance {m['chance']:.4f}; files in {out}"
    )


def cmd_eval_retrieval(args) -> None:
    from mulap.evaluation.retrieval import evaluate_retrieval, write_retrieval

    cfg = load_config(None, args.overrides)
    model = _load_model(args.model, cfg)
    result = evaluate_retrieval(model, args.data_dir, args.split, args.rerank, num_workers=int(cfg.training.num_workers))
    out = Path(args.out) if args.out else _model_out(model, cfg, "retrieval", args.split)
    write_retrieval(result, out)
    ch = result["chance"]
    print(
        f"{result['n']} {args.split} clips ({model.name}); chance R@1/5/10 {ch['R@1']:.3f}/{ch['R@5']:.3f}/{ch['R@10']:.3f}, "
        f"median rank {ch['median_rank']:.1f}"
    )
    for d in ("t2a", "a2t"):
        for kind, m in result[d].items():
            if isinstance(m, dict):
                print(
                    f"  {d} {kind:<11} R@1 {m['R@1']:.3f}  R@5 {m['R@5']:.3f}  R@10 {m['R@10']:.3f}  "
                    f"median rank {m['median_rank']:.1f}  mAP@10 {m['mAP@10']:.3f}"
                )
    print(f"files in {out}")


def cmd_data(args) -> None:
    if args.data_command == "nsynth-soundfont":
        from mulap.demo.world.nsynth import build_nsynth_with_soundfont

        counts = build_nsynth_with_soundfont(args.out, args.soundfont, args.seed, args.notes)
        print(f"{args.out}: " + ", ".join(f"{k} {v} notes" for k, v in counts.items()))
        return
    if args.data_command == "shard":
        from mulap.data.shards import write_shards

        index = write_shards(args.src, args.out, args.shard_size, args.format, args.overwrite, num_workers=args.workers)
        made = ", ".join(f"{k} {v['samples']} clips / {len(v['shards'])} shards" for k, v in index["splits"].items())
        print(f"shards: {args.out} ({made}; {len(index['skipped'])} record(s) skipped, listed in shards.json)")
        return
    from mulap.demo.world import build_demo

    build_demo(args.out, size=args.size, seed=args.seed)


def cmd_demo(args) -> None:
    from mulap.demo.pipeline import demo_settings, run_demo

    settings = demo_settings(args.settings) if args.settings else None
    run_demo(args.out, size=args.size, overrides=args.overrides, settings=settings)


COMMANDS = {
    "pretrain": cmd_pretrain,
    "downstream": cmd_downstream,
    "eval": cmd_eval,
    "prepare": cmd_prepare,
    "embed": cmd_embed,
    "tag": cmd_tag,
    "export": cmd_export,
    "search": cmd_search,
    "zeroshot": cmd_zeroshot,
    "eval-retrieval": cmd_eval_retrieval,
    "data": cmd_data,
    "demo": cmd_demo,
}
