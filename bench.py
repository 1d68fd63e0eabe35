"""
Performance harness: each part of the code timed side by side with PyTorch's own, as ratios.

    python bench.py optim                  # optimizer step on GPT-2-small shapes (124M parameters)
    python bench.py gpt                    # train_gpt.py's iteration vs the bare step
    python bench.py resnet                 # train_resnet.py's epoch vs the bare steps
    python bench.py optim --steps=20 --device=cuda --json=bench.json

Medians over `steps` timed steps after `warmup` untimed ones. The variants are stepped in
turn, round after round, so a machine that slows down part way slows all of them alike.
"""
import json as jsonlib
import statistics
import sys
import time

import torch

import optim
from configurator import configure

# -----------------------------------------------------------------------------
part = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith('-') else 'optim'
device = 'cpu'
steps = 10  # timed steps per variant
warmup = 3  # untimed steps first (allocation, lazy state)
json = ''  # also write the figures to this file
config, _ = configure(globals(), __doc__, sys.argv[2:] if sys.argv[1:2] == [part] else None)
PARTS = ('optim', 'gpt', 'resnet')
if part not in PARTS:
    print(f"error: unknown part {part!r}: expected one of {', '.join(PARTS)}", file=sys.stderr)
    sys.exit(2)
# -----------------------------------------------------------------------------


def sync():
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def time_in_turns(fns):
    """{name: median seconds} of each fn, called in turn warmup + steps times."""
    times = {name: [] for name in fns}
    for i in range(warmup + steps):
        for name, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def gpt2_small_shapes(vocab_size=50257, block_size=1024, n_layer=12, n_embd=768):
    """Parameter shapes of GPT-2 small with biases, LM head tied to wte: 124,439,808 numbers."""
    shapes = [(vocab_size, n_embd), (block_size, n_embd)]
    for _ in range(n_layer):
        shapes += [(n_embd,), (n_embd,), (3 * n_embd, n_embd), (3 * n_embd,), (n_embd, n_embd),
                   (n_embd,), (n_embd,), (n_embd,), (4 * n_embd, n_embd), (4 * n_embd,),
                   (n_embd, 4 * n_embd), (n_embd,)]
    return shapes + [(n_embd,), (n_embd,)]


def bench_optim():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(0.02 * torch.randn(s, device=device)) for s in gpt2_small_shapes()]
    for p in params:
        p.grad = 0.01 * torch.randn_like(p)
    n = sum(p.numel() for p in params)
    print(f"optimizer step on GPT-2-small shapes: {len(params)} tensors, {n:,} parameters, {device}")

    def groups():  # decayed matrices and non-decayed vectors, as the training scripts build them
        return [dict(params=[p for p in params if p.dim() >= 2], weight_decay=0.1),
                dict(params=[p for p in params if p.dim() < 2], weight_decay=0.0)]
    adamw = dict(lr=6e-4, betas=(0.9, 0.95), eps=1e-8)
    sgd = dict(lr=0.1, momentum=0.9)
    variants = {
        'AdamW': {'ours': optim.AdamW(groups(), **adamw),
                  'torch foreach': torch.optim.AdamW(groups(), foreach=True, **adamw)},
        'SGD': {'ours': optim.SGD(groups(), wd_mode='l2', **sgd),
                'torch foreach': torch.optim.SGD(groups(), foreach=True, **sgd)},
    }
    for name, kind in (('AdamW', torch.optim.AdamW), ('SGD', torch.optim.SGD)):
        try:
            kw = adamw if name == 'AdamW' else sgd
            variants[name]['torch fused'] = kind(groups(), fused=True, **kw)
        except RuntimeError as e:  # fused kernels are not built for every device
            print(f"  ({name} fused unavailable on {device}: {e})")
    results = {}
    for name, opts in variants.items():
        medians = time_in_turns({k: opt.step for k, opt in opts.items()})
        ours = medians['ours']
        print(f"\n{name:<6}{'variant':<16}{'ms/step':>10}{'ours / this':>14}")
        for k, t in medians.items():
            print(f"{'':<6}{k:<16}{1e3 * t:>10.1f}{ours / t:>14.2f}")
            results[f"{name.lower()}_{k.replace(' ', '_')}_ms"] = 1e3 * t
            if k != 'ours':
                results[f"{name.lower()}_ours_over_{k.replace('torch ', '')}"] = ours / t
        del opts
    return results


# =============================================================================
# gpt: train_gpt.py's iteration against the bare step
# =============================================================================

def bench_gpt():
    raise SystemExit("bench.py gpt is not implemented yet")

# =============================================================================
# end of gpt
# =============================================================================


# =============================================================================
# resnet: train_resnet.py's epoch against the bare steps
# =============================================================================

def bench_resnet():
    """train_resnet.py's epoch (data, augmentation, EMA, gradient norm, logging) against the bare
    forward + backward + step of the same net on pre-made batches, alternated over rounds."""
    import math
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    import numpy as np
    import torch.nn.functional as F

    import run_io
    from model import resnet18
    cuda = device.startswith('cuda')
    width, batch_size, epochs, rounds = (64, 128, 3, 2) if cuda else (16, 128, 3, 3)
    n_train = 50_000 if cuda else 10 * batch_size  # random images: only the timing matters
    variants = [('float32', False)] + ([('bfloat16', True)] if cuda else [])  # GPU: bf16 + compile
    tmp = Path(tempfile.mkdtemp(prefix='bench_resnet_'))
    rng = np.random.default_rng(0)
    (tmp / 'cifar10').mkdir()
    for split, n in (('train', n_train), ('test', 500)):
        np.save(tmp / 'cifar10' / f'{split}_images.npy', rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8))
        np.save(tmp / 'cifar10' / f'{split}_labels.npy', np.arange(n, dtype=np.int64) % 10)
    iters = n_train // batch_size
    print(f"resnet18 width {width}, batch {batch_size}, {n_train:,} random CIFAR-sized images "
          f"({iters} steps per epoch), {device}; {rounds} rounds of {epochs} epochs, the first untimed")
    results = {}
    for dtype, compiled in variants:
        name = 'float32' if not compiled else 'bf16+channels_last+compile'
        script_ms, bare_ms = [], []
        for r in range(rounds):
            run = tmp / f'run_{dtype}_{r}'
            out = subprocess.run([sys.executable, 'train_resnet.py', f'--data_dir={tmp}', f'--out_dir={run}',
                                  f'--width={width}', f'--batch_size={batch_size}', f'--epochs={epochs}',
                                  '--eval_every=0', '--first_decay=1.0', f'--device={device}',
                                  f'--dtype={dtype}', f'--compile={compiled}'],
                                 capture_output=True, text=True, cwd=Path(__file__).resolve().parent)
            if out.returncode != 0:
                raise SystemExit(f"train_resnet.py failed:\n{out.stderr}")
            script_ms += [rec['ms_per_iter'] for rec in run_io.read_log(run / 'log.jsonl')
                          if not rec.get('eval')][1:]  # the first epoch warms up
            # the bare step: same net, optimizer and batch size, batches already normalised on the device
            torch.manual_seed(0)
            net = resnet18(10, width).to(device, memory_format=torch.channels_last if cuda else torch.contiguous_format)
            step_net = torch.compile(net) if compiled else net
            opt = optim.SGD(optim.param_groups(net, 0.0125, 'all')[0], lr=0.08)
            xs = torch.randn(iters, batch_size, 3, 32, 32, device=device)
            ys = torch.randint(0, 10, (iters, batch_size), device=device)
            autocast = torch.autocast(device.split(':')[0], dtype=torch.bfloat16, enabled=dtype == 'bfloat16')
            for epoch in range(epochs):
                sync()
                t0 = time.perf_counter()
                for i in range(iters):
                    x = xs[i].contiguous(memory_format=torch.channels_last) if cuda else xs[i]
                    with autocast:
                        loss = F.cross_entropy(step_net(x), ys[i])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                loss.item()
                sync()
                if epoch > 0:
                    bare_ms.append(1e3 * (time.perf_counter() - t0) / iters)
            del net, step_net, opt, xs
        script, bare = statistics.median(script_ms), statistics.median(bare_ms)
        print(f"\n{name}")
        print(f"  {'variant':<28}{'ms/step':>10}{'img/s':>10}{'epoch s':>10}")
        for label, ms in (('train_resnet.py loop', script), ('bare fwd+bwd+step', bare)):
            print(f"  {label:<28}{ms:>10.1f}{batch_size / ms * 1e3:>10.0f}{ms * iters / 1e3:>10.2f}")
        print(f"  loop / bare = {script / bare:.3f} (target <= 1.10)")
        key = 'fp32' if not compiled else 'bf16_compile'
        results.update({f'{key}_loop_ms': script, f'{key}_bare_ms': bare, f'{key}_loop_over_bare': script / bare})
        if cuda and math.isfinite(script):
            results[f'{key}_epoch_s_50k'] = script * (50_000 // batch_size) / 1e3
    shutil.rmtree(tmp)
    return results

# =============================================================================
# end of resnet
# =============================================================================


results = {'optim': bench_optim, 'gpt': bench_gpt, 'resnet': bench_resnet}[part]()
if json:
    with open(json, 'w') as f:
        jsonlib.dump(dict(part=part, device=device, steps=steps, **results), f, indent=1)
    print(f"\nwrote {json}")
