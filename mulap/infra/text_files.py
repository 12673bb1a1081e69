"""Reading dataset metadata (JSON, CSV/TSV, plain lists) so that every problem names the file and
where in it: the line (1-based, as an editor shows it), the byte offset of a byte that is not
UTF-8, the record. Every reader of a metadata file goes through here, so the same mistake gets
the same message whichever dataset it is in.

Errors: `DatasetError` is the base of every dataset problem (a ValueError, so the CLI prints it
as one line); `DatasetFormatError` is a file that does not have the expected format.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BOM = codecs.BOM_UTF8


class DatasetError(ValueError):
    """A dataset file or record that cannot be used; the message names the file (and line or record)."""


class DatasetFormatError(DatasetError):
    """A dataset file that does not have its expected format.

    The message names the file and, where it applies, the line (1-based, as an editor shows it)
    or record, and says what is wrong.
    """

    def __init__(self, path: str | Path, reason: str, line: int | None = None, record: str | None = None):
        self.path = str(path)
        self.line = line
        self.record = record
        self.reason = re.sub(r"\s*[\r\n]+\s*", " ", reason)  # one line (a library's message may hold several)
        super().__init__(f"{where(path, line, record)}: {self.reason}")


def where(path: str | Path, line: int | None = None, record: str | None = None) -> str:
    """'path, line N, record 'k'' - the place an error message starts with."""
    out = str(path)
    if line is not None:
        out += f", line {line}"
    if record is not None:
        out += f", record {record!r}"
    return out


# ------------------------------------------------------------------ bytes -> text


def _encoding_error(path: str | Path, data: bytes, pos: int) -> DatasetFormatError:
    """The error for a byte at `pos` of `data` that does not decode as UTF-8."""
    line = data.count(b"\n", 0, pos) + 1
    column = pos - (data.rfind(b"\n", 0, pos) + 1) + 1
    return DatasetFormatError(
        path, f"not UTF-8 text: byte 0x{data[pos]:02x} at byte offset {pos} (column {column}); save the file as UTF-8", line=line
    )


def decode_text(data: bytes, path: str | Path) -> str:
    """UTF-8 bytes (a leading byte-order mark is dropped) -> str; a byte that is not UTF-8 is a
    DatasetFormatError naming the byte, its offset, line and column."""
    skip = len(BOM) if data.startswith(BOM) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _encoding_error(path, data, skip + exc.start) from None


def read_bytes(path: str | Path) -> bytes:
    """The bytes of `path`; an unreadable file (a folder, permission denied, I/O error) is a DatasetFormatError."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except OSError as exc:
        raise DatasetFormatError(path, f"cannot be read ({exc.strerror or exc})") from None


def read_text(path: str | Path) -> str:
    """The UTF-8 text of `path` (see `decode_text` and `read_bytes` for the errors)."""
    return decode_text(read_bytes(path), path)


def check_utf8(path: str | Path, block: int = 1 << 20) -> None:
    """Check a file is UTF-8 without holding it in memory (for large tables read by pandas);
    raises the same error as `read_text` for the first bad byte."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    try:
        with open(path, "rb") as fh:
            while True:
                chunk = fh.read(block)
                pending = len(decoder.getstate()[0])  # bytes of a character cut by the previous block
                try:
                    decoder.decode(chunk, final=not chunk)
                except UnicodeDecodeError as exc:
                    pos = offset - pending + exc.start
                    fh.seek(0)
                    raise _encoding_error(path, fh.read(pos + 1), pos) from None
                if not chunk:
                    return
                offset += len(chunk)
    except OSError as exc:
        raise DatasetFormatError(path, f"cannot be read ({exc.strerror or exc})") from None


# ------------------------------------------------------------------ lines, CSV, JSON


def text_lines(path: str | Path, text: str | None = None) -> list[tuple[int, str]]:
    """[(line number, line without its end-of-line)] of a text file; lines end at \\n (a \\r before it is dropped)."""
    text = read_text(path) if text is None else text
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [(n, ln[:-1] if ln.endswith("\r") else ln) for n, ln in enumerate(lines, start=1)]


def csv_rows(path: str | Path, text: str | None = None, **fmtparams) -> Iterator[tuple[int, list[str]]]:
    """(line, fields) for every row of a CSV/TSV file (csv.reader with `fmtparams`), line = the
    row's first line. Over-long fields and other csv errors are DatasetFormatErrors with the line."""
    text = read_text(path) if text is None else text
    reader = csv.reader(io.StringIO(text, newline=""), **fmtparams)
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                reason = (
                    f"a field longer than {csv.field_size_limit():,} characters (the csv module's limit); "
                    "usually an opening double quote without its closing one"
                )
            else:
                reason = f"malformed CSV: {exc}"
            raise DatasetFormatError(path, reason, line=start) from None
        yield start, row


def line_of(text: str, pos: int) -> int:
    """1-based line of character `pos` in `text`."""
    return text.count("\n", 0, pos) + 1


def read_json(path: str | Path, text: str | None = None, unique_keys: bool = False) -> Any:
    """Parse a JSON file. Invalid JSON names the line and column; with `unique_keys`, a key that
    appears twice in one object (json keeps only the last silently) names the lines of both."""
    text = read_text(path) if text is None else text

    def no_duplicates(pairs):
        seen: dict = {}
        for k, v in pairs:
            if k in seen:
                raise _DuplicateKey(k)
            seen[k] = v
        return seen

    try:
        return json.loads(text, object_pairs_hook=no_duplicates if unique_keys else None)
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(path, f"invalid JSON at column {exc.colno}: {exc.msg}", line=exc.lineno) from None
    except _DuplicateKey as exc:
        key = exc.args[0]
        places = [line_of(text, m.start()) for m in re.finditer(re.escape(json.dumps(key)) + r"\s*:", text)][:2]
        at = f" (lines {places[0]} and {places[1]})" if len(places) == 2 else ""
        raise DatasetFormatError(path, f"key {key!r} appears twice in one object{at}") from None
    except RecursionError:
        raise DatasetFormatError(path, "invalid JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer longer than Python's 4,300-digit limit
        raise DatasetFormatError(path, f"invalid JSON: {exc}") from None


class _DuplicateKey(Exception):
    pass


class FirstSeen:
    """Duplicate-id check that reports both places: `add(id, place)` raises DatasetFormatError
    naming the place of the first occurrence when `id` was seen before."""

    def __init__(self, what: str = "id"):
        self.what = what
        self.places: dict[str, str] = {}

    def add(self, key: str, path: str | Path, line: int | None = None, record: str | None = None) -> None:
        place = where(path, line, record)
        first = self.places.get(key)
        if first is not None:
            raise DatasetFormatError(path, f"duplicate {self.what} {key!r}: first at {first}", line=line, record=record)
        self.places[key] = place

    def __contains__(self, key: str) -> bool:
        return key in self.places


__all__ = [
    "DatasetError",
    "DatasetFormatError",
    "where",
    "decode_text",
    "read_bytes",
    "read_text",
    "check_utf8",
    "text_lines",
    "csv_rows",
    "read_json",
    "line_of",
    "FirstSeen",
]
