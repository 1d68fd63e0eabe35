"""
The networks: GPT (GPT-2 architecture) for the language-model runs, and the CIFAR nets
(PreAct ResNet-18/34, VGG-16) for the vision runs, with the scale-invariant variant.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

# =============================================================================
# GPT
# =============================================================================

@dataclass
class GPTConfig:
    block_size: int = 1024  # longest context
    vocab_size: int = 50257
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in the Linear and LayerNorm layers, as GPT-2


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (nn.LayerNorm before PyTorch 2.1 could not drop it)."""

    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):

    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.n_head, self.dropout = config.n_head, config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v at once
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again
        return self.resid_dropout(self.c_proj(y))

    def logits(self, x):
        """The attention logits q.k/sqrt(d) of input x, (B, n_head, T, T), that forward's softmax takes
        (the causal mask not applied): in the dtype autocast gives them, as in training."""
        B, T, C = x.size()
        q, k, _ = self.c_attn(x).split(C, dim=2)
        q, k = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k))
        return q @ k.transpose(-2, -1) / math.sqrt(C // self.n_head)


class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, config.bias)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """GPT-2: token + learned position embeddings, n_layer blocks, final LayerNorm, tied LM head."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=LayerNorm(config.n_embd, config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # weight tying: one tensor, decayed once
        # GPT-2 initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2*n_layer)
        for name, p in self.named_parameters():
            if name.endswith('c_proj.weight'):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
            elif p.dim() >= 2:
                nn.init.normal_(p, mean=0.0, std=0.02)
            elif name.endswith('bias'):
                nn.init.zeros_(p)

    def num_params(self):
        """Trainable numbers, the tied embedding counted once (GPT-2 small: 124,439,808)."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx, targets=None):
        """Logits (B, T, vocab) and, given targets, the mean cross-entropy over all positions."""
        B, T = idx.size()
        if T > self.config.block_size:
            raise ValueError(f"sequence of length {T} is longer than block_size {self.config.block_size}")
        pos = torch.arange(T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = None
        if targets is not None:
            # float32 logits for the loss: under bf16 autocast this keeps the softmax accurate
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    @torch.no_grad()
    def logit_stats(self, idx):
        """What low precision meets in the attention, on the sequences idx (the attention-logit growth of
        Dehghani et al. 2023 and Wortsman et al. 2023: the logits grow with ||W_q|| ||W_k||). Per layer
        the largest |q.k/sqrt(d)| at the causal positions; the largest |output logit|; and, from the
        same float32 inputs of each layer, the attention logits computed in bfloat16 (autocast, as in
        training) against float32: their relative error, over all layers together, and the mean total
        variation distance between the attention weights (softmax rows) they give. The relative error
        of a bfloat16 product hardly depends on its size (8 bits of mantissa: about 2^-9); its
        absolute error grows with the logits, and the softmax turns it into wrong attention weights."""
        inputs = []
        hooks = [b.attn.register_forward_pre_hook(lambda m, args: inputs.append(args[0].float()))
                 for b in self.transformer.h]
        try:
            with torch.autocast(idx.device.type, enabled=False):
                out = self(idx)[0]
        finally:
            for h in hooks:
                h.remove()
        T = idx.size(1)
        causal = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
        maxes, tvs, err_sq, ref_sq = [], [], 0.0, 0.0
        for block, x in zip(self.transformer.h, inputs):
            with torch.autocast(idx.device.type, enabled=False):
                exact = block.attn.logits(x)
            with torch.autocast(idx.device.type, dtype=torch.bfloat16):
                low = block.attn.logits(x).float()
            maxes.append(exact[..., causal].abs().max())
            err_sq = err_sq + (low - exact)[..., causal].square().sum()
            ref_sq = ref_sq + exact[..., causal].square().sum()
            weights = [torch.softmax(t.masked_fill(~causal, float('-inf')), -1) for t in (exact, low)]
            tvs.append(0.5 * (weights[1] - weights[0]).abs().sum(-1).mean())
        maxes = torch.stack(maxes).tolist()  # one transfer for every number
        return dict(attn_logit_max=max(maxes), attn_logit_max_layers=maxes,
                    output_logit_max=out.abs().max().item(),
                    attn_logit_bf16_err=(err_sq / ref_sq).sqrt().item(),
                    attn_weight_bf16_tv=torch.stack(tvs).mean().item())

    def flops_per_token(self, seq_len):
        """Training FLOPs per token (forward + backward), PaLM appendix B: 6N + 12*L*H*Q*T."""
        c = self.config
        return 6 * self.num_params() + 12 * c.n_layer * c.n_embd * seq_len

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        """Append max_new_tokens sampled tokens to idx (B, T), feeding each back in."""
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -self.config.block_size:])  # the context is cropped to block_size
            logits = logits[:, -1, :] / temperature
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float('inf')
            idx_next = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)
            idx = torch.cat((idx, idx_next), dim=1)
        return idx


# dense bf16/fp16 tensor-core peaks (FLOP/s) for MFU, by the words of the device name, the variants
# first: an H100 / H200 NVL or PCIe card is slower than the SXM part. Unknown devices get no MFU.
PEAK_FLOPS = ((('H100', 'NVL'), 835e12), (('H100', 'PCIe'), 756e12), (('H200', 'NVL'), 835e12),
              (('H100',), 989e12), (('H200',), 989e12), (('A100',), 312e12))


def bf16_peak_flops(device_name):
    """The dense bf16 peak of a GPU named device_name (torch.cuda.get_device_name), or None."""
    words = device_name.replace('-', ' ').split()
    return next((flops for keys, flops in PEAK_FLOPS if all(k in words for k in keys)), None)


# =============================================================================
# end of GPT
# =============================================================================


# =============================================================================
# vision nets
# =============================================================================
# As in the authors' code (tml-epfl/why-weight-decay, overparameterized_nets/models): a
# pre-activation ResNet with a BatchNorm on the input image, and VGG-16 with three linear layers.
# `scale_inv=True` makes the ResNet's output invariant to multiplying all trainable parameters
# by one constant: BatchNorm without affine parameters everywhere (also before the projection
# shortcut) and a frozen last layer. Without batch_norm there is no normalisation at all.


def _norm(channels, batch_norm, affine):
    return nn.BatchNorm2d(channels, affine=affine) if batch_norm else nn.Identity()


class PreActBlock(nn.Module):
    """BN-ReLU-conv, BN-ReLU-conv, plus the input (or a 1x1 projection of BN-ReLU(input))."""

    def __init__(self, c_in, c_out, stride, batch_norm=True, scale_inv=False):
        super().__init__()
        bias = not batch_norm  # a bias before BatchNorm is cancelled by its mean subtraction
        self.bn1 = _norm(c_in, batch_norm, not scale_inv)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, padding=1, bias=bias)
        self.bn2 = _norm(c_out, batch_norm, not scale_inv)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, padding=1, bias=bias)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            # the scale-invariant variant normalises again before the projection, as the authors do
            pre = [_norm(c_in, batch_norm, False)] if scale_inv else []
            self.shortcut = nn.Sequential(*pre, nn.Conv2d(c_in, c_out, 1, stride, bias=bias))

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)  # projection of BN-ReLU(x), not of x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """PreAct ResNet for 32x32 images: BN on the input, 3x3 stem, four stages, BN-ReLU, pool, linear."""

    def __init__(self, num_blocks, num_classes=10, width=64, batch_norm=True, scale_inv=False):
        super().__init__()
        if scale_inv and not batch_norm:
            raise ValueError("scale_inv needs batch_norm: scale invariance comes from the normalisation")
        affine = not scale_inv
        self.bn1 = _norm(3, batch_norm, affine)  # the authors normalise the input image with a BatchNorm
        self.conv1 = nn.Conv2d(3, width, 3, 1, padding=1, bias=not batch_norm)
        c_in, stages = width, []
        for i, n in enumerate(num_blocks):
            c_out = width * 2 ** i
            blocks = []
            for j in range(n):
                blocks.append(PreActBlock(c_in, c_out, 2 if i > 0 and j == 0 else 1, batch_norm, scale_inv))
                c_in = c_out
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn = _norm(c_in, batch_norm, affine)
        self.linear = nn.Linear(c_in, num_classes)
        if scale_inv:
            self.linear.requires_grad_(False)  # a trained last layer would break scale invariance

    def forward(self, x):
        out = self.conv1(self.bn1(x))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.relu(self.bn(out))
        return self.linear(out.mean(dim=(2, 3)))  # global average pool (4x4 for 32x32 inputs)


class VGG(nn.Module):
    """VGG-16 (configuration D) for 32x32 images: 13 convs of width w*{1,2,4,8,8}, three linear layers."""

    def __init__(self, num_classes=10, width=64, batch_norm=True):
        super().__init__()
        w = width
        cfg = [w, w, 'M', 2 * w, 2 * w, 'M', 4 * w, 4 * w, 4 * w, 'M', 8 * w, 8 * w, 8 * w, 'M',
               8 * w, 8 * w, 8 * w, 'M']
        layers, c_in = [], 3
        for v in cfg:
            if v == 'M':
                layers.append(nn.MaxPool2d(2))
                continue
            conv = nn.Conv2d(c_in, v, 3, padding=1)
            nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / (9 * v)))  # He init on fan-out, as the authors
            nn.init.zeros_(conv.bias)
            layers += [conv, _norm(v, batch_norm, True), nn.ReLU(inplace=True)]
            c_in = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(c_in, c_in), nn.ReLU(inplace=True),
                                        nn.Linear(c_in, c_in), nn.ReLU(inplace=True),
                                        nn.Linear(c_in, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))  # 1x1 spatial after five max-pools


def resnet18(num_classes=10, width=64, batch_norm=True, scale_inv=False):
    return PreActResNet([2, 2, 2, 2], num_classes, width, batch_norm, scale_inv)


def resnet34preact(num_classes=10, width=64, batch_norm=True, scale_inv=False):
    return PreActResNet([3, 4, 6, 3], num_classes, width, batch_norm, scale_inv)


def vgg16(num_classes=10, width=64, batch_norm=True, scale_inv=False):
    if scale_inv:  # its hidden linear layers are not homogeneous of degree 0 in the weights
        raise ValueError("vgg16 has no scale-invariant variant: use resnet18 or resnet34preact")
    return VGG(num_classes, width, batch_norm)


VISION_NETS = {'resnet18': resnet18, 'resnet34preact': resnet34preact, 'vgg16': vgg16}


def scale_invariant_params(net):
    """The conv weights when every conv feeds a BatchNorm: the net's output is unchanged when they
    are scaled together, so their effective LR is lr/||w||^2. Empty without BatchNorm."""
    if not any(isinstance(m, nn.BatchNorm2d) for m in net.modules()):
        return []
    return [m.weight for m in net.modules() if isinstance(m, nn.Conv2d) and m.weight.requires_grad]


@torch.no_grad()
def reestimate_bn(net, batches):
    """Set every BatchNorm's running mean and (unbiased) variance to those of its inputs over one
    train-mode pass of `batches` (input tensors). The authors' bn_update averages the batch
    variances instead, which misses the spread of the batch means; this is the exact pooled value.
    Needed for an EMA of the weights: its averaged weights do not match any running statistics."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    # Each hook only records its batch's mean and variance on the device (one kernel, no host sync); the
    # pooled statistics are combined once at the end. On a GPU the pass is then bound by the forward.
    stats = {bn: [] for bn in bns}  # [(count, mean, biased variance)] per batch

    def record(bn, inputs):
        x = inputs[0]
        var_b, mean_b = torch.var_mean(x.float(), dim=[0, 2, 3], unbiased=False)
        stats[bn].append((x.numel() // x.shape[1], mean_b, var_b))
    hooks = [bn.register_forward_pre_hook(record) for bn in bns]
    was_training = net.training
    net.train()  # each layer sees its input normalised by batch statistics, as in training
    try:
        for x in batches:
            net(x)
    finally:
        for h in hooks:
            h.remove()
        net.train(was_training)
    for bn, per_batch in stats.items():
        n = sum(count for count, _, _ in per_batch)
        if n > 1:  # pooled: the spread within the batches plus the spread of the batch means
            counts = torch.tensor([c for c, _, _ in per_batch], dtype=torch.float64).to(bn.running_mean.device)
            means, variances = (torch.stack([b[k] for b in per_batch]).double() for k in (1, 2))
            mean = (counts[:, None] * means).sum(0) / n
            m2 = (counts[:, None] * (variances + (means - mean) ** 2)).sum(0)
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(m2 / (n - 1))


def hessian_trace(net, batches, probes, generator=None):
    """Hutchinson estimate of the trace of the Hessian of the mean cross-entropy over `batches`
    [(x, y), ...] with respect to the trainable parameters, the net in eval mode (a fixed function
    of the weights): tr H = E[v^T H v] for Rademacher v, with H v by double backward.
    Returns (mean over probes, its standard error)."""
    params = [p for p in net.parameters() if p.requires_grad]
    n_total = sum(len(y) for _, y in batches)
    was_training = net.training
    net.eval()
    samples = []
    try:
        for _ in range(probes):
            vs = [torch.randint(0, 2, p.shape, generator=generator, device=p.device).to(p.dtype) * 2 - 1
                  for p in params]
            vhv = 0.0
            for x, y in batches:  # H is a sum over chunks, so v^T H v is too (same v for every chunk)
                loss = F.cross_entropy(net(x), y, reduction='sum') / n_total
                grads = torch.autograd.grad(loss, params, create_graph=True)
                hvs = torch.autograd.grad(grads, params, grad_outputs=vs)
                vhv += sum((hv * v).sum() for hv, v in zip(hvs, vs)).item()
            samples.append(vhv)
    finally:
        net.train(was_training)
    samples = torch.tensor(samples, dtype=torch.float64)
    se = samples.std().item() / math.sqrt(probes) if probes > 1 else float('nan')
    return samples.mean().item(), se


# =============================================================================
# end of vision nets
# =============================================================================
