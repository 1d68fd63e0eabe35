import math

import pytest
import torch

import model

# =============================================================================
# GPT
# =============================================================================


def tiny_gpt(**kw):
    torch.manual_seed(0)
    cfg = dict(vocab_size=100, block_size=16, n_layer=2, n_head=2, n_embd=32, bias=False)
    return model.GPT(model.GPTConfig(**{**cfg, **kw})).eval()


@pytest.mark.parametrize('bias', [False, True])
def test_changing_a_future_token_leaves_earlier_logits_unchanged(bias):
    net = tiny_gpt(bias=bias)
    idx = torch.randint(100, (2, 16))
    changed = idx.clone()
    changed[:, 9] = (idx[:, 9] + 1) % 100
    with torch.no_grad():
        a, b = net(idx)[0], net(changed)[0]
    torch.testing.assert_close(a[:, :9], b[:, :9], rtol=0, atol=1e-6)
    assert (a[:, 9:] - b[:, 9:]).abs().max() > 1e-3  # and the change is seen from there on


def test_gpt2_small_has_124_439_808_parameters():
    with torch.device('meta'):  # shapes only, no 500 MB allocation
        with_bias = model.GPT(model.GPTConfig(block_size=1024, vocab_size=50257, bias=True))
        without = model.GPT(model.GPTConfig(block_size=1024, vocab_size=50257, bias=False))
    assert with_bias.num_params() == 124_439_808
    # no biases: 12 layers x (2304 + 768 + 3072 + 768 + 2 x 768 LayerNorm) + 768 for ln_f fewer
    assert without.num_params() == 124_439_808 - 12 * 8448 - 768
    assert with_bias.lm_head.weight is with_bias.transformer.wte.weight


def test_initial_loss_is_close_to_log_vocab():
    for vocab in (65, 50257):
        net = tiny_gpt(vocab_size=vocab)
        g = torch.Generator().manual_seed(1)
        idx, targets = torch.randint(vocab, (8, 16), generator=g), torch.randint(vocab, (8, 16), generator=g)
        with torch.no_grad():
            loss = net(idx, targets)[1].item()
        assert abs(loss - math.log(vocab)) < 0.05


def test_gpt2_initialisation_scales_the_residual_projections():
    net = tiny_gpt(n_layer=8, n_embd=128)
    assert net.transformer.h[0].mlp.c_fc.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert net.transformer.h[0].mlp.c_proj.weight.std().item() == pytest.approx(0.02 / 4, rel=0.05)
    assert net.transformer.h[0].attn.c_proj.weight.std().item() == pytest.approx(0.02 / 4, rel=0.05)


def test_generate_appends_tokens_beyond_the_context_length():
    net = tiny_gpt()
    torch.manual_seed(0)
    out = net.generate(torch.zeros(3, 5, dtype=torch.long), max_new_tokens=20, top_k=5)
    assert out.shape == (3, 25) and out.max() < 100 and torch.equal(out[:, :5], torch.zeros(3, 5).long())


def test_sequences_longer_than_the_context_are_refused():
    with pytest.raises(ValueError, match='block_size'):
        tiny_gpt()(torch.zeros(1, 17, dtype=torch.long))



# =============================================================================
# end of GPT
# =============================================================================


# =============================================================================
# vision nets
# =============================================================================

@pytest.fixture
def one_thread():
    """Tiny nets gain nothing from threads, and on a busy 2-core machine OpenMP threads that wait
    for each other make them a hundred times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def conv_count(c_in, c_out, k, bias=False):
    return c_in * c_out * k * k + (c_out if bias else 0)


def preact_resnet_count(blocks, num_classes, width=64):
    """Parameters of a PreAct ResNet with affine BatchNorm, counted from the architecture."""
    n = 2 * 3 + conv_count(3, width, 3)  # input BN, stem
    c_in = width
    for i, b in enumerate(blocks):
        c_out = width * 2 ** i
        for j in range(b):
            n += 2 * c_in + conv_count(c_in, c_out, 3) + 2 * c_out + conv_count(c_out, c_out, 3)
            if c_in != c_out:
                n += conv_count(c_in, c_out, 1)
            c_in = c_out
    return n + 2 * c_in + c_in * num_classes + num_classes  # final BN, linear


def test_resnet18_has_the_standard_preact_count_plus_input_and_final_batchnorm(one_thread):
    net = model.resnet18(num_classes=10)
    # kuangliu's PreActResNet18 for CIFAR-10: 11,171,146; the authors add BN on the input (6) and before the pool (1,024)
    assert preact_resnet_count([2, 2, 2, 2], 10) == 11_171_146 + 6 + 1024
    assert sum(p.numel() for p in net.parameters()) == preact_resnet_count([2, 2, 2, 2], 10)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_resnet34preact_and_vgg16_counts_and_cifar100_heads(one_thread):
    net = model.resnet34preact(num_classes=100)
    assert sum(p.numel() for p in net.parameters()) == preact_resnet_count([3, 4, 6, 3], 100)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    vgg = model.vgg16(num_classes=100, width=64, batch_norm=True)
    chans = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    convs = sum(conv_count(a, b, 3, bias=True) + 2 * b for a, b in zip([3] + chans[:-1], chans))
    assert sum(p.numel() for p in vgg.parameters()) == convs + 2 * (512 * 512 + 512) + 512 * 100 + 100
    assert vgg(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    no_bn = model.vgg16(width=8, batch_norm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in no_bn.modules())


def test_width_scales_the_net_and_scale_inv_freezes_the_head_and_drops_affine_parameters(one_thread):
    net = model.resnet18(width=8, scale_inv=True)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert not net.linear.weight.requires_grad and not net.linear.bias.requires_grad
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.affine for m in bns)
    assert all(p.dim() == 4 for p in net.parameters() if p.requires_grad)  # only conv weights train
    with pytest.raises(ValueError):
        model.vgg16(scale_inv=True)
    with pytest.raises(ValueError):
        model.resnet18(batch_norm=False, scale_inv=True)


def scaled_copy(net, c):
    import copy
    other = copy.deepcopy(net)
    with torch.no_grad():
        for p in other.parameters():
            if p.requires_grad:
                p.mul_(c)
    return other


@pytest.mark.parametrize('scale_inv', [True, False])
def test_scale_invariance_in_train_and_eval_mode(scale_inv, one_thread):
    torch.manual_seed(0)
    net = model.resnet18(width=4, scale_inv=scale_inv)
    with torch.no_grad():  # non-trivial affine parameters, so the affine net really depends on them
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d) and m.affine:
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    big = scaled_copy(net, 7.3)
    x = torch.randn(8, 3, 32, 32)
    same_train = torch.allclose(net.train()(x), big.train()(x), atol=1e-4, rtol=1e-4)
    # eval mode: each net with BatchNorm statistics estimated on the same data, as in training
    batches = [torch.randn(16, 3, 32, 32) for _ in range(2)]
    model.reestimate_bn(net, batches)
    model.reestimate_bn(big, batches)
    same_eval = torch.allclose(net.eval()(x), big.eval()(x), atol=1e-4, rtol=1e-4)
    assert same_train == scale_inv and same_eval == scale_inv


def test_bn_reestimation_gives_the_exact_full_pass_statistics(one_thread):
    torch.manual_seed(0)
    net = model.resnet18(width=4)
    data = torch.randn(64, 3, 32, 32) * 2 + torch.arange(4.0).repeat_interleave(16).view(64, 1, 1, 1)
    seen = {}
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    hooks = [m.register_forward_pre_hook(lambda m, inp: seen.__setitem__(m, inp[0].detach())) for m in bns]
    net.train()(data)  # one batch of everything: each layer's batch statistics are the full-pass ones
    for h in hooks:
        h.remove()
    model.reestimate_bn(net, [data])
    for m in bns:
        var, mean = torch.var_mean(seen[m].double(), dim=(0, 2, 3), unbiased=True)
        assert torch.allclose(m.running_mean.double(), mean, atol=1e-5, rtol=1e-4)
        assert torch.allclose(m.running_var.double(), var, atol=1e-5, rtol=1e-4)
    # in minibatches the input BatchNorm sees the images themselves: the pooled statistics are exact
    model.reestimate_bn(net, data.split(16))
    var, mean = torch.var_mean(data.double(), dim=(0, 2, 3), unbiased=True)
    assert torch.allclose(net.bn1.running_mean.double(), mean, atol=1e-5)
    assert torch.allclose(net.bn1.running_var.double(), var, rtol=1e-5)
    batch_mean_of_vars = torch.stack([b.var(dim=(0, 2, 3)) for b in data.split(16)]).mean(0)
    assert not torch.allclose(net.bn1.running_var, batch_mean_of_vars, rtol=1e-3)  # not the authors' average


def test_hutchinson_trace_agrees_with_the_exact_hessian_trace(one_thread):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Tanh(),
                              torch.nn.Flatten(), torch.nn.Linear(32, 3))
    net.train()(torch.randn(8, 3, 6, 6))  # running statistics that are not the defaults
    batches = [(torch.randn(5, 3, 6, 6), torch.randint(0, 3, (5,))) for _ in range(2)]
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    flat = torch.cat([p.detach().flatten() for p in net.parameters()])

    def loss(theta):
        params, i = {}, 0
        for n, s in zip(names, shapes):
            params[n] = theta[i:i + s.numel()].view(s)
            i += s.numel()
        total = sum(torch.nn.functional.cross_entropy(torch.func.functional_call(net, params, (x,)), y,
                                                      reduction='sum') for x, y in batches)
        return total / 10
    net.eval()
    exact = torch.func.hessian(loss)(flat).trace().item()
    gen = torch.Generator().manual_seed(1)
    estimate, se = model.hessian_trace(net, batches, probes=150, generator=gen)
    assert abs(estimate - exact) < 3 * se, (estimate, exact, se)
    assert 0 < se < 0.2 * abs(exact)  # tight enough to catch a factor 2 or a wrong normalisation


# =============================================================================
# end of vision nets
# =============================================================================


@pytest.mark.slow
def test_gpt_and_resnet_compile_without_graph_breaks(one_thread):
    # a graph break would split the compiled model and cost a round trip to Python on every step
    gpt = model.GPT(model.GPTConfig(block_size=16, vocab_size=50, n_layer=2, n_head=2, n_embd=16))
    idx = torch.randint(50, (2, 16))
    assert torch._dynamo.explain(gpt)(idx, idx).graph_break_count == 0
    net = model.resnet18(10, 4)
    assert torch._dynamo.explain(net)(torch.randn(2, 3, 32, 32)).graph_break_count == 0


@pytest.mark.parametrize('name, peak', [
    ('NVIDIA H100 80GB HBM3', 989e12), ('NVIDIA H100 PCIe', 756e12), ('NVIDIA H100 NVL', 835e12),
    ('NVIDIA H200', 989e12), ('NVIDIA H200 NVL', 835e12), ('NVIDIA A100-SXM4-80GB', 312e12),
    ('NVIDIA A100 80GB PCIe', 312e12), ('NVIDIA GeForce RTX 4090', None), ('NVIDIA H1000', None),
])
def test_mfu_peak_by_device_name_gives_variants_their_own_peak(name, peak):
    assert model.bf16_peak_flops(name) == peak
