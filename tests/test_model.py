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


# =============================================================================
# end of vision nets
# =============================================================================
