"""
Train a CIFAR net with SGD and weight decay, as in Section 2 of "Why Do We Need Weight Decay in
Modern Deep Learning?": a long run at a large LR, then a drop to a tiny LR (`lr_flow`), with an
EMA of the iterates, the weight norm, the effective LR and optionally the trace of the Hessian.

    python prepare_data.py cifar10 --source=../shared/data/cifar10_mini/cifar-10-python.tar.gz
    python train_resnet.py config/resnet_cpu_demo.py         # half a minute on a laptop CPU
    python train_resnet.py                                   # Figure 1: ResNet-18, lr 0.08, wd 0.0125
    python train_resnet.py --weight_decay=0                  # Figure 1: the same without weight decay
    python train_resnet.py config/resnet_sphere.py --lr=0.003  # Figure 2: projected SGD on a sphere
    python train_resnet.py config/resnet_cpu_demo.py --init_from=resume  # continue a run exactly

Writes out/RUN/config.json, log.jsonl (a line per epoch and per eval; docs/log_format.md) and
ckpt.pt (every ckpt_minutes and at the end). Errors are fractions in the log, percentages on the terminal. Exit status:
0 done, 1 the loss diverged (logged, last good checkpoint kept), 2 bad input, 130 / 143 stopped
by SIGINT / SIGTERM after checkpointing its epoch (docs/faults.md).
"""
import copy
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import optim
import run_io
from configurator import configure, fail, run_name
from model import VISION_NETS, hessian_trace, reestimate_bn, scale_invariant_params
from prepare_data import balanced_subset, load_image_dataset

# -----------------------------------------------------------------------------
# data: the paper trains on the full CIFAR training set without augmentation (Figure 1)
dataset = 'cifar10'  # cifar10 | cifar100, prepared by prepare_data.py into DATA_DIR/NAME/
data_dir = ''  # folder of prepared datasets; '' = data/
n_train = 0  # > 0: a class-balanced training subset of this many images (quick runs)
heldout = False  # with n_train: also evaluate on the training images left out (heldout_loss, heldout_err)
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
wd_mode = 'decoupled'  # decoupled | l2 | independent | cautious (decoupled = l2 for SGD without momentum)
wd_params = 'all'  # the authors decay every parameter (torch.optim.SGD's weight_decay); or 'matrices'
radius = 0.0  # > 0: project the trainable parameters onto the sphere of this norm (Figure 2)
project_every = 'step'  # when to project: after every 'step', or at the end of each 'epoch' as the authors
elr_from = ''  # a scale_inv run's folder: replay its effective LR lr/||w||^2 without weight decay
# schedule: lr for the first half, then exactly lr_flow, weight decay kept (Figure 1)
epochs = 1000
first_decay = 0.5  # fraction of the epochs before the drop
lr_flow = 1e-4
# EMA of the iterates, 0.999 per step as the authors; 0 = none
ema_coef = 0.999
# evaluation (losses are per-sample means over the whole split)
eval_every = 10  # epochs; the last epoch is always evaluated
ckpt_minutes = 10.0  # write ckpt.pt after every this many minutes of training (a crash loses at most that)
ckpt_every = 0  # > 0: also keep ckpt_ITER.pt every this many epochs (an eval each)
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
out_dir = ''  # '' = out/ + a name built from the config file and the overrides
init_from = 'scratch'  # scratch | resume (continue out_dir's checkpoint exactly)
config, overrides = configure(globals(), __doc__, choices={  # bounds: configurator.py
    'model': VISION_NETS, 'dataset': ('cifar10', 'cifar100'), 'wd_mode': optim.WD_MODES,
    'init_from': ('scratch', 'resume')})

# -----------------------------------------------------------------------------
# setup: device, run folder, the checkpoint to resume, data on the device

run_io.report_faults()  # a failed compile, a disk error, Ctrl-C before the loop: one line, no traceback
device, dtype, use_compile = run_io.resolve_device(device, dtype, compile)
device_type = device.split(':')[0]
autocast = torch.autocast(device_type, dtype=getattr(torch, dtype), enabled=dtype != 'float32')
memory_format = torch.channels_last if device_type == 'cuda' else torch.contiguous_format
torch.backends.cudnn.benchmark = True  # the fastest convolution algorithms for these fixed shapes

out_dir = out_dir or os.path.join('out', run_name('resnet', config))
ckpt_path, log_path = Path(out_dir) / 'ckpt.pt', Path(out_dir) / 'log.jsonl'
run_io.check_run_dir(out_dir, init_from)  # resume needs a checkpoint there; a new run, no run there
checkpoint = None
if init_from == 'resume':  # the net and its data come from the checkpoint; a contradicting override exits 2
    checkpoint = run_io.load_start(ckpt_path, 'train_resnet.py',
                                   ('model', 'optimizer', 'config', 'epoch', 'rng', 'gen'))
    shape = run_io.shape_from(checkpoint, config, ('model', 'width', 'batch_norm', 'scale_inv', 'dataset',
                                                   'n_train', 'batch_size', 'wd_params'), overrides)
    config.update(shape)
    globals().update(shape)
config.update(out_dir=out_dir, device=device, dtype=dtype, compile=compile)  # as resolved

splits = load_image_dataset(Path(data_dir or 'data') / dataset, dataset)  # exit 2 if missing or damaged
(train_x, train_y), (test_x, test_y) = (  # uint8 (N, 3, 32, 32) and int64 labels, on the device
    (torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(device), torch.from_numpy(y).to(device))
    for x, y in (splits['train'], splits['test']))
num_classes = int(max(train_y.max(), test_y.max())) + 1
# the channel statistics of the full training set, in pixel units (in chunks: no float copy of it all)
sums = sum(torch.stack([c.double().sum((0, 2, 3)), c.double().square().sum((0, 2, 3))])
           for c in train_x.split(5000))
mean64, square64 = sums / (train_x.numel() // 3)
mean, inv_std = mean64.float().view(1, 3, 1, 1), (square64 - mean64 ** 2).rsqrt().float().view(1, 3, 1, 1)


heldout_split = {}
if n_train:  # the first n_train/num_classes images of each class
    subset = torch.from_numpy(balanced_subset(splits['train'][1], n_train, num_classes)).to(device)
    if heldout:  # the rest of the training set: images the net never trains on, to choose settings with
        rest = torch.ones(len(train_y), dtype=torch.bool, device=device).index_fill_(0, subset, False)
        heldout_split = {'heldout': (train_x[rest], train_y[rest])}
    train_x, train_y = train_x[subset], train_y[subset]
eval_splits = {'train': (train_x, train_y), 'test': (test_x, test_y), **heldout_split}
iters_per_epoch = len(train_y) // batch_size  # the incomplete last batch is dropped: equal batch statistics
if iters_per_epoch == 0:
    fail(f"batch_size {batch_size} is larger than the training set ({len(train_y)} images)")
train_padded = F.pad(train_x, (4, 4, 4, 4)) if augment else None  # zero padding for random crops, once


def normalize(x):
    return ((x.float() - mean) * inv_std).contiguous(memory_format=memory_format)


def train_batch(idx, gen):
    """The batch of images idx, augmented on the device when `augment` (a random 32x32 window of the
    padded image, flipped horizontally half of the time)."""
    if not augment:
        return normalize(train_x[idx]), train_y[idx]
    b = len(idx)
    shift = torch.randint(0, 9, (2, b, 1), generator=gen, device=device)
    rows, cols = shift + torch.arange(32, device=device)  # (b, 32) each: a 32x32 window of the 40x40 image
    flip = torch.rand(b, 1, generator=gen, device=device) < 0.5
    cols = torch.where(flip, cols.flip(1), cols)  # a horizontal flip reads the columns backwards
    channels = torch.arange(3, device=device).view(1, 3, 1, 1)
    x = train_padded[idx.view(b, 1, 1, 1), channels, rows.view(b, 1, 32, 1), cols.view(b, 1, 1, 32)]
    return normalize(x), train_y[idx]


print(f"{dataset}: {len(train_y):,} training images ({iters_per_epoch} batches of {batch_size} per epoch), "
      f"{len(test_y):,} test images, {num_classes} classes, augment={augment}, device {device}, {dtype}")

# -----------------------------------------------------------------------------
# model, optimizer, schedule, EMA

torch.manual_seed(seed)
raw_net = VISION_NETS[model](num_classes, width, batch_norm, scale_inv)
raw_net.to(device, memory_format=memory_format)
trainable = [p for p in raw_net.parameters() if p.requires_grad]
si_params = scale_invariant_params(raw_net)  # the weights BatchNorm makes scale-invariant: eff_lr is theirs
start_sq_norm = optim.weight_norms(si_params)[0] ** 2  # at initialisation: where an elr replay starts
if checkpoint is not None:
    run_io.load_weights(raw_net, checkpoint['model'])
# static shapes: the train batch, the eval batch and a last partial batch each compile once, then never again
net = torch.compile(raw_net, dynamic=False) if use_compile else raw_net
n_params = sum(p.numel() for p in raw_net.parameters())
print(f"{model} width {width}, batch_norm={batch_norm}, scale_inv={scale_inv}: "
      f"{sum(p.numel() for p in trainable):,} trainable parameters of {n_params:,}")


@torch.no_grad()
def project_to_sphere(params):  # w <- radius * w / ||w||, all trainable parameters together
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(params)))
    torch._foreach_mul_(params, radius / norm)


if radius > 0 and checkpoint is None:
    project_to_sphere(trainable)  # start on the sphere, as the authors

replay_at = None  # the effective-LR replay's lr_at(iteration, ||w||^2): the LR is set at every step
if elr_from:
    try:
        replay_at = optim.elr_replay(run_io.read_log(Path(elr_from) / 'log.jsonl'), start_sq_norm)
    except ValueError as e:
        fail(f"elr_from={elr_from}: {e}")
try:  # a wd_params substring that matches no parameter is bad input
    groups, summary = optim.param_groups(raw_net, weight_decay, wd_params)
except ValueError as e:
    fail(e)
optimizer = optim.SGD(groups, lr=lr, momentum=momentum, wd_mode=wd_mode)
if use_compile:
    optimizer.compile()  # the update fused into one pass over the parameters (optim.py)
scaler = optim.GradScaler(device_type, enabled=dtype == 'float16')  # counts the steps it skips
decayed = optim.decayed_params(optimizer)
ema = optim.EMA(raw_net, ema_coef) if ema_coef > 0 else None
gen = torch.Generator(device=device).manual_seed(seed)  # shuffling and augmentation; checkpointed
print(summary)
tau = optim.wd_timescale(lr, weight_decay, wd_mode=wd_mode, lr_max=lr)  # 1/(lr*wd) iterations
config.update(wd_timescale_iters=tau, wd_timescale_frac=tau / (epochs * iters_per_epoch))  # WD's memory
print(f"weight decay forgets over ~{tau:,.0f} iterations (1/(lr*wd)) = {tau / iters_per_epoch:,.1f} epochs"
      if tau < float('inf') else "no weight decay", f"; lr {lr} until epoch {round(first_decay * epochs)}, "
      f"then {lr_flow}", sep='')

start_epoch = 0
if checkpoint is not None:  # continue exactly: optimizer state, EMA, data order, RNGs
    optim.load_moments(optimizer, checkpoint['optimizer'])  # momentum buffers; this run's lr and wd
    if ema is not None and checkpoint['ema'] is not None:
        ema.load_state_dict(checkpoint['ema'])
    gen.set_state(checkpoint['gen'])
    run_io.restore(checkpoint, scaler, device, log_path=log_path)  # RNGs, GradScaler, log
    start_epoch = checkpoint['epoch']
    print(run_io.start_message(checkpoint, config, resumed=True))
    checkpoint = None  # free the memory
run_io.prepare_run_dir(out_dir, config)  # written only once every check has passed

# -----------------------------------------------------------------------------
# training, evaluation, the fine-tuned copies


def train_epoch(net, optimizer, scaler, gen, ema=None, radius=0.0, watch=None, lr_at_step=None):
    """One shuffled pass in minibatches. Returns the summed loss and gradient norm (device tensors,
    no host sync) and, if `watch` is given, the angle each of its tensors turned in the last step.
    lr_at_step(i), if given, sets the LR before step i (the effective-LR replay)."""
    net.train()
    perm = torch.randperm(len(train_y), generator=gen, device=device)
    loss_sum, grad_norm_sum, angles = torch.zeros((), device=device), torch.zeros((), device=device), None
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
        before = [p.detach().clone() for p in watch] if last and watch is not None else None
        if lr_at_step is not None:
            for g in optimizer.param_groups:
                g['lr'] = lr_at_step(i)
        scaler.step(optimizer)  # SGD with weight decay: p <- p - lr*wd*p - lr*g (optim.py)
        scaler.update()
        if radius > 0 and (project_every == 'step' or last):  # back onto the sphere (Figure 2)
            project_to_sphere([p for g in optimizer.param_groups for p in g['params']])
        if ema is not None:
            ema.update(net)  # ema <- coef*ema + (1-coef)*w
        if before is not None:
            angles = optim.angular_updates(before, watch)
        loss_sum += loss.detach()
    return loss_sum, grad_norm_sum, angles


@torch.inference_mode()
def evaluate(net, prefix='', suffix=''):
    """Per-sample mean cross-entropy and error fraction on the whole training and test sets, in eval mode."""
    was_training = net.training
    net.eval()
    out = {}
    for split, (images, labels) in eval_splits.items():
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        wrong = torch.zeros((), device=device, dtype=torch.long)
        for i in range(0, len(labels), eval_batch_size):
            x, y = normalize(images[i:i + eval_batch_size]), labels[i:i + eval_batch_size]
            with autocast:
                logits = net(x).float()
            loss_sum += F.cross_entropy(logits, y, reduction='sum')  # divided by N below, not by batches
            wrong += (logits.argmax(1) != y).sum()
        out[f'{prefix}{split}_loss{suffix}'] = loss_sum.item() / len(labels)
        out[f'{prefix}{split}_err{suffix}'] = wrong.item() / len(labels)
    net.train(was_training)
    return out


bn_batches = lambda: (normalize(train_x[i:i + batch_size]) for i in range(0, len(train_y), batch_size))
if hessian_every:  # the Hessian's images: a class-balanced subset of the training set, in eval batches
    h_idx = torch.from_numpy(balanced_subset(train_y.cpu().numpy(), hessian_n, num_classes)).to(device)
    hessian_batches = [(normalize(train_x[c]), train_y[c]) for c in h_idx.split(eval_batch_size)]


def trace_of(net, epoch, prefix=''):  # float32, fresh probes per epoch that do not touch the training stream
    h_gen = torch.Generator(device=device).manual_seed(seed + 7919 * (epoch + 1))
    trace, se = hessian_trace(net, hessian_batches, hessian_probes, h_gen)
    return {f'{prefix}trace_hessian': trace, f'{prefix}trace_hessian_se': se}


flow_copy = {}  # one copy of the net for every fine-tuning, compiled once: the iterate is loaded into it


def flow(epoch):
    """Fine-tune a copy of the iterate at lr_flow without weight decay (the authors' gradient flow)."""
    if not flow_copy:
        copy_net = copy.deepcopy(raw_net)
        flow_copy.update(raw=copy_net, net=torch.compile(copy_net, dynamic=False) if use_compile
                         else copy_net)
    flow_copy['raw'].load_state_dict(raw_net.state_dict())  # weights and BatchNorm statistics
    flow_params = [p for p in flow_copy['raw'].parameters() if p.requires_grad]
    flow_opt = optim.SGD([{'params': flow_params}], lr=lr_flow, momentum=momentum)  # fresh momentum
    if use_compile:
        flow_opt.compile()  # the update's graph is cached: no recompilation from the second copy on
    flow_scaler = torch.amp.GradScaler(device_type, enabled=dtype == 'float16')
    flow_gen = torch.Generator(device=device).manual_seed(seed + 104729 * (epoch + 1))  # main run unchanged
    for _ in range(flow_epochs):
        train_epoch(flow_copy['net'], flow_opt, flow_scaler, flow_gen)
    record = evaluate(flow_copy['net'], prefix='flow_')
    record['flow_weight_norm'] = optim.weight_norms(flow_params)[0]
    return {**record, **(trace_of(flow_copy['raw'], epoch, prefix='flow_') if hessian_every else {})}


def weight_decay_metrics(lr_now, train_loss, decayed_norm, angles):
    """What weight decay does to the weights: the effective LR lr/||w||^2 of the scale-invariant ones,
    the angle the decayed tensors turned in the epoch's last step against its equilibrium value, and
    the objective the run minimises (train loss + c/2*||w||^2, c as the update implies: optim.py)."""
    si_sq = sum(n ** 2 for n in optim.weight_norms(si_params)[1])
    c = optim.l2_equivalent('sgd', weight_decay, wd_mode, momentum=momentum, lr_max=lr)
    return dict(eff_lr=lr_now / si_sq if si_sq > 0 else float('nan'),
                **optim.angle_spread(angles or []),  # angular_update: the mean; _p10, _p90: its spread
                angular_update_eq=optim.equilibrium_angular_update(
                    'sgd', lr_now, weight_decay, wd_mode=wd_mode, lr_max=lr, momentum=momentum),
                reg_objective=None if c is None else train_loss + c / 2 * decayed_norm ** 2)


def save_checkpoint(done, it, keep=False):
    global saved_epoch, saved_at
    run_io.save_checkpoint(dict(
        model=raw_net.state_dict(), optimizer=optimizer.state_dict(), scaler=scaler.state_dict(),
        ema=ema.state_dict() if ema else None, epoch=done, iter=it, config=config,
        rng=run_io.rng_states(device), gen=gen.get_state()), ckpt_path, log=log_path,
        keep=Path(out_dir) / f'ckpt_{it}.pt' if keep else None)
    saved_epoch, saved_at = done, time.perf_counter()


# -----------------------------------------------------------------------------
# the loop: an epoch of SGD, a training line; every eval_every epochs an eval line; checkpoints

stop = run_io.GracefulStop()  # SIGINT / SIGTERM finish the epoch, checkpoint it, exit
print(f"\n{'epoch':>6} {'loss':>8} {'train err':>10} {'test err':>9} {'ema err':>8} {'|w|':>9} "
      f"{'lr':>8} {'img/s':>7} {'eta':>7}")
t_start, pct = time.perf_counter(), lambda v: f"{100 * v:.2f}%"
saved_epoch, saved_at = start_epoch, t_start
for epoch in range(start_epoch, epochs):
    done, it = epoch + 1, (epoch + 1) * iters_per_epoch
    lr_now = optim.step_lr(epoch, lr, lr_flow, first_decay, epochs)  # exactly lr_flow from the drop on
    for g in optimizer.param_groups:
        g['lr'] = lr_now
    due = lambda every: every > 0 and done % every == 0
    do_eval = due(eval_every) or due(hessian_every) or due(flow_every) or due(ckpt_every) or done == epochs

    # the replay's LR: from this step's ||w||^2, so that lr/||w||^2 is the source's (one host sync a step)
    replay_lr = (lambda i: replay_at(epoch * iters_per_epoch + i, optim.weight_norms(si_params)[0] ** 2)) \
        if replay_at else None
    t0 = time.perf_counter()
    loss_sum, grad_norm_sum, angles = train_epoch(net, optimizer, scaler, gen, ema, radius,
                                                  watch=decayed if do_eval else None, lr_at_step=replay_lr)
    lr_now = optimizer.param_groups[0]['lr']  # the replay's varies step by step: its last step's
    loss = loss_sum.item() / iters_per_epoch  # the epoch's one host sync
    dt = time.perf_counter() - t0
    weight_norm = optim.weight_norms(trainable)[0]
    record = dict(iter=it, epoch=done, lr=lr_now, wd=weight_decay, loss=loss,
                  grad_norm=grad_norm_sum.item() / iters_per_epoch, weight_norm=weight_norm,
                  decayed_norm=optim.weight_norms(decayed)[0], ms_per_iter=1e3 * dt / iters_per_epoch)
    if dtype == 'float16':  # steps the GradScaler skipped (gradients overflowed), in total
        record['skipped'] = scaler.skipped
    if not math.isfinite(loss):
        run_io.stop_diverged(log_path, record, f"the training loss is {loss} in epoch {done}")
    run_io.append_log(log_path, record)

    errs = ('', '', '')
    if do_eval:  # the iterate, then the EMA with BatchNorm statistics of its own, on both splits
        t_eval = time.perf_counter()
        ev = dict(iter=it, epoch=done, lr=lr_now, wd=weight_decay, eval=True, diverged=False, **evaluate(net),
                  weight_norm=weight_norm)
        ev.update(weight_decay_metrics(lr_now, ev['train_loss'], record['decayed_norm'], angles))
        if ema is not None:
            t_bn = time.perf_counter()
            ema.copy_buffers(raw_net)  # the buffers are copied, not averaged, when the EMA is used
            reestimate_bn(ema.model, bn_batches())  # averaged weights need their own BN statistics
            ev['bn_s'] = time.perf_counter() - t_bn
            ev['weight_norm_ema'] = optim.weight_norms(  # the EMA of the trainable weights only
                [e for e, p in zip(ema.model.parameters(), raw_net.parameters()) if p.requires_grad])[0]
            with ema.swapped_into(raw_net):  # evaluated by the same (compiled) net, whose weights come back
                ev.update(evaluate(net, suffix='_ema'))
        ev['eval_s'] = time.perf_counter() - t_eval  # both nets on both splits, BN re-estimation included
        if due(hessian_every):
            ev.update(trace_of(raw_net, epoch))
        if due(flow_every):
            ev.update(flow(epoch))
        run_io.append_log(log_path, ev)
        errs = (pct(ev['train_err']), pct(ev['test_err']), pct(ev['test_err_ema']) if ema else '-')
    # a checkpoint at the end, at every kept snapshot and after every ckpt_minutes of training
    if done == epochs or due(ckpt_every) or time.perf_counter() - saved_at > 60 * ckpt_minutes:
        save_checkpoint(done, it, keep=due(ckpt_every))

    eta = run_io.format_duration((time.perf_counter() - t_start) / (done - start_epoch) * (epochs - done))
    print(f"{done:>6} {loss:>8.4f} {errs[0]:>10} {errs[1]:>9} {errs[2]:>8} {weight_norm:>9.2f} "
          f"{lr_now:>8.1e} {iters_per_epoch * batch_size / dt:>7.0f} {eta:>7}")
    if do_eval:
        extra = [f"{k} {ev[k]:.4g}" for k in ('test_loss', 'eff_lr', 'angular_update', 'angular_update_eq',
                                             'trace_hessian') if ev.get(k) is not None]
        extra += [f"flow_test_err {pct(ev['flow_test_err'])}"] if 'flow_test_err' in ev else []
        print(f"{'':>6} eval: " + ' | '.join(extra))
    if stop.requested() and done < epochs:
        if saved_epoch != done:
            save_checkpoint(done, it)
        stop.exit(f"checkpoint after epoch {done} in {ckpt_path}")
print(f"log: {log_path}")
