"""
Train a CIFAR net with SGD and weight decay, as in Section 2 of "Why Do We Need Weight Decay in
Modern Deep Learning?": a long run at a large LR, then a drop to a tiny LR (`lr_flow`), with an
EMA of the iterates, the weight norm, the effective LR and optionally the trace of the Hessian.

    python prepare_data.py cifar10 --source=../shared/data/cifar10_mini/cifar-10-python.tar.gz
    python train_resnet.py config/resnet_cpu_demo.py                   # minutes on a laptop CPU
    python train_resnet.py                                             # Figure 1: ResNet-18, lr 0.08, wd 0.0125
    python train_resnet.py --weight_decay=0                            # Figure 1: the same without weight decay
    python train_resnet.py config/resnet_sphere.py --lr=0.003          # Figure 2: projected SGD on a sphere
    python train_resnet.py config/resnet_cpu_demo.py --init_from=resume  # continue a run exactly

Writes out/RUN/config.json, log.jsonl (one JSON object per epoch, plus eval lines) and ckpt.pt
(at every eval). Errors (train_err, test_err, ...) are fractions in [0, 1] in the log, percentages
on the terminal. Exit status: 0 done, 1 a fault at run time (the loss diverged: logged, last good
checkpoint kept), 2 bad input, 130 / 143 stopped by SIGINT / SIGTERM after checkpointing its epoch.
"""
import copy
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import optim
import run_io
from configurator import configure, run_name
from model import VISION_NETS, hessian_trace, reestimate_bn, scale_invariant_params

# -----------------------------------------------------------------------------
# data: the paper trains on the full CIFAR training set without augmentation (Figure 1)
dataset = 'cifar10'  # cifar10 | cifar100, prepared by prepare_data.py into DATA_DIR/NAME/
data_dir = ''  # folder of prepared datasets; '' = data/ beside this script
n_train = 0  # > 0: a class-balanced training subset of this many images (quick runs)
augment = False  # random crop with 4-pixel padding + horizontal flip, on the device
# model: PreAct ResNet-18 with BatchNorm (Figure 1)
model = 'resnet18'  # resnet18 | resnet34preact | vgg16
width = 64  # channels of the first stage; 64 is the standard net
batch_norm = True
scale_inv = False  # BatchNorm without affine parameters + frozen last layer (Figure 2)
# optimizer: plain SGD, lr 0.08, wd 0.0125 (Figure 1, ResNet-18)
batch_size = 128
lr = 0.08
momentum = 0.0
weight_decay = 0.0125
wd_mode = 'decoupled'  # decoupled | l2 | independent (identical for SGD without momentum, except independent)
wd_params = 'all'  # the authors decay every parameter (torch.optim.SGD's weight_decay); or 'matrices'
radius = 0.0  # > 0: project the trainable parameters onto the sphere of this norm after each step (Figure 2)
# schedule: lr for the first half, then exactly lr_flow, weight decay kept (Figure 1)
epochs = 1000
first_decay = 0.5  # fraction of the epochs before the drop
lr_flow = 1e-4
# EMA of the iterates, 0.999 per step as the authors; 0 = none
ema_coef = 0.999
# evaluation (losses are per-sample means over the whole split)
eval_every = 10  # epochs; the last epoch is always evaluated
eval_batch_size = 1000  # large: evaluation is forward-only (inference mode, autocast)
hessian_every = 0  # > 0: Hutchinson trace of the Hessian every this many epochs (Figures 2, 3)
hessian_n = 1000  # class-balanced training images it is computed on
hessian_probes = 20  # Rademacher probes (its standard error is logged too)
flow_every = 0  # > 0: fine-tune a copy at lr_flow without weight decay every this many epochs (Figures 2, 3)
flow_epochs = 100  # epochs of each fine-tuning ("flow_steps" in the authors' code)
# system
device = 'auto'  # auto | cpu | cuda | cuda:N | mps
dtype = 'auto'  # auto | float32 | bfloat16 | float16 (autocast over float32 weights)
compile = 'auto'  # auto (on CUDA only) | True | False
seed = 0
out_dir = ''  # '' = out/ + a name built from the overrides
init_from = 'scratch'  # scratch | resume (continue out_dir's checkpoint exactly)
config, overrides = configure(globals(), __doc__)
# -----------------------------------------------------------------------------

run_io.report_faults()  # a failed compile, a disk error, Ctrl-C before the loop: one line, no traceback

def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


ROOT = Path(__file__).resolve().parent
checks = [
    (model in VISION_NETS, f"unknown model {model!r}: expected one of {', '.join(VISION_NETS)}"),
    (dataset in ('cifar10', 'cifar100'), f"unknown dataset {dataset!r}: expected cifar10 or cifar100"),
    (dtype in ('auto', 'float32', 'bfloat16', 'float16'),
     f"unknown dtype {dtype!r}: expected auto, float32, bfloat16 or float16"),
    (wd_mode in optim.WD_MODES, f"unknown wd_mode {wd_mode!r}: expected one of {', '.join(optim.WD_MODES)}"),
    (device == 'auto' or device.split(':')[0] in ('cpu', 'cuda', 'mps'),
     f"unknown device {device!r}: expected auto, cpu, cuda, cuda:N or mps"),
    (str(compile).lower() in ('auto', 'true', 'false'), f"compile must be auto, True or False, got {compile!r}"),
    (init_from in ('scratch', 'resume'), f"init_from must be scratch or resume, got {init_from!r}"),
    (width >= 1, f"width must be >= 1, got {width}"),
    (batch_size >= 1, f"batch_size must be >= 1, got {batch_size}"),
    (eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {eval_batch_size}"),
    (epochs >= 1, f"epochs must be >= 1, got {epochs}"),
    (lr >= 0 and lr_flow >= 0, f"lr and lr_flow must be >= 0, got {lr} and {lr_flow}"),
    (weight_decay >= 0, f"weight_decay must be >= 0, got {weight_decay}"),
    (0 <= momentum < 1, f"momentum must be in [0, 1), got {momentum}"),
    (0 <= ema_coef < 1, f"ema_coef must be in [0, 1), got {ema_coef}"),
    (0 <= first_decay <= 1, f"first_decay must be in [0, 1], got {first_decay}"),
    (radius >= 0, f"radius must be >= 0 (0 = no projection), got {radius}"),
    (min(eval_every, hessian_every, flow_every, n_train) >= 0,
     "eval_every, hessian_every, flow_every and n_train must be >= 0"),
    (hessian_n >= 1 and hessian_probes >= 1 and flow_epochs >= 1,
     "hessian_n, hessian_probes and flow_epochs must be >= 1"),
    (not (scale_inv and model == 'vgg16'), "vgg16 has no scale-invariant variant (use resnet18 or resnet34preact)"),
    (not (scale_inv and not batch_norm), "scale_inv needs batch_norm=True"),
]
for ok, message in checks:
    if not ok:
        fail(message)

# -----------------------------------------------------------------------------
# setup: device, precision, run folder

if device == 'auto':
    device = 'cuda' if torch.cuda.is_available() else 'mps' if torch.backends.mps.is_available() else 'cpu'
device_type = device.split(':')[0]
if device_type == 'cuda' and not torch.cuda.is_available():
    fail(f"device is {device} but PyTorch sees no CUDA GPU (try --device=cpu)")
if device_type == 'mps' and not torch.backends.mps.is_available():
    fail("device 'mps' requested but MPS is not available; use --device=cpu")
if dtype == 'auto':
    dtype = 'bfloat16' if device_type == 'cuda' and torch.cuda.is_bf16_supported() else 'float32'
if dtype == 'bfloat16' and device_type == 'cuda' and not torch.cuda.is_bf16_supported():
    fail("this GPU does not support bfloat16; use --dtype=float16 or float32")
ptdtype = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}[dtype]
autocast = torch.autocast(device_type, dtype=ptdtype, enabled=dtype != 'float32')
use_compile = str(compile).lower() == 'true' or (str(compile).lower() == 'auto' and device_type == 'cuda')
if str(compile).lower() == 'true' and (why := run_io.compile_unavailable(device_type)):
    fail(f"{why}; run with --compile=False")
memory_format = torch.channels_last if device_type == 'cuda' else torch.contiguous_format
if device_type == 'cuda':
    torch.backends.cudnn.benchmark = True

ignore = ('device', 'dtype', 'compile', 'out_dir', 'data_dir', 'eval_every', 'eval_batch_size', 'init_from')
out_dir = Path(out_dir) if out_dir else ROOT / 'out' / run_name('resnet', overrides, ignore=ignore)
ckpt_path, log_path = out_dir / 'ckpt.pt', out_dir / 'log.jsonl'
if init_from == 'resume' and not ckpt_path.exists():
    if log_path.exists():
        fail(f"cannot resume: {out_dir} was stopped before its first checkpoint (an eval); "
             f"delete the folder and start again")
    fail(f"cannot resume: {ckpt_path} does not exist (pass the run's folder as --out_dir)")
if init_from == 'scratch' and (ckpt_path.exists() or log_path.exists()):
    fail(f"{out_dir} already holds a run; continue it with --init_from=resume, "
         f"or pick another --out_dir (or delete the folder)")
if why := run_io.unwritable(out_dir):
    fail(f"cannot write the run folder {out_dir}: {why}; choose another --out_dir")

# -----------------------------------------------------------------------------
# data: each split on the device once as uint8; batches are cut, augmented and normalised there

data_path = (Path(data_dir) if data_dir else ROOT / 'data') / dataset
arrays = [f'{s}_{a}.npy' for s in ('train', 'test') for a in ('images', 'labels')]
if not all((data_path / a).exists() for a in arrays):
    fail(f"dataset {dataset} not found in {data_path}: run `python prepare_data.py {dataset}` "
         f"(or with --source=PATH to a local copy of the tarball)")


def load_split(split):  # uint8 (N, 3, 32, 32) and int64 labels, on the device
    again = f"prepare it again: python prepare_data.py {dataset}"
    try:
        images, labels = (np.load(data_path / f'{split}_{a}.npy') for a in ('images', 'labels'))
    except (OSError, ValueError, EOFError) as e:  # truncated or overwritten arrays
        fail(f"{data_path}/{split}_*.npy is truncated or corrupted ({str(e).splitlines()[0][:100]}); "
             f"{again}")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        fail(f"{data_path}/{split}_images.npy holds {images.dtype} {images.shape}, not uint8 "
             f"(N, 32, 32, 3); {again}")
    if labels.ndim != 1 or len(labels) != len(images) or labels.dtype.kind not in 'iu' \
            or (labels < 0).any():
        fail(f"{data_path}/{split}_labels.npy does not hold {len(images)} labels >= 0; {again}")
    images, labels = torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))
    return images.permute(0, 3, 1, 2).contiguous().to(device), labels.to(device)


train_x, train_y = load_split('train')
test_x, test_y = load_split('test')
num_classes = int(max(train_y.max(), test_y.max())) + 1
# the channel statistics of the full training set, in pixel units (in chunks: no float copy of it all)
sums = sum(torch.stack([c.double().sum((0, 2, 3)), c.double().square().sum((0, 2, 3))]) for c in train_x.split(5000))
mean64 = sums[0] / (train_x.numel() // 3)
mean = mean64.float().view(1, 3, 1, 1)
inv_std = (sums[1] / (train_x.numel() // 3) - mean64 ** 2).rsqrt().float().view(1, 3, 1, 1)


def balanced_subset(labels, n):
    """Indices of the first n/num_classes images of each class, in dataset order."""
    per_class = n // num_classes
    counts = torch.bincount(labels, minlength=num_classes)
    if n % num_classes or per_class > counts.min():
        fail(f"a balanced subset of {n} needs a multiple of {num_classes} and at most "
             f"{int(counts.min()) * num_classes} (the training set has {len(labels)} images)")
    return torch.cat([torch.nonzero(labels == c).flatten()[:per_class] for c in range(num_classes)]).sort().values


if n_train:
    subset = balanced_subset(train_y, n_train)
    train_x, train_y = train_x[subset], train_y[subset]
iters_per_epoch = len(train_y) // batch_size  # the incomplete last batch is dropped: equal batch statistics
if iters_per_epoch == 0:
    fail(f"batch_size {batch_size} is larger than the training set ({len(train_y)} images)")
if augment:
    train_padded = F.pad(train_x, (4, 4, 4, 4))  # zero padding for the random crops, done once
    channels = torch.arange(3, device=device).view(1, 3, 1, 1)
    offsets = torch.arange(32, device=device)


def normalize(x):
    return ((x.float() - mean) * inv_std).contiguous(memory_format=memory_format)


def train_batch(idx, gen):
    if not augment:
        return normalize(train_x[idx]), train_y[idx]
    b = len(idx)
    shift = torch.randint(0, 9, (2, b, 1), generator=gen, device=device)
    rows, cols = shift[0] + offsets, shift[1] + offsets  # (b, 32): a 32x32 window of the 40x40 image
    flip = torch.rand(b, 1, generator=gen, device=device) < 0.5
    cols = torch.where(flip, cols.flip(1), cols)  # a horizontal flip reads the columns backwards
    x = train_padded[idx.view(b, 1, 1, 1), channels, rows.view(b, 1, 32, 1), cols.view(b, 1, 1, 32)]
    return normalize(x), train_y[idx]


print(f"{dataset}: {len(train_y):,} training images ({iters_per_epoch} batches of {batch_size} per epoch), "
      f"{len(test_y):,} test images, {num_classes} classes, augment={augment}, device {device}, {dtype}")

# -----------------------------------------------------------------------------
# model

torch.manual_seed(seed)
raw_net = VISION_NETS[model](num_classes, width, batch_norm, scale_inv).to(device, memory_format=memory_format)
# static shapes: the train batch, the eval batch and a last partial batch each compile once, then never again
net = torch.compile(raw_net, dynamic=False) if use_compile else raw_net
trainable = [p for p in raw_net.parameters() if p.requires_grad]
si_params = scale_invariant_params(raw_net)
n_frozen = sum(p.numel() for p in raw_net.parameters() if not p.requires_grad)
print(f"{model} width {width}, batch_norm={batch_norm}, scale_inv={scale_inv}: "
      f"{sum(p.numel() for p in trainable):,} trainable parameters" + (f", {n_frozen:,} frozen" if n_frozen else ""))


@torch.no_grad()
def project_to_sphere(params):  # w <- radius * w / ||w||, all trainable parameters together
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(params)))
    torch._foreach_mul_(params, radius / norm)


if radius > 0:
    project_to_sphere(trainable)  # start on the sphere, as the authors

# -----------------------------------------------------------------------------
# optimizer, schedule, EMA

groups, summary = optim.param_groups(raw_net, weight_decay, wd_params)
optimizer = optim.SGD(groups, lr=lr, momentum=momentum, wd_mode=wd_mode)
if use_compile:
    optimizer.compile()  # the update fused into one pass over the parameters (optim.py)
scaler = optim.GradScaler(device_type, enabled=dtype == 'float16')  # counts the steps it skips
decayed = optim.decayed_params(optimizer)
ema = optim.EMA(raw_net, ema_coef) if ema_coef > 0 else None
gen = torch.Generator(device=device)  # shuffling and augmentation; saved in the checkpoint
gen.manual_seed(seed)
print(summary)
tau = optim.wd_timescale(lr, weight_decay)
print(f"weight-decay timescale 1/(lr*wd) = {tau:,.0f} iterations = {tau / iters_per_epoch:,.1f} epochs; "
      f"lr {lr} until epoch {round(first_decay * epochs)}, then {lr_flow}")

start_epoch = 0
if init_from == 'resume':
    try:
        ckpt = run_io.load_checkpoint(ckpt_path, 'cpu')  # RNG states must stay on the CPU
    except run_io.CheckpointError as e:
        fail(e)
    needed = {'model', 'optimizer', 'config', 'epoch', 'iter', 'rng'}
    if not (needed <= ckpt.keys() and 'width' in ckpt['config']):
        fail(f"{ckpt_path} is not a train_resnet.py checkpoint")
    old = ckpt['config']
    shaping = ('model', 'width', 'batch_norm', 'scale_inv', 'dataset', 'n_train', 'batch_size', 'wd_params')
    changed = [k for k in shaping if old.get(k) != config[k]]
    if changed:
        fail(f"cannot resume {ckpt_path} with a different {', '.join(changed)} "
             f"(it has {', '.join(f'{k}={old.get(k)!r}' for k in changed)})")
    try:
        raw_net.load_state_dict(ckpt['model'])
        optimizer.load_state_dict(ckpt['optimizer'])
    except (RuntimeError, ValueError, KeyError) as e:
        fail(f"the checkpoint's weights do not fit this {model} ({str(e).strip().splitlines()[0][:160]})")
    if ckpt['scaler']:  # empty when the checkpoint was not float16
        scaler.load_state_dict(ckpt['scaler'])
    if ema is not None and ckpt['ema'] is not None:
        ema.load_state_dict(ckpt['ema'])
    gen.set_state(ckpt['rng']['gen'])
    torch.set_rng_state(ckpt['rng']['torch'])
    if device_type == 'cuda' and ckpt['rng']['cuda'] is not None:
        torch.cuda.set_rng_state_all(ckpt['rng']['cuda'])
    start_epoch = ckpt['epoch']
    run_io.trim_log(log_path, ckpt['iter'])  # what came after the checkpoint is logged again
    notes = [f"{k} {old.get(k)!r} -> {v!r}" for k, v in config.items() if old.get(k) != v and k != 'init_from']
    print(f"resuming {ckpt_path} after epoch {start_epoch}" + (f" ({'; '.join(notes)})" if notes else ""))
try:
    run_io.prepare_run_dir(out_dir, config)
except OSError as e:
    fail(f"cannot write the run folder {out_dir}: {e.strerror}; choose another --out_dir")


def train_epoch(net, optimizer, scaler, gen, ema=None, radius=0.0, watch=None):
    """One shuffled pass in minibatches. Returns the summed loss and gradient norm (device tensors,
    no host sync) and, if `watch` is given, the angle each of its tensors turned in the last step."""
    net.train()
    perm = torch.randperm(len(train_y), generator=gen, device=device)
    loss_sum = torch.zeros((), device=device)
    grad_norm_sum = torch.zeros((), device=device)
    angles = None
    for i in range(iters_per_epoch):
        x, y = train_batch(perm[i * batch_size:(i + 1) * batch_size], gen)
        with autocast:
            loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)  # float16 only: the true gradient, for its norm
        grads = [p.grad for g in optimizer.param_groups for p in g['params'] if p.grad is not None]
        grad_norm_sum += torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        last = i == iters_per_epoch - 1
        if last and watch is not None:
            before = [p.detach().clone() for p in watch]
        scaler.step(optimizer)  # SGD with weight decay: p <- p - lr*wd*p - lr*g (optim.py)
        scaler.update()
        if radius > 0:
            project_to_sphere([p for g in optimizer.param_groups for p in g['params']])
        if ema is not None:
            ema.update(net)
        if last and watch is not None:
            angles = optim.angular_updates(before, watch)
        loss_sum += loss.detach()
    return loss_sum, grad_norm_sum, angles


# -----------------------------------------------------------------------------
# evaluation

@torch.inference_mode()
def evaluate(net, images, labels):
    """(per-sample mean cross-entropy, error fraction) over a whole split, in eval mode."""
    was_training = net.training
    net.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    wrong = torch.zeros((), device=device, dtype=torch.long)
    for i in range(0, len(labels), eval_batch_size):
        x, y = normalize(images[i:i + eval_batch_size]), labels[i:i + eval_batch_size]
        with autocast:
            logits = net(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction='sum')  # divided by N below, not by batches
        wrong += (logits.argmax(1) != y).sum()
    net.train(was_training)
    return loss_sum.item() / len(labels), wrong.item() / len(labels)


def evaluate_all(net, prefix='', suffix=''):
    train_loss, train_err = evaluate(net, train_x, train_y)
    test_loss, test_err = evaluate(net, test_x, test_y)
    return {f'{prefix}train_loss{suffix}': train_loss, f'{prefix}train_err{suffix}': train_err,
            f'{prefix}test_loss{suffix}': test_loss, f'{prefix}test_err{suffix}': test_err}


bn_batches = lambda: (normalize(train_x[i:i + batch_size]) for i in range(0, len(train_y), batch_size))
if hessian_every:
    h_idx = balanced_subset(train_y, hessian_n)
    hessian_batches = [(normalize(train_x[c]), train_y[c]) for c in h_idx.split(eval_batch_size)]


def trace_of(net, epoch, prefix=''):  # float32, fresh probes per epoch that do not touch the training stream
    h_gen = torch.Generator(device=device)
    h_gen.manual_seed(seed + 7919 * (epoch + 1))
    trace, se = hessian_trace(net, hessian_batches, hessian_probes, h_gen)
    return {f'{prefix}trace_hessian': trace, f'{prefix}trace_hessian_se': se}


def flow(epoch):
    """Fine-tune a copy of the iterate at lr_flow without weight decay (the authors' gradient flow)."""
    flow_net = copy.deepcopy(raw_net)
    flow_params = [p for p in flow_net.parameters() if p.requires_grad]
    flow_opt = optim.SGD([dict(params=flow_params)], lr=lr_flow, momentum=momentum)
    if use_compile:
        flow_opt.compile()
    flow_scaler = torch.amp.GradScaler(device_type, enabled=dtype == 'float16')
    flow_gen = torch.Generator(device=device)
    flow_gen.manual_seed(seed + 104729 * (epoch + 1))  # its own stream: the main run is unchanged
    for _ in range(flow_epochs):
        train_epoch(flow_net, flow_opt, flow_scaler, flow_gen)
    record = evaluate_all(flow_net, prefix='flow_')
    record['flow_weight_norm'] = optim.weight_norms(flow_params)[0]
    if hessian_every:
        record.update(trace_of(flow_net, epoch, prefix='flow_'))
    return record


def save_checkpoint(done, it):
    ckpt = dict(model=raw_net.state_dict(), optimizer=optimizer.state_dict(), scaler=scaler.state_dict(),
                ema=ema.state_dict() if ema else None, epoch=done, iter=it, config=config,
                rng=dict(torch=torch.get_rng_state(), gen=gen.get_state(),
                         cuda=torch.cuda.get_rng_state_all() if device_type == 'cuda' else None))
    run_io.save_checkpoint(ckpt, ckpt_path, log=log_path)


# -----------------------------------------------------------------------------
# the loop: one training line per epoch, an eval line every eval_every epochs

stop = run_io.GracefulStop()  # SIGINT / SIGTERM finish the epoch, checkpoint it, exit

print(f"\n{'epoch':>6} {'loss':>8} {'train err':>10} {'test err':>9} {'ema err':>8} {'|w|':>9} "
      f"{'lr':>8} {'img/s':>7} {'eta':>7}")
t_start, pct = time.perf_counter(), lambda v: f"{100 * v:.2f}%"
for epoch in range(start_epoch, epochs):
    done = epoch + 1
    lr_now = optim.step_lr(epoch, lr, lr_flow, first_decay, epochs)  # exactly lr_flow from the drop on
    for g in optimizer.param_groups:
        g['lr'] = lr_now
    due = lambda every: every > 0 and done % every == 0
    do_hessian, do_flow = due(hessian_every), due(flow_every)
    do_eval = due(eval_every) or do_hessian or do_flow or done == epochs

    t0 = time.perf_counter()
    loss_sum, grad_norm_sum, angles = train_epoch(net, optimizer, scaler, gen, ema, radius,
                                                  watch=decayed if do_eval else None)
    loss = loss_sum.item() / iters_per_epoch  # the epoch's one host sync
    dt = time.perf_counter() - t0
    it = done * iters_per_epoch
    weight_norm = optim.weight_norms(trainable)[0]
    record = dict(iter=it, epoch=done, lr=lr_now, wd=weight_decay, loss=loss,
                  grad_norm=grad_norm_sum.item() / iters_per_epoch, weight_norm=weight_norm,
                  decayed_norm=optim.weight_norms(decayed)[0], ms_per_iter=1e3 * dt / iters_per_epoch)
    if dtype == 'float16':  # steps the GradScaler skipped (gradients overflowed), in total
        record['skipped'] = scaler.skipped
    if not math.isfinite(loss):
        run_io.append_log(log_path, {**record, 'diverged': True})
        kept = f"last good checkpoint {ckpt_path}" if ckpt_path.exists() else "no checkpoint was saved"
        print(f"diverged: the training loss is {loss} in epoch {done}; {kept}", file=sys.stderr)
        sys.exit(1)
    run_io.append_log(log_path, record)

    errs = ('', '', '')
    if do_eval:
        t_eval = time.perf_counter()
        ev = dict(iter=it, epoch=done, lr=lr_now, wd=weight_decay, eval=True, diverged=False)
        ev.update(evaluate_all(net))
        ev['weight_norm'] = weight_norm
        si_sq = sum(n ** 2 for n in optim.weight_norms(si_params)[1])
        ev['eff_lr'] = lr_now / si_sq if si_sq > 0 else float('nan')  # lr/||w||^2 of the scale-invariant weights
        ev['angular_update'] = sum(angles) / len(angles) if angles else float('nan')
        ev['angular_update_eq'] = optim.equilibrium_angular_update('sgd', lr_now, weight_decay, momentum=momentum)
        ev['reg_objective'] = ev['train_loss'] + weight_decay / 2 * record['decayed_norm'] ** 2  # CE + wd/2*||w||^2
        if ema is not None:
            t_bn = time.perf_counter()
            reestimate_bn(ema.model, bn_batches())  # averaged weights need their own BN statistics
            ev['weight_norm_ema'] = optim.weight_norms([p for p in ema.model.parameters()])[0]  # syncs
            ev['bn_s'] = time.perf_counter() - t_bn
            ev.update(evaluate_all(ema.model, suffix='_ema'))
        ev['eval_s'] = time.perf_counter() - t_eval  # both nets on both splits, BN re-estimation included
        if do_hessian:
            ev.update(trace_of(raw_net, epoch))
        if do_flow:
            ev.update(flow(epoch))
        run_io.append_log(log_path, ev)
        errs = (pct(ev['train_err']), pct(ev['test_err']), pct(ev['test_err_ema']) if ema else '-')
        save_checkpoint(done, it)

    elapsed = time.perf_counter() - t_start
    eta = run_io.format_duration(elapsed / (done - start_epoch) * (epochs - done))
    print(f"{done:>6} {loss:>8.4f} {errs[0]:>10} {errs[1]:>9} {errs[2]:>8} {weight_norm:>9.2f} "
          f"{lr_now:>8.1e} {iters_per_epoch * batch_size / dt:>7.0f} {eta:>7}")
    if do_eval:
        extra = [f"{k} {ev[k]:.4g}" for k in ('test_loss', 'eff_lr', 'angular_update', 'angular_update_eq',
                                             'trace_hessian') if k in ev]
        extra += [f"flow_test_err {pct(ev['flow_test_err'])}"] if 'flow_test_err' in ev else []  # percent, as above
        print(f"{'':>6} eval: " + ' | '.join(extra))
    if stop.signum is not None and done < epochs:
        if not do_eval:  # an eval epoch has just saved its checkpoint
            save_checkpoint(done, it)
        stop.exit(f"checkpoint after epoch {done} in {ckpt_path}")
print(f"log: {log_path}")
