#!/usr/bin/env python3
"""Records real allocation traces from PyTorch workloads on a CUDA GPU, in gpupool's trace format
(../../../shared/traces/README.md): gzip text, `a ID BYTES` / `f ID`, `#` comments.

These are held-out traces: workloads of kinds the four traces in ../shared/traces do not cover,
for checking that gpupool's defaults (chosen on those four) carry over. Nothing is tuned on them.

Method, as for the shared traces: PyTorch's own memory history
(torch.cuda.memory._record_memory_history) records every allocation the program asks for (its
requested size) and every free it requests; `alloc` becomes `a ID BYTES`, `free_requested`
becomes `f ID`. Each workload runs in a fresh Python process, so its trace holds only its own
allocations. Models have random weights; sizes, order and lifetimes are those the workload makes.
Seeds are fixed, but kernels (cuDNN, cuBLAS) may choose workspaces differently on another card,
and in training workloads the order of frees can change from run to run (vit_train, moe_train:
2–18 % of lines, same operations and peak); inference workloads record the same trace every time.

Workloads:
  unet_sampling     latent-diffusion-style UNet (fp16, no grad): 8 requests at different latent
                    sizes and batch sizes, 12 denoising steps each with classifier-free guidance
  bert_train_adamw  encoder training (8 layers, d=768) with an MLM head over a 30 522-token
                    vocabulary, AdamW, bf16 autocast; dynamic padding: batch and length change
                    every step (tokens per batch up to 16 384); 24 steps
  gnn_train         GraphSAGE (3 layers, mean aggregation by index_add_) on a new random graph
                    every step, 20 000–200 000 nodes, mean degree 4–12; Adam; 30 steps
  mixed_serving     one process serving two models (a ResNet-style CNN and a text encoder, fp16,
                    no grad): 160 requests in random order, random batch sizes and lengths
A second set, recorded later to check a default chosen with the first one in view:
  vit_train         Vision Transformer (12 layers, d=768, 16×16 patches) training at 224² or 160²
                    with a batch size that changes every step (16–96), AdamW, bf16 autocast; 20 steps
  llm_static_kv     decoder inference (16 layers, d=2048) with a KV cache allocated whole per batch
                    (as a static cache does): 6 batches of different size, prompt and output length
  lstm_seq2seq      LSTM encoder-decoder training (2 layers, 1 024 units, cuDNN) on batches of
                    different lengths, Adam; 30 steps
  video_3dconv      3D-convolution network inference on clips of 8–32 frames at three resolutions
A third set, recorded after bestFitPools became CudaDevice's default, to check that default on
workloads it was not chosen on:
  moe_train         decoder-style transformer (4 layers, d=512) whose feed-forward is a mixture of
                    8 experts with top-2 routing: each expert gets a different number of tokens
                    every step; batch and length change every step; AdamW, bf16 autocast; 24 steps
  beam_search_kv    decoder inference (12 layers, d=1024, fp16) with beam search (4 beams) and a
                    KV cache that grows by concatenation every token and is reordered by beam
                    every token (as a dynamic cache does): 6 requests of different size
  detect_multiscale detector training (CNN backbone, feature pyramid, dense class + box heads) at
                    a new input size every step (320–640 px, batch 8–48), SGD, bf16 autocast;
                    30 steps
  asr_ctc_train     speech recognition training: convolutional subsampling, 8 transformer layers
                    (d=256), CTC loss; utterances of 4–30 s of 10 ms frames, padded per batch;
                    Adam, bf16 autocast; 30 steps
  dlrm_sparse_train recommendation model training (8 embedding-bag tables of 400 000 rows with
                    sparse gradients, MLPs, pairwise feature interaction); batch 2 048–16 384 with
                    1–40 lookups per bag; Adagrad; 30 steps
A fourth set, recorded after the third had been measured, with nothing in the pool changed:
  unet_train_ckpt   image-to-image UNet training with activation checkpointing (each block's
                    activations recomputed in the backward pass) at a new size every step
                    (128–256 px, batch 4–32), AdamW, bf16 autocast; 24 steps
  gpt_grad_accum    GPT-style decoder training (6 layers, d=768, 50 257-token vocabulary) with
                    gradient accumulation over 4 micro-batches of different lengths (256–1 024
                    tokens); AdamW, bf16 autocast; 10 optimizer steps
  stft_denoise      audio denoising inference: STFT of 1–10 s clips at three FFT sizes, a small
                    CNN mask on the magnitude, inverse STFT; 80 requests, batch 1–8
  pointcloud_dgcnn  point-cloud segmentation training (DGCNN-style EdgeConv: a k-nearest-neighbour
                    graph rebuilt from the features at every layer) on clouds of 1 024–8 192
                    points; Adam; 30 steps
  clip_contrastive  two-tower contrastive training (image and text transformers, 4 layers each,
                    d=512) with a batch × batch similarity matrix, batch 64–512 and text length
                    16–77 changing every step; AdamW, bf16 autocast; 24 steps

Usage: python3 record_traces.py OUT_DIR [--only NAME[,NAME]]   (one trace file per workload)
       python3 record_traces.py --one NAME OUT_DIR              (worker: one workload, this process)
"""
import argparse
import gzip
import math
import os
import random
import subprocess
import sys
import time

WORKLOADS = (
    "unet_sampling",
    "bert_train_adamw",
    "gnn_train",
    "mixed_serving",
    "vit_train",
    "llm_static_kv",
    "lstm_seq2seq",
    "video_3dconv",
    "moe_train",
    "beam_search_kv",
    "detect_multiscale",
    "asr_ctc_train",
    "dlrm_sparse_train",
    "unet_train_ckpt",
    "gpt_grad_accum",
    "stft_denoise",
    "pointcloud_dgcnn",
    "clip_contrastive",
)


# ---- workloads: each is called with torch, torch.nn, torch.nn.functional and the CUDA device
# (torch is imported by record(), so the driver mode needs no torch) ----


def transformer_encoder(nn, d, heads, ff, layers, **options):
    """`layers` copies of nn.TransformerEncoderLayer(d, heads, ff, batch_first=True, **options), with
    nested tensors off (as every encoder workload here builds it)."""
    layer = nn.TransformerEncoderLayer(d, heads, ff, batch_first=True, **options)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


def decoder_layer(nn, d):
    """A pre-norm decoder layer's modules (attention projections and MLP, no biases), for the two
    decoder-inference workloads; each gives it the forward of its own KV cache."""

    class DecoderLayer(nn.Module):
        def __init__(self):
            super().__init__()
            self.n1 = nn.LayerNorm(d)
            self.qkv = nn.Linear(d, 3 * d, bias=False)
            self.o = nn.Linear(d, d, bias=False)
            self.n2 = nn.LayerNorm(d)
            self.up = nn.Linear(d, 4 * d, bias=False)
            self.down = nn.Linear(4 * d, d, bias=False)

    return DecoderLayer


def train_step(opt, loss):
    """One optimizer step of a training workload; reading the loss waits for the step's kernels."""
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    loss.item()


def unet_sampling(torch, nn, F, dev):
    class ResBlock(nn.Module):
        def __init__(self, cin, cout, tdim):
            super().__init__()
            self.n1 = nn.GroupNorm(32, cin)
            self.c1 = nn.Conv2d(cin, cout, 3, padding=1)
            self.t = nn.Linear(tdim, cout)
            self.n2 = nn.GroupNorm(32, cout)
            self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
            self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

        def forward(self, x, t):
            h = self.c1(F.silu(self.n1(x)))
            h = h + self.t(t)[:, :, None, None]
            h = self.c2(F.silu(self.n2(h)))
            return h + self.skip(x)

    class Attention(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.n = nn.GroupNorm(32, c)
            self.qkv = nn.Linear(c, 3 * c)
            self.out = nn.Linear(c, c)
            self.heads = 8

        def forward(self, x):
            b, c, h, w = x.shape
            y = self.n(x).flatten(2).transpose(1, 2)
            q, k, v = self.qkv(y).chunk(3, dim=-1)
            shape = (b, h * w, self.heads, c // self.heads)
            q, k, v = (t.reshape(shape).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, h * w, c)
            return x + self.out(y).transpose(1, 2).reshape(b, c, h, w)

    class UNet(nn.Module):
        def __init__(self, chans=(128, 256, 512, 512), tdim=512):
            super().__init__()
            self.tdim = tdim
            self.temb = nn.Sequential(nn.Linear(tdim, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
            self.inp = nn.Conv2d(4, chans[0], 3, padding=1)
            self.down = nn.ModuleList()
            self.down_attn = nn.ModuleList()
            self.pool = nn.ModuleList()
            c = chans[0]
            skips = []
            for i, co in enumerate(chans):
                self.down.append(nn.ModuleList([ResBlock(c, co, tdim), ResBlock(co, co, tdim)]))
                self.down_attn.append(Attention(co) if i >= 2 else nn.Identity())
                skips.append(co)
                c = co
                self.pool.append(nn.Conv2d(c, c, 3, stride=2, padding=1) if i < len(chans) - 1 else nn.Identity())
            self.mid = nn.ModuleList([ResBlock(c, c, tdim), ResBlock(c, c, tdim)])
            self.mid_attn = Attention(c)
            self.up = nn.ModuleList()
            self.up_attn = nn.ModuleList()
            for i, co in reversed(list(enumerate(chans))):
                self.up.append(nn.ModuleList([ResBlock(c + skips[i], co, tdim), ResBlock(co, co, tdim)]))
                self.up_attn.append(Attention(co) if i >= 2 else nn.Identity())
                c = co
            self.out = nn.Sequential(nn.GroupNorm(32, c), nn.SiLU(), nn.Conv2d(c, 4, 3, padding=1))

        def embed(self, t, batch, device, dtype):
            half = self.tdim // 2
            freqs = torch.exp(-math.log(10000) * torch.arange(half, device=device) / half)
            e = t * freqs
            e = torch.cat([e.sin(), e.cos()]).to(dtype)[None].expand(batch, -1)
            return self.temb(e)

        def forward(self, x, t):
            temb = self.embed(t, x.shape[0], x.device, x.dtype)
            h = self.inp(x)
            skips = []
            for blocks, attn, pool in zip(self.down, self.down_attn, self.pool):
                for b in blocks:
                    h = b(h, temb)
                h = attn(h)
                skips.append(h)
                h = pool(h)
            for b in self.mid:
                h = b(h, temb)
            h = self.mid_attn(h)
            for blocks, attn in zip(self.up, self.up_attn):
                s = skips.pop()
                if h.shape[-2:] != s.shape[-2:]:
                    h = F.interpolate(h, size=s.shape[-2:], mode="nearest")
                h = torch.cat([h, s], dim=1)
                for b in blocks:
                    h = b(h, temb)
                h = attn(h)
            return self.out(h)

    model = UNet().to(dev, torch.float16).eval()
    sizes = [(64, 64), (96, 96), (80, 56), (48, 112), (64, 96), (112, 72), (72, 72), (56, 128)]
    rng = random.Random(7)
    with torch.no_grad():
        for h, w in sizes:
            batch = rng.choice([1, 2, 4])
            x = torch.randn(batch, 4, h, w, device=dev, dtype=torch.float16)
            cond_scale = 7.5
            for step in range(12):
                t = torch.tensor(float(1000 - step * 80), device=dev)
                both = model(torch.cat([x, x]), t)  # guided and unguided in one batch
                guided, plain = both.chunk(2)
                eps = plain + cond_scale * (guided - plain)
                x = x - 0.05 * eps
            image = F.interpolate(x.float(), scale_factor=8, mode="bilinear")  # a stand-in decoder
            image.clamp_(-1, 1).cpu()
            del x, image


def bert_train_adamw(torch, nn, F, dev):
    vocab, d = 30522, 768

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(vocab, d)
            self.pos = nn.Embedding(512, d)
            self.layers = transformer_encoder(nn, d, 12, 3072, 8, dropout=0.1, norm_first=True)
            self.norm = nn.LayerNorm(d)
            self.mlm = nn.Linear(d, vocab)

        def forward(self, ids, pad_mask):
            pos = torch.arange(ids.shape[1], device=ids.device)
            h = self.tok(ids) + self.pos(pos)[None]
            h = self.layers(h, src_key_padding_mask=pad_mask)
            return self.mlm(self.norm(h))

    model = Encoder().to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    rng = random.Random(11)
    for step in range(24):
        length = rng.choice([64, 96, 128, 192, 256, 384, 512])
        batch = max(4, min(64, 16384 // length - rng.randrange(0, 8)))
        ids = torch.randint(0, vocab, (batch, length), device=dev)
        lengths = torch.randint(length // 2, length + 1, (batch,), device=dev)
        pad_mask = torch.arange(length, device=dev)[None] >= lengths[:, None]
        labels = ids.masked_fill(torch.rand(batch, length, device=dev) > 0.15, -100)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(ids, pad_mask)
            loss = F.cross_entropy(logits.float().view(-1, vocab), labels.view(-1), ignore_index=-100)
        train_step(opt, loss)
        del logits, loss


def gnn_train(torch, nn, F, dev):
    fin, hidden, classes = 128, 128, 40

    class Sage(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.self_lin = nn.Linear(cin, cout)
            self.neigh_lin = nn.Linear(cin, cout)

        def forward(self, x, src, dst, inv_deg):
            agg = torch.zeros_like(x).index_add_(0, dst, x[src]) * inv_deg[:, None]
            return self.self_lin(x) + self.neigh_lin(agg)

    layers = nn.ModuleList([Sage(fin, hidden), Sage(hidden, hidden), Sage(hidden, classes)]).to(dev)
    opt = torch.optim.Adam(layers.parameters(), lr=1e-3)
    rng = random.Random(5)
    for step in range(30):
        n = rng.randrange(20_000, 200_001)
        e = n * rng.randrange(4, 13)
        x = torch.randn(n, fin, device=dev)
        src = torch.randint(0, n, (e,), device=dev)
        dst = torch.randint(0, n, (e,), device=dev)
        deg = torch.bincount(dst, minlength=n).clamp_(min=1)
        inv_deg = 1.0 / deg.float()
        y = torch.randint(0, classes, (n,), device=dev)
        h = x
        for i, layer in enumerate(layers):
            h = layer(h, src, dst, inv_deg)
            if i < len(layers) - 1:
                h = F.dropout(F.relu(h), 0.5)
        loss = F.cross_entropy(h, y)
        train_step(opt, loss)
        del x, src, dst, deg, inv_deg, y, h, loss


def mixed_serving(torch, nn, F, dev):
    def block(cin, cout, stride):
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
        )

    class Cnn(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
            chans = [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]
            self.blocks = nn.ModuleList([block(a, b, s) for a, b, s in chans for _ in range(1)])
            self.down = nn.ModuleList([nn.Conv2d(a, b, 1, s, bias=False) if (a != b or s != 1) else nn.Identity() for a, b, s in chans])
            self.head = nn.Linear(512, 1000)

        def forward(self, x):
            h = self.stem(x)
            for b, d in zip(self.blocks, self.down):
                h = F.relu(b(h) + d(h))
            return self.head(h.mean((2, 3)))

    cnn = Cnn().to(dev, torch.float16).eval()
    text = transformer_encoder(nn, 512, 8, 2048, 6).to(dev, torch.float16).eval()
    emb = nn.Embedding(32000, 512).to(dev, torch.float16)
    rng = random.Random(3)
    with torch.no_grad():
        for _ in range(160):
            if rng.random() < 0.5:
                batch = rng.choice([1, 2, 4, 8, 16, 32])
                side = rng.choice([224, 256, 320])
                out = cnn(torch.randn(batch, 3, side, side, device=dev, dtype=torch.float16))
            else:
                batch = rng.choice([1, 4, 8, 16])
                length = rng.randrange(16, 513)
                ids = torch.randint(0, 32000, (batch, length), device=dev)
                out = text(emb(ids)).mean(1)
            out.float().cpu()
            del out


def vit_train(torch, nn, F, dev):
    d = 768

    class Vit(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch = nn.Conv2d(3, d, 16, stride=16)
            self.cls = nn.Parameter(torch.zeros(1, 1, d))
            self.pos = nn.Parameter(torch.zeros(1, 1 + 14 * 14, d))
            self.blocks = transformer_encoder(nn, d, 12, 4 * d, 12, dropout=0.0, norm_first=True, activation="gelu")
            self.head = nn.Linear(d, 1000)

        def forward(self, x):
            h = self.patch(x).flatten(2).transpose(1, 2)
            h = torch.cat([self.cls.expand(h.shape[0], -1, -1), h], dim=1)
            h = h + self.pos[:, : h.shape[1]]
            return self.head(self.blocks(h)[:, 0])

    model = Vit().to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    rng = random.Random(13)
    for step in range(20):
        side = rng.choice([224, 160])
        batch = rng.randrange(16, 97)
        x = torch.randn(batch, 3, side, side, device=dev)
        y = torch.randint(0, 1000, (batch,), device=dev)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x), y)
        train_step(opt, loss)
        del x, y, loss


def llm_static_kv(torch, nn, F, dev):
    d, heads, n_layers, vocab = 2048, 16, 16, 32000
    hd = d // heads

    class Layer(decoder_layer(nn, d)):
        def forward(self, x, cache_k, cache_v, pos):
            b, t, _ = x.shape
            q, k, v = self.qkv(self.n1(x)).view(b, t, 3, heads, hd).unbind(2)
            cache_k[:, pos : pos + t] = k
            cache_v[:, pos : pos + t] = v
            keys = cache_k[:, : pos + t].transpose(1, 2)
            values = cache_v[:, : pos + t].transpose(1, 2)
            y = F.scaled_dot_product_attention(q.transpose(1, 2), keys, values, is_causal=t > 1)
            x = x + self.o(y.transpose(1, 2).reshape(b, t, d))
            return x + self.down(F.gelu(self.up(self.n2(x))))

    emb = nn.Embedding(vocab, d).to(dev, torch.float16)
    layers = nn.ModuleList([Layer() for _ in range(n_layers)]).to(dev, torch.float16).eval()
    head = nn.Linear(d, vocab, bias=False).to(dev, torch.float16)
    rng = random.Random(17)
    with torch.no_grad():
        for _ in range(6):
            batch = rng.choice([1, 4, 8, 16, 32])
            prompt = rng.randrange(64, 1025)
            new = rng.randrange(32, 129)
            total = prompt + new
            # The whole cache for this batch at once, as a static cache allocates it.
            caches = [
                (torch.empty(batch, total, heads, hd, device=dev, dtype=torch.float16),
                 torch.empty(batch, total, heads, hd, device=dev, dtype=torch.float16))
                for _ in range(n_layers)
            ]
            ids = torch.randint(0, vocab, (batch, prompt), device=dev)
            pos = 0
            for step in range(new):
                x = emb(ids)
                for layer, (ck, cv) in zip(layers, caches):
                    x = layer(x, ck, cv, pos)
                pos += ids.shape[1]
                ids = head(x[:, -1:]).argmax(-1)
            ids.cpu()
            del caches, ids, x


def lstm_seq2seq(torch, nn, F, dev):
    vocab, hidden = 16000, 1024
    emb = nn.Embedding(vocab, 512).to(dev)
    enc = nn.LSTM(512, hidden, num_layers=2, batch_first=True).to(dev)
    dec = nn.LSTM(512, hidden, num_layers=2, batch_first=True).to(dev)
    out = nn.Linear(hidden, vocab).to(dev)
    params = [*emb.parameters(), *enc.parameters(), *dec.parameters(), *out.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    rng = random.Random(19)
    for step in range(30):
        batch = rng.choice([16, 32, 64, 128])
        src_len = rng.randrange(10, 121)
        tgt_len = rng.randrange(10, 121)
        src = torch.randint(0, vocab, (batch, src_len), device=dev)
        tgt = torch.randint(0, vocab, (batch, tgt_len), device=dev)
        _, state = enc(emb(src))
        y, _ = dec(emb(tgt[:, :-1]), state)
        loss = F.cross_entropy(out(y).reshape(-1, vocab), tgt[:, 1:].reshape(-1))
        train_step(opt, loss)
        del src, tgt, y, state, loss


def video_3dconv(torch, nn, F, dev):
    def stage(cin, cout, stride):
        return nn.Sequential(
            nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm3d(cout),
            nn.ReLU(inplace=True),
            nn.Conv3d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm3d(cout),
            nn.ReLU(inplace=True),
        )

    net = nn.Sequential(
        nn.Conv3d(3, 64, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
        nn.BatchNorm3d(64),
        nn.ReLU(inplace=True),
        stage(64, 64, 1),
        stage(64, 128, 2),
        stage(128, 256, 2),
        stage(256, 512, 2),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Linear(512, 400),
    ).to(dev, torch.float16).eval()
    rng = random.Random(23)
    with torch.no_grad():
        for _ in range(40):
            frames = rng.choice([8, 16, 32])
            side = rng.choice([112, 160, 224])
            batch = rng.choice([1, 2, 4, 8])
            clip = torch.randn(batch, 3, frames, side, side, device=dev, dtype=torch.float16)
            net(clip).float().cpu()
            del clip


def moe_train(torch, nn, F, dev):
    d, n_experts, vocab = 512, 8, 32000

    class Experts(nn.Module):
        def __init__(self):
            super().__init__()
            self.gate = nn.Linear(d, n_experts, bias=False)
            self.up = nn.ModuleList([nn.Linear(d, 4 * d) for _ in range(n_experts)])
            self.down = nn.ModuleList([nn.Linear(4 * d, d) for _ in range(n_experts)])

        def forward(self, x):
            flat = x.reshape(-1, d)
            weights, chosen = self.gate(flat).float().softmax(-1).topk(2, dim=-1)
            out = torch.zeros_like(flat)
            for e in range(n_experts):
                rows, slot = (chosen == e).nonzero(as_tuple=True)  # a different count every step
                if rows.numel() == 0:
                    continue
                h = self.down[e](F.gelu(self.up[e](flat[rows])))
                out = out.index_add(0, rows, (h * weights[rows, slot].unsqueeze(1)).to(out.dtype))
            return out.view_as(x)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.n1 = nn.LayerNorm(d)
            self.attn = nn.MultiheadAttention(d, 8, batch_first=True)
            self.n2 = nn.LayerNorm(d)
            self.moe = Experts()

        def forward(self, x, causal):
            h = self.n1(x)
            x = x + self.attn(h, h, h, attn_mask=causal, need_weights=False)[0]
            return x + self.moe(self.n2(x))

    emb = nn.Embedding(vocab, d).to(dev)
    blocks = nn.ModuleList([Block() for _ in range(4)]).to(dev)
    head = nn.Linear(d, vocab, bias=False).to(dev)
    opt = torch.optim.AdamW([*emb.parameters(), *blocks.parameters(), *head.parameters()], lr=1e-4)
    rng = random.Random(29)
    for step in range(24):
        length = rng.choice([128, 256, 384, 512, 768, 1024])
        batch = max(2, 8192 // length - rng.randrange(0, 4))
        ids = torch.randint(0, vocab, (batch, length + 1), device=dev)
        causal = torch.ones(length, length, device=dev, dtype=torch.bool).triu(1)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            h = emb(ids[:, :-1])
            for block in blocks:
                h = block(h, causal)
            logits = head(h)
            loss = F.cross_entropy(logits.float().view(-1, vocab), ids[:, 1:].reshape(-1))
        train_step(opt, loss)
        del ids, causal, h, logits, loss


def beam_search_kv(torch, nn, F, dev):
    d, heads, n_layers, vocab, beams = 1024, 16, 12, 32000, 4
    hd = d // heads

    class Layer(decoder_layer(nn, d)):
        def forward(self, x, cache):
            b, t, _ = x.shape
            q, k, v = (z.transpose(1, 2) for z in self.qkv(self.n1(x)).view(b, t, 3, heads, hd).unbind(2))
            if cache is not None:  # the cache grows by one token: a new, larger tensor each step
                k = torch.cat([cache[0], k], dim=2)
                v = torch.cat([cache[1], v], dim=2)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=t > 1)
            x = x + self.o(y.transpose(1, 2).reshape(b, t, d))
            return x + self.down(F.gelu(self.up(self.n2(x)))), (k, v)

    emb = nn.Embedding(vocab, d).to(dev, torch.float16)
    layers = nn.ModuleList([Layer() for _ in range(n_layers)]).to(dev, torch.float16).eval()
    head = nn.Linear(d, vocab, bias=False).to(dev, torch.float16)
    rng = random.Random(31)
    with torch.no_grad():
        for _ in range(6):
            batch = rng.choice([1, 2, 4])
            prompt = rng.randrange(32, 513)
            new = rng.randrange(32, 97)
            ids = torch.randint(0, vocab, (batch, prompt), device=dev).repeat_interleave(beams, 0)
            scores = torch.zeros(batch, beams, device=dev)
            scores[:, 1:] = -1e9  # the beams start identical: keep one until they diverge
            base = torch.arange(batch, device=dev)[:, None] * beams
            caches = [None] * n_layers
            for step in range(new):
                x = emb(ids)
                grown = []
                for layer, cache in zip(layers, caches):
                    x, kv = layer(x, cache)
                    grown.append(kv)
                logp = head(x[:, -1]).float().log_softmax(-1)
                total = (scores.view(-1, 1) + logp).view(batch, beams * vocab)
                scores, flat = total.topk(beams, dim=-1)
                origin = (flat // vocab + base).view(-1)
                ids = (flat % vocab).view(-1, 1)
                caches = [(k.index_select(0, origin), v.index_select(0, origin)) for k, v in grown]
                del grown, logp, total, x
            ids.cpu()
            del caches, ids, scores


def detect_multiscale(torch, nn, F, dev):
    classes = 80

    def conv(cin, cout, stride=1):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.SiLU(inplace=True))

    class Detector(nn.Module):
        def __init__(self):
            super().__init__()
            self.stages = nn.ModuleList([
                nn.Sequential(conv(3, 32, 2), conv(32, 64, 2), conv(64, 64)),
                nn.Sequential(conv(64, 128, 2), conv(128, 128)),
                nn.Sequential(conv(128, 256, 2), conv(256, 256)),
                nn.Sequential(conv(256, 512, 2), conv(512, 512)),
            ])
            self.lateral = nn.ModuleList([nn.Conv2d(c, 128, 1) for c in (128, 256, 512)])
            self.head = nn.Sequential(conv(128, 128), conv(128, 128), nn.Conv2d(128, classes + 4, 1))

        def forward(self, x):
            feats = []
            for i, stage in enumerate(self.stages):
                x = stage(x)
                if i >= 1:
                    feats.append(x)  # strides 8, 16, 32
            p = self.lateral[2](feats[2])
            outs = [p]
            for i in (1, 0):
                p = F.interpolate(p, size=feats[i].shape[-2:], mode="nearest") + self.lateral[i](feats[i])
                outs.append(p)
            return [self.head(o) for o in outs]

    model = Detector().to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = random.Random(37)
    for step in range(30):
        side = rng.choice(range(320, 641, 32))
        batch = max(8, int(48 * (320 / side) ** 2))
        images = torch.randn(batch, 3, side, side, device=dev).to(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = 0
            for out in model(images):
                b, _, h, w = out.shape
                cls = torch.randint(0, classes, (b, h, w), device=dev)
                box = torch.rand(b, 4, h, w, device=dev)
                loss = loss + F.cross_entropy(out[:, :classes].float(), cls) + F.smooth_l1_loss(out[:, classes:].float(), box)
        train_step(opt, loss)
        del images, loss, out, cls, box


def asr_ctc_train(torch, nn, F, dev):
    d, vocab, mels = 256, 500, 80

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.sub = nn.Sequential(nn.Conv2d(1, d, 3, 2), nn.ReLU(), nn.Conv2d(d, d, 3, 2), nn.ReLU())
            self.proj = nn.Linear(d * (((mels - 1) // 2 - 1) // 2), d)
            self.enc = transformer_encoder(nn, d, 4, 1024, 8, dropout=0.1, norm_first=True)
            self.out = nn.Linear(d, vocab)

        def forward(self, feats, pad_mask):
            h = self.sub(feats.unsqueeze(1))  # (batch, d, frames / 4, mels / 4)
            b, c, t, f = h.shape
            h = self.proj(h.transpose(1, 2).reshape(b, t, c * f))
            return self.out(self.enc(h, src_key_padding_mask=pad_mask))

    model = Model().to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    rng = random.Random(41)
    for step in range(30):
        frames = rng.randrange(400, 3001)
        batch = max(2, 48_000 // frames)
        feats = torch.randn(batch, frames, mels, device=dev)
        lengths = torch.randint(frames // 2, frames + 1, (batch,), device=dev)
        lengths[0] = frames
        out_lengths = ((lengths - 1) // 2 - 1) // 2
        t = ((frames - 1) // 2 - 1) // 2
        pad_mask = torch.arange(t, device=dev)[None] >= out_lengths[:, None]
        target_lengths = torch.randint(1, t // 4 + 1, (batch,), device=dev)
        targets = torch.randint(1, vocab, (batch, t // 4), device=dev)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(feats, pad_mask)
        log_probs = logits.float().log_softmax(-1).transpose(0, 1)
        loss = F.ctc_loss(log_probs, targets, out_lengths, target_lengths, zero_infinity=True)
        train_step(opt, loss)
        del feats, lengths, out_lengths, pad_mask, target_lengths, targets, logits, log_probs, loss


def dlrm_sparse_train(torch, nn, F, dev):
    n_tables, rows, dim, dense_features = 8, 400_000, 64, 13
    tables = nn.ModuleList([nn.EmbeddingBag(rows, dim, mode="sum", sparse=True) for _ in range(n_tables)]).to(dev)
    bottom = nn.Sequential(nn.Linear(dense_features, 256), nn.ReLU(), nn.Linear(256, dim), nn.ReLU()).to(dev)
    n = n_tables + 1
    pairs = n * (n - 1) // 2
    top = nn.Sequential(nn.Linear(dim + pairs, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 1)).to(dev)
    params = [*tables.parameters(), *bottom.parameters(), *top.parameters()]
    opt = torch.optim.Adagrad(params, lr=0.01, foreach=False)  # Adagrad takes the sparse gradients
    li, lj = torch.tril_indices(n, n, -1, device=dev)
    rng = random.Random(43)
    for step in range(30):
        batch = rng.choice([2048, 4096, 8192, 16384])
        dense = torch.randn(batch, dense_features, device=dev)
        features = [bottom(dense)]
        for table in tables:
            bag = torch.randint(1, 41, (batch,), device=dev)
            offsets = torch.cumsum(bag, 0) - bag
            indices = torch.randint(0, rows, (int(bag.sum()),), device=dev)
            features.append(table(indices, offsets))
        stacked = torch.stack(features, 1)
        interactions = torch.bmm(stacked, stacked.transpose(1, 2))[:, li, lj]
        logits = top(torch.cat([features[0], interactions], 1)).squeeze(1)
        labels = torch.randint(0, 2, (batch,), device=dev).float()
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        train_step(opt, loss)
        del dense, features, bag, offsets, indices, stacked, interactions, logits, labels, loss


def unet_train_ckpt(torch, nn, F, dev):
    from torch.utils.checkpoint import checkpoint

    def block(cin, cout):
        return nn.Sequential(
            nn.GroupNorm(8, cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1),
            nn.GroupNorm(8, cout), nn.SiLU(), nn.Conv2d(cout, cout, 3, padding=1),
        )

    class Net(nn.Module):
        def __init__(self, chans=(64, 128, 256, 256)):
            super().__init__()
            self.inp = nn.Conv2d(3, chans[0], 3, padding=1)
            self.down = nn.ModuleList()
            self.up = nn.ModuleList()
            c = chans[0]
            for co in chans:
                self.down.append(block(c, co))
                c = co
            for co in reversed(chans):
                self.up.append(block(c + co, co))
                c = co
            self.out = nn.Conv2d(c, 3, 3, padding=1)

        def forward(self, x):
            h = self.inp(x)
            skips = []
            for i, b in enumerate(self.down):
                h = checkpoint(b, h, use_reentrant=False)  # activations recomputed in backward
                skips.append(h)
                if i < len(self.down) - 1:
                    h = F.avg_pool2d(h, 2)
            for b in self.up:
                s = skips.pop()
                if h.shape[-2:] != s.shape[-2:]:
                    h = F.interpolate(h, size=s.shape[-2:], mode="nearest")
                h = checkpoint(b, torch.cat([h, s], 1), use_reentrant=False)
            return self.out(h)

    model = Net().to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    rng = random.Random(47)
    for step in range(24):
        side = rng.choice([128, 160, 192, 224, 256])
        batch = max(4, int(32 * (128 / side) ** 2))
        noisy = torch.randn(batch, 3, side, side, device=dev)
        clean = torch.randn(batch, 3, side, side, device=dev)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.mse_loss(model(noisy).float(), clean)
        train_step(opt, loss)
        del noisy, clean, loss


def gpt_grad_accum(torch, nn, F, dev):
    d, vocab, micro_batches = 768, 50257, 4
    emb = nn.Embedding(vocab, d).to(dev)
    pos = nn.Embedding(1024, d).to(dev)
    blocks = transformer_encoder(nn, d, 12, 4 * d, 6, dropout=0.0, norm_first=True, activation="gelu").to(dev)
    norm = nn.LayerNorm(d).to(dev)
    head = nn.Linear(d, vocab, bias=False).to(dev)
    params = [*emb.parameters(), *pos.parameters(), *blocks.parameters(), *norm.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-4)
    rng = random.Random(53)
    for step in range(10):
        for micro in range(micro_batches):  # gradients add up across the micro-batches
            length = rng.choice([256, 512, 768, 1024])
            batch = max(1, 4096 // length)
            ids = torch.randint(0, vocab, (batch, length + 1), device=dev)
            causal = torch.ones(length, length, device=dev, dtype=torch.bool).triu(1)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                h = emb(ids[:, :-1]) + pos(torch.arange(length, device=dev))
                h = blocks(h, mask=causal)
                logits = head(norm(h))
                loss = F.cross_entropy(logits.float().view(-1, vocab), ids[:, 1:].reshape(-1)) / micro_batches
            loss.backward()
            del ids, causal, h, logits
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        del loss


def stft_denoise(torch, nn, F, dev):
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 1, 3, padding=1)
    ).to(dev).eval()
    rng = random.Random(59)
    with torch.no_grad():
        for _ in range(80):
            batch = rng.choice([1, 2, 4, 8])
            samples = int(16000 * rng.uniform(1, 10))
            n_fft = rng.choice([512, 1024, 2048])
            window = torch.hann_window(n_fft, device=dev)
            audio = torch.randn(batch, samples, device=dev)
            spec = torch.stft(audio, n_fft, hop_length=n_fft // 4, window=window, return_complex=True)
            mag = spec.abs()
            mask = torch.sigmoid(net(mag.unsqueeze(1))).squeeze(1)
            cleaned = torch.polar(mag * mask, spec.angle())
            out = torch.istft(cleaned, n_fft, hop_length=n_fft // 4, window=window, length=samples)
            out.cpu()
            del window, audio, spec, mag, mask, cleaned, out


def pointcloud_dgcnn(torch, nn, F, dev):
    k, classes = 16, 13

    def edge_conv(cin, cout):
        return nn.Sequential(nn.Conv2d(2 * cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2))

    convs = nn.ModuleList([edge_conv(3, 64), edge_conv(64, 64), edge_conv(64, 128)]).to(dev)
    head = nn.Sequential(nn.Conv1d(256, 256, 1), nn.ReLU(), nn.Conv1d(256, classes, 1)).to(dev)
    opt = torch.optim.Adam([*convs.parameters(), *head.parameters()], lr=1e-3)
    rng = random.Random(61)
    for step in range(30):
        n = rng.randrange(1024, 8193)
        batch = min(16, max(1, 2**28 // (n * n)))  # the n × n distances stay within ~1 GB
        x = torch.randn(batch, 3, n, device=dev)
        labels = torch.randint(0, classes, (batch, n), device=dev)
        base = torch.arange(batch, device=dev)[:, None, None] * n
        outs = []
        for conv in convs:
            pts = x.transpose(1, 2)  # (batch, n, channels)
            idx = torch.cdist(pts, pts).topk(k, largest=False).indices  # a new graph every layer
            c = pts.shape[2]
            neighbours = pts.reshape(batch * n, c)[(idx + base).view(-1)].view(batch, n, k, c)
            centre = pts.unsqueeze(2).expand(-1, -1, k, -1)
            edges = torch.cat([neighbours - centre, centre], dim=3).permute(0, 3, 1, 2)
            x = conv(edges).max(dim=-1)[0]
            outs.append(x)
        loss = F.cross_entropy(head(torch.cat(outs, 1)), labels)
        train_step(opt, loss)
        del x, labels, base, outs, pts, idx, neighbours, centre, edges, loss


def clip_contrastive(torch, nn, F, dev):
    d, vocab = 512, 49408

    def tower():
        return transformer_encoder(nn, d, 8, 4 * d, 4, dropout=0.0, norm_first=True, activation="gelu").to(dev)

    patch = nn.Conv2d(3, d, 16, stride=16).to(dev)
    image_tower = tower()
    tok = nn.Embedding(vocab, d).to(dev)
    text_pos = nn.Embedding(77, d).to(dev)
    text_tower = tower()
    image_proj = nn.Linear(d, d, bias=False).to(dev)
    text_proj = nn.Linear(d, d, bias=False).to(dev)
    modules = (patch, image_tower, tok, text_pos, text_tower, image_proj, text_proj)
    opt = torch.optim.AdamW([p for m in modules for p in m.parameters()], lr=1e-4)
    rng = random.Random(67)
    for step in range(24):
        batch = rng.choice([64, 128, 256, 384, 512])
        length = rng.randrange(16, 78)
        images = torch.randn(batch, 3, 112, 112, device=dev)
        ids = torch.randint(0, vocab, (batch, length), device=dev)
        lengths = torch.randint(4, length + 1, (batch,), device=dev)
        pad = torch.arange(length, device=dev)[None] >= lengths[:, None]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            img = image_tower(patch(images).flatten(2).transpose(1, 2)).mean(1)
            txt = text_tower(tok(ids) + text_pos(torch.arange(length, device=dev)), src_key_padding_mask=pad).mean(1)
            img = F.normalize(image_proj(img).float(), dim=-1)
            txt = F.normalize(text_proj(txt).float(), dim=-1)
            logits = img @ txt.t() * 14.3  # batch × batch similarities
            target = torch.arange(batch, device=dev)
            loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
        train_step(opt, loss)
        del images, ids, lengths, pad, img, txt, logits, target, loss


# ---- recording ----


def record(name, out_dir):
    import torch

    torch.manual_seed(0)
    random.seed(0)
    torch.cuda.init()
    torch.cuda.memory._record_memory_history(enabled="all", context=None, stacks="python", max_entries=20_000_000)
    t0 = time.time()
    globals()[name](torch, torch.nn, torch.nn.functional, torch.device("cuda"))
    torch.cuda.synchronize()
    snapshot = torch.cuda.memory._snapshot()
    torch.cuda.memory._record_memory_history(enabled=None)
    entries = snapshot["device_traces"][torch.cuda.current_device()]
    live = {}  # address -> (block id, bytes), for blocks allocated and not yet freed
    lines = []
    next_id = live_bytes = peak = 0
    for entry in entries:
        action = entry["action"]
        if action == "alloc":
            addr, size = entry["addr"], entry["size"]
            if addr in live:
                raise RuntimeError(f"{name}: address {addr:#x} allocated twice without a free")
            live[addr] = (next_id, size)
            lines.append(f"a {next_id} {size}")
            next_id += 1
            live_bytes += size
            peak = max(peak, live_bytes)
        elif action == "free_requested":
            block = live.pop(entry["addr"], None)
            if block is None:
                continue  # allocated before recording started
            lines.append(f"f {block[0]}")
            live_bytes -= block[1]
    card = torch.cuda.get_device_name()
    header = (
        f"# workload {name}: recorded from PyTorch {torch.__version__} memory history on {card}; "
        f"ops {len(lines)}; peak live {peak} bytes"
    )
    path = os.path.join(out_dir, f"{name}.trace.gz")
    with gzip.open(path, "wt", compresslevel=9) as f:
        f.write(header + "\n")
        f.write("\n".join(lines) + "\n")
    print(
        f"{name}: {len(lines)} ops, peak live {peak / 2**30:.2f} GiB, {len(live)} live at the end, "
        f"{time.time() - t0:.1f} s -> {path}",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("--one", choices=WORKLOADS, help="record one workload in this process")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated workloads")
    parser.add_argument("--timeout", type=int, default=180, help="seconds per workload")
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    if args.one:
        record(args.one, args.out_dir)
        return 0
    status = 0
    for name in args.only.split(","):
        if name not in WORKLOADS:
            print(f"unknown workload {name!r} (known: {', '.join(WORKLOADS)})", file=sys.stderr)
            return 2
        try:
            done = subprocess.run(
                [sys.executable, __file__, "--one", name, args.out_dir], timeout=args.timeout
            )
            if done.returncode != 0:
                print(f"{name}: exit {done.returncode}", file=sys.stderr)
                status = 1
        except subprocess.TimeoutExpired:
            print(f"{name}: timed out after {args.timeout} s", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
