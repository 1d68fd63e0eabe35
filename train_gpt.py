"""
Train a GPT-2 language model with AdamW (or SGD) and watch what weight decay does to the run.

    python train_gpt.py config/gpt_cpu_demo.py                      # minutes on a laptop CPU
    python train_gpt.py config/gpt_cosine.py --weight_decay=0.1     # the paper's main run (Fig. 3)
    python train_gpt.py config/gpt_constant_lr.py --weight_decay=0.3 --out_dir=out/const_wd0.3
    python train_gpt.py config/gpt_finetune.py --weight_decay=0.3 --init_from=out/const_wd0.3/ckpt.pt
    python train_gpt.py config/gpt_cpu_demo.py --init_from=resume   # continue a run exactly
    torchrun --standalone --nproc_per_node=8 train_gpt.py config/gpt_bf16.py

Writes out/RUN/config.json, log.jsonl (docs/log_format.md: what each number is) and ckpt.pt.
Exit status: 0 done, 1 the loss diverged (logged, last good checkpoint kept), 2 bad input,
130 / 143 stopped by SIGINT / SIGTERM after a checkpoint (docs/faults.md).
"""
import os
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP

import optim
import run_io
from configurator import configure, fail, run_name
from model import GPT, GPTConfig, bf16_peak_flops
from prepare_data import open_text_dataset

# -----------------------------------------------------------------------------
# defaults: the paper's main LLM run (GPT-2-small, context 256, OpenWebText; Sec. 3, Fig. 3)
# I/O
out_dir = ''  # '' means out/<a name built from the overrides>
eval_interval = 200  # the authors' value
eval_iters = 125  # batches of batch_size per split per eval: the authors' 1,000 sequences at batch 8
eval_batch_size = 64  # sequences per eval forward pass (the same sequences, fewer and larger batches)
log_interval = 10
ckpt_minutes = 10.0  # write ckpt.pt after every this many minutes of training (a crash loses at most that)
ckpt_every = 0  # > 0: also keep ckpt_ITER.pt every this many iterations (an eval each), to fine-tune from
init_from = 'scratch'  # 'scratch', 'resume' (out_dir/ckpt.pt), or a ckpt.pt path to fine-tune from
# data
dataset = 'openwebtext'
data_dir = ''  # '' means data/<dataset>, as written by prepare_data.py
batch_size = 8  # with gradient_accumulation_steps: the paper's global batch of 8 x 32 = 256 sequences
gradient_accumulation_steps = 32
micro_batch_size = 0  # sequences per forward pass; 0: batch_size. The global batch is drawn at once, so a
# larger micro-batch in fewer steps trains on the same sequences: --micro_batch_size=64 on a big GPU
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
wd_mode = 'decoupled'  # 'decoupled' (AdamW), 'l2' (wd*p added to the gradient), 'independent', ...
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
config, overrides = configure(globals(), __doc__, choices={'wd_mode': optim.WD_MODES})  # bounds: configurator

# -----------------------------------------------------------------------------
# setup: device and processes, run folder, the checkpoint to start from, data

run_io.report_faults()  # a failed compile, a disk error, Ctrl-C before the loop: one line, no traceback
device, dtype, use_compile = run_io.resolve_device(device, dtype, compile)
device_type = device.split(':')[0]
rank, world_size, device = run_io.start_processes(device)  # under torchrun: DDP, one process per GPU
ddp, master = world_size > 1, rank == 0  # the master process evaluates, logs and saves
print0 = print if master else (lambda *a, **k: None)
micro_batch, global_batch = micro_batch_size or batch_size, batch_size * gradient_accumulation_steps
if global_batch % (micro_batch * world_size):
    fail(f"the global batch of {global_batch} sequences does not split into micro-batches of {micro_batch} "
         f"on {world_size} process(es)")
accum_steps = global_batch // (micro_batch * world_size)  # micro-steps per process and iteration
autocast = torch.autocast(device_type, dtype=getattr(torch, dtype), enabled=dtype != 'float32')
torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True

if not out_dir:  # out/ + the config file's name and the overrides; a fine-tuning run's, after its parent
    out_dir = os.path.join('out', run_name('gpt', config) if init_from in ('scratch', 'resume') else
                           run_name(f"{Path(init_from).parent.name}_ft", config, files=False))
ckpt_path, log_path = Path(out_dir) / 'ckpt.pt', Path(out_dir) / 'log.jsonl'
run_io.check_run_dir(out_dir, init_from)  # resume needs a checkpoint there; a new run, no run there
checkpoint = None
if init_from != 'scratch':
    checkpoint = run_io.load_start(ckpt_path if init_from == 'resume' else init_from, 'train_gpt.py',
                                   ('model', 'model_args', 'config', 'iter', 'optimizer', 'ema'))
    # the architecture comes from the checkpoint; an override that contradicts it exits 2
    shape = run_io.shape_from(checkpoint, config, ('n_layer', 'n_head', 'n_embd', 'bias', 'block_size',
                                                   'vocab_multiple'), overrides)
    config.update(shape)
    globals().update(shape)
config.update(out_dir=out_dir, device=device, dtype=dtype, compile=compile)  # as resolved

data_path = Path(data_dir or os.path.join('data', dataset))
meta, n_tokens = open_text_dataset(data_path, dataset, block_size)  # exit 2 if missing or damaged
tokens_per_iter = global_batch * block_size
print0(f"tokens per iteration: {tokens_per_iter:,} ({global_batch} sequences of {block_size}, "
       f"{accum_steps} micro-batch(es) of {micro_batch} per process)")


def get_batch(split, ix):
    """x, y of shape ix.shape + (block_size,) on the device; y is x shifted by one token."""
    data = np.memmap(data_path / f'{split}.bin', dtype=np.uint16, mode='r')  # re-opened: no memory creep
    buf = torch.from_numpy(data[ix.numpy()[..., None] + np.arange(block_size + 1)].astype(np.int64))
    buf = buf.pin_memory().to(device, non_blocking=True) if device_type == 'cuda' else buf.to(device)
    return buf[..., :-1], buf[..., 1:]


sampler = torch.Generator().manual_seed(seed)  # the same on every process; checkpointed


def next_batch():
    """(sampler state before the draw, x, y) of this process's micro-steps of one iteration. Every
    process draws the whole global batch and takes its rows: the sequences do not depend on the number
    of processes or the micro-batch size."""
    state = sampler.get_state()
    ix = torch.randint(n_tokens['train'] - block_size, (global_batch,), generator=sampler)
    return (state, *get_batch('train', ix.view(-1, micro_batch)[rank * accum_steps:(rank + 1) * accum_steps]))


eval_gen = torch.Generator().manual_seed(seed + 1)  # the same eval sequences at every eval
eval_batches = {s: get_batch(s, torch.randint(n_tokens[s] - block_size, (eval_iters * batch_size,),
                                              generator=eval_gen)) for s in ('train', 'val')}

# -----------------------------------------------------------------------------
# model, optimizer, schedule, EMA

torch.manual_seed(seed)
vocab_size = -(-meta['vocab_size'] // vocab_multiple) * vocab_multiple  # extra rows are never targets
model_args = dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size,
                  vocab_size=vocab_size, dropout=dropout, bias=bias)
model = GPT(GPTConfig(**model_args))
if checkpoint is not None:
    run_io.load_weights(model, checkpoint['model'])
model.to(device)
torch.manual_seed(seed + rank)  # dropout masks differ between processes
print0(f"GPT: {model.num_params():,} parameters, {n_layer} layers x {n_embd}, vocabulary {vocab_size:,}")

try:  # a wd_params substring that matches no parameter is bad input
    groups, summary = optim.param_groups(model, weight_decay, wd_params)
except ValueError as e:
    fail(e)
if optimizer == 'adamw':
    opt = optim.AdamW(groups, lr=learning_rate, betas=(beta1, beta2), wd_mode=wd_mode)
else:
    opt = optim.SGD(groups, lr=learning_rate, momentum=momentum, wd_mode=wd_mode)
decayed = optim.decayed_params(opt)
scaler = optim.GradScaler(device_type, enabled=dtype == 'float16')  # float16 needs loss scaling
ema = optim.EMA(model, ema_coef)
print0(summary)
tau = optim.wd_timescale(learning_rate, weight_decay, wd_mode=wd_mode, lr_max=learning_rate)  # 1/(lr*wd)
config.update(wd_timescale_iters=tau, wd_timescale_frac=tau / max(max_iters, 1))  # how long WD remembers
print0(f"weight decay forgets over ~{tau:,.0f} iterations (1/(lr*wd)), {config['wd_timescale_frac']:.2g} x "
       f"the run's length" if tau < float('inf') else "no weight decay")

iter_num = start_iter = 0
resumed = init_from == 'resume'
clipped, pending_losses = 0, []  # clipped steps so far; losses since the last log line (device scalars)
if checkpoint is not None:  # resume: continue exactly; fine-tune: the weights, EMA and Adam's moments
    ema.load_state_dict(checkpoint['ema'])
    if (checkpoint['config']['optimizer'], checkpoint['config']['wd_params']) == (optimizer, wd_params):
        optim.load_moments(opt, checkpoint['optimizer'])  # Adam's moments; this run's lr, wd, betas
    if resumed:
        iter_num = start_iter = checkpoint['iter']
        clipped, pending_losses = checkpoint['clipped'], list(checkpoint['pending_losses'].to(device))
        sampler.set_state(checkpoint['sampler'])
        run_io.restore(checkpoint, scaler, device, rank, log_path if master else None)  # RNGs, scaler, log
    print0(run_io.start_message(checkpoint, config, resumed))
    checkpoint = None  # free the memory
if master:  # the run folder is written only once every check has passed
    run_io.prepare_run_dir(out_dir, config)
    print0(f"run folder {out_dir}; {world_size} process(es) on {device}, {dtype}")

lr_at = (lambda it: optim.cosine_lr(it, learning_rate, min_lr, warmup_iters, lr_decay_iters or max_iters)
         if decay_lr else optim.constant_lr(it, learning_rate, warmup_iters))
raw_model = model  # without the compile and DDP wrappers: what is saved and averaged
if use_compile:
    print0("compiling the model and the optimizer step (about a minute)")
    model = torch.compile(model, dynamic=False)  # static shapes: one graph per batch size, none symbolic
    opt.compile()  # the update fused into one pass over the parameters (optim.py)
train_model = model if not ddp else DDP(model, device_ids=[device] if device_type == 'cuda' else None)
peak_flops = None  # the dense bf16 tensor-core peak, for MFU; unknown elsewhere
if device_type == 'cuda' and dtype != 'float32':
    peak_flops = bf16_peak_flops(torch.cuda.get_device_name(device))
flops_per_iter = raw_model.flops_per_token(block_size) * tokens_per_iter

# -----------------------------------------------------------------------------
# evaluation, checkpoints, divergence


@torch.no_grad()
def evaluate(net):
    """Mean loss and next-token error (top-1, a fraction) of net over the fixed train and val sequences."""
    net.eval()
    out = {}
    for split, (x, y) in eval_batches.items():
        loss_sum, wrong = torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long)
        for xb, yb in zip(x.split(eval_batch_size), y.split(eval_batch_size)):
            with autocast:
                logits, loss = net(xb, yb)
            loss_sum += loss.float() * len(xb)  # the batch's mean over its tokens, weighted by its size
            wrong += (logits.argmax(-1) != yb).sum()
        out[f'{split}_loss'], out[f'{split}_err'] = (loss_sum / len(x)).item(), (wrong / y.numel()).item()
    net.train()
    return out


def eval_at(it):  # every eval_interval, at the end, and at every kept snapshot
    return it % eval_interval == 0 or it == max_iters or (ckpt_every > 0 and it % ckpt_every == 0)


def checkpoint_at(it):
    """At the start and the end, at every kept snapshot, and at the first log line after ckpt_minutes of
    training: the writes stay a small share of a long run, and a crash loses at most ckpt_minutes of it."""
    if resumed and it == start_iter:  # the checkpoint this run resumed from
        return False
    if it in (start_iter, max_iters) or (ckpt_every > 0 and it % ckpt_every == 0):
        return True
    return it % log_interval == 0 and run_io.any_process(time.perf_counter() - saved_at > 60 * ckpt_minutes)


def line_at(it):
    """What every log line starts with."""
    return dict(iter=it, lr=lr_at(it), wd=weight_decay, tokens=it * tokens_per_iter)


def weight_decay_metrics():
    """What weight decay does to the weights: their norms, Adam's effective LR, and the angle the
    decayed matrices turned in the step before this eval against its rotational-equilibrium value."""
    return dict(weight_norm=optim.weight_norms(raw_model.parameters())[0],
                decayed_norm=optim.weight_norms(decayed)[0],
                adam_elr=optim.adam_effective_lr(opt) if optimizer == 'adamw' else None,
                adam_elr_all=optim.adam_effective_lr_all(opt) if optimizer == 'adamw' else None,  # authors'
                **optim.angle_spread(angles or []),  # angular_update: the mean; _p10, _p90: its spread
                angular_update_eq=optim.equilibrium_angular_update(
                    optimizer, angle_lr, weight_decay, wd_mode=wd_mode, lr_max=learning_rate, beta1=beta1,
                    momentum=momentum) if angles else None)


def save_checkpoint():
    """Everything a resumed run needs to continue exactly (a collective under DDP)."""
    global saved_iter, saved_at
    rngs = run_io.rng_states(device)
    snapshot = ckpt_every > 0 and iter_num > 0 and iter_num % ckpt_every == 0  # kept as ckpt_ITER.pt too
    if master:
        losses = torch.stack(pending_losses).cpu() if pending_losses else torch.zeros(0)
        run_io.save_checkpoint(dict(
            model=raw_model.state_dict(), optimizer=opt.state_dict(), ema=ema.state_dict(),
            scaler=scaler.state_dict(), iter=iter_num, config=config, model_args=model_args,
            clipped=clipped, pending_losses=losses, rng=rngs, sampler=batch_state), ckpt_path, log=log_path,
            keep=Path(out_dir) / f'ckpt_{iter_num}.pt' if snapshot else None)
    saved_iter, saved_at = iter_num, time.perf_counter()


# -----------------------------------------------------------------------------
# the loop: batch, forward, backward, clip, step (weight decay acts inside), EMA, log, eval

stop = run_io.GracefulStop()  # SIGINT / SIGTERM: finish the step, checkpoint, exit
batch_state, X, Y = next_batch()
angles, angle_lr = None, None  # the angle each decayed tensor turned in the last step before an eval
t_start = t_log = saved_at = time.perf_counter()
saved_iter, iter_log = None, iter_num  # the last checkpoint's iteration; the last log line's
paused = 0.0  # seconds of evals and checkpoints since the last log line, not counted in ms_per_iter
while True:
    lr = lr_at(iter_num)
    for g in opt.param_groups:
        g['lr'] = lr

    # evaluate the model and its EMA on fixed sequences and log (not again right after a resume)
    t0 = time.perf_counter()
    if eval_at(iter_num) and not (resumed and iter_num == start_iter):
        run_io.stop_if_diverged(pending_losses, iter_num, log_path, line_at, master)  # exit 1 if it did
        if master:
            ema.copy_buffers(raw_model)  # buffers are copied, not averaged, when the EMA is used
            record = dict(**line_at(iter_num), eval=True, **evaluate(model))
            # the EMA's weights go through the same (compiled) model, and the model's come back after
            with ema.swapped_into(raw_model):
                record.update({f'{k}_ema': v for k, v in evaluate(model).items()})
            record.update(weight_decay_metrics(), eval_s=time.perf_counter() - t0)
            record['diverged'] = not np.isfinite([record['train_loss'], record['val_loss']]).all()
            run_io.append_log(log_path, record)
            angle = '' if not angles else f" | angle {record['angular_update']:.2e}" + (
                f" (eq {record['angular_update_eq']:.2e})" if record['angular_update_eq'] else '')
            print(f"=== eval iter {iter_num:>6} | train {record['train_loss']:.4f} | "
                  f"val {record['val_loss']:.4f} ({100 * record['val_err']:.1f}% err) | "
                  f"ema val {record['val_loss_ema']:.4f}{angle} ===")
        if run_io.any_process(master and record['diverged']):
            run_io.stop_diverged(log_path, None, f"the eval loss is not finite at iteration {iter_num:,}",
                                 master)
    if checkpoint_at(iter_num):
        save_checkpoint()
    paused += time.perf_counter() - t0
    if iter_num >= max_iters:
        break
    if stop.requested(can_agree=iter_num % log_interval == 0):  # under DDP: at a log line
        if saved_iter != iter_num:
            save_checkpoint()
        stop.exit(f"checkpoint at iteration {iter_num:,} in {ckpt_path}" if master else None)

    # forward and backward over the micro-batches: the gradient of the mean loss of the global batch
    loss_iter = torch.zeros((), device=device)
    for micro in range(accum_steps):
        last = micro == accum_steps - 1
        with train_model.no_sync() if ddp and not last else nullcontext():  # DDP averages on the last one
            with autocast:
                loss = train_model(X[micro], Y[micro])[1] / accum_steps
            if last:
                upcoming = next_batch()  # read from disk while the device computes
            scaler.scale(loss).backward()
        loss_iter += loss.detach()
    scaler.unscale_(opt)  # clip and measure the true gradient, not the float16-scaled one
    log_now = (iter_num + 1) % log_interval == 0
    if grad_clip > 0:
        grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), grad_clip)
        clipped = clipped + (grad_norm > grad_clip).int()  # a device counter: no sync per step
    elif log_now:
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in raw_model.parameters()])
    # before an eval, keep the weights to measure the angle each matrix turns in this step
    watch = master and eval_at(iter_num + 1)
    before = [p.detach().clone() for p in decayed] if watch else None
    scaler.step(opt)  # weight decay acts inside: p <- p - lr*wd*p for the decayed tensors (optim.py)
    scaler.update()
    opt.zero_grad(set_to_none=True)
    ema.update(raw_model)  # ema <- coef*ema + (1-coef)*w
    if watch:
        angles, angle_lr = optim.angular_updates(before, decayed), lr
    batch_state, X, Y = upcoming
    pending_losses.append(loss_iter)
    iter_num += 1

    # log the mean loss since the last line (the loop's one host sync), speed and ETA
    if log_now:
        run_io.stop_if_diverged(pending_losses, iter_num, log_path, line_at, master)
        loss_mean = run_io.mean_over_processes(torch.stack(pending_losses).mean())  # all micro-batches
        if master:
            # the iterations since the last log line of this process: a resumed run's first line also
            # holds losses of iterations run before the stop, which took none of this time
            dt = (time.perf_counter() - t_log - paused) / (iter_num - iter_log)
            eta = (time.perf_counter() - t_start) / (iter_num - start_iter) * (max_iters - iter_num)
            record = dict(**line_at(iter_num), loss=loss_mean.item(), grad_norm=grad_norm.item(),
                          weight_norm=optim.weight_norms(raw_model.parameters())[0],
                          decayed_norm=optim.weight_norms(decayed)[0], clipped=int(clipped),
                          ms_per_iter=1e3 * dt, tokens_per_s=tokens_per_iter / dt)
            if peak_flops:
                record['mfu'] = flops_per_iter / dt / (peak_flops * world_size)
            if dtype == 'float16':  # steps the GradScaler skipped (gradients overflowed), in total
                record['skipped'] = scaler.skipped
            run_io.append_log(log_path, record)
            mfu = f" | mfu {100 * record['mfu']:4.1f}%" if peak_flops else ''
            print(f"iter {iter_num:>6} | loss {record['loss']:.4f} | lr {record['lr']:.2e} | "
                  f"|g| {record['grad_norm']:6.3f} | |w| {record['weight_norm']:7.1f} | "
                  f"{record['tokens_per_s'] / 1e3:6.1f}k tok/s | {record['ms_per_iter']:6.0f} ms/it{mfu} | "
                  f"eta {run_io.format_duration(eta)}")
        pending_losses, t_log, iter_log, paused = [], time.perf_counter(), iter_num, 0.0

print0(f"done: {iter_num:,} iterations in {run_io.format_duration(time.perf_counter() - t_start)}; "
       f"{ckpt_path}")
run_io.end_processes(0 if ddp else None)
