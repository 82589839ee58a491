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
Seeds are fixed, but kernels (cuDNN, cuBLAS) may choose workspaces differently on another card.

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

WORKLOADS = ("unet_sampling", "bert_train_adamw", "gnn_train", "mixed_serving")


# ---- workloads (torch is imported inside, so the driver mode needs no torch) ----


def unet_sampling(torch):
    nn = torch.nn
    F = torch.nn.functional

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

    dev = torch.device("cuda")
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


def bert_train_adamw(torch):
    nn = torch.nn
    F = torch.nn.functional
    dev = torch.device("cuda")
    vocab, d = 30522, 768

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(vocab, d)
            self.pos = nn.Embedding(512, d)
            layer = nn.TransformerEncoderLayer(d, 12, 3072, dropout=0.1, batch_first=True, norm_first=True)
            self.layers = nn.TransformerEncoder(layer, 8, enable_nested_tensor=False)
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
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        del logits, loss


def gnn_train(torch):
    nn = torch.nn
    F = torch.nn.functional
    dev = torch.device("cuda")
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
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        del x, src, dst, deg, inv_deg, y, h, loss


def mixed_serving(torch):
    nn = torch.nn
    F = torch.nn.functional
    dev = torch.device("cuda")

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
    layer = nn.TransformerEncoderLayer(512, 8, 2048, batch_first=True)
    text = nn.TransformerEncoder(layer, 6, enable_nested_tensor=False).to(dev, torch.float16).eval()
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


# ---- recording ----


def record(name, out_dir):
    import torch

    torch.manual_seed(0)
    random.seed(0)
    torch.cuda.init()
    torch.cuda.memory._record_memory_history(enabled="all", context=None, stacks="python", max_entries=20_000_000)
    t0 = time.time()
    globals()[name](torch)
    torch.cuda.synchronize()
    snapshot = torch.cuda.memory._snapshot()
    torch.cuda.memory._record_memory_history(enabled=None)
    entries = snapshot["device_traces"][torch.cuda.current_device()]
    ids = {}
    lines = []
    live = live_bytes = peak = 0
    sizes = {}
    next_id = 0
    for entry in entries:
        action = entry["action"]
        if action == "alloc":
            addr = entry["addr"]
            if addr in ids:
                raise RuntimeError(f"{name}: address {addr:#x} allocated twice without a free")
            ids[addr] = next_id
            sizes[next_id] = entry["size"]
            lines.append(f"a {next_id} {entry['size']}")
            live_bytes += entry["size"]
            peak = max(peak, live_bytes)
            next_id += 1
        elif action == "free_requested":
            block = ids.pop(entry["addr"], None)
            if block is None:
                continue  # allocated before recording started
            lines.append(f"f {block}")
            live_bytes -= sizes.pop(block)
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
        f"{name}: {len(lines)} ops, peak live {peak / 2**30:.2f} GiB, {len(ids)} live at the end, "
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
