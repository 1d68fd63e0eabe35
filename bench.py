"""
Performance harness: each part of the code timed side by side with PyTorch's own, as ratios.

    python bench.py optim                  # optimizer step on GPT-2-small shapes (124M parameters)
    python bench.py gpt                    # train_gpt.py's iteration vs the bare step; tokens/s, MFU;
                                           # the eval's share of the paper's run (--eval_batch_size=8: before)
    python bench.py resnet                 # train_resnet.py's epoch vs the bare steps; eval share
    python bench.py data                   # prepare_data.py: tokens/s, CIFAR conversion time
    python bench.py all --device=cuda --json=bench.json

Medians over `steps` timed steps after `warmup` untimed ones. The variants are stepped in
turn, round after round, so a machine that slows down part way slows all of them alike.
On a shared CPU run it as `OMP_NUM_THREADS=1 python bench.py ...`: two threads next to a busy
core can run many times slower, and every figure becomes noise.
"""
import json as jsonlib
import os
import statistics
import sys
import time

import torch

import optim
import run_io
from configurator import configure, fail

# -----------------------------------------------------------------------------
part = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith('-') else 'optim'
device = 'cpu'
steps = 10  # timed steps per variant
warmup = 3  # untimed steps first (allocation, lazy state)
json = ''  # also write the figures to this file
compile = 'auto'  # auto: the optimizer step compiled everywhere, the models on CUDA only; True; False
shared_data = ''  # the real-data fixtures for `data` ('' = ../shared/data beside the checkout)
eval_batch_size = 64  # gpt: train_gpt.py's eval batch (8: the one before it had its own)
config, _ = configure(globals(), __doc__, sys.argv[2:] if sys.argv[1:2] == [part] else None)
PARTS = ('optim', 'gpt', 'resnet', 'data', 'all')


if part not in PARTS:
    fail(f"unknown part {part!r}: expected one of {', '.join(PARTS)}")
device = run_io.resolve_device(device, 'float32', 'false')[0]  # exit 2 if it is not on this machine
if json:  # found out now, not after minutes of timing
    folder = os.path.dirname(os.path.abspath(json))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
        fail(f"--json={json}: {folder} is not a writable folder")
compile_optim = compile != 'false'
compile_models = compile == 'true' or (compile == 'auto' and device.startswith('cuda'))
# -----------------------------------------------------------------------------


def sync():
    if device.startswith('cuda'):
        torch.cuda.synchronize(device)  # the device measured, not the current one


def time_in_turns(fns, warmup=warmup, steps=steps):
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
    if compile_optim:  # the same update through torch.compile (opt.compile()); timed after its compilation
        for name, opt in (('AdamW', optim.AdamW(groups(), **adamw)), ('SGD', optim.SGD(groups(), wd_mode='l2', **sgd))):
            t0 = time.perf_counter()
            opt.compile().step()
            opt.step()  # SGD's first step (momentum buffers set to g) is a graph of its own
            print(f"  {name} ours compiled: first two steps (compilation) {time.perf_counter() - t0:.0f} s")
            variants[name]['ours compiled'] = opt
    for name, kind in (('AdamW', torch.optim.AdamW), ('SGD', torch.optim.SGD)):
        try:
            kw = adamw if name == 'AdamW' else sgd
            variants[name]['torch fused'] = kind(groups(), fused=True, **kw)
        except RuntimeError as e:  # fused kernels are not built for every device
            print(f"  ({name} fused unavailable on {device}: {e})")
    results = {}
    for name, opts in variants.items():
        medians = time_in_turns({k: opt.step for k, opt in opts.items()})
        fastest_torch = min(t for k, t in medians.items() if k.startswith('torch'))
        print(f"\n{name:<6}{'variant':<16}{'ms/step':>10}{'/ fastest torch':>17}")
        for k, t in medians.items():
            print(f"{'':<6}{k:<16}{1e3 * t:>10.1f}{t / fastest_torch:>17.2f}")
            results[f"{name.lower()}_{k.replace(' ', '_')}_ms"] = 1e3 * t
        for ours in ('ours', 'ours compiled'):
            for torch_k in ('torch foreach', 'torch fused'):
                if ours in medians and torch_k in medians:
                    key = f"{name.lower()}_{ours.replace(' ', '_')}_over_{torch_k.replace('torch ', '')}"
                    results[key] = medians[ours] / medians[torch_k]
        del opts
    return results


# =============================================================================
# gpt: train_gpt.py's iteration against the bare step
# =============================================================================

def bench_gpt():
    """train_gpt.py itself (a subprocess; its ms_per_iter over log intervals of 10 iterations)
    against the bare forward + backward + AdamW step of the same model and batch, in turns.
    CPU: the CPU demo's model; GPU: GPT-2 small, context 1024, bfloat16, compiled."""
    import subprocess
    import tempfile
    from contextlib import nullcontext
    from pathlib import Path

    import numpy as np

    from model import GPT, GPTConfig, bf16_peak_flops
    cuda = device.startswith('cuda')
    if cuda:  # GPT-2 small as train_gpt.py trains it: no biases, the vocabulary padded to 50,304
        shape = dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257, vocab_multiple=64)
        batch, dtype, rounds = 16, 'bfloat16', 1  # each round compiles the model again (about a minute)
    else:  # a small CPU model (4 x 128, batch 32: the CPU demo before it became the claim-4 miniature)
        shape = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=65, vocab_multiple=1)
        batch, dtype, rounds = 32, 'float32', 2
    chunk = 10  # iterations per timed sample: train_gpt.py's log interval
    iters = (warmup + steps) * chunk
    T, tokens = shape['block_size'], batch * shape['block_size']
    print(f"train_gpt.py iteration vs the bare step: GPT {shape}, batch {batch}, {dtype}, {device}, "
          f"compile={compile_models}")

    autocast = torch.autocast('cuda', dtype=torch.bfloat16) if cuda else nullcontext()
    bare_step = {}

    def bare_chunks(model_args):
        """The bare step timed on exactly the model the script trained (its checkpoint's model_args)."""
        if not bare_step:
            torch.manual_seed(0)
            model = GPT(GPTConfig(**model_args)).to(device)
            opt = optim.AdamW(optim.param_groups(model, 0.1)[0], lr=6e-4, betas=(0.9, 0.95))
            if compile_models:
                opt.compile()  # as train_gpt.py does when it compiles
            x, y = (torch.randint(shape['vocab_size'], (batch, T), device=device) for _ in range(2))
            bare_step.update(model=model, fwd=torch.compile(model) if compile_models else model, opt=opt, x=x, y=y)
        fwd, opt, x, y = (bare_step[k] for k in ('fwd', 'opt', 'x', 'y'))
        out = []
        for i in range(warmup + steps):
            sync()
            t0 = time.perf_counter()
            for _ in range(chunk):
                with autocast:
                    loss = fwd(x, y)[1]
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            sync()
            if i >= warmup:
                out.append((time.perf_counter() - t0) / chunk)
        return out

    script, bare, evals = [], [], []
    with tempfile.TemporaryDirectory() as tmp:  # random tokens: the data do not change the timing
        data = Path(tmp) / 'data'
        data.mkdir()
        rng = np.random.default_rng(0)
        for split, n in (('train', 2_000_000), ('val', 200_000)):
            rng.integers(shape['vocab_size'], size=n, dtype=np.uint16).tofile(data / f'{split}.bin')
        meta = dict(vocab_size=shape['vocab_size'], tokenizer='random')
        (data / 'meta.json').write_text(jsonlib.dumps(meta))
        args = [f'--{k}={v}' for k, v in shape.items() if k != 'vocab_size'] + [
            f'--data_dir={data}', f'--batch_size={batch}', '--gradient_accumulation_steps=1', f'--dtype={dtype}',
            f'--device={device}', f'--compile={compile_models}',
            f'--max_iters={iters}', f'--log_interval={chunk}', f'--eval_interval={iters // 2}',
            f'--eval_iters={1000 // batch}', f'--eval_batch_size={eval_batch_size}',  # the paper's 1,000
            '--weight_decay=0.1', '--warmup_iters=10']
        root = Path(__file__).resolve().parent
        for r in range(rounds):
            run = Path(tmp) / f'run{r}'
            out = subprocess.run([sys.executable, str(root / 'train_gpt.py'), *args, f'--out_dir={run}'],
                                 cwd=root, capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"train_gpt.py failed:\n{out.stderr[-2000:]}")
            lines = [r for r in run_io.read_log(run / 'log.jsonl') if not r.get('eval')]
            script += [r['ms_per_iter'] / 1e3 for r in lines[warmup:]]
            evals += [r['eval_s'] for r in run_io.read_log(run / 'log.jsonl') if r.get('eval')][1:]
            bare += bare_chunks(run_io.load_checkpoint(run / 'ckpt.pt')['model_args'])
    results = {'gpt_script_ms': 1e3 * statistics.median(script), 'gpt_bare_ms': 1e3 * statistics.median(bare)}
    results['gpt_script_over_bare'] = results['gpt_script_ms'] / results['gpt_bare_ms']
    print(f"\n{'variant':<22}{'ms/iter':>10}{'tokens/s':>12}")
    for name, key in (('train_gpt.py loop', 'gpt_script_ms'), ('bare fwd+bwd+step', 'gpt_bare_ms')):
        print(f"{name:<22}{results[key]:>10.1f}{tokens / results[key] * 1e3:>12,.0f}")
    print(f"loop / bare step: {results['gpt_script_over_bare']:.3f} (target <= 1.05)")
    name = torch.cuda.get_device_name(device) if cuda else 'cpu'
    peak = bf16_peak_flops(name) if cuda else None
    if peak:  # dense bf16 tensor-core peak
        for key in ('gpt_script_ms', 'gpt_bare_ms'):
            mfu = bare_step['model'].flops_per_token(T) * tokens / (results[key] / 1e3) / peak
            results[key.replace('_ms', '_mfu')] = mfu
        print(f"MFU ({name}, dense bf16 peak {peak / 1e12:.0f} TFLOP/s): loop "
              f"{results['gpt_script_mfu']:.1%}, bare {results['gpt_bare_mfu']:.1%} (target >= 50% on an H200)")
    else:
        print(f"MFU: no peak known for {name} (model.PEAK_FLOPS), so none is printed")
    results['gpt_tokens_per_s'] = tokens / results['gpt_script_ms'] * 1e3
    # The paper's run evaluates 2 x 1,000 sequences (model and EMA) every 200 iterations of 256 sequences:
    # its eval share, from these runs' eval time and time per sequence trained
    results['gpt_eval_s'] = statistics.median(evals)
    train_s = 200 * 256 / batch * results['gpt_script_ms'] / 1e3
    results['gpt_eval_share_paper'] = results['gpt_eval_s'] / (results['gpt_eval_s'] + train_s)
    print(f"eval of 2 x 1,000 sequences x 2 nets in batches of {eval_batch_size}: {results['gpt_eval_s']:.2f} s, "
          f"{results['gpt_eval_share_paper']:.1%} of the paper's run (one per 200 iterations of 256 sequences)")
    return results

# =============================================================================
# end of gpt
# =============================================================================


# =============================================================================
# resnet: train_resnet.py's epoch against the bare steps
# =============================================================================

def bench_resnet():
    """train_resnet.py's epoch (data, augmentation, EMA, gradient norm, logging) against the bare
    forward + backward + step of the same net on pre-made batches, alternated over rounds; and the
    script's evaluation (train + test sets, model and EMA, BN re-estimation) against its epoch.
    The test set is a fifth of the training set, as CIFAR's 10,000 to 50,000."""
    import math
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    import numpy as np
    import torch.nn.functional as F

    from model import resnet18
    cuda = device.startswith('cuda')
    width, batch_size, epochs, rounds = (64, 128, 3, 2) if cuda else (16, 128, 3, 3)
    n_train = 50_000 if cuda else 10 * batch_size  # random images: only the timing matters
    # CPU: float32 (compiled only with --compile=True); GPU: float32 eager, then bf16 + channels_last + compile
    variants = [('float32', compile_models and not cuda)] + ([('bfloat16', compile_models)] if cuda else [])
    tmp = Path(tempfile.mkdtemp(prefix='bench_resnet_'))
    rng = np.random.default_rng(0)
    (tmp / 'cifar10').mkdir()
    for split, n in (('train', n_train), ('test', n_train // 5)):
        np.save(tmp / 'cifar10' / f'{split}_images.npy', rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8))
        np.save(tmp / 'cifar10' / f'{split}_labels.npy', np.arange(n, dtype=np.int64) % 10)
    iters = n_train // batch_size
    print(f"resnet18 width {width}, batch {batch_size}, {n_train:,} random CIFAR-sized images "
          f"({iters} steps per epoch), {device}; {rounds} rounds of {epochs} epochs, the first untimed")
    results = {}
    for dtype, compiled in variants:
        name = dtype + ('+channels_last' if cuda else '') + ('+compile' if compiled else '')
        script_ms, bare_ms, eval_s, bn_s = [], [], [], []
        for r in range(rounds):
            run = tmp / f'run_{dtype}_{r}'
            out = subprocess.run([sys.executable, 'train_resnet.py', f'--data_dir={tmp}', f'--out_dir={run}',
                                  f'--width={width}', f'--batch_size={batch_size}', f'--epochs={epochs}',
                                  '--eval_every=1', '--first_decay=1.0', f'--device={device}',
                                  f'--dtype={dtype}', f'--compile={compiled}'],
                                 capture_output=True, text=True, cwd=Path(__file__).resolve().parent)
            if out.returncode != 0:
                raise SystemExit(f"train_resnet.py failed:\n{out.stderr}")
            log = run_io.read_log(run / 'log.jsonl')
            script_ms += [rec['ms_per_iter'] for rec in log if not rec.get('eval')][1:]  # the first epoch warms up
            eval_s += [rec['eval_s'] for rec in log if rec.get('eval')][1:]
            bn_s += [rec['bn_s'] for rec in log if rec.get('eval')][1:]
            # the bare step: same net, optimizer, batch size and cuDNN settings, batches already on the device
            torch.backends.cudnn.benchmark = True  # as train_resnet.py
            torch.manual_seed(0)
            net = resnet18(10, width).to(device, memory_format=torch.channels_last if cuda else torch.contiguous_format)
            step_net = torch.compile(net, dynamic=False) if compiled else net
            opt = optim.SGD(optim.param_groups(net, 0.0125, 'all')[0], lr=0.08)
            if compiled:
                opt.compile()
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
        epoch_s, evals, bns = script * iters / 1e3, statistics.median(eval_s), statistics.median(bn_s)
        print(f"\n{name}")
        print(f"  {'variant':<28}{'ms/step':>10}{'img/s':>10}{'epoch s':>10}")
        for label, ms in (('train_resnet.py loop', script), ('bare fwd+bwd+step', bare)):
            print(f"  {label:<28}{ms:>10.1f}{batch_size / ms * 1e3:>10.0f}{ms * iters / 1e3:>10.2f}")
        print(f"  loop / bare = {script / bare:.3f} (target <= 1.05)")
        print(f"  one evaluation {evals:.2f} s (BN re-estimation {bns:.2f} s of it) = {evals / epoch_s:.2f} epochs; "
              f"share of the run: {evals / (epoch_s + evals):.1%} evaluating every epoch, "
              f"{evals / (10 * epoch_s + evals):.1%} at the default eval_every=10")
        key = name.replace('+', '_')
        results.update({f'{key}_loop_ms': script, f'{key}_bare_ms': bare, f'{key}_loop_over_bare': script / bare,
                        f'{key}_eval_s': evals, f'{key}_bn_s': bns, f'{key}_eval_over_epoch': evals / epoch_s,
                        f'{key}_eval_share_every10': evals / (10 * epoch_s + evals)})
        if cuda and math.isfinite(script):
            results[f'{key}_epoch_s_50k'] = script * (50_000 // batch_size) / 1e3
            print(f"  epoch of 50,000 images: {results[f'{key}_epoch_s_50k']:.2f} s (target <= 3 s)")
    shutil.rmtree(tmp)
    return results

# =============================================================================
# end of resnet
# =============================================================================


# =============================================================================
# data: prepare_data.py on the real fixtures
# =============================================================================

def bench_data():
    """prepare_data.py on the shared real data: tiny Shakespeare in GPT-2 BPE (tokens/s, against
    tiktoken's encoder alone on the same text) and the CIFAR-10 conversion of the 6,000-image
    tarball (against reading it alone), each timed in turns."""
    import contextlib
    import io
    import shutil
    import tempfile
    from pathlib import Path
    root = Path(shared_data) if shared_data else Path(__file__).resolve().parent.parent / 'shared' / 'data'
    text_path = root / 'tinyshakespeare' / 'input.txt'
    cifar_path = root / 'cifar10_mini' / 'cifar-10-python.tar.gz'
    if not (text_path.is_file() and cifar_path.is_file()):
        raise SystemExit(f"error: {root} lacks tinyshakespeare/input.txt or cifar10_mini/ (set --shared_data)")
    if (root / 'tiktoken_cache').is_dir():  # the GPT-2 BPE files, no network needed
        os.environ.setdefault('TIKTOKEN_CACHE_DIR', str(root / 'tiktoken_cache'))
    import prepare_data
    enc = prepare_data.gpt2_encoding()
    text = text_path.read_text(encoding='utf-8')
    n_tokens = len(enc.encode_ordinary(text))
    tmp = Path(tempfile.mkdtemp(prefix='bench_data_'))

    def run_quietly(fn, *args):
        with contextlib.redirect_stdout(io.StringIO()):
            fn(*args)
    (tmp / 'shakespeare').mkdir()
    (tmp / 'cifar10').mkdir()
    n_images = 6_000
    print(f"prepare_data.py on {root}: tiny Shakespeare ({len(text):,} characters, {n_tokens:,} GPT-2 tokens), "
          f"CIFAR-10 subset ({n_images:,} images)")
    medians = time_in_turns({
        'prepare_data.py shakespeare': lambda: run_quietly(prepare_data.prepare_shakespeare, text_path,
                                                           tmp / 'shakespeare'),
        'tiktoken encode_ordinary': lambda: enc.encode_ordinary(text),
        'prepare_data.py cifar10': lambda: run_quietly(prepare_data.prepare_cifar, 'cifar10', cifar_path,
                                                       tmp / 'cifar10'),
        'read the tarball only': lambda: prepare_data.read_cifar_tarball(cifar_path, prepare_data.CIFAR['cifar10']),
    }, warmup=1, steps=min(steps, 5))
    shutil.rmtree(tmp)
    print(f"\n{'variant':<30}{'s':>8}{'throughput':>20}")
    for k, t in medians.items():
        rate = f"{n_tokens / t / 1e6:.2f} M tokens/s" if 'cifar' not in k and 'tarball' not in k \
            else f"{n_images / t:,.0f} images/s"
        print(f"{k:<30}{t:>8.2f}{rate:>20}")
    script, tok = medians['prepare_data.py shakespeare'], medians['tiktoken encode_ordinary']
    cifar, read = medians['prepare_data.py cifar10'], medians['read the tarball only']
    print(f"shakespeare: script / encoder alone = {script / tok:.2f}; cifar10: script / reading alone = "
          f"{cifar / read:.2f}; the full 60,000-image CIFAR-10 would take about {cifar * 10:.0f} s")
    return dict(shakespeare_s=script, shakespeare_tokens_per_s=n_tokens / script, tiktoken_s=tok,
                shakespeare_over_tiktoken=script / tok, cifar_mini_s=cifar, cifar_images_per_s=n_images / cifar,
                cifar_read_s=read, cifar_over_read=cifar / read)

# =============================================================================
# end of data
# =============================================================================


BENCHES = {'optim': bench_optim, 'gpt': bench_gpt, 'resnet': bench_resnet, 'data': bench_data}
results = {}
try:
    for name in (BENCHES if part == 'all' else [part]):
        print(f"\n==== {name} ====")
        results[name] = BENCHES[name]()
except KeyboardInterrupt:
    print("\ninterrupted: nothing written", file=sys.stderr)
    sys.exit(130)
if json:
    with open(json, 'w') as f:
        jsonlib.dump(dict(part=part, device=device, steps=steps, warmup=warmup, compile=str(compile),
                          omp_num_threads=os.environ.get('OMP_NUM_THREADS'), torch=torch.__version__,
                          results=results), f, indent=1)
    print(f"\nwrote {json}")
