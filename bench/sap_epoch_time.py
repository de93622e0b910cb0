#!/usr/bin/env python
"""Cached vs uncached epoch time of the SAP demo model (frozen 'small' random WavLM,
weighted layer sum) on the synthetic corpus's training voices, batch 16, 2 threads."""
import sys, tempfile, time
import torch
from fastser.audio.io import load_audio
from fastser.data.protocols import speaker_split
from fastser.data.synthetic import load_synthetic
from fastser.methods.sap.model import SAPModel
from fastser.methods.sap.recipe import SAPRecipe

torch.set_num_threads(2)
preset = sys.argv[1] if len(sys.argv) > 1 else "small"
corpus = load_synthetic()
train = list(speaker_split(corpus, seed=0).train)
cache_dir = tempfile.mkdtemp()
recipe = SAPRecipe(corpus.labels, ssl_config=preset, cache_dir=cache_dir)
t = time.perf_counter(); items = recipe.featurize(train); cold = time.perf_counter() - t
t = time.perf_counter(); items = recipe.featurize(train); warm = time.perf_counter() - t
recipe.fit_extra(items)

def epoch(model, batches, inputs):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    t = time.perf_counter()
    for batch in batches:
        opt.zero_grad(); out = model(inputs(batch), batch["lengths"], batch["speech"])
        torch.nn.functional.cross_entropy(out.logits, batch["labels"]).backward(); opt.step()
    return time.perf_counter() - t

batches = [recipe.collate(items[i:i + 16]) for i in range(0, len(items), 16)]
torch.manual_seed(0); cached = recipe.build_model()
waves = [load_audio(u.path, 16000) for u in train]
wave_batches = []
for i, b in enumerate(batches):
    w = torch.nn.utils.rnn.pad_sequence(waves[i * 16:(i + 1) * 16], batch_first=True)
    n = torch.tensor([len(x) for x in waves[i * 16:(i + 1) * 16]])
    wave_batches.append({**b, "waves": w, "lengths": n})
front_end = recipe.new_front_end()
uncached = SAPModel(cached.head, front_end=front_end)
t_cached = min(epoch(cached, batches, lambda b: b["inputs"]) for _ in range(2))
t_uncached = epoch(uncached, wave_batches, lambda b: b["waves"])
print(f"preset={preset} train utterances={len(items)} featurize cold={cold:.1f}s "
      f"warm(cache read)={warm:.2f}s epoch cached={t_cached:.2f}s "
      f"uncached={t_uncached:.2f}s ratio={t_uncached / t_cached:.1f}x")
