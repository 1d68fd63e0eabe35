"""
Train a CIFAR net with SGD and weight decay, as in Section 2 of "Why Do We Need Weight Decay in
Modern Deep Learning?": a long run at a large LR, then a drop to a tiny LR (`lr_flow`), with an
EMA of the iterates, the weight norm, the effective LR and optionally the trace of the Hessian.

    python prepare_data.py cifar10 --source=../shared/data/cifar10_mini/cifar-10-python.tar.gz
    python train_resnet.py config/resnet_cpu_demo.py         # a few minutes on a laptop CPU
    python train_resnet.py                                   # Fig. 1: ResNet-18, lr 0.08, wd 0.0125
    python train_resnet.py --weight_decay=0                  # Fig. 1: the same without weight decay
    python train_resnet.py config/resnet_sphere.py --lr=0.003  # Figure 2: projected SGD on a sphere
    python train_resnet.py config/resnet_cpu_demo.py --init_from=resume  # continue a run exactly

Writes out/RUN/config.json, log.jsonl (a line per epoch and per eval; docs/log_format.md), ckpt.pt.
Exit status: 0 done, 1 the loss diverged (logged, last good checkpoint kept), 2 bad input, 130 / 143
stopped by SIGINT / SIGTERM after checkpointing its epoch (docs/faults.md).
"""
import copy
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import optim
import run_io
from configurator import configure, default_out_dir, fail, or_fail
from model import VISION_NETS, hessian_trace, reestimate_bn, scale_invariant_params
from prepare_data import balanced_subset, images_on_device, load_image_dataset

# -----------------------------------------------------------------------------
# data: the paper trains on the full CIFAR training set without augmentation (Figure 1)
dataset = 'cifar10'  # cifar10 | cifar100, prepared by prepare_data.py into DATA_DIR/NAME/
data_dir = ''  # folder of prepared datasets; '' = data/
n_train = 0  # > 0: a class-balanced training subset of this many images (quick runs)
heldout = False  # with n_train: also evaluate on the training images left out
augment = False  # random crop with 4-pixel padding + horizontal flip, on the device
# model: PreAct ResNet-18 with BatchNorm (Figure 1)
arch = 'resnet18'  # resnet18 | resnet34preact | vgg16
width = 64  # channels of the first stage; 64 is the standard net
batch_norm = True
scale_inv = False  # BatchNorm without affine parameters + frozen last layer (Figure 2)
# optimizer: plain SGD, lr 0.08, wd 0.0125 (Figure 1, ResNet-18)
batch_size = 128
lr = 0.08
momentum = 0.0
weight_decay = 0.0125
wd_mode = 'decoupled'  # decoupled | l2 | independent | cautious (without momentum decoupled = l2)
wd_params = 'all'  # the authors decay every parameter (as torch.optim.SGD); or 'matrices'
radius = 0.0  # > 0: project the trainable parameters onto the sphere of this norm (Figure 2)
project_every = 'step'  # project after every 'step', or after each 'epoch' as the authors
elr_from = ''  # a scale_inv run's folder: replay its effective LR lr/||w||^2 without weight decay
# schedule: lr for the first half, then exactly lr_flow, weight decay kept (Figure 1)
epochs = 1000
first_decay = 0.5  # fraction of the epochs before the drop
lr_flow = 1e-4
# EMA of the iterates, 0.999 per step as the authors; 0 = none
ema_coef = 0.999
# evaluation (losses are per-sample means over the whole split)
eval_every = 10  # epochs; the last epoch is always evaluated
ckpt_minutes = 10.0  # write ckpt.pt after every this many minutes of training
ckpt_every = 0  # > 0: also keep ckpt_ITER.pt every this many epochs (an eval each)
eval_batch_size = 1000  # large: evaluation is forward-only (inference mode, autocast)
hessian_every = 0  # > 0: Hutchinson trace of the Hessian every this many epochs (Figures 2, 3)
hessian_n = 1000  # class-balanced training images it is computed on
hessian_probes = 20  # Rademacher probes (its standard error is logged too)
flow_every = 0  # > 0: every this many epochs fine-tune a copy at lr_flow without weight decay
flow_epochs = 100  # epochs of each fine-tuning ("flow_steps" in the authors' code)
# system
device = 'auto'  # auto | cpu | cuda | cuda:N | mps
dtype = 'auto'  # auto | float32 | bfloat16 | float16 (autocast over float32 weights)
compile = 'auto'  # auto (on CUDA only) | True | False
seed = 0
out_dir = ''  # '' = out/ + a name built from the config file and the overrides
init_from = 'scratch'  # scratch | resume (continue out_dir's checkpoint exactly)
wandb_log, wandb_project, wandb_run_name = False, 'why-weight-decay', ''  # '': the run's name
config, overrides = configure(globals(), __doc__, choices={
    'arch': VISION_NETS, 'dataset': ('cifar10', 'cifar100'), 'wd_mode': optim.WD_MODES,
    'init_from': ('scratch', 'resume')})

# -----------------------------------------------------------------------------
# setup: device, the checkpoint to resume, data on the device, run folder

# A failed compile, a disk error or Ctrl-C before the loop ends the run with one line, no traceback.
run_io.report_faults()
device, dtype, use_compile = run_io.resolve_device(device, dtype, compile)
device_type = device.split(':')[0]
autocast = torch.autocast(device_type, dtype=getattr(torch, dtype), enabled=dtype != 'float32')
memory_format = torch.channels_last if device_type == 'cuda' else torch.contiguous_format
torch.backends.cudnn.benchmark = True  # the fastest convolution algorithms for these fixed shapes

out_dir = out_dir or default_out_dir('resnet', config)  # out/ + the config file's name, overrides
ckpt_path, log_path = Path(out_dir) / 'ckpt.pt', Path(out_dir) / 'log.jsonl'
# A resumed run takes the net and its data from the checkpoint; an override against them exits 2.
checkpoint, shape = run_io.load_start(init_from, out_dir, 'train_resnet.py',
                                      ('model', 'optimizer', 'config', 'epoch', 'rng', 'gen'),
                                      ('arch', 'width', 'batch_norm', 'scale_inv', 'dataset',
                                       'n_train', 'batch_size', 'wd_params'), config, overrides)
globals().update(shape)
config.update(out_dir=out_dir, device=device, dtype=dtype, compile=compile)  # as resolved

splits = load_image_dataset(Path(data_dir or 'data') / dataset, dataset)  # exit 2 if missing
# checked after the data, which a user would fix first: a new run needs a folder without a run
run_io.check_run_dir(out_dir, init_from)
# The whole dataset lives on the device as uint8 images (N, 3, 32, 32) and int64 labels; with
# n_train the training split is the first n_train / num_classes images of each class (with heldout
# the rest is a split of its own). mean and inv_std, of the full training set, normalise batches.
eval_splits, num_classes, mean, inv_std = images_on_device(splits, device, n_train, heldout)
(train_x, train_y), (test_x, test_y) = eval_splits['train'], eval_splits['test']
# the last incomplete batch is dropped: every step's BatchNorm sees a full batch
iters_per_epoch = len(train_y) // batch_size
if iters_per_epoch == 0:
    fail(f"batch_size {batch_size} is larger than the training set ({len(train_y)} images)")
train_padded = F.pad(train_x, (4, 4, 4, 4)) if augment else None  # zero padding for the crops


def normalize(x):
    return ((x.float() - mean) * inv_std).contiguous(memory_format=memory_format)


def train_batch(idx, gen):
    """The batch of images idx, augmented on the device when `augment` (a random 32x32 window of the
    padded image, flipped horizontally half of the time)."""
    if not augment:
        return normalize(train_x[idx]), train_y[idx]
    b = len(idx)
    # a 32x32 window of the 40x40 padded image: its rows and columns, (b, 32) each
    shift = torch.randint(0, 9, (2, b, 1), generator=gen, device=device)
    rows, cols = shift + torch.arange(32, device=device)
    # a horizontal flip reads the columns backwards
    flip = torch.rand(b, 1, generator=gen, device=device) < 0.5
    cols = torch.where(flip, cols.flip(1), cols)
    channels = torch.arange(3, device=device).view(1, 3, 1, 1)
    x = train_padded[idx.view(b, 1, 1, 1), channels, rows.view(b, 1, 32, 1), cols.view(b, 1, 1, 32)]
    return normalize(x), train_y[idx]


print(f"{dataset}: {len(train_y):,} training images ({iters_per_epoch} batches of {batch_size}), "
      f"{len(test_y):,} test images, {num_classes} classes, augment={augment}, {device}, {dtype}")

# -----------------------------------------------------------------------------
# model, optimizer, schedule, EMA

torch.manual_seed(seed)
raw_model = VISION_NETS[arch](num_classes, width, batch_norm, scale_inv)
raw_model.to(device, memory_format=memory_format)
trainable = [p for p in raw_model.parameters() if p.requires_grad]
# the weights BatchNorm makes scale-invariant: the effective LR lr/||w||^2 is theirs
si_params = scale_invariant_params(raw_model)
start_sq_norm = optim.weight_norms(si_params)[0] ** 2  # at initialisation: where a replay starts
if checkpoint is not None:
    run_io.load_weights(raw_model, checkpoint['model'])
# Static shapes: the train batch, the eval batch and a last smaller eval batch each compile once.
model = torch.compile(raw_model, dynamic=False) if use_compile else raw_model
print(f"{arch} width {width}, batch_norm={batch_norm}, scale_inv={scale_inv}: "
      f"{sum(map(torch.numel, trainable)):,} trainable parameters of "
      f"{sum(map(torch.numel, raw_model.parameters())):,}")


if radius > 0 and checkpoint is None:
    optim.project_to_sphere(trainable, radius)  # start on the sphere, as the authors

# The effective-LR replay sets the LR at every step from the source run's log: replay_at(iteration,
# ||w||^2) is the LR that gives this run the source's lr/||w||^2 there (optim.elr_replay).
replay_at = None
if elr_from:
    replay_log = run_io.read_log(Path(elr_from) / 'log.jsonl')
    replay_at = or_fail(optim.elr_replay, replay_log, start_sq_norm,
                        prefix=f"elr_from={elr_from}: ")
# Weight decay acts on one parameter group: the tensors wd_params names (all, by default).
groups, summary = or_fail(optim.param_groups, raw_model, weight_decay, wd_params)
opt = optim.SGD(groups, lr=lr, momentum=momentum, wd_mode=wd_mode)
if use_compile:
    opt.compile()  # the update fused into one pass over the parameters (optim.py)
scaler = optim.GradScaler(device_type, enabled=dtype == 'float16')  # counts the steps it skips
decayed = optim.decayed_params(opt)
ema = optim.EMA(raw_model, ema_coef) if ema_coef > 0 else None
gen = torch.Generator(device=device).manual_seed(seed)  # shuffling and augmentation; checkpointed
print(summary)
# How long weight decay remembers, 1/(lr*wd) iterations: what the paper's runs have in common.
tau = optim.wd_timescale(lr, weight_decay, wd_mode=wd_mode, lr_max=lr)
config.update(wd_timescale_iters=tau, wd_timescale_frac=tau / (epochs * iters_per_epoch))
print(f"{optim.timescale_line(tau, epochs * iters_per_epoch, iters_per_epoch)}; lr {lr} until "
      f"epoch {round(first_decay * epochs)}, then {lr_flow}")

# A resumed run continues exactly: momentum buffers, EMA, data order, RNGs. The buffers come from
# the checkpoint, the lr and weight decay from this run's settings.
start_epoch = 0
if checkpoint is not None:
    optim.load_moments(opt, checkpoint['optimizer'])
    if ema is not None and checkpoint['ema'] is not None:
        ema.load_state_dict(checkpoint['ema'])
    gen.set_state(checkpoint['gen'])
    run_io.restore(checkpoint, scaler, device, log_path=log_path)  # RNGs, GradScaler, the log
    start_epoch = checkpoint['epoch']
    print(run_io.start_message(checkpoint, config, resumed=True))
    checkpoint = None  # free the memory
run_io.prepare_run_dir(out_dir, config)  # written only once every check has passed

# -----------------------------------------------------------------------------
# training, evaluation, the fine-tuned copies


def train_epoch(net, opt, scaler, gen, ema=None, radius=0.0, watch=None, lr_at_step=None):
    """One shuffled pass in minibatches. Returns the summed loss and gradient norm (device tensors,
    no host sync) and, if `watch` is given, the angle each of its tensors turned in the last step.
    lr_at_step(i), if given, sets the LR before step i (the effective-LR replay)."""
    net.train()
    perm = torch.randperm(len(train_y), generator=gen, device=device)
    loss_sum, grad_norm_sum = torch.zeros((), device=device), torch.zeros((), device=device)
    angles = []
    for i in range(iters_per_epoch):
        x, y = train_batch(perm[i * batch_size:(i + 1) * batch_size], gen)
        with autocast:
            loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)  # float16 only: the true gradient, for its norm
        grads = [p.grad for g in opt.param_groups for p in g['params'] if p.grad is not None]
        grad_norm_sum += torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        last = i == iters_per_epoch - 1
        before = [p.detach().clone() for p in watch] if last and watch is not None else None
        if lr_at_step is not None:
            optim.set_lr(opt, lr_at_step(i))
        scaler.step(opt)  # SGD with weight decay: p <- p - lr*wd*p - lr*g (optim.py)
        scaler.update()
        if radius > 0 and (project_every == 'step' or last):  # back onto the sphere (Figure 2)
            optim.project_to_sphere([p for g in opt.param_groups for p in g['params']], radius)
        if ema is not None:
            ema.update(net)  # ema <- coef*ema + (1-coef)*w
        if before is not None:
            angles = optim.angular_updates(before, watch)
        loss_sum += loss.detach()
    return loss_sum, grad_norm_sum, angles


def replay_lr(epoch):
    """The effective-LR replay's lr_at_step for this epoch: from ||w||^2 now, step by step (a host
    read a step, which only the replay pays), the LR that gives the source run's lr/||w||^2."""
    def lr_at_step(i):
        return replay_at(epoch * iters_per_epoch + i, optim.weight_norms(si_params)[0] ** 2)
    return lr_at_step


@torch.inference_mode()
def evaluate(net, prefix='', suffix=''):
    """Per-sample mean cross-entropy and error fraction on every eval split, in eval mode."""
    net.eval()
    out = {}
    for split, (images, labels) in eval_splits.items():
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        wrong = torch.zeros((), device=device, dtype=torch.long)
        for i in range(0, len(labels), eval_batch_size):
            x, y = normalize(images[i:i + eval_batch_size]), labels[i:i + eval_batch_size]
            with autocast:
                logits = net(x).float()
            # summed here and divided by the number of images below, not averaged over batches
            loss_sum += F.cross_entropy(logits, y, reduction='sum')
            wrong += (logits.argmax(1) != y).sum()
        out[f'{prefix}{split}_loss{suffix}'] = loss_sum.item() / len(labels)
        out[f'{prefix}{split}_err{suffix}'] = wrong.item() / len(labels)
    net.train()
    return out


def bn_batches():  # the training set in training batches, for the EMA's BatchNorm statistics
    return (normalize(train_x[i:i + batch_size]) for i in range(0, len(train_y), batch_size))


# The Hessian's images: a class-balanced subset of the training set, in eval batches.
if hessian_every:
    h_idx = torch.from_numpy(balanced_subset(train_y.cpu().numpy(), hessian_n, num_classes))
    hessian_batches = [(normalize(train_x[c]), train_y[c])
                       for c in h_idx.to(device).split(eval_batch_size)]


def trace_of(net, epoch, prefix=''):
    """The Hutchinson trace in float32, with fresh probes every epoch from a stream of their own."""
    h_gen = torch.Generator(device=device).manual_seed(seed + 7919 * (epoch + 1))
    trace, se = hessian_trace(net, hessian_batches, hessian_probes, h_gen)
    return {f'{prefix}trace_hessian': trace, f'{prefix}trace_hessian_se': se}


flow_copy = {}  # one copy of the net for every fine-tuning, compiled once: the iterate goes into it


def flow(epoch):
    """Fine-tune a copy of the iterate at lr_flow without weight decay (the authors' "flow")."""
    if not flow_copy:
        copy_net = copy.deepcopy(raw_model)
        flow_copy.update(raw=copy_net, net=torch.compile(copy_net, dynamic=False) if use_compile
                         else copy_net)
    flow_copy['raw'].load_state_dict(raw_model.state_dict())  # weights and BatchNorm statistics
    flow_params = [p for p in flow_copy['raw'].parameters() if p.requires_grad]
    flow_opt = optim.SGD([{'params': flow_params}], lr=lr_flow, momentum=momentum)  # fresh momentum
    if use_compile:
        flow_opt.compile()  # the update's graph is cached: nothing compiles from the second copy on
    flow_scaler = torch.amp.GradScaler(device_type, enabled=dtype == 'float16')
    # the copy's batches come from a stream of their own: the main run's are unchanged
    flow_gen = torch.Generator(device=device).manual_seed(seed + 104729 * (epoch + 1))
    for _ in range(flow_epochs):
        train_epoch(flow_copy['net'], flow_opt, flow_scaler, flow_gen)
    record = evaluate(flow_copy['net'], prefix='flow_')
    record['flow_weight_norm'] = optim.weight_norms(flow_params)[0]
    if hessian_every:
        record.update(trace_of(flow_copy['raw'], epoch, prefix='flow_'))
    return record


def weight_decay_metrics(lr_now, train_loss, decayed_norm, angles):
    """What weight decay does: the scale-invariant weights' effective LR lr/||w||^2, the angles of
    the decayed tensors in the last step, and the objective minimised, train loss + c/2*||w||^2."""
    si_sq = sum(n ** 2 for n in optim.weight_norms(si_params)[1])
    c = optim.l2_equivalent('sgd', weight_decay, wd_mode, momentum=momentum, lr_max=lr)
    return dict(eff_lr=lr_now / si_sq if si_sq > 0 else float('nan'),
                **optim.rotation_metrics(angles, lr_now, 'sgd', weight_decay, wd_mode=wd_mode,
                                         lr_max=lr, momentum=momentum),
                reg_objective=None if c is None else train_loss + c / 2 * decayed_norm ** 2)


def save_checkpoint(done, it, keep=False):
    """Everything a resumed run needs to continue exactly; keep: also as snapshot ckpt_ITER.pt."""
    global saved_epoch, saved_at
    run_io.save_checkpoint(dict(
        model=raw_model.state_dict(), optimizer=opt.state_dict(), scaler=scaler.state_dict(),
        ema=ema.state_dict() if ema else None, epoch=done, iter=it, config=config,
        rng=run_io.rng_states(device), gen=gen.get_state()), ckpt_path, log=log_path,
        keep=Path(out_dir) / f'ckpt_{it}.pt' if keep else None)
    saved_epoch, saved_at = done, time.perf_counter()


# -----------------------------------------------------------------------------
# the loop: an epoch of SGD, a training line; every eval_every epochs an eval line; checkpoints

stop = run_io.GracefulStop('epoch')  # SIGINT / SIGTERM finish the epoch, checkpoint it, exit
print(run_io.resnet_header())
t_start = saved_at = time.perf_counter()
saved_epoch = start_epoch
for epoch in range(start_epoch, epochs):
    done, it = epoch + 1, (epoch + 1) * iters_per_epoch
    optim.set_lr(opt, optim.step_lr(epoch, lr, lr_flow, first_decay, epochs))  # lr_flow after drop
    due = lambda every: every > 0 and done % every == 0
    do_eval = (due(eval_every) or due(hessian_every) or due(flow_every) or due(ckpt_every)
               or done == epochs)

    t0 = time.perf_counter()
    loss_sum, grad_norm_sum, angles = train_epoch(model, opt, scaler, gen, ema, radius,
                                                  watch=decayed if do_eval else None,
                                                  lr_at_step=replay_lr(epoch) if elr_from else None)
    lr_last = opt.param_groups[0]['lr']  # the epoch's last step's (a replay's changes every step)
    loss = loss_sum.item() / iters_per_epoch  # the epoch's one host sync
    dt = time.perf_counter() - t0
    weight_norm = optim.weight_norms(trainable)[0]
    record = dict(iter=it, epoch=done, lr=lr_last, wd=weight_decay, loss=loss,
                  grad_norm=grad_norm_sum.item() / iters_per_epoch, weight_norm=weight_norm,
                  decayed_norm=optim.weight_norms(decayed)[0],
                  ms_per_iter=1e3 * dt / iters_per_epoch)
    if dtype == 'float16':  # steps the GradScaler skipped (gradients overflowed), in total
        record['skipped'] = scaler.skipped
    if not math.isfinite(loss):
        run_io.stop_diverged(log_path, record, f"the training loss is {loss} in epoch {done}")
    run_io.append_log(log_path, record)

    # Evaluate the iterate on every split, then the EMA. The EMA's averaged weights match no running
    # statistics: its BatchNorm layers get their own from a pass over the training set, and it is
    # evaluated through the same compiled net, which gets its own weights back afterwards.
    ev, t_eval = None, time.perf_counter()
    if do_eval:
        ev = dict(iter=it, epoch=done, lr=lr_last, wd=weight_decay, eval=True, diverged=False,
                  **evaluate(model), weight_norm=weight_norm)
        ev.update(weight_decay_metrics(lr_last, ev['train_loss'], record['decayed_norm'], angles))
        if ema is not None:
            t_bn = time.perf_counter()
            ema.copy_buffers(raw_model)  # the buffers are copied, not averaged
            reestimate_bn(ema.model, bn_batches())
            ev['bn_s'] = time.perf_counter() - t_bn
            ema_trainable = [e for e, p in zip(ema.model.parameters(), raw_model.parameters())
                             if p.requires_grad]
            ev['weight_norm_ema'] = optim.weight_norms(ema_trainable)[0]
            with ema.swapped_into(raw_model):
                ev.update(evaluate(model, suffix='_ema'))
        ev['eval_s'] = time.perf_counter() - t_eval  # both nets, every split, with the BN pass
        if due(hessian_every):
            ev.update(trace_of(raw_model, epoch))
        if due(flow_every):
            ev.update(flow(epoch))
        run_io.append_log(log_path, ev)
    # a checkpoint at the end, at every kept snapshot and after every ckpt_minutes of training
    if done == epochs or due(ckpt_every) or run_io.minutes_passed(saved_at, ckpt_minutes):
        save_checkpoint(done, it, keep=due(ckpt_every))

    eta = (time.perf_counter() - t_start) / (done - start_epoch) * (epochs - done)
    print(run_io.resnet_row(record, ev, iters_per_epoch * batch_size / dt, eta))
    if stop.requested() and done < epochs:
        if saved_epoch != done:
            save_checkpoint(done, it)
        stop.exit(f"checkpoint after epoch {done} in {ckpt_path}")
print(f"log: {log_path}")
