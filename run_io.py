"""
What both training scripts do around the algorithm: pick the device, guard and write the run
folder (out/RUN/config.json, log.jsonl, ckpt.pt), load the checkpoint a run starts from,
capture and restore RNG states, and report what stops a run.

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
import shutil
import signal
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from configurator import fail

# test hook: seconds a checkpoint write pauses half-way, so that a test can kill inside it
SLOW_WRITE = float(os.environ.get('RUN_IO_SLOW_WRITE', 0))


# -----------------------------------------------------------------------------
# before a run: device, run folder, the checkpoint it starts from

def resolve_device(device, dtype, compile):
    """(device, dtype, use_compile) with 'auto' made concrete: cuda, then mps, then cpu; bfloat16 on
    a GPU that has it; compile on CUDA. Exit 2 if what was asked for is not on this machine."""
    if device == 'auto':
        device = ('cuda' if torch.cuda.is_available() else 'mps' if torch.backends.mps.is_available()
                  else 'cpu')
    kind = device.split(':')[0]
    if kind not in ('cpu', 'cuda', 'mps'):
        fail(f"unknown device {device!r}: expected auto, cpu, cuda, cuda:N or mps")
    if kind == 'cuda' and not torch.cuda.is_available():
        fail(f"device is {device} but PyTorch sees no CUDA GPU (try --device=cpu)")
    if kind == 'mps' and not torch.backends.mps.is_available():
        fail("device is mps but PyTorch sees no MPS device (try --device=cpu)")
    if dtype == 'auto':
        dtype = 'bfloat16' if kind == 'cuda' and torch.cuda.is_bf16_supported() else 'float32'
    if dtype == 'bfloat16' and kind == 'cuda' and not torch.cuda.is_bf16_supported():
        fail("this GPU does not support bfloat16; use --dtype=float16 or float32")
    if compile == 'true' and (why := compile_unavailable(kind)):
        fail(f"{why}; run with --compile=False")
    return device, dtype, compile == 'true' or (compile == 'auto' and kind == 'cuda')


def check_run_dir(out_dir, init_from):
    """Exit 2 unless out_dir can take this run: a resume needs its checkpoint there, any other run
    a folder that holds no run yet; both a folder that can be written."""
    ckpt, log = Path(out_dir) / 'ckpt.pt', Path(out_dir) / 'log.jsonl'
    if init_from == 'resume' and not ckpt.is_file():
        if log.exists():
            fail(f"cannot resume: {out_dir} was stopped before its first checkpoint; delete the folder "
                 f"and start again")
        fail(f"cannot resume: {ckpt} does not exist (pass the run's folder as --out_dir)")
    if init_from != 'resume' and (ckpt.exists() or log.exists()):
        fail(f"{out_dir} already holds a run; continue it with --init_from=resume, or pick another --out_dir")
    if why := unwritable(out_dir):
        fail(f"cannot write the run folder {out_dir}: {why}; pick another --out_dir")


def load_start(init_from, out_dir, script, needed, shape_keys, config, overrides):
    """(checkpoint, shape): the checkpoint a run starts from, on the CPU (RNG states must stay there),
    None from scratch, out_dir's ckpt.pt to resume, the file init_from names to fine-tune; and its
    values of the keys that shape the model and its data (shape_keys), which config takes too. Exit 2
    if it cannot be read, was not written by `script` (it lacks a key of `needed`), or an override
    contradicts its shape. A resumed run's config keeps the init_from its run started with: config.json
    describes the run (scratch, or a fine-tuning of a parent), not how this process started."""
    if init_from == 'scratch':
        return None, {}
    if init_from == 'resume':
        check_run_dir(out_dir, init_from)
    path = Path(out_dir) / 'ckpt.pt' if init_from == 'resume' else init_from
    if not Path(path).is_file():
        fail(f"cannot start from {path}: no such file (init_from must be 'scratch', 'resume' or a "
             f"checkpoint)")
    try:
        checkpoint = load_checkpoint(path, 'cpu')
    except CheckpointError as e:
        fail(e)
    if not set(needed) <= checkpoint.keys():
        fail(f"{path} is not a {script} checkpoint")
    shape = shape_from(checkpoint, config, shape_keys, overrides)
    config.update(shape)
    if init_from == 'resume':
        config['init_from'] = checkpoint['config'].get('init_from', 'scratch')
    return checkpoint, shape


def shape_from(checkpoint, config, keys, overrides):
    """The checkpoint's values of the keys that shape the model and its data, which a resumed or
    fine-tuned run must keep; an override that contradicts one exits 2."""
    theirs = checkpoint['config']
    clash = [k for k in keys if k in overrides and theirs.get(k, config[k]) != config[k]]
    if clash:
        fail(f"the checkpoint has {', '.join(f'{k}={theirs[k]!r}' for k in clash)}, this run asks for "
             f"{', '.join(f'{k}={config[k]!r}' for k in clash)}; drop the override(s)")
    return {k: theirs[k] for k in keys if k in theirs}


def load_weights(model, state_dict):
    """Load a checkpoint's weights, with or without torch.compile's and DDP's name prefixes; exit 2
    if they do not fit the model (another shape than the one built)."""
    try:
        model.load_state_dict({k.removeprefix('_orig_mod.').removeprefix('module.'): v
                               for k, v in state_dict.items()})
    except (RuntimeError, KeyError, ValueError) as e:
        fail(f"the checkpoint's weights do not fit this model ({str(e).strip().splitlines()[0][:160]})")


def restore(checkpoint, scaler, device, rank=0, log_path=None):
    """What a resumed run takes back besides weights and optimizer state: the GradScaler, this process's
    RNG states, and the log trimmed to the checkpoint (what came after it is logged again)."""
    if checkpoint['scaler']:  # empty unless the checkpoint was float16
        scaler.load_state_dict(checkpoint['scaler'])
    set_rng_states(checkpoint['rng'], device, rank)
    if log_path is not None:
        trim_log(log_path, checkpoint['iter'])


def start_message(checkpoint, config, resumed, ignore=('init_from', 'out_dir', 'wd_timescale_iters',
                                                       'wd_timescale_frac')):
    """'resuming PATH at iteration N (weight_decay 0.1 -> 0.0)': where a run starts, and what it does
    differently from the checkpoint's run (it uses this run's values, never silently the old ones)."""
    old = checkpoint['config']
    changed = '; '.join(f"{k} {old.get(k)!r} -> {v!r}" for k, v in config.items()
                        if k not in ignore and old.get(k, v) != v)
    where = (f"resuming {Path(config['out_dir']) / 'ckpt.pt'}" if resumed
             else f"fine-tuning from {config['init_from']}")
    return f"{where} at iteration {checkpoint['iter']:,}" + (f" ({changed})" if changed else '')


# -----------------------------------------------------------------------------
# RNG states and processes

# The device this process trains on. Every collective below puts its tensor there: NCCL serves CUDA
# tensors only, so a flag built on the CPU would crash a GPU run, while gloo (the CPU tests' backend)
# serves both and would hide the mistake. start_processes sets it; no caller passes a device.
run_device = 'cpu'


def start_processes(device):
    """(rank, world_size, device) of this process. Under torchrun (DDP) each process joins the group
    and takes its own GPU; otherwise (0, 1, device)."""
    global run_device
    run_device = device
    if 'RANK' not in os.environ:
        return 0, 1, device
    if device.startswith('cuda'):
        device = run_device = f"cuda:{os.environ['LOCAL_RANK']}"
        torch.cuda.set_device(device)
    dist.init_process_group(backend='nccl' if device.startswith('cuda') else 'gloo')
    return dist.get_rank(), dist.get_world_size(), device


def rng_states(device):
    """Every process's CPU and CUDA RNG states (a collective under DDP), for an exact resume."""
    mine = dict(torch=torch.get_rng_state(),
                cuda=torch.cuda.get_rng_state(device) if device.startswith('cuda') else None)
    if not dist.is_initialized():
        return [mine]
    states = [None] * dist.get_world_size()
    dist.all_gather_object(states, mine)
    return states


def set_rng_states(states, device, rank=0):
    """Restore this process's states (the first process's if the run had another number of them)."""
    state = states[rank] if rank < len(states) else states[0]
    torch.set_rng_state(state['torch'])
    if device.startswith('cuda') and state['cuda'] is not None:
        torch.cuda.set_rng_state(state['cuda'], device)  # the generator of the device in use


def any_process(flag):
    """True if flag (a bool, or a 0-d tensor: read once, after the collective) is true on any process.
    A collective under DDP: every process must call it."""
    if not dist.is_initialized():
        return bool(flag)
    t = (flag.float() if torch.is_tensor(flag) else torch.tensor(float(flag))).to(run_device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def mean_over_processes(t):
    """The mean of a tensor over all processes (itself without DDP); a collective under DDP."""
    if dist.is_initialized():
        t = t.to(run_device)
        dist.all_reduce(t, op=dist.ReduceOp.AVG)
    return t


def minutes_passed(since, minutes):
    """Whether `minutes` have passed since the time.perf_counter() value `since`. Under DDP the processes,
    whose clocks differ, agree: true if on any of them (a collective, so every process must ask)."""
    return any_process(time.perf_counter() - since > 60 * minutes)


def end_processes(status=None):
    """Exit with status (None: return, if not under DDP). Under DDP the processes first leave the
    process group together, then exit at once: gloo's worker threads may still be freeing finished
    work while Python shuts down, and one that needs the GIL then aborts the process (SIGABRT)."""
    if not dist.is_initialized():
        if status is not None:
            sys.exit(status)
        return
    if _tracker is not None:  # os._exit below skips the atexit hook that would finish it
        _tracker.finish()
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status or 0)


# -----------------------------------------------------------------------------
# the run folder's files

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
    """Create the run folder and write config.json; an unwritable folder is an OSError. With
    config['wandb_log'], start the Weights & Biases run that append_log feeds."""
    wandb = _import_wandb() if config.get('wandb_log') else None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps({k: _finite_or_none(v) for k, v in config.items()}, indent=1, default=str).encode()
    atomic_write(out_dir / 'config.json', lambda f: f.write(text))
    if wandb is not None:
        global _tracker
        _tracker = wandb.init(project=config['wandb_project'], config=config,
                              name=config['wandb_run_name'] or out_dir.name)
    return out_dir


# experiment tracking, as nanoGPT's wandb_log: the W&B run every log record also goes to, or None
_tracker = None


def _import_wandb():
    try:
        import wandb
    except ImportError:
        fail("wandb_log=True needs the wandb package: pip install wandb (or --wandb_log=False)")
    return wandb


def _finite_or_none(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def append_log(path, record):
    """Append one JSON line; NaN and inf become null so every line is strict JSON. With wandb_log,
    the same record goes to Weights & Biases, at the step of its iteration."""
    record = {k: _finite_or_none(v) for k, v in record.items()}
    with open(path, 'a') as f:
        f.write(json.dumps(record) + '\n')
    if _tracker is not None:
        _tracker.log(record, step=record.get('iter'))


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


def save_checkpoint(checkpoint, path, log=None, keep=None):
    """torch.save, atomically: a crash mid-write keeps the previous checkpoint intact. The log
    is fsynced first, so that after a power cut it still holds every line up to the checkpoint.
    keep: a second name for the same bytes, a snapshot that later checkpoints do not replace."""
    if log is not None and Path(log).exists():
        with open(log, 'ab') as f:  # 'ab': Windows fsyncs only files open for writing
            os.fsync(f.fileno())
    atomic_write(path, lambda f: torch.save(checkpoint, f))
    if keep is not None:
        with open(path, 'rb') as source:
            atomic_write(keep, lambda f: shutil.copyfileobj(source, f))


class CheckpointError(Exception):
    pass


def stop_diverged(log_path, record, where, master=True):
    """A non-finite loss: log it (record None: already logged), keep the last good checkpoint, exit 1."""
    if master:
        if record is not None:
            append_log(log_path, {**record, 'diverged': True})
        ckpt_path = Path(log_path).parent / 'ckpt.pt'
        kept = f"last good checkpoint {ckpt_path}" if ckpt_path.exists() else "no checkpoint was saved"
        print(f"diverged: {where}; {kept}", file=sys.stderr)
    end_processes(1)


def stop_if_diverged(losses, last_iter, log_path, line_at, master=True):
    """Stop (exit 1) at the first non-finite loss among the last len(losses) iterations, which end at
    last_iter, on any process: log line_at(that iteration) with a null loss. One host sync; a collective."""
    bad = ~torch.isfinite(torch.stack(losses)) if losses else None
    if any_process(bad.any() if losses else False):
        bad_iter = last_iter - len(losses) + 1 + (int(bad.int().argmax()) if bad.any() else 0)
        stop_diverged(log_path, {**line_at(bad_iter), 'loss': float('nan')},
                      f"the loss is not finite at iteration {bad_iter:,}", master)


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
    """SIGINT / SIGTERM set .signum, so the loop can finish its step (or epoch: `unit`), checkpoint
    and exit with 128 + signum; a second signal stops at once (the last checkpoint is still intact)."""

    def __init__(self, unit='step'):
        self.signum, self.unit = None, unit
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, self._handle)

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name  # os.write: print is not safe inside a signal handler
        if self.signum is not None:
            os.write(2, f"\nerror: {name} again: stopped at once; the last checkpoint is kept\n".encode())
            os._exit(128 + signum)
        self.signum = signum
        os.write(2, f"\n{name}: stopping after this {self.unit}, with a checkpoint (send it again to "
                    f"stop at once)\n".encode())

    def requested(self, can_agree=True):
        """True once a signal arrived. Under DDP the processes agree first (a collective), only at
        points where all of them ask (can_agree), so that they stop at the same step."""
        if not dist.is_initialized():
            return self.signum is not None
        return can_agree and any_process(self.signum is not None)

    def exit(self, where=None):
        """Exit 128 + signum, saying where the run stopped (where=None: silently, as a DDP worker)."""
        signum = self.signum or signal.SIGTERM  # a DDP process stopped because another was signalled
        if where is not None:
            print(f"stopped by {signal.Signals(signum).name}: {where}; continue with --init_from=resume",
                  file=sys.stderr, flush=True)
        end_processes(128 + signum)


def gpt_eval_line(record):
    """The GPT eval line on the terminal: losses, error, the EMA's loss, the angle and its prediction."""
    angle = '' if record['angular_update'] is None else f" | angle {record['angular_update']:.2e}"
    if angle and record['angular_update_eq']:
        angle += f" (eq {record['angular_update_eq']:.2e})"
    return (f"=== eval iter {record['iter']:>6} | train {record['train_loss']:.4f} | "
            f"val {record['val_loss']:.4f} ({100 * record['val_err']:.1f}% err) | "
            f"ema val {record['val_loss_ema']:.4f}{angle} ===")


def gpt_log_line(record, eta):
    """The GPT training line on the terminal, one per log_interval, with the time left."""
    mfu = f" | mfu {100 * record['mfu']:4.1f}%" if 'mfu' in record else ''
    return (f"iter {record['iter']:>6} | loss {record['loss']:.4f} | lr {record['lr']:.2e} | "
            f"|g| {record['grad_norm']:6.3f} | |w| {record['weight_norm']:7.1f} | "
            f"{record['tokens_per_s'] / 1e3:6.1f}k tok/s | {record['ms_per_iter']:6.0f} ms/it{mfu} | "
            f"eta {format_duration(eta)}")


def resnet_header():
    return (f"\n{'epoch':>6} {'loss':>8} {'train err':>10} {'test err':>9} {'ema err':>8} {'|w|':>9} "
            f"{'lr':>8} {'img/s':>7} {'eta':>7}")


def resnet_row(record, ev, images_per_s, eta):
    """The ResNet table's row of an epoch (its training line record and its eval line ev, or None),
    errors in percent, and below it a line of the eval's other numbers."""
    pct = lambda v: f"{100 * v:.2f}%"
    errs = ('', '', '') if ev is None else (pct(ev['train_err']), pct(ev['test_err']),
                                            pct(ev['test_err_ema']) if 'test_err_ema' in ev else '-')
    row = (f"{record['epoch']:>6} {record['loss']:>8.4f} {errs[0]:>10} {errs[1]:>9} {errs[2]:>8} "
           f"{record['weight_norm']:>9.2f} {record['lr']:>8.1e} {images_per_s:>7.0f} "
           f"{format_duration(eta):>7}")
    if ev is None:
        return row
    extra = [f"{k} {ev[k]:.4g}" for k in ('test_loss', 'eff_lr', 'angular_update', 'angular_update_eq',
                                         'trace_hessian') if ev.get(k) is not None]
    extra += [f"flow_test_err {pct(ev['flow_test_err'])}"] if 'flow_test_err' in ev else []
    return row + f"\n{'':>6} eval: " + ' | '.join(extra)


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
