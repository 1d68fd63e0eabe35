import io
import itertools
import math

import pytest
import torch
from torch import nn

import optim

STEPS = 120
RESTART_AT = 60  # state_dict round trip in the middle of the run
TOL = 1e-5


def make_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 32), nn.LayerNorm(32), nn.Tanh(), nn.Linear(32, 32),
                         nn.Tanh(), nn.Linear(32, 4))


def make_batches():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(STEPS, 16, 8, generator=g)
    w = torch.randn(8, 4, generator=g)
    return x, (x @ w).argmax(-1)  # a learnable labelling, so gradients stay informative


def two_groups(net, wd):
    """Matrices with weight decay wd, vectors with wd/2: per-group values must be respected."""
    params = list(net.parameters())
    return [{'params': [p for p in params if p.dim() >= 2], 'weight_decay': wd},
            {'params': [p for p in params if p.dim() < 2], 'weight_decay': wd / 2}]


def lr_at(t, base):
    """An LR that changes every step; the second group runs at half of it."""
    return base * (1 + 0.5 * math.sin(t / 7)), base * 0.5 * (1 + 0.5 * math.cos(t / 5))


def roundtrip(net, opt, sched, make_opt, make_sched, wd):
    """Save net, optimizer and scheduler as a checkpoint would, rebuild them from scratch, load."""
    buf = io.BytesIO()
    torch.save({'net': net.state_dict(), 'opt': opt.state_dict(),
                'sched': sched.state_dict() if sched else None}, buf)
    buf.seek(0)
    ckpt = torch.load(buf)
    net = make_net(seed=123)
    net.load_state_dict(ckpt['net'])
    # torch's order: build the optimizer and its scheduler, then load both
    opt = make_opt(two_groups(net, wd))
    sched = make_sched(opt) if make_sched else None
    opt.load_state_dict(ckpt['opt'])
    if sched:
        sched.load_state_dict(ckpt['sched'])
    return net, opt, sched


def train(make_opt, base_lr, wd, restart_at=None, on_step=None, rebuild=None, make_sched=None):
    """Train make_net() for STEPS steps; on_step(t, lrs, grads) sees every step's gradients. The
    caller sets the LR every step (lr_at), or make_sched(opt), a torch scheduler, does. At
    restart_at the run is saved and rebuilt, its optimizer by rebuild (by default make_opt)."""
    net = make_net()
    opt = make_opt(two_groups(net, wd))
    sched = make_sched(opt) if make_sched else None
    x, y = make_batches()
    for t in range(STEPS):
        if t == restart_at:
            net, opt, sched = roundtrip(net, opt, sched, rebuild or make_opt, make_sched, wd)
        if sched is None:
            for group, lr in zip(opt.param_groups, lr_at(t, base_lr)):
                group['lr'] = lr
        lrs = [group['lr'] for group in opt.param_groups]
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[t]), y[t]).backward()
        if on_step is not None:
            on_step(t, lrs, [p.grad for g in opt.param_groups for p in g['params']])
        opt.step()
        if sched:
            sched.step()
    return [p.detach() for g in opt.param_groups for p in g['params']]


def max_rel_diff(params, reference):
    return max(((a.double() - b.double()).abs().max() / b.double().abs().max()).item()
               for a, b in zip(params, reference))


def assert_close(params, reference):
    initial = [p.detach() for g in two_groups(make_net(), 0.0) for p in g['params']]
    assert max_rel_diff(params, initial) > 1e-2, "the run did not move the parameters"
    assert max_rel_diff(params, reference) <= TOL


# -----------------------------------------------------------------------------
# equal to torch.optim

@pytest.mark.parametrize('restart_at', [None, RESTART_AT])
def test_adamw_decoupled_equals_torch_adamw(restart_at):
    kw = {'lr': 3e-3, 'betas': (0.9, 0.95), 'eps': 1e-8}
    ours = train(lambda g: optim.AdamW(g, **kw), 3e-3, 0.5, restart_at)
    ref = train(lambda g: torch.optim.AdamW(g, foreach=True, **kw), 3e-3, 0.5)
    assert_close(ours, ref)


@pytest.mark.parametrize('restart_at', [None, RESTART_AT])
def test_adamw_l2_equals_torch_adam_with_weight_decay(restart_at):
    kw = {'lr': 3e-3, 'betas': (0.8, 0.99), 'eps': 1e-6}
    ours = train(lambda g: optim.AdamW(g, wd_mode='l2', **kw), 3e-3, 0.5, restart_at)
    ref = train(lambda g: torch.optim.Adam(g, foreach=True, **kw), 3e-3, 0.5)
    assert_close(ours, ref)


@pytest.mark.parametrize('momentum,dampening,nesterov', [
    (0.0, 0.0, False), (0.9, 0.0, False), (0.9, 0.3, False), (0.9, 0.0, True)])
@pytest.mark.parametrize('restart_at', [None, RESTART_AT])
def test_sgd_l2_equals_torch_sgd(momentum, dampening, nesterov, restart_at):
    kw = {'lr': 0.05, 'momentum': momentum, 'dampening': dampening, 'nesterov': nesterov}
    ours = train(lambda g: optim.SGD(g, wd_mode='l2', **kw), 0.05, 0.1, restart_at)
    ref = train(lambda g: torch.optim.SGD(g, foreach=True, **kw), 0.05, 0.1)
    assert_close(ours, ref)


# -----------------------------------------------------------------------------
# equal to a float64 reference of the rule, fed the same gradients

class Reference:
    """The update rules written out plainly, in float64, one tensor at a time."""

    def __init__(self, kind, wd_mode, wd, lr_max, momentum=0.0, dampening=0.0, nesterov=False,
                 betas=(0.9, 0.95), eps=1e-8):
        net = make_net()
        groups = two_groups(net, wd)
        self.params = [p.detach().double().clone() for g in groups for p in g['params']]
        self.wds = [g['weight_decay'] for g in groups for _ in g['params']]
        self.group_of = [i for i, g in enumerate(groups) for _ in g['params']]
        self.kind, self.wd_mode, self.lr_max = kind, wd_mode, lr_max
        self.momentum, self.dampening, self.nesterov = momentum, dampening, nesterov
        self.betas, self.eps = betas, eps
        self.buf = [None] * len(self.params)
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    def step(self, t, lrs, grads):
        self.t += 1
        b1, b2 = self.betas
        for i, (p, g) in enumerate(zip(self.params, grads)):
            g, lr, wd = g.double(), lrs[self.group_of[i]], self.wds[i]
            if self.wd_mode == 'l2':
                g = g + wd * p
            if self.kind == 'sgd':  # u: the direction of the step
                u = g
                if self.momentum:
                    if self.buf[i] is None:
                        self.buf[i] = g.clone()
                    else:
                        self.buf[i] = self.momentum * self.buf[i] + (1 - self.dampening) * g
                    u = g + self.momentum * self.buf[i] if self.nesterov else self.buf[i]
            else:
                self.m[i] = b1 * self.m[i] + (1 - b1) * g
                self.v[i] = b2 * self.v[i] + (1 - b2) * g * g
                m_hat = self.m[i] / (1 - b1 ** self.t)
                v_hat = self.v[i] / (1 - b2 ** self.t)
                u = m_hat / (v_hat.sqrt() + self.eps)
            if self.wd_mode == 'decoupled':
                p.mul_(1 - lr * wd)
            elif self.wd_mode == 'independent':  # independent of the LR's size: only the schedule's shape
                p.mul_(1 - lr / self.lr_max * wd)
            elif self.wd_mode == 'cautious':  # Chen et al.'s rule: p - lr*(u + wd*[u*p >= 0]*p)
                p.sub_(lr * wd * (u * p >= 0) * p)
            p.sub_(lr * u)


@pytest.mark.parametrize('wd_mode', ['decoupled', 'independent', 'cautious'])
@pytest.mark.parametrize('momentum,nesterov', [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_equals_float64_reference(wd_mode, momentum, nesterov):
    ref = Reference('sgd', wd_mode, 0.1, lr_max=0.05, momentum=momentum, nesterov=nesterov)
    ours = train(lambda g: optim.SGD(g, lr=0.05, momentum=momentum, nesterov=nesterov,
                                     wd_mode=wd_mode),
                 0.05, 0.1, RESTART_AT, on_step=ref.step)
    assert_close(ours, ref.params)


@pytest.mark.parametrize('wd_mode', ['decoupled', 'independent', 'l2', 'cautious'])
def test_adamw_equals_float64_reference(wd_mode):
    ref = Reference('adamw', wd_mode, 0.5, lr_max=3e-3)
    ours = train(lambda g: optim.AdamW(g, lr=3e-3, wd_mode=wd_mode), 3e-3, 0.5, RESTART_AT,
                 on_step=ref.step)
    assert_close(ours, ref.params)


def test_independent_mode_uses_the_lr_at_construction_as_lr_max():
    p = nn.Parameter(torch.ones(3))
    opt = optim.SGD([p], lr=0.5, weight_decay=0.1, wd_mode='independent')
    opt.param_groups[0]['lr'] = 0.25  # half the peak: shrink by (0.25/0.5)*0.1
    p.grad = torch.zeros(3)
    opt.step()
    torch.testing.assert_close(p.detach(), torch.full((3,), 1 - 0.05))


def test_sgd_decoupled_and_l2_agree_without_momentum_and_differ_with_it():
    def final(wd_mode, momentum):
        return train(lambda g: optim.SGD(g, lr=0.05, momentum=momentum, wd_mode=wd_mode), 0.05, 0.1)
    assert max_rel_diff(final('decoupled', 0.0), final('l2', 0.0)) <= TOL
    assert max_rel_diff(final('decoupled', 0.9), final('l2', 0.9)) > 1e-3


def test_weight_decay_changes_the_result():
    without = train(lambda g: optim.AdamW(g, lr=3e-3), 3e-3, 0.0)
    with_wd = train(lambda g: optim.AdamW(g, lr=3e-3), 3e-3, 0.5)
    assert max_rel_diff(with_wd, without) > 1e-2


@pytest.mark.parametrize('make', [lambda p: optim.SGD(p, lr=0.1, wd_mode='coupled'),
                                  lambda p: optim.AdamW(p, lr=0.1, wd_mode='L2'),
                                  lambda p: optim.AdamW(p, lr=-1.0),
                                  lambda p: optim.SGD(p, lr=0.1, weight_decay=-0.1),
                                  lambda p: optim.SGD(p, lr=0.1, nesterov=True)])
def test_bad_hyperparameters_raise_a_clear_value_error(make):
    with pytest.raises(ValueError):
        make([nn.Parameter(torch.ones(2))])


@pytest.mark.parametrize('make', [lambda g: optim.SGD(g, lr=0.1, momentum=0.9, weight_decay=0.1),
                                  lambda g: optim.AdamW(g, lr=0.1, weight_decay=0.1)])
def test_parameters_without_gradient_are_left_alone(make):
    used, unused = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(3))
    opt = make([used, unused])
    for _ in range(3):
        opt.zero_grad()
        (used ** 2).sum().backward()
        opt.step()
    assert unused.grad is None and len(opt.state[unused]) == 0
    assert torch.equal(unused.detach(), torch.ones(3))
    assert not torch.equal(used.detach(), torch.ones(3))


def test_zero_grad_sets_gradients_to_none():
    p = nn.Parameter(torch.ones(3))
    opt = optim.AdamW([p], lr=0.1)
    (p ** 2).sum().backward()
    opt.zero_grad()
    assert p.grad is None


# -----------------------------------------------------------------------------
# resuming: load_state_dict as torch.optim's (the checkpoint's hyperparameters come back), and
# load_moments (the checkpoint's moments under this run's hyperparameters)

RESUME_CASES = {  # name: (ours, torch.optim's, weight decay, the run's arguments, other arguments)
    'adamw': (optim.AdamW, torch.optim.AdamW, 0.5, {'lr': 3e-3, 'betas': (0.9, 0.95), 'eps': 1e-8},
              {'lr': 1.0, 'betas': (0.5, 0.6), 'eps': 1e-3}),
    'sgd_momentum': (lambda g, **kw: optim.SGD(g, wd_mode='l2', **kw), torch.optim.SGD, 0.1,
                     {'lr': 0.05, 'momentum': 0.9}, {'lr': 1.0, 'momentum': 0.5, 'dampening': 0.1}),
}
SCHEDULERS = {
    'step': lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=25, gamma=0.5),
    'exponential': lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.99),
    # OneCycleLR keeps its own keys in the groups (initial_lr, max_lr, min_lr, max_momentum, ...)
    # and sets beta1 or the momentum every step too
    'one_cycle': lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=opt.defaults['lr'],
                                                                 total_steps=STEPS),
}


def same(params, reference):
    return all(torch.equal(a, b) for a, b in zip(params, reference, strict=True))


@pytest.mark.parametrize('case', list(RESUME_CASES))
def test_a_run_resumed_into_an_optimizer_built_otherwise_continues_exactly_as_torch_optim(case):
    """The caller sets the LR every step; the weight decay and the rest (betas and eps, or momentum
    and dampening) must come back from the checkpoint, as torch.optim's load_state_dict does."""
    ours, theirs, wd, kw, other = RESUME_CASES[case]
    make_theirs = lambda g, **k: theirs(g, foreach=True, **k)
    # the same parameters, built with other hyperparameters and no weight decay
    rebuild = lambda make: (lambda g: make([{**x, 'weight_decay': 0.0} for x in g], **other))
    uninterrupted = train(lambda g: ours(g, **kw), kw['lr'], wd)
    resumed = train(lambda g: ours(g, **kw), kw['lr'], wd, RESTART_AT, rebuild=rebuild(ours))
    reference = train(lambda g: make_theirs(g, **kw), kw['lr'], wd, RESTART_AT,
                      rebuild=rebuild(make_theirs))
    assert same(resumed, uninterrupted)
    assert_close(resumed, reference)


@pytest.mark.parametrize('scheduler', list(SCHEDULERS))
@pytest.mark.parametrize('case', list(RESUME_CASES))
def test_a_run_resumed_under_a_torch_scheduler_continues_exactly_as_torch_optim(case, scheduler):
    """The optimizer and its scheduler rebuilt with the run's own arguments, then both loaded: the
    LR (and OneCycleLR's momentum) must go on from the checkpoint's, not from the constructor's."""
    ours, theirs, wd, kw, _ = RESUME_CASES[case]
    make_sched = SCHEDULERS[scheduler]
    uninterrupted = train(lambda g: ours(g, **kw), None, wd, make_sched=make_sched)
    resumed = train(lambda g: ours(g, **kw), None, wd, RESTART_AT, make_sched=make_sched)
    reference = train(lambda g: theirs(g, foreach=True, **kw), None, wd, RESTART_AT,
                      make_sched=make_sched)
    assert same(resumed, uninterrupted)
    assert_close(resumed, reference)


@pytest.mark.parametrize('make', [lambda p, **kw: optim.AdamW(p, **kw),
                                  lambda p, **kw: optim.SGD(p, momentum=0.9, **kw)])
def test_load_state_dict_restores_exactly_what_state_dict_saved(make):
    """Into an optimizer built with other hyperparameters and no scheduler: every group key comes
    back, OneCycleLR's too, so a scheduler built after loading continues the schedule."""
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(4, 3))
    opt = make([w], lr=0.01, weight_decay=0.1, wd_mode='independent')
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=10)
    for _ in range(3):
        w.grad = torch.randn_like(w)
        opt.step()
        sched.step()
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    saved = torch.load(buf)
    fresh = make([nn.Parameter(w.detach().clone())], lr=1.0)
    fresh.load_state_dict(saved)
    assert fresh.state_dict()['param_groups'] == saved['param_groups']
    assert saved['param_groups'][0]['max_lr'] == 0.01  # a key OneCycleLR keeps in the group
    sched = torch.optim.lr_scheduler.OneCycleLR(fresh, max_lr=0.01, total_steps=10, last_epoch=2)
    assert sched.get_last_lr() == [opt.param_groups[0]['lr']]


def test_independent_mode_keeps_its_lr_max_under_a_torch_scheduler():
    """OneCycleLR overwrites initial_lr with its starting LR, max_lr/25: the decay still divides
    the LR by lr_max, the LR at construction."""
    p = nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = optim.SGD([p], lr=0.5, weight_decay=0.1, wd_mode='independent')
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.5, total_steps=10,
                                                cycle_momentum=False)
    expected = 1.0
    for _ in range(6):
        expected *= 1 - opt.param_groups[0]['lr'] / 0.5 * 0.1
        p.grad = torch.zeros_like(p)
        opt.step()
        sched.step()
    torch.testing.assert_close(p.detach(), torch.full_like(p, expected))
    assert (opt.param_groups[0]['initial_lr'], opt.param_groups[0]['lr_max']) == (0.02, 0.5)


def checkpoint_of(make_opt, w, steps=3):
    """An optimizer's state dict after a few steps on random gradients, through torch.save/load."""
    opt = make_opt([w])
    for _ in range(steps):
        w.grad = torch.randn_like(w)
        opt.step()
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    return opt, torch.load(buf)


def test_load_moments_into_adamw_takes_the_moments_and_keeps_its_own_hyperparameters():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(4, 3))
    old, ckpt = checkpoint_of(lambda p: optim.AdamW(p, lr=0.01, betas=(0.9, 0.95), weight_decay=0.1), w)
    resumed = nn.Parameter(w.detach().clone())
    opt = optim.AdamW([resumed], lr=0.02, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.0)
    fresh_keys = set(opt.param_groups[0])
    optim.load_moments(opt, ckpt)
    group = opt.param_groups[0]
    assert (group['weight_decay'], group['lr'], group['lr_max'], group['betas'], group['eps']) == (
        0.0, 0.02, 0.02, (0.8, 0.9), 1e-6)
    assert set(group) == fresh_keys
    state = opt.state[resumed]
    assert state['step'] == 3
    assert torch.equal(state['exp_avg'], old.state[w]['exp_avg'])
    assert torch.equal(state['exp_avg_sq'], old.state[w]['exp_avg_sq'])
    # the next step, written out in float64 from the checkpoint's moments and this run's hyperparameters
    g = torch.randn_like(w)
    m = 0.8 * state['exp_avg'].double() + 0.2 * g.double()
    v = 0.9 * state['exp_avg_sq'].double() + 0.1 * g.double() ** 2
    expected = w.double() - 0.02 * (m / (1 - 0.8 ** 4)) / ((v / (1 - 0.9 ** 4)).sqrt() + 1e-6)
    resumed.grad = g
    opt.step()
    torch.testing.assert_close(resumed.detach().double(), expected, rtol=1e-6, atol=1e-7)
    decayed = expected * (1 - 0.02 * 0.1)  # what the checkpoint's weight decay would have given
    assert (resumed.detach().double() - decayed).abs().max() > 1e-4


def test_load_moments_into_sgd_takes_the_momentum_buffer_and_keeps_its_own_weight_decay():
    """The new run decays in the 'independent' mode, lr/lr_max*wd with its own lr_max (0.05), not
    the checkpoint's 'l2' at wd 0.1 and lr 0.1."""
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(5))
    old, ckpt = checkpoint_of(lambda p: optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.1, wd_mode='l2'), w)
    resumed = nn.Parameter(w.detach().clone())
    opt = optim.SGD([resumed], lr=0.05, momentum=0.5, weight_decay=0.2, wd_mode='independent')
    optim.load_moments(opt, ckpt)
    group = opt.param_groups[0]
    assert (group['weight_decay'], group['wd_mode'], group['lr'], group['lr_max'],
            group['momentum']) == (0.2, 'independent', 0.05, 0.05, 0.5)
    buf = opt.state[resumed]['momentum_buffer']
    assert torch.equal(buf, old.state[w]['momentum_buffer'])
    g = torch.randn_like(w)
    group['lr'] = 0.025  # half this run's peak: shrink by (0.025/0.05)*0.2
    expected = w.double() * (1 - 0.1) - 0.025 * (0.5 * buf.double() + g.double())
    resumed.grad = g
    opt.step()
    torch.testing.assert_close(resumed.detach().double(), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('load', [lambda opt, sd: opt.load_state_dict(sd),
                                  lambda opt, sd: optim.load_moments(opt, sd)])
def test_loading_a_checkpoint_with_another_number_of_groups_is_a_clear_error(load):
    a, b = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(3))
    _, ckpt = checkpoint_of(lambda p: optim.AdamW([{'params': p}, {'params': [b]}], lr=0.1), a, steps=0)
    with pytest.raises(ValueError, match='has 2 parameter groups and this one 1'):
        load(optim.AdamW([a, b], lr=0.1), ckpt)


# -----------------------------------------------------------------------------
# which parameters are decayed

class TinyLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(10, 4)
        self.wpe = nn.Embedding(6, 4)
        self.attn = nn.Linear(4, 4)
        self.mlp = nn.Linear(4, 4, bias=False)
        self.ln_f = nn.LayerNorm(4)
        self.lm_head = nn.Linear(4, 10, bias=False)
        self.lm_head.weight = self.wte.weight  # tied
        self.frozen = nn.Parameter(torch.ones(4), requires_grad=False)


def group_names(model, groups):
    names = {id(p): n for n, p in model.named_parameters()}
    return [sorted(names[id(p)] for p in g['params']) for g in groups]


def test_param_groups_matrices_decays_weights_and_embeddings_only():
    model = TinyLM()
    groups, summary = optim.param_groups(model, 0.1)
    decayed, kept = group_names(model, groups)
    assert decayed == ['attn.weight', 'mlp.weight', 'wpe.weight', 'wte.weight']
    assert kept == ['attn.bias', 'ln_f.bias', 'ln_f.weight']
    assert [g['weight_decay'] for g in groups] == [0.1, 0.0]
    assert '4 tensors (96 parameters)' in summary and '3 tensors (12 parameters)' in summary


def test_param_groups_cover_every_trainable_parameter_once():
    model = TinyLM()
    for wd_params in ['matrices', 'all', 'wte wpe mlp attn lm_head']:
        groups, _ = optim.param_groups(model, 0.1, wd_params)
        ids = [id(p) for g in groups for p in g['params']]
        assert len(ids) == len(set(ids))
        assert set(ids) == {id(p) for p in model.parameters() if p.requires_grad}


def test_param_groups_all_and_name_substrings():
    model = TinyLM()
    groups, _ = optim.param_groups(model, 0.1, 'all')
    assert len(groups) == 1 and len(groups[0]['params']) == 7
    groups, _ = optim.param_groups(model, 0.1, 'wte wpe mlp attn lm_head')
    decayed, kept = group_names(model, groups)
    assert decayed == ['attn.bias', 'attn.weight', 'mlp.weight', 'wpe.weight', 'wte.weight']
    assert kept == ['ln_f.bias', 'ln_f.weight']


def test_param_groups_reject_a_substring_that_matches_nothing():
    with pytest.raises(ValueError, match='transformer'):
        optim.param_groups(TinyLM(), 0.1, 'wte transformer')


# -----------------------------------------------------------------------------
# schedules

def test_cosine_schedule_warms_up_then_decays_to_min_lr():
    lrs = [optim.cosine_lr(it, 1.0, 0.1, 10, 100) for it in range(120)]
    assert lrs[0] == pytest.approx(1 / 11) and all(a < b for a, b in itertools.pairwise(lrs[:11]))
    assert lrs[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert lrs[55] == pytest.approx(0.55)  # half way: the mean of lr and min_lr
    assert lrs[100] == lrs[119] == 0.1


def test_constant_schedule():
    lrs = [optim.constant_lr(it, 2.0, 4) for it in range(10)]
    assert lrs[:4] == pytest.approx([0.4, 0.8, 1.2, 1.6]) and lrs[4:] == [2.0] * 6


def test_step_schedule_drops_to_exactly_lr_flow_at_first_decay():
    lrs = [optim.step_lr(it, 0.08, 1e-4, 0.5, 1000) for it in range(1000)]
    assert lrs[499] == 0.08 and lrs[500] == 1e-4 and set(lrs[500:]) == {1e-4}


# -----------------------------------------------------------------------------
# EMA and diagnostics

def test_ema_is_the_exponential_average_of_the_iterates_and_copies_buffers():
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    ema = optim.EMA(model, 0.9)
    expected = [p.detach().clone() for p in model.parameters()]
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.randn(8, 3))  # moves the BatchNorm running statistics
        ema.update(model)
        expected = [0.9 * e + 0.1 * p.detach() for e, p in zip(expected, model.parameters())]
    for e, p in zip(expected, ema.model.parameters()):
        torch.testing.assert_close(p, e)
    # the buffers are left alone at every update, and copied when asked, the integer counter too
    assert ema.model[1].num_batches_tracked == 0
    assert not torch.equal(ema.model[1].running_mean, model[1].running_mean)
    ema.copy_buffers(model)
    torch.testing.assert_close(ema.model[1].running_mean, model[1].running_mean)
    torch.testing.assert_close(ema.model[1].running_var, model[1].running_var)
    assert ema.model[1].num_batches_tracked == model[1].num_batches_tracked == 5
    assert not ema.model.training and not any(p.requires_grad for p in ema.model.parameters())


def test_ema_update_is_a_lerp_of_the_float_parameters_only():
    model = nn.Linear(4, 2)
    model.register_parameter('count', nn.Parameter(torch.tensor([3]), requires_grad=False))
    ema = optim.EMA(model, 0.99)
    start = [p.detach().double().clone() for p in model.parameters()]
    with torch.no_grad():
        model.weight.mul_(2)
        model.bias.add_(1)
    ema.update(model)
    for s, p, e in zip(start, model.parameters(), ema.model.parameters()):
        if p.is_floating_point():  # ema + 0.01*(p - ema), in float64
            torch.testing.assert_close(e.double(), s + 0.01 * (p.double() - s), rtol=1e-6, atol=1e-7)
    assert torch.equal(ema.model.count, torch.tensor([3]))


def test_weight_norms_global_and_per_tensor():
    ts = [torch.randn(3, 4), torch.randn(5)]
    total, per = optim.weight_norms(ts)
    assert total == pytest.approx(torch.cat([t.flatten() for t in ts]).norm().item(), rel=1e-6)
    assert per == pytest.approx([t.norm().item() for t in ts], rel=1e-6)


def test_adam_effective_lr_is_the_mean_step_over_decayed_parameters():
    w, b = nn.Parameter(torch.randn(4, 3)), nn.Parameter(torch.randn(3))
    opt = optim.AdamW([{'params': [w], 'weight_decay': 0.0, 'decayed': True},
                       {'params': [b], 'weight_decay': 0.0, 'decayed': False}], lr=0.01, eps=1e-8)
    for _ in range(3):
        opt.zero_grad()
        ((w.sum(0) * b) ** 2).sum().backward()
        opt.step()
    s = opt.state[w]
    v_hat = s['exp_avg_sq'] / (1 - 0.95 ** 3)
    expected = (0.01 / (v_hat.sqrt() + 1e-8)).mean().item()
    assert optim.adam_effective_lr(opt) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize('angle', [0.3, 1e-4, 3.0])
def test_angular_update_recovers_a_known_rotation_even_when_tiny(angle):
    a = torch.tensor([[1.0, 0.0, 0.0]])
    b = 5 * torch.tensor([[math.cos(angle), math.sin(angle), 0.0]])  # scale does not matter
    assert optim.angular_updates([a], [b])[0] == pytest.approx(angle, rel=1e-5)


def count_host_transfers(monkeypatch):
    """A list that records each Tensor.item() and Tensor.tolist() call from now on."""
    calls = []
    for fn in ['item', 'tolist']:
        original = getattr(torch.Tensor, fn)
        monkeypatch.setattr(torch.Tensor, fn, lambda self, _fn=fn, _original=original: (
            calls.append(_fn), _original(self))[1])
    return calls


def test_angular_updates_of_a_real_step_equal_arccos_of_the_cosine_in_one_transfer(monkeypatch):
    np = pytest.importorskip('numpy')
    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(shape)) for shape in [(8, 5), (7,), (3, 3, 2)]]
    opt = optim.AdamW(params, lr=0.05, weight_decay=0.1)
    for p in params:
        p.grad = torch.randn_like(p)
    before = [p.detach().clone() for p in params]
    opt.step()
    expected = []
    for a, b in zip(before, params):
        a, b = a.numpy().astype(np.float64).ravel(), b.detach().numpy().astype(np.float64).ravel()
        expected.append(float(np.arccos(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))))
    assert min(expected) > 1e-3  # moderate angles, where arccos is accurate
    calls = count_host_transfers(monkeypatch)
    angles = optim.angular_updates(before, params)
    assert calls == ['tolist']
    assert angles == pytest.approx(expected, rel=1e-6)


def test_angle_spread_is_the_mean_and_the_10th_and_90th_percentiles():
    np = pytest.importorskip('numpy')
    angles = [0.03, 0.01, 0.2, 0.05, 0.07, 0.02, 0.11]
    spread = optim.angle_spread(angles)
    assert spread == pytest.approx({'angular_update': np.mean(angles),
                                    'angular_update_p10': np.percentile(angles, 10),
                                    'angular_update_p90': np.percentile(angles, 90)}, rel=1e-12)
    assert optim.angle_spread([]) == {'angular_update': None, 'angular_update_p10': None,
                                      'angular_update_p90': None}


def test_adam_effective_lrs_equal_a_computation_from_the_state_in_one_transfer(monkeypatch):
    """adam_effective_lr_all: the authors' mean over every tensor, v not bias-corrected."""
    torch.manual_seed(0)
    w, u, b = nn.Parameter(torch.randn(4, 3)), nn.Parameter(torch.randn(3, 2)), nn.Parameter(torch.randn(3))
    unused = nn.Parameter(torch.randn(2))
    opt = optim.AdamW([{'params': [w, u, unused], 'weight_decay': 0.1, 'decayed': True},
                       {'params': [b], 'weight_decay': 0.0, 'decayed': False, 'lr': 0.02, 'eps': 1e-6}],
                      lr=0.01, eps=1e-8)
    for _ in range(3):
        opt.zero_grad()
        ((w.sum(0) * b) ** 2).sum().add((u.sum(1) * b).sum()).backward()
        opt.step()
    # from the optimizer's state: every tensor with a state (not `unused`), v as it is stored
    v = {name: opt.state[p]['exp_avg_sq'].double() for name, p in [('w', w), ('u', u), ('b', b)]}
    total = sum((0.01 / (v[n].sqrt() + 1e-8)).sum() for n in 'wu') + (0.02 / (v['b'].sqrt() + 1e-6)).sum()
    expected_all = (total / (w.numel() + u.numel() + b.numel())).item()
    decayed_steps = torch.cat([(0.01 / ((v[n] / (1 - 0.95 ** 3)).sqrt() + 1e-8)).flatten() for n in 'wu'])
    expected_decayed = decayed_steps.mean().item()
    calls = count_host_transfers(monkeypatch)
    assert optim.adam_effective_lr(opt) == pytest.approx(expected_decayed, rel=1e-6)
    assert calls == ['item']  # one transfer, not one per tensor
    assert optim.adam_effective_lr_all(opt) == pytest.approx(expected_all, rel=1e-6)
    assert calls == ['item', 'item']


def test_equilibrium_angle_and_timescale_formulas():
    assert optim.equilibrium_angular_update('adamw', 6e-4, 0.1, beta1=0.9) == pytest.approx(
        math.sqrt(2 * 6e-4 * 0.1 * 0.1 / 1.9))
    assert optim.equilibrium_angular_update('sgd', 0.08, 0.0125, momentum=0.0) == pytest.approx(
        math.sqrt(2 * 0.08 * 0.0125))
    assert optim.wd_timescale(6e-4, 0.1) == pytest.approx(1 / 6e-5)
    assert optim.wd_timescale(6e-4, 0.0) == math.inf


# -----------------------------------------------------------------------------
# float16 loss scaling

def host_reads(fn):
    """How many times fn() reads a tensor's value back to the host: .item(), bool(t) and int(t) are
    each one aten._local_scalar_dense, which on a GPU waits for the device to catch up."""
    from torch.utils._python_dispatch import TorchDispatchMode
    reads = []

    class CountReads(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._local_scalar_dense.default:
                reads.append(func)
            return func(*args, **(kwargs or {}))
    with CountReads():
        fn()
    return len(reads)


GOOD_GRAD = torch.tensor([1.0, 2.0, 3.0, 4.0])
INF_GRAD = torch.tensor([1.0, math.inf, 3.0, 4.0])


def scaled_step(scaler, grad):
    """A parameter of ones given the gradient grad through scaler (loss scaling), and a function
    that runs scaler.step and scaler.update on it."""
    p = nn.Parameter(torch.ones(4))
    opt = torch.optim.SGD([p], lr=0.1)
    scaler.scale((p * grad).sum()).backward()
    return p, lambda: (scaler.step(opt), scaler.update())


def test_counting_skipped_steps_reads_nothing_back_beyond_torchs_own_grad_scaler():
    """torch's scaler.step reads found_inf to decide whether to step; counting the skipped steps
    must add no read of its own (get_scale() is one): a float16 step waits no more than torch's."""
    reads = {'torch': [], 'ours': []}
    for name, scaler in [('torch', torch.amp.GradScaler('cpu')), ('ours', optim.GradScaler('cpu'))]:
        for grad in [GOOD_GRAD, INF_GRAD, GOOD_GRAD, INF_GRAD]:
            _, step = scaled_step(scaler, grad)
            reads[name].append(host_reads(step))
    assert min(reads['torch']) >= 1  # the count sees torch's own read
    assert reads['ours'] == reads['torch']


def test_the_grad_scaler_counts_a_skipped_step_and_keeps_the_count_in_its_checkpoint():
    scaler = optim.GradScaler('cpu', init_scale=2.0 ** 10)
    p, step = scaled_step(scaler, GOOD_GRAD)
    step()
    assert scaler.skipped == 0 and not torch.equal(p.detach(), torch.ones(4))
    p, step = scaled_step(scaler, INF_GRAD)
    step()
    assert scaler.skipped == 1 and torch.equal(p.detach(), torch.ones(4))  # not stepped
    assert scaler.get_scale() == 2.0 ** 9  # backed off
    buf = io.BytesIO()
    torch.save(scaler.state_dict(), buf)
    buf.seek(0)
    resumed = optim.GradScaler('cpu')
    resumed.load_state_dict(torch.load(buf))
    assert resumed.skipped == 1 and resumed.get_scale() == 2.0 ** 9
    for grad in [INF_GRAD, GOOD_GRAD]:
        _, step = scaled_step(resumed, grad)
        step()
    assert resumed.skipped == 2 and resumed.state_dict()['skipped'] == 2


# -----------------------------------------------------------------------------
# the compiled step (opt.compile()): the same update fused by torch.compile

def compiled_graphs(make_opt, base_lr, wd):
    """(final parameters, graphs compiled) of a run whose optimizer step is compiled."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    params = train(lambda g: make_opt(g).compile(), base_lr, wd, RESTART_AT)
    return params, torch._dynamo.utils.counters['stats']['unique_graphs']


@pytest.mark.slow
@pytest.mark.parametrize('wd_mode', ['decoupled', 'l2', 'independent', 'cautious'])
def test_compiled_adamw_equals_eager_and_compiles_once_per_group(wd_mode):
    make = lambda g: optim.AdamW(g, lr=3e-3, wd_mode=wd_mode)
    ours, graphs = compiled_graphs(make, 3e-3, 0.5)
    assert_close(ours, train(make, 3e-3, 0.5))
    assert graphs == 2  # the LR and the step count change every step and compile nothing new


@pytest.mark.slow
@pytest.mark.parametrize('momentum,nesterov', [(0.0, False), (0.9, True)])
def test_compiled_sgd_equals_torch_sgd(momentum, nesterov):
    kw = {'lr': 0.05, 'momentum': momentum, 'nesterov': nesterov}
    ours, graphs = compiled_graphs(lambda g: optim.SGD(g, wd_mode='l2', **kw), 0.05, 0.1)
    assert_close(ours, train(lambda g: torch.optim.SGD(g, foreach=True, **kw), 0.05, 0.1))
    assert graphs == (4 if momentum else 2)  # momentum: the first step (buffers set to g) is its own graph


@pytest.mark.slow
def test_compiled_cautious_sgd_equals_eager():
    make = lambda g: optim.SGD(g, lr=0.05, momentum=0.9, wd_mode='cautious')
    ours, graphs = compiled_graphs(make, 0.05, 0.1)
    assert_close(ours, train(make, 0.05, 0.1))
    assert graphs == 4


def tiny_compiled_run(make_opt):
    """A compiled optimizer over two tiny groups, and a function that runs one step at a new LR."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(3, 4)), nn.Parameter(torch.randn(4))]
    opt = make_opt([{'params': params[:1], 'weight_decay': 0.1},
                    {'params': params[1:], 'weight_decay': 0.05}])
    opt.compile()
    lrs = iter(0.01 * (1 + 0.5 * math.sin(t)) for t in range(10 ** 6))

    def step():
        for group in opt.param_groups:
            group['lr'] = next(lrs)
        for p in params:
            p.grad = torch.randn_like(p)
        opt.step()
    return step


TINY_OPTIMIZERS = {
    'adamw': lambda g: optim.AdamW(g, lr=0.01),
    'adamw_independent': lambda g: optim.AdamW(g, lr=0.01, wd_mode='independent'),
    'sgd_momentum': lambda g: optim.SGD(g, lr=0.01, momentum=0.9),
    'sgd_cautious': lambda g: optim.SGD(g, lr=0.01, momentum=0.9, wd_mode='cautious'),
}


@pytest.mark.slow
@pytest.mark.parametrize('name', list(TINY_OPTIMIZERS))
def test_the_compiled_update_reads_nothing_back_to_the_host(name):
    """A 0-d tensor passed as alpha= or value= becomes .item() in Inductor's code: a sync per step."""
    from torch._inductor.utils import run_and_get_code
    step = tiny_compiled_run(TINY_OPTIMIZERS[name])
    _, codes = run_and_get_code(lambda: [step() for _ in range(2)])  # SGD's first step is its own graph
    assert codes, "nothing was compiled"
    for code in codes:
        assert '.item()' not in code and '_local_scalar_dense' not in code


@pytest.mark.slow
@pytest.mark.parametrize('name', list(TINY_OPTIMIZERS))
def test_a_compiled_step_makes_no_tensor_from_a_python_number(name, monkeypatch):
    """torch.tensor(x, device=cuda) is a blocking host-to-device copy: after the first steps, none."""
    step = tiny_compiled_run(TINY_OPTIMIZERS[name])
    step(), step()
    calls = []
    watched = [(torch, 'tensor'), (torch, 'as_tensor'), (torch, 'scalar_tensor'), (torch.Tensor, 'item')]
    for owner, fn in watched:
        original = getattr(owner, fn)
        monkeypatch.setattr(owner, fn, lambda *a, _fn=fn, _original=original, **k: (
            calls.append(_fn), _original(*a, **k))[1])
    for _ in range(3):
        step()
    monkeypatch.undo()
    assert calls == []


# -----------------------------------------------------------------------------
# weight decay by mode: each formula against what the optimizers actually do

def simulated_angle(make_opt, lr, dim=2048, steps=2000):
    """Mean angle per step over the second half of a random walk of a scale-invariant weight: each
    gradient is random, orthogonal to w and of norm 1/||w||, as the gradient of a loss that ignores ||w||."""
    gen = torch.Generator().manual_seed(0)
    w = nn.Parameter(torch.randn(dim, generator=gen) / dim ** 0.5)
    opt = make_opt([w])
    opt.param_groups[0]['lr'] = lr  # may be below the LR at construction: lr/lr_max < 1 for 'independent'
    angles = []
    for _ in range(steps):
        before = w.detach().double().clone()
        r = torch.randn(dim, generator=gen, dtype=torch.float64) / dim ** 0.5
        r -= (r @ before) / (before @ before) * before
        w.grad = (r / before.norm()).float()
        opt.step()
        after = w.detach().double()
        angles.append(torch.arccos(before @ after / (before.norm() * after.norm())))
    return torch.stack(angles[steps // 2:]).mean().item()


OPTIMIZERS = {'sgd': optim.SGD, 'adamw': optim.AdamW}
EQUILIBRIUM_CASES = {  # name: (optimizer, its arguments (lr: lr_max), the lr during the run)
    'adamw': ('adamw', {'lr': 0.01, 'weight_decay': 0.5, 'betas': (0.9, 0.99)}, 0.01),
    'adamw_independent': ('adamw', {'lr': 0.04, 'weight_decay': 0.012, 'betas': (0.9, 0.99),
                                    'wd_mode': 'independent'}, 0.01),
    'sgd_decoupled': ('sgd', {'lr': 0.05, 'weight_decay': 0.1}, 0.05),
    'sgd_decoupled_momentum': ('sgd', {'lr': 0.05, 'weight_decay': 0.1, 'momentum': 0.9}, 0.05),
    'sgd_l2_momentum': ('sgd', {'lr': 0.05, 'weight_decay': 0.1, 'momentum': 0.9, 'wd_mode': 'l2'}, 0.05),
    'sgd_independent_momentum': ('sgd', {'lr': 0.2, 'weight_decay': 0.03, 'momentum': 0.9,
                                         'wd_mode': 'independent'}, 0.05),
}


@pytest.mark.parametrize('case', list(EQUILIBRIUM_CASES))
def test_equilibrium_angle_matches_a_simulated_random_walk(case):
    name, kw, lr = EQUILIBRIUM_CASES[case]
    simulated = simulated_angle(lambda p: OPTIMIZERS[name](p, **kw), lr)
    predicted = optim.equilibrium_angular_update(name, lr, kw['weight_decay'], kw.get('wd_mode', 'decoupled'),
                                                 lr_max=kw['lr'], beta1=kw.get('betas', (0.9,))[0],
                                                 momentum=kw.get('momentum', 0.0))
    assert simulated == pytest.approx(predicted, rel=0.05)


def test_equilibrium_angle_is_none_without_an_equilibrium_and_zero_without_decay():
    assert optim.equilibrium_angular_update('adamw', 1e-3, 0.1, 'l2') is None  # each layer its own balance
    assert optim.equilibrium_angular_update('sgd', 0.1, 0.1, 'cautious') is None  # no closed form
    assert optim.equilibrium_angular_update('sgd', 0.1, 0.0, momentum=0.9) == 0.0
    assert optim.equilibrium_angular_update('sgd', 0.1, 0.1, 'independent', lr_max=0.0) == 0.0
    with pytest.raises(ValueError, match='lr_max'):
        optim.equilibrium_angular_update('sgd', 0.1, 0.1, 'independent')
    with pytest.raises(ValueError, match='wd_mode'):
        optim.equilibrium_angular_update('adamw', 1e-3, 0.1, 0.9)  # beta1 where wd_mode belongs


TOY_CURVATURE = torch.tensor([1.0, 3.0], dtype=torch.float64)
TOY_TARGET = torch.tensor([1.0, -2.0], dtype=torch.float64)


def toy_fixed_point(make_opt, lr, steps=2000, lr_decay=1.0):
    """Where an optimizer ends on f(w) = sum(a/2*(w - w0)^2) (exact gradients, float64)."""
    w = nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = make_opt([w])
    for t in range(steps):
        opt.param_groups[0]['lr'] = lr * lr_decay ** t  # Adam reaches its fixed point only as lr -> 0
        w.grad = TOY_CURVATURE * (w.detach() - TOY_TARGET)
        opt.step()
    return w.detach()


L2_CASES = {  # name: (optimizer, its arguments (lr: lr_max), the lr during the run, the lr's decay per step)
    'sgd_decoupled': ('sgd', {'lr': 0.1, 'weight_decay': 0.5}, 0.1, 1.0),
    'sgd_decoupled_momentum': ('sgd', {'lr': 0.1, 'weight_decay': 0.5, 'momentum': 0.9}, 0.1, 1.0),
    'sgd_decoupled_dampening': ('sgd', {'lr': 0.1, 'weight_decay': 0.5, 'momentum': 0.9, 'dampening': 0.3},
                                0.1, 1.0),
    'sgd_decoupled_nesterov': ('sgd', {'lr': 0.1, 'weight_decay': 0.5, 'momentum': 0.9, 'nesterov': True},
                               0.1, 1.0),
    'sgd_l2_momentum': ('sgd', {'lr': 0.1, 'weight_decay': 0.5, 'momentum': 0.9, 'wd_mode': 'l2'}, 0.1, 1.0),
    'sgd_independent_momentum': ('sgd', {'lr': 0.2, 'weight_decay': 0.05, 'momentum': 0.9,
                                         'wd_mode': 'independent'}, 0.1, 1.0),
    # cautious: at a constant LR it chatters about w0 (the decay acts on one side only), so the LR decays
    'sgd_cautious_momentum': ('sgd', {'lr': 0.1, 'weight_decay': 0.5, 'momentum': 0.9, 'wd_mode': 'cautious'},
                              0.1, 0.997),
    'adam_l2': ('adamw', {'lr': 0.05, 'weight_decay': 0.5, 'wd_mode': 'l2'}, 0.05, 0.997),
    'adamw_cautious': ('adamw', {'lr': 0.05, 'weight_decay': 0.5, 'wd_mode': 'cautious'}, 0.05, 0.997),
}


@pytest.mark.parametrize('case', list(L2_CASES))
def test_l2_equivalent_gives_the_minimiser_a_toy_run_converges_to(case):
    name, kw, lr, lr_decay = L2_CASES[case]
    final = toy_fixed_point(lambda p: OPTIMIZERS[name](p, **kw), lr, steps=3000 if lr_decay < 1 else 2000,
                            lr_decay=lr_decay)
    c = optim.l2_equivalent(name, kw['weight_decay'], kw.get('wd_mode', 'decoupled'), kw.get('momentum', 0.0),
                            kw.get('dampening', 0.0), lr_max=kw['lr'])
    # the minimiser of sum(a/2*(w - w0)^2) + c/2*|w|^2, in closed form
    expected = TOY_CURVATURE * TOY_TARGET / (TOY_CURVATURE + c)
    torch.testing.assert_close(final, expected, rtol=0, atol=1e-5)


def test_l2_equivalent_is_none_where_no_penalty_is_minimised():
    assert optim.l2_equivalent('adamw', 0.1, 'decoupled') is None
    assert optim.l2_equivalent('adamw', 0.1, 'independent', lr_max=1e-3) is None
    # AdamW's fixed point is |w| = lr*|u|/(lr*wd), about 1/wd here: no c puts both coordinates there
    final = toy_fixed_point(lambda p: optim.AdamW(p, lr=0.05, weight_decay=2.0), 0.05, 3000, lr_decay=0.997)
    assert final.abs().tolist() == pytest.approx([0.5, 0.5], abs=1e-2)


@pytest.mark.parametrize('make,wd_mode,lr_max', [
    (lambda p: optim.SGD(p, lr=0.1, weight_decay=0.02), 'decoupled', None),
    (lambda p: optim.SGD(p, lr=0.1, weight_decay=0.02, wd_mode='l2'), 'l2', None),
    (lambda p: optim.SGD(p, lr=0.4, weight_decay=0.02, momentum=0.9, wd_mode='independent'), 'independent',
     0.4),
    (lambda p: optim.AdamW(p, lr=0.1, weight_decay=0.02), 'decoupled', None)])
def test_wd_timescale_is_the_inverse_of_the_shrink_per_step(make, wd_mode, lr_max):
    """With zero gradients a weight decays as (1 - 1/tau)^t."""
    p = nn.Parameter(torch.ones(4, dtype=torch.float64))
    opt = make([p])
    opt.param_groups[0]['lr'] = 0.1
    for _ in range(50):
        p.grad = torch.zeros_like(p)
        opt.step()
    tau = optim.wd_timescale(0.1, 0.02, wd_mode, lr_max)
    torch.testing.assert_close(p.detach(), torch.full_like(p, (1 - 1 / tau) ** 50))
