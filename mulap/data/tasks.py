"""Downstream datasets: one loader per publisher layout, and the task registry.

`TASKS[name]` says, for every downstream task, which loader reads its raw data, the
folder name of the raw data (`raw_name`, as in the demo world's `raw/<raw_name>`), the
default folder name of the prepared data (`dataset`, under `<data_root>/datasets/`),
the task type, and the primary metric used for early stopping and reporting.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

from mulap.data.downstream.base import SPLITS, TASK_TYPES, DatasetError, DatasetFormatError, LoaderFn, RawDataset, Record, Skipped
from mulap.data.downstream.csv import CSV_PREFIX, PRIMARY_METRIC, check_name, dataset_folder
from mulap.data.downstream.emomusic import load_emomusic
from mulap.data.downstream.fma import load_fma
from mulap.data.downstream.jamendo import load_jamendo
from mulap.data.downstream.mtt import load_mtt
from mulap.data.downstream.nsynth import load_nsynth


@dataclass(frozen=True)
class TaskSpec:
    """One downstream task: how to read it and how it is scored."""

    name: str
    loader: LoaderFn
    raw_name: str
    dataset: str
    task_type: str
    primary_metric: str
    higher_is_better: bool
    description: str
    prepare_usage: str = ""  # how to make its prepared dataset, when not `mulap prepare <name> <raw folder>`

    def resolved(self, task_type: str) -> TaskSpec:
        """The spec for a prepared dataset of `task_type`: itself, or for a `csv:NAME` task (whose type is
        the prepared data's) the spec with that type and its primary metric."""
        if self.task_type != "any":
            return self
        return _csv_resolved(self, task_type)


def _tagging(name: str, loader: LoaderFn, raw: str, dataset: str, what: str) -> TaskSpec:
    return TaskSpec(name, loader, raw, dataset, "multilabel", "roc_auc_macro", True, what)


TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        _tagging("mtt_tagging", load_mtt, "mtt", "mtt", "MagnaTagATune top-50 tagging"),
        _tagging(
            "jamendo_tagging", partial(load_jamendo, subset="top50tags"), "jamendo", "jamendo", "MTG-Jamendo top-50 tagging"
        ),
        _tagging("jamendo_genre", partial(load_jamendo, subset="genre"), "jamendo", "jamendo_genre", "MTG-Jamendo genre tagging"),
        _tagging(
            "jamendo_instrument",
            partial(load_jamendo, subset="instrument"),
            "jamendo",
            "jamendo_instrument",
            "MTG-Jamendo instrument tagging",
        ),
        _tagging(
            "jamendo_moodtheme",
            partial(load_jamendo, subset="moodtheme"),
            "jamendo",
            "jamendo_moodtheme",
            "MTG-Jamendo mood/theme tagging",
        ),
        TaskSpec(
            "emomusic_reg",
            load_emomusic,
            "emomusic",
            "emomusic",
            "regression",
            "r2",
            True,
            "Emomusic static arousal/valence regression",
        ),
        TaskSpec("fma_clf", load_fma, "fma", "fma", "multiclass", "accuracy", True, "FMA-small genre classification"),
        TaskSpec(
            "nsynth_clf",
            load_nsynth,
            "nsynth",
            "nsynth",
            "multiclass",
            "accuracy",
            True,
            "NSynth instrument-family classification",
        ),
    )
}


def get_task(name: str) -> TaskSpec:
    """The TaskSpec of `name` (a built-in task, or `csv:NAME` for a `mulap prepare csv` dataset), or a
    ValueError listing the known tasks."""
    if name.startswith("csv:"):
        return csv_task_spec(name)
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(
            f"unknown downstream task {name!r}; known tasks: {', '.join(TASKS)}, or csv:NAME (your own, from `mulap prepare csv`)"
        ) from None


def csv_task_spec(task: str) -> TaskSpec:
    """The TaskSpec of `csv:NAME`. Its task type (and so its metric) is the prepared dataset's: `resolved()`."""
    name = check_name(task[len(CSV_PREFIX) :])
    usage = f"mulap prepare csv <labels.csv> <audio_dir> --name {name}"

    def loader(raw_dir, *args, **kwargs):  # a csv task is read from a CSV and an audio folder, not one raw folder
        raise ValueError(f"{task} is prepared with `{usage}`")

    return TaskSpec(
        task, loader, "labels.csv", dataset_folder(name), "any", "", True, f"your labelled audio ({name})", prepare_usage=usage
    )


def _csv_resolved(spec: TaskSpec, task_type: str) -> TaskSpec:
    """`spec` with the task type and primary metric of a prepared csv dataset."""
    if task_type not in PRIMARY_METRIC:
        raise ValueError(f"{spec.name}: a csv task is multiclass or multilabel, not {task_type}")
    return replace(spec, task_type=task_type, primary_metric=PRIMARY_METRIC[task_type])


__all__ = [
    "TASKS",
    "TaskSpec",
    "get_task",
    "RawDataset",
    "Record",
    "Skipped",
    "DatasetError",
    "DatasetFormatError",
    "SPLITS",
    "TASK_TYPES",
    "load_mtt",
    "load_jamendo",
    "load_emomusic",
    "load_fma",
    "load_nsynth",
]
