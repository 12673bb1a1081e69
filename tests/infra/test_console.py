"""The console: one handler (every line once), Lightning's tips and known chatter gone, sklearn's
UndefinedMetricWarning counted and said once. Each check runs in a fresh interpreter, as the CLI does;
tests/demo/test_default_run.py checks a whole (tiny) pre-training run's console."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=os.environ, timeout=300
    )


def test_lightning_lines_print_once_and_tips_are_dropped():
    out = _run("""
        import logging, warnings
        from mulap.infra import console
        console.setup(lightning=True)
        rz = logging.getLogger("lightning.pytorch.utilities.rank_zero")
        rz.info("GPU available: True (cuda), used: True")
        rz.info("💡 Tip: For seamless cloud logging, try installing [litlogger]")
        rz.info("TPU available: False, using: 0 TPU cores")
        logging.getLogger("mulap.training.downstream").info("probe done")
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use something else", FutureWarning)
        warnings.warn("a warning nobody filtered", UserWarning)
        console.setup(lightning=True)   # a second setup replaces the handler, never stacks it
        logging.getLogger("mulap").info("after the second setup")
    """)
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert lines.count("INFO lightning: GPU available: True (cuda), used: True") == 1
    assert sum("GPU available" in line for line in lines) == 1  # not repeated by Lightning's own handler
    assert "INFO mulap.training.downstream: probe done" in lines
    assert lines.count("INFO mulap: after the second setup") == 1
    assert not [line for line in lines if "Tip" in line or "litlogger" in line or "TPU available" in line]
    assert "LeafSpec" not in out.stderr
    assert "a warning nobody filtered" in out.stderr  # only the known chatter is filtered


def test_undefined_metric_warnings_are_counted_and_summarised_once():
    out = _run("""
        import numpy as np
        from sklearn.metrics import roc_auc_score
        from mulap.infra import console
        console.setup(lightning=True)
        for _ in range(7):  # one class only: sklearn warns that ROC-AUC is undefined
            roc_auc_score(np.ones(4), np.linspace(0, 1, 4))
        console.finish()
    """)
    assert out.returncode == 0, out.stderr
    summaries = [line for line in out.stderr.splitlines() if "UndefinedMetricWarning" in line]
    assert len(summaries) == 1 and "7 time(s)" in summaries[0] and summaries[0].startswith("WARNING mulap:")
    assert out.stderr.count("Only one class") == 1  # the message appears once, inside the summary


def test_the_handler_follows_a_swapped_stderr():
    """pytest and notebooks replace sys.stderr; a record after the first stream is closed goes to the current one
    (a handler bound at setup printed '--- Logging error --- I/O operation on closed file' in the suite)."""
    out = _run("""
        import io, logging, sys
        from mulap.infra import console
        first = io.StringIO()
        sys.stderr = first
        console.setup()
        logging.getLogger("mulap").info("to the first")
        first.close()
        second = io.StringIO()
        sys.stderr = second
        logging.getLogger("mulap").info("to the second")
        sys.__stderr__.write(second.getvalue())
    """)
    assert out.returncode == 0, out.stderr
    assert "Logging error" not in out.stderr
    assert out.stderr.splitlines() == ["INFO mulap: to the second"]


def test_one_line_says_an_error_in_one_line():
    """The CLI's error line (issue 17, 5): a data-loader worker's exception by its own message (torch puts the
    worker's traceback into it), the OS's wording after the file name, a multi-line message on one line."""
    from mulap.infra.console import one_line
    from mulap.infra.text_files import DatasetError

    worker = DatasetError(
        "Caught DatasetError in DataLoader worker process 1.\nOriginal Traceback (most recent call "
        'last):\n  File "x.py", line 3, in f\n    raise DatasetError(msg)\n'
        "mulap.infra.text_files.DatasetError: record audio_id 'a': /d/a.npy: truncated\n"
    )
    assert one_line(worker) == "record audio_id 'a': /d/a.npy: truncated"
    assert one_line(PermissionError(13, "Permission denied", "/data/x.wav")) == "/data/x.wav: Permission denied"
    assert one_line(ValueError("bad.yaml: not valid YAML (while parsing\n  in line 1\nexpected ']')")) == (
        "bad.yaml: not valid YAML (while parsing in line 1 expected ']')"
    )
    assert one_line(MemoryError()) == "out of memory; lower --batch_size or the batch settings of the config"


def test_a_log_line_starts_its_own_line_while_a_progress_bar_is_drawn():
    """`ERROR ...` used to be glued onto the unfinished line of a progress bar (issue 17, 7e): the bar is cleared,
    the line written from the start of a line, the bar drawn again below it."""
    out = _run("""
        import io, logging, sys
        from tqdm.auto import tqdm
        from mulap.infra import console
        stream = io.StringIO()
        sys.stderr = stream
        console.setup()
        bar = tqdm(total=3, desc="embed", file=sys.stderr, disable=False, mininterval=0)
        bar.update(1)
        logging.getLogger("mulap.inference.extract").error("skipped /music/a.mp3: truncated")
        bar.update(1)
        logging.getLogger("mulap.inference.extract").warning("second")
        bar.close()
        sys.__stderr__.write(stream.getvalue())
    """)
    assert out.returncode == 0, out.stderr
    segments = out.stderr.splitlines()  # also split at the carriage returns of a bar
    assert (
        "ERROR mulap.inference.extract: skipped /music/a.mp3: truncated" in segments
        and "WARNING mulap.inference.extract: second" in segments
    )
    assert not [s for s in segments if ("ERROR" in s or "WARNING" in s) and not s.startswith(("ERROR", "WARNING"))]
    assert segments[-1].startswith("embed:  67%")  # the bar is drawn again after each line


def test_end_progress_leaves_the_next_line_last():
    out = _run("""
        import sys
        from tqdm.auto import tqdm
        from mulap.infra import console
        bar = tqdm(total=4, desc="indexing", file=sys.stderr, disable=False, mininterval=0)
        bar.update(1)
        console.end_progress()
        print("mulap search: interrupted (SIGINT)", file=sys.stderr)
        del bar  # a bar closed again (at exit) draws nothing more
    """)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines[-1] == "mulap search: interrupted (SIGINT)" and lines[-2].startswith("indexing:  25%")
