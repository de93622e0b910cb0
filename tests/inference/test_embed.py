"""Embeddings: every method's Recipe.embed gives the representation its classifier reads (the
classifier applied to it gives the model's logits), Recognizer.embed/embed_batch agree, and
`fastser embed` writes .npy arrays with CSV indexes, reporting unusable recordings."""

import csv

import numpy as np
import pytest
import torch

from fastser.audio.alignment import WordTiming
from fastser.cli import main
from fastser.inference import Recognizer
from fastser.methods import METHODS
from random_models import noise, random_trained, write_wavs

TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}


def _batch(recipe, seconds=(0.7, 3.3, 5.0)):
    if recipe.name == "can":
        items = [recipe.item_from_audio(noise(s, i), words=[
            WordTiming(w, k * s / 3, (k + 1) * s / 3) for k, w in enumerate(["yes", "no", "x"])])
            for i, s in enumerate(seconds)]
    else:
        items = [recipe.item_from_audio(noise(s, i)) for i, s in enumerate(seconds)]
    return recipe.collate(items)


def _classified(recipe, model, batch, embeddings):
    """(the classifier applied to the embeddings, the model's own logits)."""
    name = recipe.name
    if name == "glrf":
        features, _ = recipe.segments(batch, recipe.test_hop_samples)
        return model.scorer(embeddings.segments), model(features)
    if name in ("stl", "mtl", "mmtl"):
        head = model.transfer if name == "mmtl" else model.emotion
        return head(embeddings.segments), model(batch["segments"])
    if name in ("mstr", "transformer"):
        return (model.classifier(embeddings.utterance),
                model(batch["features"], batch["lengths"]))
    if name == "sap":
        head = model.head
        return (head.classifier(head.projection(embeddings.utterance)),
                model(batch["inputs"], batch["lengths"], batch["speech"]).logits)
    if name == "egemaps":
        return model.scores(embeddings.utterance), model(batch["features"])
    assert name == "can"
    inputs = (batch["token_ids"], batch["frames"], batch["frame_lengths"], batch["lengths"])
    return model.classifier(embeddings.utterance), model(*inputs)[0]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_embeddings_are_what_the_classifier_reads(method):
    recipe, model = random_trained(method)
    batch = _batch(recipe)
    with torch.no_grad():
        embeddings = recipe.embed(model, batch)
        classified, logits = _classified(recipe, model, batch, embeddings)
    torch.testing.assert_close(classified, logits, **TOLERANCE)
    assert embeddings.utterance.shape[0] == 3
    if embeddings.segments is not None:  # utterance = mean of its segments
        owner = torch.repeat_interleave(torch.arange(3), embeddings.segment_counts)
        means = torch.stack([embeddings.segments[owner == b].mean(0) for b in range(3)])
        torch.testing.assert_close(embeddings.utterance, means, **TOLERANCE)
    if embeddings.frames is not None:  # utterance = mean of its valid frames
        means = torch.stack([embeddings.frames[b, :n].mean(0)
                             for b, n in enumerate(embeddings.frame_lengths.tolist())])
        torch.testing.assert_close(embeddings.utterance, means, **TOLERANCE)


@pytest.mark.parametrize("method", ["glrf", "mstr"])
def test_embed_batch_equals_one_at_a_time(method, checkpoints):
    recognizer = Recognizer.from_checkpoint(checkpoints(method))
    waves = [noise(seconds, seed) for seed, seconds in enumerate([1.1, 4.4, 2.6])]
    for wave, together in zip(waves, recognizer.embed_batch(waves, 16000, batch_seconds=20)):
        alone = recognizer.embed(wave, 16000)
        torch.testing.assert_close(together.utterance, alone.utterance, **TOLERANCE)
        for part in ("segments", "frames"):
            if getattr(alone, part) is not None:
                torch.testing.assert_close(getattr(together, part), getattr(alone, part),
                                           **TOLERANCE)
                assert getattr(together, f"{part[:-1]}_spans") == \
                    getattr(alone, f"{part[:-1]}_spans")
    assert recognizer.embedding_parts() == ({"segments"} if method == "glrf" else {"frames"})


def _csv(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_embed_command_writes_arrays_and_indexes(checkpoints, tmp_path, capsys):
    folder = tmp_path / "audio"
    write_wavs(folder, [1.0, 3.0, 4.5])
    (folder / "a1b.wav").write_bytes(b"garbage")
    out = tmp_path / "embeddings"
    checkpoint = checkpoints("glrf")
    assert main(["embed", "--checkpoint", str(checkpoint), str(folder), "--out", str(out),
                 "--segments", "--no-progress"]) == 0
    index = _csv(out / "index.csv")
    assert [r["path"] for r in index] == [str(folder / n) for n in
                                          ("a0.wav", "a1.wav", "a1b.wav", "a2.wav")]
    assert [r["row"] for r in index] == ["0", "1", "", "2"]
    assert "cannot decode" in index[2]["error"]
    utterances = np.load(out / "utterances.npy")
    segments = np.load(out / "segments.npy")
    spans = _csv(out / "segments.csv")
    recognizer = Recognizer.from_checkpoint(checkpoint)
    for row in (r for r in index if r["row"]):
        alone = recognizer.embed(row["path"])
        np.testing.assert_allclose(utterances[int(row["row"])], alone.utterance.numpy(),
                                   **TOLERANCE)
        mine = [s for s in spans if s["id"] == row["id"]]
        assert [(float(s["start"]), float(s["end"])) for s in mine] == alone.segment_spans
        np.testing.assert_allclose(segments[[int(s["row"]) for s in mine]],
                                   alone.segments.numpy(), **TOLERANCE)
    assert not (tmp_path / "embeddings.partial").exists()


def test_embed_command_frames_and_errors(checkpoints, tmp_path, capsys):
    write_wavs(tmp_path, [2.0, 1.0])
    out = tmp_path / "emb"
    mstr = str(checkpoints("mstr"))
    assert main(["embed", "--checkpoint", mstr, str(tmp_path / "a0.wav"),
                 str(tmp_path / "a1.wav"), "--out", str(out), "--frames", "--no-progress"]) == 0
    frames, spans = np.load(out / "frames.npy"), _csv(out / "frames.csv")
    assert frames.shape[0] == len(spans) == 99 + 49  # 25 ms frames every 20 ms
    assert (float(spans[1]["start"]), float(spans[1]["end"])) == (0.02, 0.045)
    assert main(["embed", "--checkpoint", mstr, str(tmp_path / "a0.wav"), "--out",
                 str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["embed", "--checkpoint", str(checkpoints("glrf")), str(tmp_path / "a0.wav"),
                 "--out", str(tmp_path / "other"), "--frames"]) == 2
    assert "--frames: this model gives no frame embeddings" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
