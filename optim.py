"""
Hand-written optimizers, learning-rate schedules, EMA and weight-decay diagnostics.

Both optimizers are torch.optim.Optimizer subclasses whose update is a handful of
torch._foreach_* calls per parameter group (`sgd_update`, `adamw_update`), so the line where
weight decay acts is easy to find. Four ways to apply weight decay (`wd_mode`):
  'decoupled'   p <- p - lr*wd*p before the update (torch.optim.AdamW; Loshchilov & Hutter)
  'l2'          g <- g + wd*p, i.e. the gradient of wd/2*||p||^2 (torch.optim.SGD/Adam weight_decay)
  'independent' p <- p - (lr/lr_max)*wd*p: the schedule's shape without the LR's size
  'cautious'    p <- p - lr*wd*p only where the update direction u agrees in sign with p (u*p >= 0),
                so the decay never pulls against the update (Chen et al. 2025, arXiv 2510.12402)
With no momentum, SGD's 'decoupled' and 'l2' are the same update. lr_max is each group's LR at
construction, kept under its own key 'lr_max'.

Resuming: load_state_dict restores a checkpoint's moments and hyperparameters, as torch.optim does
(so torch's LR schedulers work with these optimizers); load_moments(opt, state_dict) takes the
moments and keeps this run's hyperparameters, which is what the training scripts want.

Speed: each foreach call is one pass over the parameters' memory, so the eager AdamW step reads
and writes them about eight times. `opt.compile()` runs the same update function through
torch.compile, which fuses it into one pass per tensor: as fast as torch.optim's fused=True
(see bench.py optim). The values that change every step (lr, the decay, the bias corrections) are
then 0-d tensors on the device, kept from step to step and refilled in place (a changed Python
float would make torch.compile compile again), and the update multiplies by them instead of
passing them as alpha=/value= (which compiled code reads back to the host): a compiled step
neither copies to the device nor waits for it.
"""
import bisect
import contextlib
import copy
import math

import numpy as np
import torch

WD_MODES = ('decoupled', 'l2', 'independent', 'cautious')


def _check_hyperparameters(lr, weight_decay, wd_mode):
    if wd_mode not in WD_MODES:
        raise ValueError(f"unknown wd_mode {wd_mode!r}: expected one of {', '.join(WD_MODES)}")
    if lr < 0:
        raise ValueError(f"lr must be >= 0, got {lr}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")


def _weight_decay(group):
    """(l2, decay) for the update functions: the L2 coefficient added to the gradient, or 0, and the
    fraction of the weights the decoupled decay removes this step (lr*wd, or lr/lr_max*wd), or None."""
    if group['weight_decay'] == 0:
        return 0.0, None
    if group['wd_mode'] == 'l2':
        return group['weight_decay'], None
    return 0.0, _decay_per_step(group['lr'], group['weight_decay'], group['wd_mode'],
                                group['lr_max'])


def _split(params, keys):
    """[(key, [params with that key]), ...] in order: tensors an update can treat together."""
    buckets = {}
    for p, key in zip(params, keys):
        buckets.setdefault(key, []).append(p)
    return list(buckets.items())


class _Optimizer(torch.optim.Optimizer):
    """What SGD and AdamW share: lr_max for the 'independent' mode, a clear error for a checkpoint
    whose parameters are split into another number of groups, and compile()."""

    def __init__(self, params, defaults):
        super().__init__(params, defaults)
        # The 'independent' mode divides by the peak LR, which I take to be each group's LR at
        # construction. It has a key of its own: torch's schedulers keep their base LR in
        # 'initial_lr', and some (OneCycleLR, CyclicLR) overwrite it with their starting LR.
        for group in self.param_groups:
            group.setdefault('lr_max', group['lr'])
        self.compiled = False
        # (group index, device) -> {name: 0-d tensor}: the values of the compiled step
        self._device_scalars = {}

    def load_state_dict(self, state_dict):
        """As torch.optim: the checkpoint's per-parameter state (moments, step counts) and its
        groups' hyperparameters (lr, lr_max, weight_decay, betas, and keys a scheduler keeps there),
        so that state_dict and load_state_dict undo each other and torch's LR schedulers resume
        where they stopped. A run that should keep its own hyperparameters calls load_moments."""
        saved = state_dict['param_groups']
        if len(saved) != len(self.param_groups):
            raise ValueError(f"the checkpoint's optimizer has {len(saved)} parameter groups and "
                             f"this one {len(self.param_groups)}: the parameters are split "
                             f"differently (wd_params?)")
        super().load_state_dict(state_dict)
        # A checkpoint saved before lr_max had its own key kept the peak LR in initial_lr.
        for group in self.param_groups:
            group.setdefault('lr_max', group.get('initial_lr', group['lr']))

    def compile(self):
        """Fuse the update into one pass over memory per tensor with torch.compile (the first
        step of each parameter group compiles: about a minute for GPT-2 small on a CPU)."""
        self.update = torch.compile(self.update, fullgraph=True, dynamic=False)
        self.compiled = True
        return self

    def _scalars(self, group_index, device, **values):
        """The values that change every step, as the update takes them: Python floats in eager mode;
        compiled, 0-d tensors on the device kept from step to step and refilled in place, since fill_
        hands the number to a kernel (torch.tensor(x, device=...) would be a blocking copy every step)."""
        if not self.compiled:
            return values
        kept = self._device_scalars.setdefault((group_index, device), {})
        for name, x in values.items():
            if x is not None:
                if name not in kept:
                    kept[name] = torch.zeros((), dtype=torch.float32, device=device)
                kept[name].fill_(x)
        return {name: None if x is None else kept[name] for name, x in values.items()}


# -----------------------------------------------------------------------------
# the updates: in place, over lists of tensors of one parameter group
#
# SGD.step and AdamW.step call these with keyword arguments, on one of two paths. In eager mode lr,
# decay and the bias corrections are Python floats. Compiled with opt.compile(), they are 0-d
# tensors on the device, kept from step to step and refilled in place (see _scalars): a changed
# Python float would make torch.compile compile again, and a new tensor would be a copy from the
# host every step. The other arguments are the same Python values on both paths.

def _add_(params, updates, scale, denom=None):
    """p <- p + scale*update, or + scale*update/denom. A tensor scale is multiplied in, as torch.optim does
    with a tensor lr: passed as alpha= or value=, compiled code would read it back to the host (.item())."""
    if isinstance(scale, torch.Tensor):
        if denom is not None:
            updates = torch._foreach_div(updates, denom)
        torch._foreach_add_(params, torch._foreach_mul(updates, scale))
    elif denom is None:
        torch._foreach_add_(params, updates, alpha=scale)
    else:
        torch._foreach_addcdiv_(params, updates, denom, value=scale)


def _cautious_decay_(params, directions, decay):
    """p <- p - decay*p on the coordinates where the update direction u and p do not disagree in sign."""
    # sign(u)*sign(p) is -1, 0 or 1: plus 1, at most 1, it is the indicator of u*p >= 0 (u*p could underflow)
    agree = torch._foreach_mul(torch._foreach_sign(directions), torch._foreach_sign(params))
    torch._foreach_add_(agree, 1)
    torch._foreach_clamp_max_(agree, 1)
    torch._foreach_mul_(agree, params)
    _add_(params, agree, -decay)


def sgd_update(params, grads, bufs, *, lr, l2, decay, cautious, momentum, dampening, nesterov,
               first):
    """SGD with momentum. bufs: the momentum buffers (first=True: new ones, set to g)."""
    if l2:
        grads = torch._foreach_add(grads, params, alpha=l2)  # g <- g + wd*p
    if momentum != 0:
        if first:  # the first step copies g, as torch.optim.SGD does
            torch._foreach_copy_(bufs, grads)
        else:  # buf <- momentum*buf + (1-dampening)*g
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_add_(bufs, grads, alpha=1 - dampening)
        grads = torch._foreach_add(grads, bufs, alpha=momentum) if nesterov else bufs
    if decay is not None and cautious:  # p <- p - lr*wd*p where u*p >= 0, u = g the step's direction
        _cautious_decay_(params, grads, decay)
    elif decay is not None:
        torch._foreach_mul_(params, 1 - decay)  # p <- p - lr*wd*p (weight decay)
    _add_(params, grads, -lr)  # p <- p - lr*g


def adamw_update(params, grads, m, v, *, lr, l2, decay, cautious, beta1, beta2, eps, bias1,
                 bias2):
    """Adam(W) for tensors at the same step t: bias1 = 1 - beta1^t, bias2 = 1 - beta2^t."""
    if l2:
        grads = torch._foreach_add(grads, params, alpha=l2)  # g <- g + wd*p
    torch._foreach_lerp_(m, grads, 1 - beta1)  # m <- beta1*m + (1-beta1)*g
    torch._foreach_mul_(v, beta2)  # v <- beta2*v + (1-beta2)*g^2
    torch._foreach_addcmul_(v, grads, grads, 1 - beta2)
    # the update u = m_hat/(sqrt(v_hat)+eps) has the sign of m
    if decay is not None and cautious:  # p <- p - lr*wd*p where u*p >= 0 (cautious weight decay)
        _cautious_decay_(params, m, decay)
    elif decay is not None:
        torch._foreach_mul_(params, 1 - decay)  # p <- p - lr*wd*p (weight decay)
    # p <- p - lr * m_hat / (sqrt(v_hat) + eps), with m_hat = m/bias1 and v_hat = v/bias2
    denom = torch._foreach_sqrt(v)
    torch._foreach_div_(denom, bias2 ** 0.5)
    torch._foreach_add_(denom, eps)
    _add_(params, m, -lr / bias1, denom)


class SGD(_Optimizer):
    """SGD with momentum, matching torch.optim.SGD when wd_mode='l2'."""
    update = staticmethod(sgd_update)

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, nesterov=False,
                 weight_decay=0.0, wd_mode='decoupled'):
        _check_hyperparameters(lr, weight_decay, wd_mode)
        if momentum < 0:
            raise ValueError(f"momentum must be >= 0, got {momentum}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov momentum needs momentum > 0 and dampening = 0")
        defaults = {'lr': lr, 'momentum': momentum, 'dampening': dampening, 'nesterov': nesterov,
                    'weight_decay': weight_decay, 'wd_mode': wd_mode}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for i, group in enumerate(self.param_groups):
            params = [p for p in group['params'] if p.grad is not None]
            if not params:
                continue
            l2, decay = _weight_decay(group)
            cautious = group['wd_mode'] == 'cautious'
            momentum = group['momentum']
            # tensors with a momentum buffer, and those at their first step (all of them at step 1)
            new = [momentum != 0 and 'momentum_buffer' not in self.state[p] for p in params]
            for first, ps in _split(params, new):
                if first:
                    for p in ps:
                        self.state[p]['momentum_buffer'] = torch.empty_like(p)
                bufs = [self.state[p]['momentum_buffer'] for p in ps] if momentum != 0 else None
                s = self._scalars(i, ps[0].device, lr=group['lr'], decay=decay)
                self.update(ps, [p.grad for p in ps], bufs, lr=s['lr'], l2=l2, decay=s['decay'],
                            cautious=cautious, momentum=momentum, dampening=group['dampening'],
                            nesterov=group['nesterov'], first=first)
        return loss


class AdamW(_Optimizer):
    """Adam with decoupled weight decay, matching torch.optim.AdamW (and torch.optim.Adam for 'l2')."""
    update = staticmethod(adamw_update)

    def __init__(self, params, lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0,
                 wd_mode='decoupled'):
        _check_hyperparameters(lr, weight_decay, wd_mode)
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        defaults = {'lr': lr, 'betas': tuple(betas), 'eps': eps, 'weight_decay': weight_decay,
                    'wd_mode': wd_mode}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for i, group in enumerate(self.param_groups):
            params = [p for p in group['params'] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if not self.state[p]:  # lazy state, as torch.optim
                    self.state[p].update(step=0, exp_avg=torch.zeros_like(p),
                                         exp_avg_sq=torch.zeros_like(p))
                self.state[p]['step'] += 1
            l2, decay = _weight_decay(group)
            cautious = group['wd_mode'] == 'cautious'
            beta1, beta2 = group['betas']
            # tensors at the same step share the bias corrections: one call, unless some had no gradient
            for t, ps in _split(params, [self.state[p]['step'] for p in params]):
                s = self._scalars(i, ps[0].device, lr=group['lr'], decay=decay, bias1=1 - beta1 ** t,
                                  bias2=1 - beta2 ** t)
                self.update(ps, [p.grad for p in ps], [self.state[p]['exp_avg'] for p in ps],
                            [self.state[p]['exp_avg_sq'] for p in ps], lr=s['lr'], l2=l2,
                            decay=s['decay'], cautious=cautious, beta1=beta1, beta2=beta2,
                            eps=group['eps'], bias1=s['bias1'], bias2=s['bias2'])
        return loss


# -----------------------------------------------------------------------------
# resuming a run under the settings it is given now

def load_moments(optimizer, state_dict):
    """Load a checkpoint's per-parameter state (moments, step counts) into an optimizer and keep the
    optimizer's own hyperparameters (every group key but 'params': lr, lr_max, weight_decay,
    wd_mode, betas, momentum, ...). This is how a resumed or fine-tuned run continues from the
    checkpoint's moments with the weight decay it is given now, never silently the checkpoint's.
    Any torch.optim optimizer will do; load_state_dict alone restores the saved hyperparameters."""
    settings = [{k: v for k, v in g.items() if k != 'params'} for g in optimizer.param_groups]
    # load_state_dict checks the groups, moves the state to the parameters' devices and replaces
    # the group dicts with the checkpoint's, whose keys I then swap back for this run's
    optimizer.load_state_dict(state_dict)
    for group, kept in zip(optimizer.param_groups, settings):
        params = group['params']
        group.clear()
        group.update(params=params, **kept)


# -----------------------------------------------------------------------------
# which parameters are decayed

def param_groups(model, weight_decay, wd_params='matrices', per_tensor=False):
    """Split a model's trainable parameters into a decayed and a non-decayed group.

    wd_params: 'matrices' (dim >= 2: weights and embeddings, not biases or norm gains),
    'all', or space-separated substrings of parameter names ('wte wpe mlp attn lm_head').
    per_tensor: every decayed tensor in a group of its own (an LR of its own: adam_elr_replay).
    Returns (groups, summary); tied parameters appear once (named_parameters removes duplicates).
    """
    names = {}  # a tied tensor has several names (wte.weight, lm_head.weight) and is counted once
    for n, p in model.named_parameters(remove_duplicate=False):
        if p.requires_grad:
            names.setdefault(p, []).append(n)
    if wd_params == 'matrices':
        is_decayed = lambda p: p.dim() >= 2
    elif wd_params == 'all':
        is_decayed = lambda p: True
    else:
        keys = wd_params.split()
        if not keys:
            raise ValueError("wd_params is empty: use 'matrices', 'all' or parameter-name substrings")
        all_names = [n for ns in names.values() for n in ns]
        unmatched = [k for k in keys if not any(k in n for n in all_names)]
        if unmatched:
            raise ValueError(f"wd_params {' '.join(unmatched)!r} matches no parameter name "
                             f"(names look like {all_names[0]!r})")
        is_decayed = lambda p: any(k in n for k in keys for n in names[p])
    decay = [p for p in names if is_decayed(p)]
    no_decay = [p for p in names if not is_decayed(p)]
    groups = [{'params': ps, 'weight_decay': weight_decay, 'decayed': True}
              for ps in ([[p] for p in decay] if per_tensor else [decay])]
    groups.append({'params': no_decay, 'weight_decay': 0.0, 'decayed': False})
    groups = [g for g in groups if g['params']]  # torch.optim accepts no empty group
    count = lambda ps: sum(p.numel() for p in ps)
    summary = (f"weight decay {weight_decay} on {len(decay)} tensors ({count(decay):,} parameters), "
               f"none on {len(no_decay)} tensors ({count(no_decay):,} parameters)")
    return groups, summary


@torch.no_grad()
def project_to_sphere(params, radius):
    """w <- radius * w / ||w||, the norm of all the tensors together: projected SGD (the paper's Fig. 2)."""
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(params)))
    torch._foreach_mul_(params, radius / norm)


# -----------------------------------------------------------------------------
# learning-rate schedules: plain functions of the iteration

def set_lr(optimizer, lr, decayed_lrs=None):
    """Give every parameter group this learning rate (the scripts set it before every step or epoch);
    with decayed_lrs, one for each decayed group, in order, instead (an effective-LR replay)."""
    decayed = iter(decayed_lrs or ())
    for group in optimizer.param_groups:
        group['lr'] = next(decayed) if decayed_lrs and _is_decayed(group) else lr


def cosine_lr(it, lr, min_lr, warmup_iters, decay_iters):
    """Linear warmup to lr, then cosine decay to min_lr at decay_iters, then min_lr."""
    if it < warmup_iters:
        return lr * (it + 1) / (warmup_iters + 1)
    if it >= decay_iters:
        return min_lr
    progress = (it - warmup_iters) / max(1, decay_iters - warmup_iters)
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (lr - min_lr)


def constant_lr(it, lr, warmup_iters):
    """Linear warmup to lr, then constant."""
    if it < warmup_iters:
        return lr * (it + 1) / (warmup_iters + 1)
    return lr


def step_lr(it, lr, lr_flow, first_decay, total_iters):
    """The paper's vision schedule: lr until a fraction first_decay of training, then exactly lr_flow."""
    return lr if it < round(first_decay * total_iters) else lr_flow


def adam_elr_replay(source_log, n_matrices):
    """The LR schedules that replay, in another run, each decayed matrix's lr/||w|| of an AdamW run:
    Adam's update has about the same size whatever the weights', so a matrix turns by about
    lr*||u||/||w|| per step and lr/||w|| is its effective LR. lr_at(it, norms) gives the LR of each
    matrix at iteration it from their norms now: source_lr(it) / source_norm(it) * norm. The source's
    LR and per-matrix norms (decayed_norms) come from all its lines, every log_interval, linearly
    interpolated (the same seed starts from the same weights, which its eval at 0 logs). The run it
    drives needs one parameter group per decayed matrix (param_groups(per_tensor=True))."""
    lines = sorted((r['iter'], r['lr'], r['decayed_norms']) for r in source_log if r.get('decayed_norms'))
    if not lines or lines[0][0] != 0 or any(len(n) != n_matrices for _, _, n in lines):
        raise ValueError(f"the source log needs decayed_norms for its {n_matrices} decayed matrices "
                         f"from iteration 0 on (a train_gpt.py run of this model and wd_params)")
    iters, lrs, norms = (np.array(column, dtype=float) for column in zip(*lines))

    def lr_at(it, matrix_norms):
        if it > iters[-1]:
            raise ValueError(f"iteration {it} is beyond the source run's last line ({int(iters[-1])})")
        source_lr = np.interp(it, iters, lrs)
        return [float(source_lr / np.interp(it, iters, norms[:, i]) * n)
                for i, n in enumerate(matrix_norms)]
    return lr_at


def elr_replay(source_log, start_sq_norm):
    """The LR schedule that replays a run's effective LR lr/||w||^2 (of its scale-invariant weights) in
    another run: lr_at(it, sq_norm) = source_lr(it) / source_sq_norm(it) * sq_norm, where sq_norm is
    this run's ||w||^2 now. The source's LR per epoch comes from its training lines, its ||w||^2 =
    lr/eff_lr from its eval lines, linearly interpolated between them (from start_sq_norm at
    iteration 0: the same seed starts from the same weights). If weight decay helps only through
    the effective LR, a replay without weight decay generalises as the source did. Meant for nets
    whose trained weights are all scale-invariant: any other weight would see an LR that grows
    with ||w||^2 (on a standard ResNet the last layer's drove the replay to chance level)."""
    epochs = sorted((r['iter'], r['lr']) for r in source_log if not r.get('eval') and 'epoch' in r)
    evals = [(r['iter'], r['lr'] / r['eff_lr']) for r in source_log if r.get('eval') and r.get('eff_lr')]
    if not epochs or not evals:
        raise ValueError("the source log has no training lines or no eval lines with eff_lr "
                         "(a train_resnet.py run of a net with BatchNorm)")
    ends, lrs = zip(*epochs)  # the LR of the epoch that ends at each iteration
    iters, sq_norms = zip(*sorted([(0, start_sq_norm), *evals]))

    def lr_at(it, sq_norm):
        if it >= ends[-1]:
            raise ValueError(f"iteration {it} is beyond the source run's {ends[-1]}")
        source_lr = lrs[bisect.bisect_right(ends, it)]
        return source_lr / float(np.interp(it, iters, sq_norms)) * sq_norm
    return lr_at


# -----------------------------------------------------------------------------
# exponential moving average of the iterates

class EMA:
    """ema <- coef*ema + (1-coef)*param after each step, over the float parameters; `ema.model` is an
    ordinary module for evaluation. Call copy_buffers(model) before using it (evaluating, saving): the
    buffers (BatchNorm statistics, counters) are not averaged but copied, and only then.

    The average starts from the initial weights, whose share after t updates is coef^t: a short run
    with coef near 1 (0.999 over 1,000 steps: 37%) mostly evaluates the initialisation."""

    def __init__(self, model, coef):
        self.coef = coef
        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)

    @torch.no_grad()
    def update(self, model):
        pairs = [(e, p.detach()) for e, p in zip(self.model.parameters(), model.parameters())
                 if e.is_floating_point()]
        if pairs:  # one call for all the tensors, not one per tensor
            torch._foreach_lerp_([e for e, _ in pairs], [p for _, p in pairs], 1 - self.coef)

    @torch.no_grad()
    def copy_buffers(self, model):
        """The model's buffers into the EMA model, in one call: before evaluating or saving it."""
        buffers = list(model.buffers())
        if buffers:
            torch._foreach_copy_(list(self.model.buffers()), buffers)

    @contextlib.contextmanager
    @torch.no_grad()
    def swapped_into(self, model):
        """Inside the with block, model holds the EMA's weights and buffers; after it, its own again
        (bit for bit). The EMA is then evaluated by model's compiled code: no second compilation."""
        own = [*model.parameters(), *model.buffers()]
        kept = [t.clone() for t in own]
        torch._foreach_copy_(own, [*self.model.parameters(), *self.model.buffers()])
        try:
            yield model
        finally:
            torch._foreach_copy_(own, kept)

    def state_dict(self):
        return self.model.state_dict()

    def load_state_dict(self, state_dict):
        self.model.load_state_dict(state_dict)


# -----------------------------------------------------------------------------
# float16 loss scaling

class GradScaler(torch.amp.GradScaler):
    """torch's GradScaler, counting the steps it skips. A float16 step whose gradients overflowed
    is skipped and the scale halved: part of float16 training, not a divergence. The count stays
    on the device, so counting adds no wait to torch's own (scaler.step reads found_inf to decide
    whether to step); `skipped` reads it back, for log lines. It is checkpointed with the scale."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # a Python int until the first update, then a 0-d tensor on the scale's device
        self._skipped = 0

    def update(self, new_scale=None):
        # The found_inf tensors scaler.step recorded for this iteration, one per optimizer and
        # device: non-zero where the gradients overflowed and that optimizer did not step.
        # super().update() clears them (and adds them up in place), so they are counted first.
        found = [found_inf for state in self._per_optimizer_states.values()
                 for found_inf in state['found_inf_per_device'].values()] if self.is_enabled() else []
        if found:
            overflowed = sum(f.to(self._scale.device, non_blocking=True) for f in found) > 0
            self._skipped = self._skipped + overflowed.long()
        super().update(new_scale)

    @property
    def skipped(self):
        """Steps skipped so far. A tensor's .item() waits for the device: call it at log lines."""
        return self._skipped.item() if torch.is_tensor(self._skipped) else self._skipped

    def state_dict(self):
        state = super().state_dict()
        return {**state, 'skipped': self.skipped} if state else state

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self._skipped = state_dict.get('skipped', 0) if self.is_enabled() else 0


# -----------------------------------------------------------------------------
# weight-decay diagnostics (cheap enough for every eval)

def norm_metrics(params, decayed):
    """The log's weight_norm (of params), decayed_norm and decayed_norms (of the decayed tensors: the
    whole and each, in order)."""
    decayed_norm, decayed_norms = weight_norms(decayed)
    return dict(weight_norm=weight_norms(params)[0], decayed_norm=decayed_norm, decayed_norms=decayed_norms)


@torch.no_grad()
def weight_norms(params):
    """(global L2 norm, list of per-tensor norms) of a list of tensors."""
    params = [p.detach() for p in params]
    if not params:
        return 0.0, []
    norms = torch.stack(torch._foreach_norm(params)).float()
    return torch.linalg.vector_norm(norms).item(), norms.tolist()  # two host syncs, not one per tensor


def _is_decayed(group):
    return group.get('decayed', group['weight_decay'] > 0)


def decayed_params(optimizer):
    """The tensors under weight decay: groups built by param_groups, else groups with wd > 0."""
    return [p for g in optimizer.param_groups if _is_decayed(g) for p in g['params']]


@torch.no_grad()
def _mean_adam_step(optimizer, groups, bias_correction):
    """Mean over the coordinates of the groups' tensors with Adam state of lr / (sqrt(v) + eps), v
    bias-corrected or not. The per-tensor sums stay on the device and come back in one transfer."""
    sums, count = [], 0
    for g in groups:
        beta2 = g['betas'][1]
        for p in g['params']:
            s = optimizer.state.get(p)
            if not s:
                continue
            v = s['exp_avg_sq'] / (1 - beta2 ** s['step']) if bias_correction else s['exp_avg_sq']
            sums.append((g['lr'] / (v.sqrt() + g['eps'])).sum(dtype=torch.float64))
            count += p.numel()
    return torch.stack(sums).sum().item() / count if count else float('nan')


@torch.no_grad()
def matrix_elr(optimizer):
    """Per decayed tensor, in order, its group's lr over its norm: the effective LR of Adam, whose
    update has about the same size whatever the weights'. Read back in one transfer."""
    pairs = [(g['lr'], p) for g in optimizer.param_groups if _is_decayed(g) for p in g['params']]
    norms = torch.stack(torch._foreach_norm([p.detach() for _, p in pairs])).float().tolist()
    return [lr / n for (lr, _), n in zip(pairs, norms)]


def adam_effective_lr(optimizer):
    """Mean over the decayed parameters of Adam's per-coordinate step lr / (sqrt(v_hat) + eps)."""
    return _mean_adam_step(optimizer, [g for g in optimizer.param_groups if _is_decayed(g)], True)


def adam_effective_lr_all(optimizer):
    """The authors' avg_adam_elr (tml-epfl/why-weight-decay, large_language_models/train.py): the mean
    over every parameter's coordinates of lr / (sqrt(v) + eps), v not bias-corrected (equal once
    beta2^t ~ 0). Each group's lr and eps (the authors' runs have one of each)."""
    return _mean_adam_step(optimizer, optimizer.param_groups, False)


@torch.no_grad()
def angular_updates(before, after):
    """Per-tensor angle (radians) between two iterates: arccos of their cosine similarity,
    computed as 2*atan2(|u-v|, |u+v|) of the unit vectors, which stays accurate for tiny angles.
    The angles are computed on the device and come back in one transfer."""
    angles = []
    for a, b in zip(before, after):
        u = a.detach().flatten().double()
        v = b.detach().flatten().double()
        u, v = u / u.norm(), v / v.norm()
        angles.append(2 * torch.atan2((u - v).norm(), (u + v).norm()))
    return torch.stack(angles).tolist() if angles else []


def rotation_metrics(angles, lr, optimizer_name, weight_decay, **rule):
    """The log's angular_update (the mean of the per-tensor angles of one step), its spread _p10 and
    _p90, and angular_update_eq, its rotational-equilibrium value at lr (None without angles or where
    there is none). rule: the update's wd_mode, lr_max, beta1, momentum."""
    eq = equilibrium_angular_update(optimizer_name, lr, weight_decay, **rule) if angles else None
    return {**angle_spread(angles), 'angular_update_eq': eq}


def angle_spread(angles):
    """The mean, 10th and 90th percentiles (linear interpolation, as numpy's) of per-tensor angles, under
    their log keys; None values when there is no angle."""
    if not angles:
        return {'angular_update': None, 'angular_update_p10': None, 'angular_update_p90': None}
    a = torch.tensor(angles, dtype=torch.float64)
    p10, p90 = torch.quantile(a, torch.tensor([0.1, 0.9], dtype=torch.float64)).tolist()
    return {'angular_update': a.mean().item(), 'angular_update_p10': p10, 'angular_update_p90': p90}


# -----------------------------------------------------------------------------
# weight decay by mode: every formula that depends on wd_mode lives here

def _decay_per_step(lr, weight_decay, wd_mode='decoupled', lr_max=None):
    """The fraction of a weight that weight decay removes per step, p <- p - rate*p: lr*wd, and
    (lr/lr_max)*wd for 'independent' (0 when lr_max is 0: a run started at lr 0 is not decayed)."""
    if wd_mode not in WD_MODES:
        raise ValueError(f"unknown wd_mode {wd_mode!r}: expected one of {', '.join(WD_MODES)}")
    if wd_mode != 'independent':
        return lr * weight_decay
    if lr_max is None:
        raise ValueError("wd_mode='independent' needs lr_max (the peak LR: the group's lr_max)")
    return lr / lr_max * weight_decay if lr_max > 0 else 0.0


def wd_timescale(lr, weight_decay, wd_mode='decoupled', lr_max=None):
    """Iterations over which weight decay forgets (Wang & Aitchison 2024): tau = 1/(per-step shrink),
    1/(lr*wd), or 1/((lr/lr_max)*wd) for 'independent'. For SGD, 'l2' shrinks by lr*wd too; with
    Adam's 'l2' the shrink is divided by sqrt(v_hat) per coordinate and tau is only SGD's value;
    'cautious' decays only part of the coordinates at each step, and takes longer than tau."""
    rate = _decay_per_step(lr, weight_decay, wd_mode, lr_max)
    return 1 / rate if rate > 0 else float('inf')


def timescale_line(tau, total_iters, iters_per_epoch=0):
    """What a run prints at its start about weight decay's memory tau (wd_timescale), in iterations,
    epochs and the run's length: how many times the weights are renewed over training."""
    if tau == float('inf'):
        return "no weight decay"
    epochs = f" = {tau / iters_per_epoch:,.1f} epochs" if iters_per_epoch else ''
    return (f"weight decay forgets over ~{tau:,.0f} iterations (1/(lr*wd)){epochs}, "
            f"{tau / max(total_iters, 1):.2g} x the run's length")


def equilibrium_angular_update(optimizer_name, lr, weight_decay, wd_mode='decoupled', lr_max=None,
                               beta1=0.9, momentum=0.0):
    """Angle (radians) between consecutive iterates of a scale-invariant weight at rotational
    equilibrium (Kosson et al., ICML 2024), or None where the mode has none. SGD: heavy-ball momentum.

    Assumptions: the loss does not depend on ||w||, so its gradient is orthogonal to w, and the run is
    in a steady state (E||w||^2 constant) with the gradients of different steps uncorrelated."""
    if optimizer_name not in ('adamw', 'sgd'):
        raise ValueError(f"unknown optimizer {optimizer_name!r}: expected 'adamw' or 'sgd'")
    if optimizer_name == 'adamw' and wd_mode == 'l2':
        return None  # the decay is divided by sqrt(v_hat), different in every layer: no common balance
    if wd_mode == 'cautious':
        # the decay acts where u*w >= 0, a share of the coordinates that depends on how the momentum
        # correlates with w, and it is not along w: no closed form
        return None
    # At equilibrium what the decay removes from ||w||^2 per step, 2*rate*||w||^2, balances what the
    # gradients add: each g, orthogonal to w, moves w by lr*g/(1-m) in all, its momentum's sum (Adam:
    # lr*g/sqrt(v), lr^2 per coordinate squared). The angle per step is |step|/||w||, with E|step|^2 =
    # lr^2*|g|^2/(1-m^2) for SGD and lr^2*d*(1-beta1)/(1+beta1) for Adam over d coordinates.
    rate = _decay_per_step(lr, weight_decay, wd_mode, lr_max)  # 'independent': wd -> wd/lr_max
    if optimizer_name == 'adamw':
        return math.sqrt(2 * rate * (1 - beta1) / (1 + beta1))
    if wd_mode == 'l2':  # the decay passes through the momentum: it removes rate/(1-m) per step
        return math.sqrt(2 * rate / (1 + momentum))
    return math.sqrt(2 * rate * (1 - momentum) / (1 + momentum))


def l2_equivalent(optimizer_name, weight_decay, wd_mode, momentum=0.0, dampening=0.0, lr_max=None):
    """The coefficient c such that the fixed points of the update are the stationary points of
    f + c/2*||w||^2: the regularised objective a run minimises. None where there is no such objective;
    0 for 'cautious', whose iterates settle on f's own stationary points as the LR goes to 0."""
    if optimizer_name not in ('adamw', 'sgd'):
        raise ValueError(f"unknown optimizer {optimizer_name!r}: expected 'adamw' or 'sgd'")
    rate_per_lr = _decay_per_step(1.0, weight_decay, wd_mode, lr_max)  # the shrink is rate_per_lr*lr
    if wd_mode == 'l2':
        return weight_decay  # g + wd*w = 0 at a fixed point, whatever the momentum or Adam's scaling
    if wd_mode == 'cautious':
        # the decay acts only where u*w >= 0, so it never balances the update (u = -wd*w gives u*w < 0): the
        # run settles where u = 0, on f's stationary points, chattering about them at a finite lr (Chen et al)
        return 0.0
    if optimizer_name == 'adamw':
        # a fixed point has rate*w = -lr*m_hat/(sqrt(v_hat)+eps), about -lr*sign(g): a bound on |w|
        return None
    # SGD: at a fixed point the buffer b = m*b + (1-d)*g holds b = (1-d)*g/(1-m) (without momentum
    # there is no buffer: b = g), and the step is 0: rate*w + lr*b = 0, i.e. g + rate/lr*(1-m)/(1-d)*w = 0
    return rate_per_lr * ((1 - momentum) / (1 - dampening) if momentum != 0 else 1.0)
