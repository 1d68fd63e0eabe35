"""Every logged metric against an independent computation from its definition.

Each check recomputes a number the scripts log from what a run leaves behind (two checkpoints one
step apart, the data, the optimizer state), with its own code: plain torch and numpy, the model
classes, no helper of optim.py or the training scripts. docs/log_format.md defines each metric.
"""
import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import run_io
from conftest import run_script
from model import GPT, GPTConfig, resnet18

TINY_GPT = ['--dataset=shakespeare_char', '--device=cpu', '--n_layer=2', '--n_head=2', '--n_embd=32',
            '--block_size=32', '--batch_size=4', '--gradient_accumulation_steps=2', '--eval_iters=4',
            '--vocab_multiple=1', '--warmup_iters=0', '--decay_lr=False', '--learning_rate=3e-3',
            '--weight_decay=0.1', '--ema_coef=0.9', '--eval_interval=10', '--log_interval=1']


def ok(out):
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]


def two_checkpoints(script, args, out, first, last, key):
    """A run to `first`, its checkpoint kept, then resumed to `last`: (checkpoint at first, at last, log)."""
    ok(run_script(script, *args, f'--out_dir={out}', f'--{key}={first}'))
    shutil.copy(out / 'ckpt.pt', out / 'first.pt')
    ok(run_script(script, *args, f'--out_dir={out}', f'--{key}={last}', '--init_from=resume'))
    return (run_io.load_checkpoint(out / 'first.pt'), run_io.load_checkpoint(out / 'ckpt.pt'),
            run_io.read_log(out / 'log.jsonl'))


def angle(a, b):
    """Angle between two tensors in radians, from the cosine in float64 (fine away from 0 and pi)."""
    a, b = a.double().flatten().numpy(), b.double().flatten().numpy()
    return math.acos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))


def sq_norm(tensors):
    """||w||^2 of a set of tensors, in float64."""
    return sum(t.double().square().sum().item() for t in tensors)


def check_angles(line, before, after):
    """The eval line's angular_update and its spread against the angles each tensor turned between the
    two states (dicts of the same tensors): their mean and numpy's 10th and 90th percentiles."""
    angles = [angle(before[k], after[k]) for k in before]
    assert line['angular_update'] == pytest.approx(np.mean(angles), rel=1e-6)
    assert line['angular_update_p10'] == pytest.approx(np.percentile(angles, 10), rel=1e-6)
    assert line['angular_update_p90'] == pytest.approx(np.percentile(angles, 90), rel=1e-6)


# -----------------------------------------------------------------------------
# train_gpt.py

@pytest.fixture(scope='module')
def gpt(char_data, tmp_path_factory):
    out = tmp_path_factory.mktemp('metrics') / 'gpt'
    before, after, log = two_checkpoints('train_gpt.py', [*TINY_GPT, f'--data_dir={char_data}'], out, 10, 11,
                                         'max_iters')
    return dict(before=before, after=after, log=log, data=char_data,
                eval=[r for r in log if r.get('eval') and r['iter'] == 11][0],
                train=[r for r in log if not r.get('eval') and r['iter'] == 11][0])


def gpt_model(ckpt, part='model'):
    net = GPT(GPTConfig(**ckpt['model_args']))
    net.load_state_dict(ckpt[part])
    return net


def decayed_matrices(state):
    """The decayed tensors ('matrices': dim >= 2), the tied output layer counted once."""
    return {k: v for k, v in state.items() if v.dim() >= 2 and k != 'lm_head.weight'}


def test_gpt_angular_update_is_the_mean_angle_between_checkpoints_one_step_apart(gpt):
    # with the spread over the decayed tensors (Kosson et al.: AdamW balances them, Adam + L2 does not)
    check_angles(gpt['eval'], decayed_matrices(gpt['before']['model']), decayed_matrices(gpt['after']['model']))
    # AdamW's rotational equilibrium at this lr and wd
    assert gpt['eval']['angular_update_eq'] == pytest.approx(math.sqrt(2 * 3e-3 * 0.1 * 0.1 / 1.9), rel=1e-12)


def test_gpt_adam_effective_lrs_from_the_optimizer_state(gpt):
    state = gpt['after']['optimizer']
    lr, eps, (_, beta2) = 3e-3, 1e-8, state['param_groups'][0]['betas']
    decayed, every = [], []
    for group in state['param_groups']:
        for i in group['params']:
            s = state['state'][i]
            v = s['exp_avg_sq'].double()
            every.append((lr / (v.sqrt() + eps)).flatten())  # the authors' avg_adam_elr: all, uncorrected
            if group['decayed']:
                decayed.append((lr / ((v / (1 - beta2 ** s['step'])).sqrt() + eps)).flatten())
    assert gpt['eval']['adam_elr'] == pytest.approx(torch.cat(decayed).mean().item(), rel=1e-6)
    assert gpt['eval']['adam_elr_all'] == pytest.approx(torch.cat(every).mean().item(), rel=1e-6)


def test_gpt_norms_from_the_checkpoint(gpt):
    state = gpt['after']['model']
    unique = {k: v for k, v in state.items() if k != 'lm_head.weight'}  # tied to wte
    norm = lambda ts: math.sqrt(sq_norm(ts))
    for line in (gpt['eval'], gpt['train']):
        assert line['weight_norm'] == pytest.approx(norm(unique.values()), rel=1e-6)
        assert line['decayed_norm'] == pytest.approx(norm(decayed_matrices(state).values()), rel=1e-6)
        each = [norm([w]) for w in decayed_matrices(state).values()]  # in the optimizer's order
        assert line['decayed_norms'] == pytest.approx(each, rel=1e-6)


def test_gpt_matrix_elr_is_each_decayed_matrix_lr_over_its_norm(gpt):
    matrices = decayed_matrices(gpt['after']['model'])
    expected = [3e-3 / math.sqrt(sq_norm([w])) for w in matrices.values()]
    assert gpt['eval']['matrix_elr'] == pytest.approx(expected, rel=1e-6)


def attention_logits_by_hand(state, idx, n_head, low=None):
    """Each layer's attention logits q.k/sqrt(d) (B, H, T, T) and the output logits, from the weights alone:
    GPT-2's forward written out (pre-LayerNorm blocks, causal softmax, GELU MLP, tied head). low=dtype:
    the logits of each layer also from its float32 input cast to low, as autocast computes them."""
    T = idx.shape[1]
    x = state['transformer.wte.weight'][idx] + state['transformer.wpe.weight'][:T]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    layers, lows = [], []
    for i in range(len({k.split('.')[2] for k in state if k.startswith('transformer.h.')})):
        w = lambda name: state[f'transformer.h.{i}.{name}']
        h = F.layer_norm(x, x.shape[-1:], w('ln_1.weight'))
        heads = lambda t: t.view(*t.shape[:2], n_head, -1).transpose(1, 2)
        q, k, v = (heads(t) for t in (h @ w('attn.c_attn.weight').T).chunk(3, dim=-1))
        logits = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        layers.append(logits)
        if low is not None:
            q16, k16, _ = (heads(t) for t in (h.to(low) @ w('attn.c_attn.weight').to(low).T).chunk(3, dim=-1))
            lows.append((q16 @ k16.transpose(-2, -1) / math.sqrt(q.shape[-1])).float())
        att = torch.softmax(logits.masked_fill(~causal, float('-inf')), -1) @ v
        x = x + att.transpose(1, 2).reshape(x.shape) @ w('attn.c_proj.weight').T
        h = F.layer_norm(x, x.shape[-1:], w('ln_2.weight'))
        x = x + F.gelu(h @ w('mlp.c_fc.weight').T) @ w('mlp.c_proj.weight').T
    out = F.layer_norm(x, x.shape[-1:], state['transformer.ln_f.weight']) @ state['transformer.wte.weight'].T
    return layers, lows, out, causal


def test_gpt_attention_and_output_logits_and_their_bfloat16_error_by_hand(gpt):
    # the first val batch: the first batch_size (4) of the val eval windows, drawn after the train ones
    gen = torch.Generator().manual_seed(1)
    n_train = len(np.fromfile(gpt['data'] / 'train.bin', dtype=np.uint16))
    torch.randint(n_train - 32, (16,), generator=gen)  # the train windows' draw comes first
    tokens = np.fromfile(gpt['data'] / 'val.bin', dtype=np.uint16).astype(np.int64)
    ix = torch.randint(len(tokens) - 32, (16,), generator=gen).numpy()[:4]
    idx = torch.from_numpy(tokens[ix[:, None] + np.arange(32)])
    state = {k: v.float() for k, v in gpt['after']['model'].items()}
    layers, lows, out, causal = attention_logits_by_hand(state, idx, n_head=2, low=torch.bfloat16)
    line = gpt['eval']
    maxes = [t[..., causal].abs().max().item() for t in layers]
    assert line['attn_logit_max_layers'] == pytest.approx(maxes, rel=1e-4)
    assert line['attn_logit_max'] == pytest.approx(max(maxes), rel=1e-4)
    assert line['output_logit_max'] == pytest.approx(out.abs().max().item(), rel=1e-4)
    # bfloat16 keeps 8 bits of mantissa: a relative error near 2^-9 whatever the logits' size
    err = math.sqrt(sum((lo - ex)[..., causal].square().sum().item() for lo, ex in zip(lows, layers))
                    / sum(ex[..., causal].square().sum().item() for ex in layers))
    assert 2 ** -12 < err < 2 ** -7
    assert line['attn_logit_bf16_err'] == pytest.approx(err, rel=1e-5), err
    softmax = lambda t: torch.softmax(t.masked_fill(~causal, float('-inf')), -1)
    tv = np.mean([0.5 * (softmax(lo) - softmax(ex)).abs().sum(-1).mean().item() for lo, ex in zip(lows, layers)])
    assert line['attn_weight_bf16_tv'] == pytest.approx(tv, rel=1e-4), tv


def test_gpt_losses_are_those_of_the_checkpoints_weights_on_the_eval_batches(gpt):
    # the eval batches: eval_iters random windows of 4 per split, from a generator seeded seed + 1
    gen = torch.Generator().manual_seed(1)
    for split in ('train', 'val'):
        tokens = np.fromfile(gpt['data'] / f'{split}.bin', dtype=np.uint16).astype(np.int64)
        ix = torch.randint(len(tokens) - 32, (4, 4), generator=gen).numpy()
        windows = torch.from_numpy(tokens[ix[..., None] + np.arange(33)])
        for part, suffix in (('model', ''), ('ema', '_ema')):
            net = gpt_model(gpt['after'], part).eval()
            with torch.no_grad():
                logits = net(windows[..., :-1].flatten(0, 1))[0]  # all 16 windows at once
            targets = windows[..., 1:].flatten(0, 1)
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
            assert gpt['eval'][f'{split}_loss{suffix}'] == pytest.approx(loss.item(), rel=1e-5)
            # next-token error: the share of positions whose most likely token is not the next one
            error = (logits.argmax(-1) != targets).double().mean().item()
            assert gpt['eval'][f'{split}_err{suffix}'] == pytest.approx(error, rel=1e-6)


def test_gpt_loss_and_gradient_norm_of_the_last_step(gpt):
    # the step from iteration 10 to 11: the batch the sampler draws from its checkpointed state
    tokens = np.fromfile(gpt['data'] / 'train.bin', dtype=np.uint16).astype(np.int64)
    sampler = torch.Generator()
    sampler.set_state(gpt['before']['sampler'])
    ix = torch.randint(len(tokens) - 32, (2, 4), generator=sampler).numpy()
    windows = torch.from_numpy(tokens[ix[..., None] + np.arange(33)])
    net = gpt_model(gpt['before']).train()
    losses = [F.cross_entropy(net(w[:, :-1])[0].flatten(0, 1), w[:, 1:].flatten()) for w in windows]
    loss = torch.stack(losses).mean()
    loss.backward()
    grad_norm = math.sqrt(sq_norm(p.grad for p in net.parameters()))
    assert gpt['train']['loss'] == pytest.approx(loss.item(), rel=1e-5)
    assert gpt['train']['grad_norm'] == pytest.approx(grad_norm, rel=1e-5)
    assert gpt['train']['tokens'] == 11 * 2 * 4 * 32


# -----------------------------------------------------------------------------
# train_resnet.py: a scale-invariant net, SGD with momentum and decoupled weight decay, one step
# an epoch (the whole 100-image subset is the batch), so that epoch checkpoints are one step apart

RESNET = ['--width=4', '--n_train=100', '--batch_size=100', '--eval_batch_size=500', '--device=cpu',
          '--compile=False', '--dtype=float32', '--scale_inv=True', '--momentum=0.9', '--wd_mode=decoupled',
          '--weight_decay=0.1', '--lr=0.05', '--first_decay=1.0', '--ema_coef=0.5', '--eval_every=1']


@pytest.fixture(scope='module')
def resnet(cifar_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp('metrics') / 'resnet'
    before, after, log = two_checkpoints('train_resnet.py', [*RESNET, f'--data_dir={cifar_dir}'], out, 2, 3,
                                         'epochs')
    images = np.load(cifar_dir / 'cifar10' / 'train_images.npy')
    labels = np.load(cifar_dir / 'cifar10' / 'train_labels.npy')
    # normalised by the statistics of the whole training set; the subset: the first 10 images of each class
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().double()
    mean = x.mean((0, 2, 3), keepdim=True)
    inv_std = (x.square().mean((0, 2, 3), keepdim=True) - mean ** 2).rsqrt()
    # in float32 and contiguous, as the run does: this tiny net's gradient norm moves by 0.3% when the
    # convolutions see another memory layout (another algorithm, other roundings)
    normalize = lambda images: (images.float() - mean.float()) * inv_std.float()
    subset = np.sort(np.concatenate([np.flatnonzero(labels == c)[:10] for c in range(10)]))
    test_x = torch.from_numpy(np.load(cifar_dir / 'cifar10' / 'test_images.npy')).permute(0, 3, 1, 2).contiguous()
    return dict(before=before, after=after,
                eval=[r for r in log if r.get('eval') and r['epoch'] == 3][0],
                train=[r for r in log if not r.get('eval') and r['epoch'] == 3][0],
                x=normalize(x[subset]), y=torch.from_numpy(labels[subset]).long(), test_x=normalize(test_x),
                heldout_x=normalize(x[np.setdiff1d(np.arange(len(labels)), subset)]),
                heldout_y=torch.from_numpy(np.delete(labels, subset)).long(),
                test_y=torch.from_numpy(np.load(cifar_dir / 'cifar10' / 'test_labels.npy')).long())


def resnet_model(state):
    net = resnet18(10, width=4, scale_inv=True)
    net.load_state_dict(state)
    return net


def trainable(state):
    """The trained tensors of the scale-invariant net: not the frozen last layer, not the buffers."""
    return {k: v for k, v in state.items() if v.is_floating_point() and 'running' not in k
            and not k.startswith('linear')}


def test_resnet_angular_update_and_its_equilibrium(resnet):
    check_angles(resnet['eval'], trainable(resnet['before']['model']), trainable(resnet['after']['model']))
    # SGD with momentum m and decoupled decay: sqrt(2*lr*wd*(1-m)/(1+m)) (not the coupled sqrt(2*lr*wd/(1+m)))
    assert resnet['eval']['angular_update_eq'] == pytest.approx(math.sqrt(2 * 0.05 * 0.1 * 0.1 / 1.9), rel=1e-12)


def test_resnet_effective_lr_and_norms_from_the_checkpoint(resnet):
    state = resnet['after']['model']
    convs = [v for k, v in state.items() if v.dim() == 4]  # every conv feeds a BatchNorm: scale-invariant
    assert resnet['eval']['eff_lr'] == pytest.approx(0.05 / sq_norm(convs), rel=1e-6)
    norm = lambda ts: math.sqrt(sq_norm(ts))
    assert resnet['eval']['weight_norm'] == pytest.approx(norm(trainable(state).values()), rel=1e-6)
    # the EMA of the trainable weights only (the frozen last layer would count for about as much again)
    assert resnet['eval']['weight_norm_ema'] == pytest.approx(norm(trainable(resnet['after']['ema']).values()),
                                                              rel=1e-6)


def test_resnet_losses_errors_and_the_regularised_objective(resnet):
    for part, suffix in (('model', ''), ('ema', '_ema')):
        net = resnet_model(resnet['after'][part]).eval()
        with torch.no_grad():
            for split, x, y in (('train', resnet['x'], resnet['y']), ('test', resnet['test_x'], resnet['test_y'])):
                logits = net(x)
                assert resnet['eval'][f'{split}_loss{suffix}'] == pytest.approx(F.cross_entropy(logits, y).item(),
                                                                               rel=1e-5)
                assert resnet['eval'][f'{split}_err{suffix}'] == (logits.argmax(1) != y).double().mean().item()
    # decoupled SGD with momentum m settles where g + (1-m)*wd*w = 0: the objective f + (1-m)*wd/2*||w||^2
    sq = sq_norm(trainable(resnet['after']['model']).values())
    expected = resnet['eval']['train_loss'] + (1 - 0.9) * 0.1 / 2 * sq
    assert resnet['eval']['reg_objective'] == pytest.approx(expected, rel=1e-6)


def test_resnet_ema_batchnorm_statistics_are_those_of_its_inputs(resnet):
    net = resnet_model(resnet['after']['ema'])
    seen = {}
    bns = {n: m for n, m in net.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    for n, m in bns.items():
        m.register_forward_pre_hook(lambda m, inputs, n=n: seen.__setitem__(n, inputs[0].detach().double()))
    with torch.no_grad():
        net.train()(resnet['x'])  # one batch of the whole subset, as the re-estimation's pass
    for n in bns:
        var, mean = torch.var_mean(seen[n], dim=(0, 2, 3), unbiased=True)
        assert torch.allclose(resnet['after']['ema'][f'{n}.running_mean'].double(), mean, rtol=1e-4, atol=1e-5)
        assert torch.allclose(resnet['after']['ema'][f'{n}.running_var'].double(), var, rtol=1e-4, atol=1e-5)


def test_resnet_loss_and_gradient_norm_of_the_epochs_step(resnet):
    net = resnet_model(resnet['before']['model']).train()
    loss = F.cross_entropy(net(resnet['x']), resnet['y'])  # the order of the batch changes nothing
    loss.backward()
    grad_norm = math.sqrt(sq_norm(p.grad for p in net.parameters() if p.requires_grad))
    assert resnet['train']['loss'] == pytest.approx(loss.item(), rel=1e-5)
    assert resnet['train']['grad_norm'] == pytest.approx(grad_norm, rel=1e-5)


def test_resnet_independent_weight_decay_in_the_equilibrium_and_the_objective(resnet, cifar_dir, tmp_path):
    # 'independent' shrinks by (lr/lr_max)*wd a step: decoupled decay with wd/lr_max, at any LR
    args = [*RESNET, f'--data_dir={cifar_dir}', '--momentum=0', '--wd_mode=independent', '--weight_decay=0.01',
            '--lr=0.1', '--epochs=1', f'--out_dir={tmp_path}', '--ema_coef=0', '--heldout=True']
    ok(run_script('train_resnet.py', *args))
    (ev,) = [r for r in run_io.read_log(tmp_path / 'log.jsonl') if r.get('eval')]
    sq = sq_norm(trainable(run_io.load_checkpoint(tmp_path / 'ckpt.pt')['model']).values())
    assert ev['angular_update_eq'] == pytest.approx(math.sqrt(2 * 0.1 * 0.01 / 0.1), rel=1e-12)
    assert ev['reg_objective'] == pytest.approx(ev['train_loss'] + 0.01 / (2 * 0.1) * sq, rel=1e-6)
    # heldout: the training images outside the subset, which the net never trained on
    net = resnet_model(run_io.load_checkpoint(tmp_path / 'ckpt.pt')['model']).eval()
    with torch.no_grad():
        logits = net(resnet['heldout_x'])
    assert ev['heldout_loss'] == pytest.approx(F.cross_entropy(logits, resnet['heldout_y']).item(), rel=1e-5)
    assert ev['heldout_err'] == (logits.argmax(1) != resnet['heldout_y']).double().mean().item()
