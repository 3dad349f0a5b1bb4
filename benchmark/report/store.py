"""Result rows: one JSON object per benchmark cell, appended to ``<run dir>/results.jsonl``.

Every row is validated against one schema before it is written; metrics are plain floats. A row is
appended whole with a single write, so an interrupted run leaves at most one torn last line, which
readers skip with a warning.

A run directory also holds ``run.json``, its manifest: the configuration every row in it shares (see
:meth:`ResultStore.claim`). Rows of another configuration or package version are refused rather than
mixed into one leaderboard. The manifest also keeps the ``provenance`` of the row that created it
(versions, commit, machine: :mod:`benchmark.engine.provenance`); it is never compared, since shards and
resumed runs may come from other machines, and each row carries its own.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

from benchmark.core.atomic import append_line, create_bytes_once
from benchmark.core.errors import BenchError, ConfigError

RESULTS_FILE = "results.jsonl"
MANIFEST_FILE = "run.json"
MANIFEST_SCHEMA = 1  # bump when the manifest's layout changes
STATUSES = ("ok", "diverged", "failed")
# a row's diagnostics that are wall-clock seconds: they differ between two runs of one command, nothing else may
WALL_CLOCK_DIAGNOSTICS = ("cell_s", "probe_compute_s")
_ROW_TYPES: dict[str, type | tuple[type, ...]] = {
    "preset": str, "dataset": str, "model": str, "method": str, "forget_classes": list, "seed": int,
    "status": str, "metrics": dict, "oracle": dict, "hparams": dict, "config_hash": str, "split_hash": str,
    "version": str, "started": str, "finished": str,
}
# fields a row may lack (rows written before they existed still load), checked where present
_OPTIONAL_ROW_TYPES: dict[str, type | tuple[type, ...]] = {"provenance": dict}


class RowError(BenchError, ValueError):
    """A result row does not follow the schema."""


class RunDirError(ConfigError):
    """A run directory holds rows of another configuration or version; the message says what differs."""


def finite_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Keep the metrics that exist as finite numbers, as floats (NaN has no place in JSON rows)."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[key] = float(value)
    return out


def validate_row(row: dict[str, Any]) -> dict[str, Any]:
    """Check a row against the schema; return it unchanged or raise :class:`RowError`."""
    for key, kind in (_ROW_TYPES | _OPTIONAL_ROW_TYPES).items():
        if key not in row:
            if key in _OPTIONAL_ROW_TYPES:
                continue
            raise RowError(f"result row lacks {key!r}")
        if not isinstance(row[key], kind) or isinstance(row[key], bool):
            raise RowError(f"result row field {key!r} should be {kind}, got {type(row[key]).__name__}")
    if row["status"] not in STATUSES:
        raise RowError(f"status must be one of {STATUSES}, got {row['status']!r}")
    if row["status"] == "failed" and "error" not in row:
        raise RowError("a failed row must say why in 'error'")
    if not all(isinstance(c, int) for c in row["forget_classes"]):
        raise RowError("forget_classes must be integers")
    for part in ("metrics", "oracle"):
        for key, value in row[part].items():
            if not isinstance(value, float) or not math.isfinite(value):
                raise RowError(f"{part}[{key!r}] must be a finite float, got {value!r}")
    return row


class ResultStore:
    """The rows of one run directory.

    Args:
        out_dir: the run directory; rows go to ``out_dir/results.jsonl``.
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.dir = Path(out_dir)
        self.path = self.dir / RESULTS_FILE
        self.manifest_path = self.dir / MANIFEST_FILE
        self._manifest: dict[str, Any] | None = None  # claimed, not yet written

    def append(self, row: dict[str, Any]) -> None:
        validate_row(row)
        if self._manifest is not None:
            # an added key, read by no check: manifests without it (and their schema number) stay valid
            manifest = self._manifest | ({"provenance": row["provenance"]} if "provenance" in row else {})
            text = json.dumps(manifest, indent=1, sort_keys=True).encode()
            if not create_bytes_once(self.manifest_path, text):
                self._compare_manifest()  # another process claimed the directory meanwhile
            self._manifest = None
        append_line(self.path, json.dumps(row, sort_keys=False))

    def rows(self) -> list[dict[str, Any]]:
        return read_rows(self.path)

    def claim(self, config: dict[str, Any]) -> None:
        """Make sure every row in this directory shares ``config``; record it with the first row.

        ``config`` is what must not vary between the rows of one directory (the preset without its grid
        axes, the attack settings, the package version); methods, forget classes, seeds and shards may
        grow from run to run. The check happens now, before any work; ``run.json`` is written with the
        first row (create-once, so shards starting together agree, and a command refused for bad
        input leaves nothing behind). A directory with rows but no manifest (written before manifests
        existed) is checked by the version and preset its rows carry.

        Raises:
            RunDirError: the directory holds another configuration; the message names each difference.
        """
        config = json.loads(json.dumps(config, default=str))  # tuples as lists: compared as read back
        self._manifest = {"schema": MANIFEST_SCHEMA, "config": config}
        if self.manifest_path.exists():
            self._compare_manifest()
        else:
            self._check_legacy_rows(config)

    def _compare_manifest(self) -> None:
        manifest = self.manifest_path
        try:
            existing = json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise RunDirError(f"{manifest} is unreadable ({exc}); use a new --out directory, or delete the "
                              f"file if you are sure every row in {self.dir} comes from this command") from None
        if existing.get("schema") != MANIFEST_SCHEMA:
            raise RunDirError(f"{manifest} has manifest schema {existing.get('schema')!r}, this version writes "
                              f"{MANIFEST_SCHEMA}: use a new --out directory")
        differences = _differences(existing.get("config", {}), self._manifest["config"], growing=GROWING)
        if differences:
            raise RunDirError(f"{self.dir} holds rows of a different configuration, which would mix in one "
                              f"leaderboard: " + "; ".join(differences) + ". Use a new --out directory "
                              f"(or the configuration recorded in {manifest}).")

    def _check_legacy_rows(self, config: dict[str, Any]) -> None:
        for row in self.rows():
            for key in ("version", "preset"):
                if key in config and row[key] != config[key]:
                    raise RunDirError(f"{self.path} holds rows with {key} {row[key]!r}, this run has "
                                      f"{config[key]!r}: use a new --out directory")

    def finished_hashes(self) -> set[str]:
        """Config hashes of cells that already have a row (``ok`` or ``diverged``): skipped on resume."""
        return {r["config_hash"] for r in self.rows() if r["status"] in ("ok", "diverged")}


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(validate_row(json.loads(line)))
        except (json.JSONDecodeError, RowError) as exc:
            warnings.warn(f"{path}:{number}: skipping an unreadable row ({exc})", stacklevel=2)
    return rows


# Mappings of the configuration that may gain entries from run to run: a method new to the directory brings its
# hyperparameters, which change no row already there (a method's own settings are in its rows' hashes).
GROWING = ("settings.methods",)


def _differences(recorded: Any, current: Any, prefix: str = "", limit: int = 6,
                 growing: tuple[str, ...] = ()) -> list[str]:
    """Human-readable differences between two JSON values, by dotted key (at most ``limit``); keys of the
    ``growing`` mappings that the recorded value lacks are additions, not differences."""
    if isinstance(recorded, dict) and isinstance(current, dict):
        out: list[str] = []
        for key in sorted(recorded.keys() | current.keys(), key=str):
            if prefix.rstrip(".") in growing and key not in recorded:
                continue
            out += _differences(recorded.get(key), current.get(key), f"{prefix}{key}.", limit, growing)
        return out[:limit]
    if recorded == current:
        return []
    return [f"{prefix.rstrip('.')} is {json.dumps(current, default=str)} here but "
            f"{json.dumps(recorded, default=str)} in the directory"]
