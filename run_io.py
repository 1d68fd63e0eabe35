"""
The run folder both training scripts write: out/RUN/config.json, log.jsonl and ckpt.pt,
and how a run reports what stops it.

Everything here survives a crash: the config and checkpoint are written to a temporary
file, fsynced and renamed, so a kill at any moment leaves the previous version intact; the
log is one JSON object per line, made durable before each checkpoint, and a torn last line
is skipped by read_log. Exit statuses (README, "Exit statuses and faults"): 0 done, 1 a
fault met at run time, 2 bad input, 130 / 143 stopped by SIGINT / SIGTERM.
"""
import io
import json
import math
import os
import pickle
import signal
import sys
import time
from pathlib import Path

import torch

# test hook: seconds a checkpoint write pauses half-way, so that a test can kill inside it
SLOW_WRITE = float(os.environ.get('RUN_IO_SLOW_WRITE', 0))


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
            if SLOW_WRITE:  # the test hook: half the bytes, a pause, the rest
                buffer = io.BytesIO()
                write(buffer)
                data = buffer.getvalue()
                f.write(data[:len(data) // 2])
                f.flush()
                time.sleep(SLOW_WRITE)
                f.write(data[len(data) // 2:])
            else:
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


def save_checkpoint(checkpoint, path, log=None):
    """torch.save, atomically: a crash mid-write keeps the previous checkpoint intact. The log
    is fsynced first, so that after a power cut it still holds every line up to the checkpoint."""
    if log is not None and Path(log).exists():
        with open(log, 'ab') as f:  # 'ab': Windows fsyncs only files open for writing
            os.fsync(f.fileno())
    atomic_write(path, lambda f: torch.save(checkpoint, f))


class CheckpointError(Exception):
    pass


def load_checkpoint(path, device='cpu'):
    """The checkpoint at path; CheckpointError (one line) if it is not a readable checkpoint."""
    try:
        # weights_only=False: the checkpoint holds RNG states and the config, written by this code
        checkpoint = torch.load(path, map_location=device, weights_only=False)
    except (OSError, RuntimeError, EOFError, ValueError, KeyError, AttributeError, ImportError,
            pickle.UnpicklingError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot read the checkpoint {path} ({first[:160]}): truncated, "
                              f"corrupted or not a checkpoint") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} is not a checkpoint written by this repository's training scripts")
    return checkpoint


def unwritable(folder):
    """Why folder cannot be created and written to, or None (checked before a run starts)."""
    folder = Path(folder).absolute()
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def compile_unavailable(device_type):
    """Why torch.compile cannot work here, or None. Cheap: what inductor needs first (a C++
    compiler on the CPU, Triton on a GPU); anything else fails at the first step, reported by
    report_faults in one line."""
    import torch._dynamo
    if not torch._dynamo.is_dynamo_supported():
        return f"torch.compile is not supported on this platform (Python {sys.version.split()[0]})"
    if device_type == 'cuda':
        from torch.utils._triton import has_triton
        return None if has_triton() else "torch.compile on a GPU needs Triton, which is not installed"
    if device_type == 'cpu':
        try:
            from torch._inductor import cpp_builder
            cpp_builder.get_cpp_compiler()  # runs the compiler once; raises if it is missing or broken
        except ImportError:
            return None
        except Exception as e:
            return f"torch.compile on the CPU needs a working C++ compiler ({str(e).splitlines()[0]})"
    return None


def report_faults():
    """Exceptions that are faults of the platform, not bugs, end the run in one line, no traceback:
    a failed torch.compile and an OSError on a file (disk full, ...) exit 1; Ctrl-C before training
    started exits 130. Any other exception keeps its traceback."""
    default = sys.excepthook

    def hook(kind, error, tb):
        message, status = None, 1
        if issubclass(kind, KeyboardInterrupt):
            message, status = "interrupted before training started; nothing to keep", 130
        elif kind.__module__.startswith(('torch._dynamo', 'torch._inductor')):
            first = next((line for line in str(error).splitlines() if line.strip()), kind.__name__)
            message = f"torch.compile failed ({first.strip()[:200]}); run again with --compile=False"
        elif issubclass(kind, OSError) and error.filename is not None:
            message = f"cannot access {error.filename}: {error.strerror}; the last checkpoint is kept"
        if message is None:
            return default(kind, error, tb)
        sys.stdout.flush()
        print(f"error: {message}", file=sys.stderr, flush=True)
        os._exit(status)
    sys.excepthook = hook


class GracefulStop:
    """SIGINT / SIGTERM set .signum, so the loop can finish its step, checkpoint and exit
    with 128 + signum; a second signal stops at once (the last checkpoint is still intact)."""

    def __init__(self):
        self.signum = None
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, self._handle)

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name  # os.write: print is not safe inside a signal handler
        if self.signum is not None:
            os.write(2, f"\nerror: {name} again: stopped at once; the last checkpoint is kept\n".encode())
            os._exit(128 + signum)
        self.signum = signum
        os.write(2, f"\n{name}: stopping after this step, with a checkpoint (send it again to stop "
                    f"at once)\n".encode())

    def exit(self, where=None):
        """Exit 128 + signum, saying where the run stopped (where=None: silently, as a DDP worker)."""
        signum = self.signum or signal.SIGTERM  # a DDP process stopped because another was signalled
        if where is not None:
            print(f"stopped by {signal.Signals(signum).name}: {where}; continue with --init_from=resume",
                  file=sys.stderr, flush=True)
        sys.exit(128 + signum)


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
