"""
Train a GPT-2 language model with AdamW (or SGD) and watch what weight decay does to the run.

    python train_gpt.py config/gpt_cpu_demo.py                      # minutes on a laptop CPU
    python train_gpt.py config/gpt_cosine.py --weight_decay=0.1     # the paper's main run (Fig. 3)
    python train_gpt.py config/gpt_constant_lr.py --weight_decay=0.3 --out_dir=out/const
    python train_gpt.py config/gpt_finetune.py --weight_decay=0.3 --init_from=out/const/ckpt.pt
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
from configurator import configure, default_out_dir, fail, or_fail
from model import GPT, GPTConfig, bf16_peak_flops
from prepare_data import open_text_dataset, read_sequences

# -----------------------------------------------------------------------------
# defaults: the paper's main LLM run (GPT-2-small, context 256, OpenWebText; Sec. 3, Fig. 3)
# I/O
out_dir = ''  # '' means out/<a name built from the overrides>
eval_interval = 200  # the authors' value
eval_iters = 125  # the authors evaluate 125 batches of 8: 1,000 fixed sequences per split
eval_batch_size = 64  # sequences per eval forward pass: the same sequences in fewer, larger batches
eval_whole_val = False  # True: val_loss over every token of the val split, in consecutive blocks
log_interval = 10
ckpt_minutes = 10.0  # write ckpt.pt after every this many minutes of training
ckpt_every = 0  # > 0: also keep ckpt_ITER.pt every this many iterations, to fine-tune from
init_from = 'scratch'  # 'scratch', 'resume' (out_dir/ckpt.pt), or a ckpt.pt path to fine-tune from
# data
dataset = 'openwebtext'
data_dir = ''  # '' means data/<dataset>, as written by prepare_data.py
batch_size = 8  # with gradient_accumulation_steps: the paper's 8 x 32 = 256 sequences per step
gradient_accumulation_steps = 32
micro_batch_size = 0  # sequences per forward pass (0: batch_size); 64 on a big GPU
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
elr_from = ''  # an AdamW run's folder: replay each matrix's lr/||w|| there, without weight decay
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
wandb_log, wandb_project, wandb_run_name = False, 'why-weight-decay', ''  # '': the run's name
config, overrides = configure(globals(), __doc__, choices={'wd_mode': optim.WD_MODES})

# -----------------------------------------------------------------------------
# setup: device and processes, the checkpoint to start from, data, run folder

# A failed compile, a disk error or Ctrl-C before the loop ends the run with one line, no traceback.
run_io.report_faults()
device, dtype, use_compile = run_io.resolve_device(device, dtype, compile)
device_type = device.split(':')[0]
# Under torchrun each GPU runs one process of a DDP group; the master (rank 0) logs and saves.
rank, world_size, device = run_io.start_processes(device)
ddp, master = world_size > 1, rank == 0
print0 = print if master else (lambda *a, **k: None)
# An iteration trains on batch_size x gradient_accumulation_steps sequences, the global batch: each
# process accumulates the gradients of accum_steps forward passes of micro_batch sequences.
micro_batch, global_batch = micro_batch_size or batch_size, batch_size * gradient_accumulation_steps
if global_batch % (micro_batch * world_size):
    fail(f"the global batch of {global_batch} sequences does not split into micro-batches of "
         f"{micro_batch} on {world_size} process(es)")
accum_steps = global_batch // (micro_batch * world_size)
autocast = torch.autocast(device_type, dtype=getattr(torch, dtype), enabled=dtype != 'float32')
torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True

# The run folder is named after the config file and the overrides; a fine-tuning run, its parent.
out_dir = out_dir or default_out_dir('gpt', config)
ckpt_path, log_path = Path(out_dir) / 'ckpt.pt', Path(out_dir) / 'log.jsonl'
resumed = init_from == 'resume'
# A checkpoint to resume or fine-tune from gives the architecture: config and the globals take it.
checkpoint, shape = run_io.load_start(init_from, out_dir, 'train_gpt.py',
                                      ('model', 'model_args', 'config', 'iter', 'optimizer', 'ema'),
                                      ('n_layer', 'n_head', 'n_embd', 'bias', 'block_size',
                                       'vocab_multiple'), config, overrides)
globals().update(shape)
config.update(out_dir=out_dir, device=device, dtype=dtype, compile=compile)  # as resolved

data_path = Path(data_dir or os.path.join('data', dataset))
meta, n_tokens = open_text_dataset(data_path, dataset, block_size)  # exit 2 if missing or damaged
# checked after the data, which a user would fix first: a new run needs a folder without a run
run_io.check_run_dir(out_dir, init_from)
tokens_per_iter = global_batch * block_size
print0(f"tokens per iteration: {tokens_per_iter:,} ({global_batch} sequences of {block_size}, "
       f"{accum_steps} micro-batch(es) of {micro_batch} per process)")


sampler = torch.Generator().manual_seed(seed)  # the batches' stream: one per process, checkpointed


def next_batch():
    """This process's share of one iteration's global batch: x and y of shape (accum_steps,
    micro_batch, block_size), and the sampler's state before the draw (what a checkpoint keeps)."""
    state = sampler.get_state()
    # Every process draws the start of all global_batch sequences, in rows of one micro-batch, and
    # takes its accum_steps rows: an iteration trains on the same sequences however many processes
    # share it and however large the micro-batches are.
    starts = torch.randint(n_tokens['train'] - block_size, (global_batch,), generator=sampler)
    rows = starts.view(world_size * accum_steps, micro_batch)
    mine = rows[rank * accum_steps:(rank + 1) * accum_steps]
    x, y = read_sequences(data_path / 'train.bin', mine, block_size, device)  # y: x shifted by one
    return state, x, y


# Fixed eval sequences, from a stream of their own (eval_whole_val: all of val, in blocks).
eval_gen = torch.Generator().manual_seed(seed + 1)
eval_starts = {s: torch.randint(n_tokens[s] - block_size, (eval_iters * batch_size,),
                                generator=eval_gen) for s in ('train', 'val')}
if eval_whole_val:
    eval_starts['val'] = torch.arange(0, n_tokens['val'] - block_size, block_size)
eval_batches = {s: read_sequences(data_path / f'{s}.bin', starts, block_size, device)
                for s, starts in eval_starts.items()}

# -----------------------------------------------------------------------------
# model, optimizer, schedule, EMA

torch.manual_seed(seed)
# the vocabulary rounded up to a multiple of vocab_multiple: the extra rows are never targets
vocab_size = -(-meta['vocab_size'] // vocab_multiple) * vocab_multiple
model_args = dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size,
                  vocab_size=vocab_size, dropout=dropout, bias=bias)
model = GPT(GPTConfig(**model_args))
if checkpoint is not None:
    run_io.load_weights(model, checkpoint['model'])
model.to(device)
torch.manual_seed(seed + rank)  # dropout masks differ between processes
print0(f"GPT: {model.num_params():,} parameters, {n_layer} layers x {n_embd}, vocab {vocab_size:,}")

# Weight decay acts on the group of the tensors wd_params names (a replay: a group for each).
groups, summary = or_fail(optim.param_groups, model, weight_decay, wd_params, bool(elr_from))
if optimizer == 'adamw':
    opt = optim.AdamW(groups, lr=learning_rate, betas=(beta1, beta2), wd_mode=wd_mode)
else:
    opt = optim.SGD(groups, lr=learning_rate, momentum=momentum, wd_mode=wd_mode)
decayed = optim.decayed_params(opt)
scaler = optim.GradScaler(device_type, enabled=dtype == 'float16')  # float16 needs loss scaling
ema = optim.EMA(model, ema_coef)
print0(summary)
# How long weight decay remembers, 1/(lr*wd) iterations: what the paper's runs have in common.
tau = optim.wd_timescale(learning_rate, weight_decay, wd_mode=wd_mode, lr_max=learning_rate)
config.update(wd_timescale_iters=tau, wd_timescale_frac=tau / max(max_iters, 1))
print0(optim.timescale_line(tau, max_iters))
# The replay sets each decayed matrix's LR at every step so that its lr/||w|| is the source run's.
replay_at = elr_from and or_fail(optim.adam_elr_replay, run_io.read_log(Path(elr_from) /
                                 'log.jsonl'), len(decayed), prefix=f"elr_from={elr_from}: ")

iter_num = start_iter = 0
clipped, pending_losses = 0, []  # clipped steps so far; losses since the last log line (on device)
# A resumed run continues exactly where it stopped. A fine-tuning run starts at iteration 0 from the
# parent's weights, EMA and Adam's moments, as the authors' fine-tuning does.
if checkpoint is not None:
    ema.load_state_dict(checkpoint['ema'])
    # The moments come from the checkpoint, lr, weight decay and betas from this run's settings.
    parent = checkpoint['config']
    if (parent['optimizer'], parent['wd_params']) == (optimizer, wd_params):
        optim.load_moments(opt, checkpoint['optimizer'])
    if resumed:
        iter_num = start_iter = checkpoint['iter']
        clipped, pending_losses = checkpoint['clipped'], [*checkpoint['pending_losses'].to(device)]
        sampler.set_state(checkpoint['sampler'])
        # the RNG states, the GradScaler, and the log cut back to the checkpoint
        run_io.restore(checkpoint, scaler, device, rank, log_path if master else None)
    print0(run_io.start_message(checkpoint, config, resumed))
    checkpoint = None  # free the memory
if master:  # the run folder is written only once every check has passed
    run_io.prepare_run_dir(out_dir, config)
    print0(f"run folder {out_dir}; {world_size} process(es) on {device}, {dtype}")


def get_lr(it):
    """The learning rate of iteration it: a linear warmup, then a cosine to min_lr, or constant."""
    if decay_lr:
        return optim.cosine_lr(it, learning_rate, min_lr, warmup_iters, lr_decay_iters or max_iters)
    return optim.constant_lr(it, learning_rate, warmup_iters)


raw_model = model  # without the compile and DDP wrappers: what is saved and averaged
if use_compile:
    print0("compiling the model and the optimizer step (about a minute)")
    # Static shapes: each batch size (training, eval) gets a graph of its own, none a symbolic one.
    model = torch.compile(model, dynamic=False)
    opt.compile()  # the update fused into one pass over the parameters (optim.py)
train_model = DDP(model, device_ids=[device] if device_type == 'cuda' else None) if ddp else model
# MFU is reported against the GPU's dense bf16 tensor-core peak, where it is known
peak_flops = bf16_peak_flops(torch.cuda.get_device_name(device)) if device_type == 'cuda' else None
flops_per_iter = raw_model.flops_per_token(block_size) * tokens_per_iter

# -----------------------------------------------------------------------------
# evaluation, metrics, checkpoints


@torch.no_grad()
def evaluate(net):
    """Mean loss and next-token error (top-1, a fraction) of net over the fixed eval sequences."""
    net.eval()
    out = {}
    for split, (x, y) in eval_batches.items():
        loss_sum = torch.zeros((), device=device)
        wrong = torch.zeros((), device=device, dtype=torch.long)
        for xb, yb in zip(x.split(eval_batch_size), y.split(eval_batch_size)):
            with autocast:
                logits, loss = net(xb, yb)
            # the batch's mean over its tokens, weighted by its size (the last may be smaller)
            loss_sum += loss.float() * len(xb)
            wrong += (logits.argmax(-1) != yb).sum()
        out[f'{split}_loss'] = (loss_sum / len(x)).item()
        out[f'{split}_err'] = (wrong / y.numel()).item()
    net.train()
    return out


def eval_at(it):  # every eval_interval, at the end, and at every kept snapshot
    return it % eval_interval == 0 or it == max_iters or (ckpt_every > 0 and it % ckpt_every == 0)


def line_at(it):  # what every log line starts with
    return dict(iter=it, lr=get_lr(it), wd=weight_decay, tokens=it * tokens_per_iter)


def checkpoint_at(it):
    """Save at the start and the end, at every kept snapshot, and at the first log line after
    ckpt_minutes of training: the writes stay a small share of a long run (GPT-2 small's checkpoint
    is 2 GB), and a crash loses at most ckpt_minutes of it, whatever the model's size."""
    if resumed and it == start_iter:  # the checkpoint this run resumed from
        return False
    return (it in (start_iter, max_iters) or (ckpt_every > 0 and it % ckpt_every == 0)
            or (it % log_interval == 0 and run_io.minutes_passed(saved_at, ckpt_minutes)))


def weight_decay_metrics(angles, angle_lr):
    """What weight decay does to the weights: their norms, Adam's effective LR, and the angles the
    decayed matrices turned in the step before this eval (at lr angle_lr) against equilibrium."""
    adamw = optimizer == 'adamw'
    return dict(
        **optim.norm_metrics(raw_model.parameters(), decayed),
        adam_elr=optim.adam_effective_lr(opt) if adamw else None,
        adam_elr_all=optim.adam_effective_lr_all(opt) if adamw else None,  # the authors' metric
        matrix_elr=optim.matrix_elr(opt),  # each decayed matrix's lr/||w||
        **optim.rotation_metrics(angles, angle_lr, optimizer, weight_decay, wd_mode=wd_mode,
                                 lr_max=learning_rate, beta1=beta1, momentum=momentum))


def save_checkpoint():
    """Everything a resumed run needs to continue exactly (a collective under DDP)."""
    global saved_iter, saved_at
    rngs = run_io.rng_states(device)
    snapshot = ckpt_every > 0 and iter_num > 0 and iter_num % ckpt_every == 0
    if master:
        losses = torch.stack(pending_losses).cpu() if pending_losses else torch.zeros(0)
        keep = Path(out_dir) / f'ckpt_{iter_num}.pt' if snapshot else None
        run_io.save_checkpoint(dict(
            model=raw_model.state_dict(), optimizer=opt.state_dict(), ema=ema.state_dict(),
            scaler=scaler.state_dict(), iter=iter_num, config=config, model_args=model_args,
            clipped=clipped, pending_losses=losses, rng=rngs, sampler=batch_state),
            ckpt_path, log=log_path, keep=keep)
    saved_iter, saved_at = iter_num, time.perf_counter()


# -----------------------------------------------------------------------------
# the loop: batch, forward, backward, clip, step (weight decay acts inside), EMA, log, eval

stop = run_io.GracefulStop('step')  # SIGINT / SIGTERM: finish the step, checkpoint, exit
batch_state, X, Y = next_batch()
angles, angle_lr = [], None  # the angle each decayed matrix turned in the step before an eval
t_start = t_log = saved_at = time.perf_counter()
saved_iter, iter_log = None, iter_num  # the iterations of the last checkpoint and log line
paused = 0.0  # seconds spent in evals and checkpoints since the last log line
while True:
    lr = get_lr(iter_num)
    # a replay reads the matrices' norms back every step: a host sync that only the replay pays
    replay_lrs = replay_at(iter_num, optim.weight_norms(decayed)[1]) if replay_at else None
    optim.set_lr(opt, lr, replay_lrs)

    # Evaluate the model and its EMA on the fixed sequences (not again right after a resume); the
    # EMA's weights go through the same compiled model, which gets its own back afterwards.
    t0 = time.perf_counter()
    if eval_at(iter_num) and not (resumed and iter_num == start_iter):
        run_io.stop_if_diverged(pending_losses, iter_num, log_path, line_at, master)  # exit 1 if so
        if master:
            ema.copy_buffers(raw_model)  # buffers are copied, not averaged
            record = dict(**line_at(iter_num), eval=True, **evaluate(model))
            with ema.swapped_into(raw_model):
                record.update({f'{k}_ema': v for k, v in evaluate(model).items()})
            record.update(weight_decay_metrics(angles, angle_lr), eval_s=time.perf_counter() - t0)
            # what bfloat16 meets in the attention, on the first val batch (model.GPT.logit_stats)
            record.update(raw_model.logit_stats(eval_batches['val'][0][:batch_size]))
            record['diverged'] = not np.isfinite([record['train_loss'], record['val_loss']]).all()
            run_io.append_log(log_path, record)
            print(run_io.gpt_eval_line(record))
        if run_io.any_process(master and record['diverged']):
            run_io.stop_diverged(log_path, None, f"the eval loss is not finite at iteration "
                                 f"{iter_num:,}", master)
    if checkpoint_at(iter_num):
        save_checkpoint()
    paused += time.perf_counter() - t0
    if iter_num >= max_iters:
        break
    # Under DDP every process must stop at the same step: they agree at log lines.
    if stop.requested(can_agree=iter_num % log_interval == 0):
        if saved_iter != iter_num:
            save_checkpoint()
        stop.exit(f"checkpoint at iteration {iter_num:,} in {ckpt_path}" if master else None)

    # Forward and backward over this process's micro-batches X[micro], Y[micro]: the gradient of the
    # global batch's mean loss. DDP averages the gradients over the processes at the last one only.
    loss_iter = torch.zeros((), device=device)
    for micro in range(accum_steps):
        last = micro == accum_steps - 1
        with train_model.no_sync() if ddp and not last else nullcontext():
            with autocast:
                loss = train_model(X[micro], Y[micro])[1] / accum_steps
            # while the device computes the last forward pass, read the next batch from disk
            if last:
                upcoming = next_batch()
            scaler.scale(loss).backward()
        loss_iter += loss.detach()
    # float16 only: clip and measure the true gradient, not the loss-scaled one
    scaler.unscale_(opt)
    log_now = (iter_num + 1) % log_interval == 0
    if grad_clip > 0:
        grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), grad_clip)
        clipped = clipped + (grad_norm > grad_clip).int()  # a counter on the device: no sync a step
    elif log_now:
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in raw_model.parameters()])
    # The last step before an eval keeps the weights it starts from: the eval reports the angle each
    # decayed matrix turns in this one step.
    before = [p.detach().clone() for p in decayed] if master and eval_at(iter_num + 1) else None
    # the step: weight decay acts inside, p <- p - lr*wd*p for the decayed tensors (optim.py)
    scaler.step(opt)
    scaler.update()
    opt.zero_grad(set_to_none=True)
    ema.update(raw_model)  # ema <- coef*ema + (1-coef)*w
    if before is not None:
        angles, angle_lr = optim.angular_updates(before, decayed), lr
    batch_state, X, Y = upcoming
    pending_losses.append(loss_iter)
    iter_num += 1

    # Log the mean loss since the last line: the loop's one wait for the device. The speed counts
    # the iterations run since this process's last line, not the losses a resumed run brought along.
    if log_now:
        run_io.stop_if_diverged(pending_losses, iter_num, log_path, line_at, master)
        loss_mean = run_io.mean_over_processes(torch.stack(pending_losses).mean())
        if master:
            dt = (time.perf_counter() - t_log - paused) / (iter_num - iter_log)
            eta = (time.perf_counter() - t_start) / (iter_num - start_iter) * (max_iters - iter_num)
            record = dict(**line_at(iter_num), loss=loss_mean.item(), grad_norm=grad_norm.item(),
                          **optim.norm_metrics(raw_model.parameters(), decayed),
                          clipped=int(clipped), ms_per_iter=1e3 * dt,
                          tokens_per_s=tokens_per_iter / dt)
            if peak_flops:
                record['mfu'] = flops_per_iter / dt / (peak_flops * world_size)
            if dtype == 'float16':  # steps the GradScaler skipped (gradients overflowed), in total
                record['skipped'] = scaler.skipped
            run_io.append_log(log_path, record)
            print(run_io.gpt_log_line(record, eta))
        pending_losses, t_log, iter_log, paused = [], time.perf_counter(), iter_num, 0.0

print0(f"done: {iter_num:,} iterations in {run_io.format_duration(time.perf_counter() - t_start)}; "
       f"{ckpt_path}")
run_io.end_processes(0 if ddp else None)
