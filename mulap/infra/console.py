"""What the `mulap` command prints: one log handler, no known chatter, repeated warnings summarised.

Why INFO lines used to print twice: `import lightning` gives the `lightning` logger a handler
of its own ("INFO: ..."), and its records also propagate to the root handler that the CLI
installs ("INFO lightning...: ..."). `setup` installs the root handler, imports Lightning
(for the commands that use it) and takes Lightning's handler off, so every line goes
through one handler, which also drops Lightning's advertising tips.

Known chatter from Lightning/torch is ignored by message (KNOWN_CHATTER); scikit-learn's
UndefinedMetricWarning (a metric undefined for a tag or class absent from a split, handled
by mulap.evaluation.metrics) is counted and summarised once at the end of the command.

Only the CLI calls `setup`: a library leaves logging to its caller.
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
import warnings
from collections import Counter
from collections.abc import Callable

# Lightning/torch warnings that say nothing a mulap user can act on (regexes matched at the start)
KNOWN_CHATTER = (
    # with an OnExceptionCheckpoint callback, fit(ckpt_path=None) looks for a "last" checkpoint to resume
    # from; mulap passes the checkpoint explicitly when it resumes (training/pretrain.py resume_checkpoint)
    r"`\.fit\(ckpt_path=None\)` was called without a model",
    r"\.fit\(ckpt_path=\"last\"\) is set, but there is no last checkpoint",
    # Lightning 2.6 calling a torch pytree API that torch 2.13 deprecated
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # frozen probes train from in-memory cached features on purpose (no loader workers)
    r"The '(train|val|test)_dataloader' does not have many workers",
)
# Lightning log lines that are advertising or say "no TPU/HPU" on every run
_DROPPED_LOG_LINES = (
    "💡 Tip",
    "TPU available",
    "HPU available",
    "GPU available: False",
    "Loading `train_dataloader` to estimate number of stepping batches",
)

_HANDLER_NAME = "mulap-console"


class _Formatter(logging.Formatter):
    """`LEVEL name: message`, with Lightning's deep module names shortened to `lightning`."""

    def format(self, record: logging.LogRecord) -> str:
        name = "lightning" if record.name.startswith("lightning") else record.name
        return f"{record.levelname} {name}: {record.getMessage()}" + (
            "\n" + self.formatException(record.exc_info) if record.exc_info else ""
        )


class _DropChatter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.startswith("lightning") and str(record.msg).startswith(_DROPPED_LOG_LINES))


class WarningTally:
    """Counts warnings of some categories instead of printing each; `summary()` says it once."""

    def __init__(self, categories: tuple[type[Warning], ...]):
        self.categories = categories
        self.counts: Counter[str] = Counter()  # first line of the message -> count
        self._previous: Callable[..., None] | None = None  # warnings.showwarning before install()

    def install(self) -> None:
        for category in self.categories:
            warnings.filterwarnings("always", category=category)  # every occurrence reaches showwarning
        self._previous = warnings.showwarning
        previous = self._previous

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, self.categories):
                self.counts[str(message).splitlines()[0] if str(message) else category.__name__] += 1
                return
            previous(message, category, filename, lineno, file, line)

        warnings.showwarning = show

    def uninstall(self) -> None:
        if self._previous is not None:
            warnings.showwarning = self._previous
            self._previous = None

    def summary(self) -> str | None:
        total = sum(self.counts.values())
        if not total:
            return None
        names = "/".join(c.__name__ for c in self.categories)
        top = "; ".join(f"{n}x {msg}" for msg, n in self.counts.most_common(3))
        more = f"; and {len(self.counts) - 3} other message(s)" if len(self.counts) > 3 else ""
        return (
            f"scikit-learn raised {names} {total} time(s): {top}{more}. A metric is undefined for a tag or class "
            f"with no positive (or no negative) example in a split; mulap leaves it out of the macro averages "
            f"and reports it as null."
        )


_tally: WarningTally | None = None


class _CurrentStderr(logging.StreamHandler):
    """A handler that writes to whatever `sys.stderr` is when a record comes (pytest and notebooks swap it;
    a handler bound to the stream of its first setup would write to a closed file afterwards)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # StreamHandler.__init__ assigns it; the property always wins
        pass

    def emit(self, record: logging.LogRecord) -> None:
        try:
            write_line(self.format(record), self.stream)
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - logging's own contract: report, never raise
            self.handleError(record)


# torch re-raises an exception of a data-loader worker as "Caught <Type> in DataLoader worker process <n>.\n
# Original Traceback (most recent call last): ...\n<module>.<Type>: <message>"
_WORKER_ERROR = re.compile(r"^Caught (\w+) in DataLoader worker process \d+\.\nOriginal Traceback", re.S)


def one_line(exc: BaseException) -> str:
    """An error as the one line the CLI prints: the message of an exception raised in a data-loader worker (not
    torch's copy of the worker's traceback), the OS's reason after the file name, one line however many the message
    has."""
    text = str(exc)
    worker = _WORKER_ERROR.match(text)
    if worker:
        _, _, text = text.rpartition(f"{worker.group(1)}: ")  # the original message follows the last "<Type>: "
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError
        first = text.strip().splitlines()[0] if text.strip() else ""
        return f"out of memory{f' ({first})' if first else ''}; lower --batch_size or the batch settings of the config"
    if isinstance(exc, OSError) and exc.filename and text.startswith("[Errno"):  # not "[Errno 13] Permission denied: 'x'"
        return f"{exc.filename}: {exc.strerror}"
    return " ".join(part.strip() for part in text.splitlines() if part.strip()) or type(exc).__name__


def write_line(text: str, stream=None) -> None:
    """`text` on a line of its own, also while tqdm progress bars are drawn on the stream (they are cleared,
    the line written, and the bars drawn again below it), instead of after a bar's unfinished line."""
    from tqdm import tqdm

    stream = sys.stderr if stream is None else stream
    tqdm.write(text, file=stream)
    stream.flush()


def end_progress() -> None:
    """Close the progress bars still open (a command that stopped midway): each keeps its last state on a line of its
    own, and what is printed next comes after them; none is drawn again later, after the command's last line."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        try:
            bar.close()
        except Exception:  # noqa: BLE001 - a bar on a closed stream: nothing to tidy there
            pass


def setup(lightning: bool = False, level: int = logging.INFO) -> None:
    """Configure the console for a CLI command. `lightning`: the command trains with Lightning
    (import it now, so its own handler can be taken off, and count scikit-learn's metric warnings)."""
    global _tally
    root = logging.getLogger()
    for h in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(h)  # a second setup in one process (tests) replaces, never stacks
    handler = _CurrentStderr()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(_Formatter())
    handler.addFilter(_DropChatter())
    root.addHandler(handler)
    root.setLevel(level)
    for pattern in KNOWN_CHATTER:
        warnings.filterwarnings("ignore", message=pattern)
    if lightning:
        importlib.import_module("lightning")  # adds its handler now, so it can be removed below
        from sklearn.exceptions import UndefinedMetricWarning

        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logger = logging.getLogger(name)
            for h in list(logger.handlers):
                logger.removeHandler(h)
            logger.propagate = True
        if _tally is not None:
            _tally.uninstall()
        _tally = WarningTally((UndefinedMetricWarning,))
        _tally.install()


def finish() -> None:
    """Print what was counted (once), at the end of a command."""
    global _tally
    if _tally is not None:
        text = _tally.summary()
        if text:
            logging.getLogger("mulap").warning(text)
        _tally.uninstall()
        _tally = None
