"""
Train a GPT-2 language model with AdamW (or SGD), logging what weight decay does to the run.

    python train_gpt.py config/gpt_cpu_demo.py                      # a few minutes on a laptop CPU
    python train_gpt.py config/gpt_cosine.py --weight_decay=0.1     # the paper's main run (Fig. 3)
    python train_gpt.py config/gpt_constant_lr.py --weight_decay=0.3
    python train_gpt.py config/gpt_finetune.py --init_from=out/RUN/ckpt.pt   # tiny-LR fine-tuning
    python train_gpt.py config/gpt_cpu_demo.py --init_from=resume   # continue a run exactly
    torchrun --standalone --nproc_per_node=8 train_gpt.py config/gpt_bf16.py

Every run writes out/RUN/config.json, log.jsonl (one JSON object per line) and ckpt.pt.
Exit status: 0 done, 1 a fault at run time (the loss diverged: logged, last good checkpoint
kept), 2 bad input, 130 / 143 stopped by SIGINT / SIGTERM after checkpointing its last step.
"""
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

import optim
import run_io
from configurator import configure, run_name
from model import GPT, GPTConfig, bf16_peak_flops

# -----------------------------------------------------------------------------
# defaults: the paper's main LLM run (GPT-2-small, context 256, OpenWebText; Sec. 3, Fig. 3)
# I/O
out_dir = ''  # '' means out/<a name built from the overrides>
eval_interval = 200  # the authors' value
eval_iters = 125  # batches per split per eval: the authors' 1,000 sequences at batch 8
log_interval = 10
init_from = 'scratch'  # 'scratch', 'resume' (out_dir/ckpt.pt), or a ckpt.pt path to fine-tune from
# data
dataset = 'openwebtext'
data_dir = ''  # '' means data/<dataset>, as written by prepare_data.py
batch_size = 8  # micro-batch; the paper's global batch is 8 x 32 = 256 sequences
gradient_accumulation_steps = 32  # in total, divided among DDP processes
block_size = 256  # the paper's context (GPT-2 has 1024)
# model: GPT-2 small without biases or dropout
n_layer = 12
n_head = 12
n_embd = 768
dropout = 0.0
bias = False
vocab_multiple = 64  # round the vocabulary up (50257 -> 50304, as the authors' runs); 1 keeps it
# optimizer: AdamW(0.9, 0.95), lr 6e-4, clip 1.0; weight decay off as in the authors' script
optimizer = 'adamw'  # or 'sgd' (with momentum; the appendix run)
learning_rate = 6e-4
max_iters = 50000
weight_decay = 0.0  # the paper compares 0, 0.1 and 0.3
wd_mode = 'decoupled'  # 'decoupled' (AdamW), 'l2' (wd*p added to the gradient), 'independent'
wd_params = 'matrices'  # 'matrices', 'all' (LayerNorm gains too), or name substrings
beta1 = 0.9
beta2 = 0.95
momentum = 0.9  # SGD only
grad_clip = 1.0  # 0 disables clipping
ema_coef = 0.99  # EMA of the weights, evaluated beside the model
# learning-rate schedule: 400 warmup steps, cosine to 6e-5 (decay_lr=False: the constant-LR runs)
decay_lr = True
warmup_iters = 400
lr_decay_iters = 0  # 0 means max_iters
min_lr = 6e-5
# system
device = 'auto'  # 'auto' picks cuda, then mps, then cpu
dtype = 'auto'  # 'float32', 'bfloat16', 'float16' (autocast); 'auto': bfloat16 where supported
compile = 'auto'  # 'auto' compiles on CUDA only; True or False
seed = 0
config, overrides = configure(globals(), __doc__)
# -----------------------------------------------------------------------------

run_io.report_faults()  # a failed compile, a disk error, Ctrl-C before the loop: one line, no traceback


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


for key in ('batch_size', 'gradient_accumulation_steps', 'block_size', 'n_layer', 'n_head', 'n_embd',
            'eval_interval', 'eval_iters', 'log_interval', 'vocab_multiple'):
    if globals()[key] < 1:
        fail(f"{key} must be at least 1, got {globals()[key]}")
for key in ('max_iters', 'warmup_iters', 'lr_decay_iters', 'learning_rate', 'min_lr', 'weight_decay',
            'grad_clip'):
    if not globals()[key] >= 0:  # also catches nan
        fail(f"{key} must be >= 0, got {globals()[key]}")
for key in ('beta1', 'beta2', 'ema_coef', 'dropout', 'momentum'):
    if not 0 <= globals()[key] < 1:
        fail(f"{key} must be in [0, 1), got {globals()[key]}")
if n_embd % n_head:
    fail(f"n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
if max_iters > 0 and warmup_iters > max_iters:
    fail(f"warmup_iters ({warmup_iters}) is longer than training (max_iters {max_iters}); "
         f"lower --warmup_iters")
if decay_lr and lr_decay_iters and lr_decay_iters < warmup_iters:
    fail(f"lr_decay_iters ({lr_decay_iters}) ends before the warmup ({warmup_iters} iterations)")
if decay_lr and min_lr > learning_rate:
    fail(f"min_lr ({min_lr}) is above learning_rate ({learning_rate}): the cosine would rise")
choices = dict(optimizer=('adamw', 'sgd'), wd_mode=optim.WD_MODES,
               dtype=('auto', 'float32', 'bfloat16', 'float16'), compile=('auto', 'true', 'false'))
compile = str(compile).lower()  # --compile=True arrives as the string 'True' (the default is a str)
for key, allowed in choices.items():
    if globals()[key] not in allowed:
        fail(f"unknown {key} {globals()[key]!r}: expected one of {', '.join(allowed)}")
if device == 'auto':
    device = 'cuda' if torch.cuda.is_available() else 'mps' if torch.backends.mps.is_available() else 'cpu'
device_type = device.split(':')[0]
if device_type not in ('cpu', 'cuda', 'mps'):
    fail(f"unknown device {device!r}: expected auto, cpu, cuda, cuda:N or mps")
if device_type == 'cuda' and not torch.cuda.is_available():
    fail("device is cuda but PyTorch sees no CUDA GPU (try --device=cpu)")
if device_type == 'mps' and not torch.backends.mps.is_available():
    fail("device is mps but PyTorch sees no MPS device (try --device=cpu)")
if dtype == 'auto':
    dtype = 'bfloat16' if device_type == 'cuda' and torch.cuda.is_bf16_supported() else 'float32'
if dtype == 'bfloat16' and device_type == 'cuda' and not torch.cuda.is_bf16_supported():
    fail("this GPU does not support bfloat16; use --dtype=float16 or float32")
if compile == 'true' and (why := run_io.compile_unavailable(device_type)):
    fail(f"{why}; run with --compile=False")
if init_from not in ('scratch', 'resume') and not Path(init_from).is_file():
    fail(f"init_from must be 'scratch', 'resume' or an existing checkpoint file, got {init_from!r}")

# -----------------------------------------------------------------------------
# setup: processes, device, precision, run folder

ddp = int(os.environ.get('RANK', -1)) != -1  # launched by torchrun
rank, world_size = (int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])) if ddp else (0, 1)
if gradient_accumulation_steps % world_size:
    fail(f"gradient_accumulation_steps ({gradient_accumulation_steps}) must be a multiple of the "
         f"number of processes ({world_size})")
accum_steps = gradient_accumulation_steps // world_size  # micro-steps per process
if ddp:
    if device_type == 'cuda':
        device = f"cuda:{os.environ['LOCAL_RANK']}"
        torch.cuda.set_device(device)
    dist.init_process_group(backend='nccl' if device_type == 'cuda' else 'gloo')
master = rank == 0  # the one process that evaluates, logs and saves
print0 = print if master else (lambda *a, **k: None)
ptdtype = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}[dtype]
autocast = nullcontext() if dtype == 'float32' else torch.autocast(device_type, dtype=ptdtype)
torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cudnn.allow_tf32 = True

data_path = Path(data_dir or os.path.join('data', dataset))
if not all((data_path / f).is_file() for f in ('train.bin', 'val.bin', 'meta.json')):
    if dataset not in ('shakespeare_char', 'shakespeare', 'openwebtext'):
        fail(f"unknown dataset {dataset!r} ({data_path} has no train.bin, val.bin and meta.json): "
             f"prepare_data.py prepares shakespeare_char, shakespeare and openwebtext")
    fail(f"{data_path} has no train.bin, val.bin and meta.json; run: python prepare_data.py {dataset}")
try:
    with open(data_path / 'meta.json') as f:
        meta = json.load(f)
except (OSError, ValueError):
    meta = None
if not (isinstance(meta, dict) and isinstance(meta.get('vocab_size'), int) and meta['vocab_size'] > 0):
    fail(f"{data_path / 'meta.json'} is unreadable or has no vocab_size; prepare the data again: "
         f"python prepare_data.py {dataset}")
n_tokens = {}
for split in ('train', 'val'):  # every token id checked once (a minute for OpenWebText's 18 GB)
    path = data_path / f'{split}.bin'
    if os.path.getsize(path) % 2:
        fail(f"{path} is truncated (an odd number of bytes); prepare it again: "
             f"python prepare_data.py {dataset}")
    empty = os.path.getsize(path) == 0  # np.memmap cannot map an empty file
    tokens = np.zeros(0, np.uint16) if empty else np.memmap(path, dtype=np.uint16, mode='r')
    for i in range(0, len(tokens), 1 << 26):
        if (top := int(tokens[i:i + (1 << 26)].max())) >= meta['vocab_size']:
            fail(f"{path} is corrupted: token id {top} near token {i:,} is outside the vocabulary of "
                 f"{meta['vocab_size']}; prepare it again: python prepare_data.py {dataset}")
    n_tokens[split] = len(tokens)
    if n_tokens[split] <= block_size:
        fail(f"{path} holds {n_tokens[split]:,} tokens, not more than one block of {block_size}; "
             f"lower --block_size or prepare more data")
    del tokens

if not out_dir:  # a fine-tuning run is named after the run it starts from
    prefix = 'gpt' if init_from in ('scratch', 'resume') else f"{Path(init_from).parent.name}_ft"
    out_dir = os.path.join('out', run_name(prefix, overrides, ignore=(
        'out_dir', 'init_from', 'device', 'compile', 'eval_interval', 'log_interval', 'data_dir')))
ckpt_path, log_path = Path(out_dir) / 'ckpt.pt', Path(out_dir) / 'log.jsonl'
if init_from == 'resume' and not ckpt_path.is_file():
    if log_path.exists():
        fail(f"cannot resume: {out_dir} was stopped before its first checkpoint; delete the folder "
             f"and start again")
    fail(f"cannot resume: {ckpt_path} does not exist (pass the run's folder as --out_dir)")
if init_from != 'resume' and (ckpt_path.exists() or log_path.exists()):
    fail(f"{out_dir} already holds a run; continue it with --init_from=resume, or pick another --out_dir")
if why := run_io.unwritable(out_dir):
    fail(f"cannot write the run folder {out_dir}: {why}; pick another --out_dir")
checkpoint = None
if init_from != 'scratch':
    try:  # on the CPU: RNG states must stay there; load_state_dict moves the rest to the model's device
        checkpoint = run_io.load_checkpoint(ckpt_path if init_from == 'resume' else init_from, 'cpu')
    except run_io.CheckpointError as e:
        fail(e)
    if not {'model', 'model_args', 'config', 'iter'} <= checkpoint.keys():
        fail(f"{ckpt_path if init_from == 'resume' else init_from} is not a train_gpt.py checkpoint")
config.update(out_dir=out_dir, device=device, dtype=dtype, compile=compile)  # as resolved
tokens_per_iter = gradient_accumulation_steps * batch_size * block_size
print0(f"tokens per iteration: {tokens_per_iter:,} ({gradient_accumulation_steps} x {batch_size} "
       f"sequences of {block_size})")

# -----------------------------------------------------------------------------
# data: random windows of the token files, one draw per iteration for every process

def get_batch(split, ix):
    """x, y of shape ix.shape + (block_size,) on the device; y is x shifted by one token."""
    data = np.memmap(data_path / f'{split}.bin', dtype=np.uint16, mode='r')  # re-opened: no memory creep
    buf = torch.from_numpy(data[ix.numpy()[..., None] + np.arange(block_size + 1)].astype(np.int64))
    if device_type == 'cuda':
        buf = buf.pin_memory().to(device, non_blocking=True)
    else:
        buf = buf.to(device)
    return buf[..., :-1], buf[..., 1:]


sampler = torch.Generator().manual_seed(seed)  # same on every process; its state is checkpointed


def next_batch():
    """(sampler state before the draw, x, y) for this process's micro-steps of one iteration.
    Every process draws the whole global batch and takes its own rows, so the sequences of
    an iteration do not depend on the number of processes."""
    state = sampler.get_state()
    ix = torch.randint(n_tokens['train'] - block_size, (gradient_accumulation_steps, batch_size),
                       generator=sampler)
    return (state, *get_batch('train', ix[rank * accum_steps:(rank + 1) * accum_steps]))


eval_gen = torch.Generator().manual_seed(seed + 1)  # the same eval batches at every eval
eval_batches = {s: get_batch(s, torch.randint(n_tokens[s] - block_size, (eval_iters, batch_size),
                                              generator=eval_gen)) for s in ('train', 'val')}

# -----------------------------------------------------------------------------
# model

torch.manual_seed(seed)
vocab_size = -(-meta['vocab_size'] // vocab_multiple) * vocab_multiple  # extra rows are never targets
model_args = dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size,
                  vocab_size=vocab_size, dropout=dropout, bias=bias)
if checkpoint is not None:  # the architecture comes from the checkpoint; dropout may change
    theirs = checkpoint['model_args']
    clash = [k for k in ('n_layer', 'n_head', 'n_embd', 'bias')
             if k in overrides and theirs.get(k) != model_args[k]]
    if clash:  # an override that contradicts the checkpoint would be silently ignored
        fail(f"the checkpoint has {', '.join(f'{k}={theirs.get(k)!r}' for k in clash)}, this run asks "
             f"for {', '.join(f'{k}={model_args[k]!r}' for k in clash)}; drop the override(s)")
    model_args.update({k: v for k, v in theirs.items() if k != 'dropout'})
    if model_args['block_size'] != block_size:
        fail(f"block_size {block_size} differs from the checkpoint's {model_args['block_size']}")
    if model_args['vocab_size'] < meta['vocab_size']:
        fail(f"the checkpoint's vocabulary ({model_args['vocab_size']}) is smaller than {data_path}'s")
try:
    model = GPT(GPTConfig(**model_args))
    if checkpoint is not None:
        model.load_state_dict({k.removeprefix('_orig_mod.').removeprefix('module.'): v
                               for k, v in checkpoint['model'].items()})
except (TypeError, RuntimeError) as e:  # a checkpoint whose tensors do not fit its own model_args
    fail(f"the checkpoint's weights do not fit a GPT of {model_args} "
         f"({str(e).strip().splitlines()[0][:160]})")
model.to(device)
torch.manual_seed(seed + rank)  # dropout masks differ between processes
print0(f"GPT: {model.num_params():,} parameters, {n_layer} layers x {n_embd}, vocabulary {vocab_size:,}")

# -----------------------------------------------------------------------------
# optimizer, schedule, EMA

try:
    groups, summary = optim.param_groups(model, weight_decay, wd_params)
    if optimizer == 'adamw':
        opt = optim.AdamW(groups, lr=learning_rate, betas=(beta1, beta2), weight_decay=weight_decay,
                          wd_mode=wd_mode)
    else:
        opt = optim.SGD(groups, lr=learning_rate, momentum=momentum, weight_decay=weight_decay,
                        wd_mode=wd_mode)
except ValueError as e:
    fail(e)
print0(summary)
if weight_decay > 0:  # how long weight decay takes to forget the initialisation, against the run
    print0(f"weight decay acts over ~{optim.wd_timescale(learning_rate, weight_decay):,.0f} iterations "
           f"(1/(lr*wd)); this run has {max_iters:,}")
decayed = optim.decayed_params(opt)
scaler = optim.GradScaler(device_type, enabled=(dtype == 'float16'))  # float16 needs loss scaling
ema = optim.EMA(model, ema_coef)
iter_num, start_iter, clipped, pending_losses = 0, 0, 0, []
resumed = init_from == 'resume'
if checkpoint is not None:
    ema.load_state_dict(checkpoint['ema'])
    old = checkpoint['config']
    # fine-tuning keeps Adam's moments, as the authors' script did
    if init_from == 'resume' or (old['optimizer'], old['wd_params']) == (optimizer, wd_params):
        opt.load_state_dict(checkpoint['optimizer'])
        for g in opt.param_groups:  # a fine-tuning run sets its own hyperparameters
            g.update(weight_decay=weight_decay if g['decayed'] else 0.0, wd_mode=wd_mode,
                     initial_lr=learning_rate)
            if optimizer == 'adamw':
                g['betas'] = (beta1, beta2)
            else:
                g['momentum'] = momentum
    else:
        print0("optimizer or wd_params differ from the checkpoint's: fresh optimizer state")
    if init_from == 'resume':
        if checkpoint['scaler']:  # empty when the checkpoint was not float16
            scaler.load_state_dict(checkpoint['scaler'])
        iter_num = start_iter = checkpoint['iter']
        clipped = checkpoint['clipped']
        pending_losses = list(checkpoint['pending_losses'].to(device))
        rng = checkpoint['rng'][rank] if len(checkpoint['rng']) == world_size else checkpoint['rng'][0]
        torch.set_rng_state(rng['torch'])
        if device_type == 'cuda' and rng['cuda'] is not None:
            torch.cuda.set_rng_state(rng['cuda'])
        sampler.set_state(checkpoint['sampler'])
        if master:
            run_io.trim_log(log_path, iter_num)
        print0(f"resuming {ckpt_path} at iteration {iter_num:,}")
    else:
        print0(f"fine-tuning from {init_from} (iteration {checkpoint['iter']:,} of that run)")
    checkpoint = None  # free the memory

if master:  # the run folder is written only once every check has passed
    try:
        run_io.prepare_run_dir(out_dir, config)
    except OSError as e:
        fail(f"cannot write the run folder {out_dir}: {e.strerror}; pick another --out_dir")
    print0(f"run folder {out_dir}; {world_size} process(es) on {device}, {dtype}")

lr_at = (lambda it: optim.cosine_lr(it, learning_rate, min_lr, warmup_iters, lr_decay_iters or max_iters)
         if decay_lr else optim.constant_lr(it, learning_rate, warmup_iters))

raw_model = model  # without compile and DDP wrappers: what is saved and averaged
if compile == 'true' or (compile == 'auto' and device_type == 'cuda'):
    print0("compiling the model and the optimizer step (about a minute)")
    model = torch.compile(model)
    opt.compile()  # the update fused into one pass over the parameters (optim.py)
train_model = model
if ddp:
    train_model = DDP(model, device_ids=[int(os.environ['LOCAL_RANK'])] if device_type == 'cuda' else None)
peak_flops = None  # dense bf16/fp16 tensor-core peak, for MFU; unknown elsewhere
if device_type == 'cuda' and dtype != 'float32':
    peak_flops = bf16_peak_flops(torch.cuda.get_device_name(device))
flops_per_iter = raw_model.flops_per_token(block_size) * tokens_per_iter

# -----------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def evaluate(net):
    """Mean loss of net over the fixed train and val batches."""
    net.eval()
    out = {}
    for split, (x, y) in eval_batches.items():
        losses = torch.zeros((), device=device)
        for k in range(eval_iters):
            with autocast:
                losses += net(x[k], y[k])[1].float()
        out[f'{split}_loss'] = (losses / eval_iters).item()
    net.train()
    return out


def equilibrium_angle(lr):
    """The angular update rotational equilibrium predicts at this lr, or None (Adam + L2 has none)."""
    if wd_mode == 'l2' and optimizer == 'adamw':
        return None
    # 'independent' shrinks by (lr/lr_max)*wd per step: decoupled decay with wd/lr_max
    wd = weight_decay / learning_rate if wd_mode == 'independent' and learning_rate else weight_decay
    return optim.equilibrium_angular_update(optimizer, lr, wd, beta1, momentum)


def rng_states():
    """Every process's RNG states (a collective under DDP), so that a resumed run continues exactly."""
    mine = dict(torch=torch.get_rng_state(),
                cuda=torch.cuda.get_rng_state(device) if device_type == 'cuda' else None)
    if not ddp:
        return [mine]
    states = [None] * world_size
    dist.all_gather_object(states, mine)
    return states


def any_process(flag):
    """True if flag is true on any process (a collective: every process must call it)."""
    t = torch.tensor(float(flag), device=device)
    if ddp:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def first_bad_iter():
    """The iteration number of the first non-finite loss since the last log line, or None."""
    if not pending_losses:
        return None
    losses = torch.stack(pending_losses)
    bad = ~torch.isfinite(losses)
    if not any_process(bad.any().item()):
        return None
    return iter_num - len(pending_losses) + 1 + (int(bad.int().argmax()) if bad.any() else 0)


def diverge(bad_iter, logged=False):
    """Log the divergence, keep the last good checkpoint, stop."""
    if master and not logged:
        run_io.append_log(log_path, dict(iter=bad_iter, lr=lr_at(bad_iter), wd=weight_decay,
                                         tokens=bad_iter * tokens_per_iter, loss=float('nan'), diverged=True))
        kept = f"last good checkpoint {ckpt_path}" if ckpt_path.exists() else "no checkpoint was saved"
        print(f"diverged: the loss is not finite at iteration {bad_iter:,}; {kept}", file=sys.stderr)
    if ddp:
        dist.destroy_process_group()
    sys.exit(1)


def save_checkpoint():
    """Everything a resumed run needs to continue exactly (a collective under DDP)."""
    global saved_iter
    rngs = rng_states()
    if master:
        run_io.save_checkpoint(dict(
            model=raw_model.state_dict(), optimizer=opt.state_dict(), ema=ema.state_dict(),
            scaler=scaler.state_dict(), iter=iter_num, config=config, model_args=model_args,
            clipped=clipped, pending_losses=torch.stack(pending_losses).cpu() if pending_losses
            else torch.zeros(0), rng=rngs, sampler=batch_state), ckpt_path, log=log_path)
    saved_iter = iter_num


# -----------------------------------------------------------------------------
# the loop

stop, saved_iter = run_io.GracefulStop(), None  # SIGINT / SIGTERM finish the step, checkpoint, exit
batch_state, X, Y = next_batch()
angular_update, angular_lr = None, None
t_start = t_log = time.time()
eval_time = 0.0  # seconds spent in evals since the last log line, not counted in ms_per_iter
while True:
    lr = lr_at(iter_num)
    for g in opt.param_groups:
        g['lr'] = lr

    # evaluate and checkpoint (the checkpoint just resumed from is not evaluated again)
    if (iter_num % eval_interval == 0 or iter_num == max_iters) and not (resumed and iter_num == start_iter):
        t0 = time.time()
        bad_iter = first_bad_iter()
        if bad_iter is not None:
            diverge(bad_iter)
        if master:
            record = dict(iter=iter_num, lr=lr, wd=weight_decay, tokens=iter_num * tokens_per_iter, eval=True)
            record.update(evaluate(model))
            record.update({f'{k}_ema': v for k, v in evaluate(ema.model).items()})
            record['adam_elr'] = optim.adam_effective_lr(opt) if optimizer == 'adamw' else None
            record['angular_update'] = angular_update  # measured on the step just before this eval
            record['angular_update_eq'] = equilibrium_angle(angular_lr) if angular_lr is not None else None
            record['weight_norm'] = optim.weight_norms(raw_model.parameters())[0]
            record['decayed_norm'] = optim.weight_norms(decayed)[0]
            record['diverged'] = not all(math.isfinite(record[k]) for k in ('train_loss', 'val_loss'))
            run_io.append_log(log_path, record)
            angle = f" | angle {angular_update:.2e}" if angular_update is not None else ''
            if record['angular_update_eq'] is not None:
                angle += f" (eq {record['angular_update_eq']:.2e})"
            print(f"=== eval iter {iter_num:>6} | train {record['train_loss']:.4f}"
                  f" | val {record['val_loss']:.4f} | ema train {record['train_loss_ema']:.4f}"
                  f" | ema val {record['val_loss_ema']:.4f}"
                  f"{angle} ===")
        if any_process(master and record['diverged']):
            diverge(iter_num, logged=True)
        save_checkpoint()
        eval_time += time.time() - t0
    if iter_num >= max_iters:
        break
    # SIGINT / SIGTERM: checkpoint here and stop (under DDP the processes agree at a log line)
    stopping = stop.signum is not None
    if ddp:
        stopping = iter_num % log_interval == 0 and any_process(stopping)
    if stopping:
        if saved_iter != iter_num:
            save_checkpoint()
        if ddp:
            dist.destroy_process_group()
        stop.exit(f"checkpoint at iteration {iter_num:,} in {ckpt_path}" if master else None)

    # one iteration: accumulate gradients over the micro-steps, clip, step, average
    loss_iter = None
    for micro in range(accum_steps):
        sync = nullcontext() if not ddp or micro == accum_steps - 1 else train_model.no_sync()
        with sync:  # DDP averages gradients across processes on the last micro-step only
            with autocast:
                loss = train_model(X[micro], Y[micro])[1] / accum_steps
            if micro == accum_steps - 1:
                nxt = next_batch()  # prepared on the CPU while the GPU works
            scaler.scale(loss).backward()
        loss_iter = loss.detach() if loss_iter is None else loss_iter + loss.detach()
    scaler.unscale_(opt)  # clip and measure the true gradient, not the float16-scaled one
    log_now = (iter_num + 1) % log_interval == 0
    if grad_clip > 0:
        grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), grad_clip)
        clipped = clipped + (grad_norm > grad_clip).int()  # a device counter: no sync per step
    elif log_now:
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in raw_model.parameters()])
    snapshot = (iter_num + 1) % eval_interval == 0 or iter_num + 1 == max_iters
    if snapshot and master:  # the angle between consecutive iterates, logged at the next eval
        before = [p.detach().clone() for p in decayed]
    scaler.step(opt)  # weight decay acts inside: p <- p - lr*wd*p for the decayed tensors (optim.py)
    scaler.update()
    opt.zero_grad(set_to_none=True)
    ema.update(raw_model)  # ema <- coef*ema + (1-coef)*w
    if snapshot and master:
        angular_update = float(np.mean(optim.angular_updates(before, decayed)))
        angular_lr, before = lr, None
    batch_state, X, Y = nxt
    pending_losses.append(loss_iter)
    iter_num += 1

    if log_now:
        bad_iter = first_bad_iter()
        if bad_iter is not None:
            diverge(bad_iter)
        loss_mean = torch.stack(pending_losses).mean()
        if ddp:  # the mean over all processes' micro-batches
            dist.all_reduce(loss_mean, op=dist.ReduceOp.AVG)
        if master:
            dt = (time.time() - t_log - eval_time) / len(pending_losses)
            eta = (time.time() - t_start) / (iter_num - start_iter) * (max_iters - iter_num)
            lr = lr_at(iter_num)  # every line's lr is the schedule's value at its iteration
            record = dict(iter=iter_num, lr=lr, wd=weight_decay, tokens=iter_num * tokens_per_iter,
                          loss=loss_mean.item(), grad_norm=grad_norm.item(),
                          weight_norm=optim.weight_norms(raw_model.parameters())[0],
                          decayed_norm=optim.weight_norms(decayed)[0], clipped=int(clipped),
                          ms_per_iter=1e3 * dt, tokens_per_s=tokens_per_iter / dt)
            if peak_flops:
                record['mfu'] = flops_per_iter / dt / (peak_flops * world_size)
            if dtype == 'float16':  # steps the GradScaler skipped (gradients overflowed), in total
                record['skipped'] = scaler.skipped
            run_io.append_log(log_path, record)
            print(f"iter {iter_num:>6} | loss {record['loss']:.4f} | lr {lr:.2e}"
                  f" | |g| {record['grad_norm']:6.3f}"
                  f" | |w| {record['weight_norm']:7.1f} | {record['tokens_per_s'] / 1e3:6.1f}k tok/s"
                  f" | {record['ms_per_iter']:6.0f} ms/it"
                  + (f" | mfu {100 * record['mfu']:4.1f}%" if peak_flops else '')
                  + f" | eta {run_io.format_duration(eta)}")
        pending_losses, t_log, eval_time = [], time.time(), 0.0

if ddp:
    dist.destroy_process_group()
print0(f"done: {iter_num:,} iterations in {run_io.format_duration(time.time() - t_start)}; {ckpt_path}")
