"""
The run folder both training scripts write: out/RUN/config.json, log.jsonl and ckpt.pt.

Everything here survives a crash: the config and checkpoint are written to a temporary
file, fsynced and renamed, so a kill at any moment leaves the previous version intact; the
log is one JSON object per line, and a torn last line is skipped by read_log.
"""
import json
import math
import os
from pathlib import Path

import torch


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open a folder; the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path, write):
    """Call write(file) on a temporary file beside path, fsync it, then rename it over path."""
    path = Path(path)
    tmp = path.with_name(path.name + '.tmp')
    try:
        with open(tmp, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():  # a failed write leaves nothing half-written behind
            tmp.unlink()
    _fsync_dir(path.parent)


def prepare_run_dir(out_dir, config):
    """Create the run folder and write config.json; an unwritable folder is an OSError."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(config, indent=1, default=str).encode()
    atomic_write(out_dir / 'config.json', lambda f: f.write(text))
    return out_dir


def _finite_or_none(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def append_log(path, record):
    """Append one JSON line; NaN and inf become null so every line is strict JSON."""
    record = {k: _finite_or_none(v) for k, v in record.items()}
    with open(path, 'a') as f:
        f.write(json.dumps(record) + '\n')


def read_log(path):
    """The log's records; a line that is not complete JSON (a torn write) is skipped."""
    records = []
    try:
        with open(path) as f:
            for line in f:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    except FileNotFoundError:
        pass
    return [r for r in records if isinstance(r, dict)]


def trim_log(path, last_iter):
    """Keep only records up to last_iter (a resumed run re-logs what came after its checkpoint)."""
    if not Path(path).exists():
        return
    kept = [r for r in read_log(path) if r.get('iter', -1) <= last_iter]
    text = ''.join(json.dumps(r) + '\n' for r in kept).encode()
    atomic_write(path, lambda f: f.write(text))


def save_checkpoint(checkpoint, path):
    """torch.save, atomically: a crash mid-write keeps the previous checkpoint intact."""
    atomic_write(path, lambda f: torch.save(checkpoint, f))


def load_checkpoint(path, device='cpu'):
    # weights_only=False: the checkpoint holds RNG states and the config, written by this code
    return torch.load(path, map_location=device, weights_only=False)


def format_duration(seconds):
    """'1h12m', '3m05s', '42s' for progress lines."""
    if not math.isfinite(seconds):
        return '?'
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"
