"""fastser.methods.can.model: shapes, packed == per-word loop, padding invariance, fused ==
reference, the stop-gradient's effect on the auxiliary heads, fusion and loss, bad batches,
TorchScript."""

import pytest
import torch
from torch.nn import functional as F

import optest
from fastser.methods.can.model import (CAN, CANInference, fuse_predictions, can_loss,
                                       scatter_words, word_vectors_loop)

VOCAB, CLASSES = 30, 4


def make_model(implementation="fused", dtype=torch.float32, seed=0, **kwargs):
    torch.manual_seed(seed)
    options = dict(embed_dim=12, hidden=8, word_hidden=6, heads=4, dropout=0.0)
    options.update(kwargs)
    return CAN(VOCAB, CLASSES, implementation=implementation, **options).to(dtype).eval()


def make_batch(lengths=(5, 2, 7), max_frames=9, steps=None, seed=0, dtype=torch.float32):
    """token ids (B, steps), word frames (W, F, 40), frame lengths (W,), lengths (B,)."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths, dtype=torch.long)
    steps = steps or int(lengths.max())
    token_ids = torch.zeros(len(lengths), steps, dtype=torch.long)
    for b, n in enumerate(lengths.tolist()):
        token_ids[b, :n] = torch.randint(1, VOCAB, (n,), generator=gen)
    words = int(lengths.sum())
    frame_lengths = torch.randint(1, max_frames + 1, (words,), generator=gen)
    frame_lengths[0] = max_frames
    frames = 3 * torch.randn(words, max_frames, 40, generator=gen, dtype=dtype)
    frames[torch.arange(max_frames)[None, :] >= frame_lengths[:, None]] = 0
    return token_ids, frames, frame_lengths, lengths


def utterance(batch, b):
    """Utterance b of a batch on its own, without padding."""
    token_ids, frames, frame_lengths, lengths = batch
    first = int(lengths[:b].sum())
    n = int(lengths[b])
    word_lengths = frame_lengths[first:first + n]
    return (token_ids[b:b + 1, :n], frames[first:first + n, :int(word_lengths.max())],
            word_lengths, lengths[b:b + 1])


def test_shapes_and_zero_padding_of_the_encoders():
    model = make_model(embed_dim=20, hidden=128, word_hidden=128)
    token_ids, frames, frame_lengths, lengths = make_batch()
    h_text = model.text(token_ids, lengths)
    h_audio = model.audio(frames, frame_lengths, lengths, token_ids.shape[1])
    assert h_text.shape == h_audio.shape == (3, 7, 256)
    padding = optest.padding_mask(lengths, 7)
    assert h_text[padding].abs().sum() == 0 and h_audio[padding].abs().sum() == 0
    assert h_text[~padding].abs().min(dim=-1).values.gt(0).all()
    outputs = model(token_ids, frames, frame_lengths, lengths)
    assert [tuple(o.shape) for o in outputs] == [(3, CLASSES)] * 3


def test_scatter_words_places_each_utterances_words_in_order():
    vectors = torch.arange(6.0)[:, None].repeat(1, 2)
    out = scatter_words(vectors, torch.tensor([2, 1, 3]), 4)
    assert out[:, :, 0].tolist() == [[0, 1, 0, 0], [2, 0, 0, 0], [3, 4, 5, 0]]


@pytest.mark.parametrize("method", ["packed", "reversed"])
def test_batched_word_blstm_equals_a_loop_over_words(method):
    model = make_model(dtype=torch.float64, blstm_method=method)
    model.audio.feature_mean.fill_(0.5)
    model.audio.feature_std.fill_(2.0)
    _, frames, frame_lengths, _ = make_batch(lengths=(4, 1, 6), max_frames=11,
                                             dtype=torch.float64)
    packed = model.audio.word_vectors(frames, frame_lengths)
    assert packed.shape == (11, 12)
    torch.testing.assert_close(packed, word_vectors_loop(model.audio, frames, frame_lengths),
                               atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("method", ["packed", "reversed"])
def test_prediction_does_not_depend_on_batch_padding(method):
    model = make_model(blstm_method=method)
    batch = make_batch(lengths=(3, 8, 1, 5), max_frames=12)
    with torch.no_grad():
        together = model.predict_proba(*batch)
        padded_more = model.predict_proba(*make_batch(lengths=(3, 8, 1, 5), max_frames=12,
                                                      steps=11))
        for b in range(4):
            alone = model.predict_proba(*utterance(batch, b))
            torch.testing.assert_close(alone[0], together[b], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(padded_more, together, atol=1e-6, rtol=1e-5)


def _outputs_and_grads(model, batch):
    model.zero_grad()
    outputs = model(*batch)
    weights = [torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view_as(o) for o in outputs]
    sum((o * w).sum() for o, w in zip(outputs, weights)).backward()
    return outputs, {n: p.grad.clone() for n, p in model.named_parameters()}


def test_fused_and_reference_implementations_agree_in_outputs_and_gradients():
    fused = make_model(dtype=torch.float64)
    naive = make_model(implementation="reference", dtype=torch.float64)
    naive.load_state_dict(fused.state_dict())
    assert naive.cross.implementation == "reference" and fused.cross.implementation == "fused"
    batch = make_batch(lengths=(6, 1, 3, 9), dtype=torch.float64)
    out_fused, grads_fused = _outputs_and_grads(fused, batch)
    out_naive, grads_naive = _outputs_and_grads(naive, batch)
    for a, b in zip(out_fused, out_naive):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)
    assert grads_fused.keys() == grads_naive.keys()
    for name in grads_fused:
        assert grads_fused[name].abs().sum() > 0, name  # gradients reach every parameter
        torch.testing.assert_close(grads_fused[name], grads_naive[name], atol=1e-11,
                                   rtol=1e-9, msg=name)


def test_packed_and_reversed_blstm_methods_agree_with_gradients():
    packed = make_model(dtype=torch.float64, blstm_method="packed")
    reversed_ = make_model(dtype=torch.float64, blstm_method="reversed")
    batch = make_batch(lengths=(6, 1, 3, 9), dtype=torch.float64)
    out_packed, grads_packed = _outputs_and_grads(packed, batch)
    out_reversed, grads_reversed = _outputs_and_grads(reversed_, batch)
    for a, b in zip(out_packed, out_reversed):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)
    for name in grads_packed:
        torch.testing.assert_close(grads_packed[name], grads_reversed[name], atol=1e-11,
                                   rtol=1e-9, msg=name)


@pytest.mark.parametrize("head,silent", [
    ("text", ("audio.", "cross.q_audio", "classifier.", "audio_classifier.")),
    ("audio", ("text.", "cross.q_text", "classifier.", "text_classifier.")),
])
def test_auxiliary_heads_train_only_their_own_modality(head, silent):
    """ŷ_T sees [c_tt; c_at], ŷ_A sees [c_aa; c_ta]: through the stop-gradient, each auxiliary
    loss reaches only its own modality's encoder and query."""
    model = make_model(dtype=torch.float64)
    batch = make_batch(dtype=torch.float64)
    logits = dict(zip(("all", "text", "audio"), model(*batch)))
    F.cross_entropy(logits[head], torch.tensor([0, 1, 2])).backward()
    for name, parameter in model.named_parameters():
        grad = parameter.grad
        blocked = name.startswith(silent)
        assert (grad is None or grad.abs().sum() == 0) == blocked, name


def test_fused_prediction_is_the_renormalised_product():
    gen = torch.Generator().manual_seed(1)
    logits = [torch.randn(5, 4, generator=gen) for _ in range(3)]
    p, p_t, p_a = (x.softmax(dim=1) for x in logits)
    product = p * p_t ** 0.1 * p_a ** 0.1
    torch.testing.assert_close(fuse_predictions(*logits, 0.1),
                               product / product.sum(dim=1, keepdim=True))
    labels = torch.tensor([0, 3, 1, 1, 2])
    want = (F.cross_entropy(logits[0], labels)
            + 0.1 * (F.cross_entropy(logits[1], labels) + F.cross_entropy(logits[2], labels)))
    torch.testing.assert_close(can_loss(*logits, labels, 0.1), want)


def _replace(batch, index, value):
    batch = list(batch)
    batch[index] = value
    return batch


@pytest.mark.parametrize("change,message", [
    (lambda b: _replace(b, 3, torch.tensor([5, 2, 6])), "text and audio step counts disagree"),
    (lambda b: _replace(b, 3, torch.tensor([5, 2, 8])), r"lengths must be in \[1, 7\]"),
    (lambda b: _replace(b, 3, torch.tensor([5, 2, 7], dtype=torch.int32)), "lengths must be int64"),
    (lambda b: _replace(b, 0, b[0].clamp(max=VOCAB - 1) + 1), r"token ids must be in \[0, 30\)"),
    (lambda b: _replace(b, 1, b[1][..., :13]), r"frames must be float \(W, F, 40\)"),
    (lambda b: _replace(b, 2, b[2] * 0), r"frame_lengths must be in \[1, 9\]"),
    (lambda b: _replace(b, 2, b[2][:-1]), r"frame_lengths must be int64 \(14,\)"),
    (lambda b: _replace(b, 1, b[1].to("meta")), "frames is on meta but token_ids on cpu"),
])
def test_bad_batches_raise_clear_errors(change, message):
    model = make_model()
    with pytest.raises(ValueError, match=message):
        model(*change(make_batch()))


def test_configuration_errors():
    with pytest.raises(ValueError, match="heads .3. must divide"):
        CAN(VOCAB, CLASSES, hidden=8, heads=3)
    with pytest.raises(ValueError, match="num_classes"):
        CAN(VOCAB, 1)
    with pytest.raises(ValueError, match="vocab_size"):
        CAN(2, CLASSES)
    with pytest.raises(ValueError, match="method must be one of"):
        CAN(VOCAB, CLASSES, blstm_method="cudnn")
    with pytest.raises(ValueError, match="implementation must be one of"):
        CAN(VOCAB, CLASSES, implementation="naive")


def test_export_module_is_scriptable_and_saves(tmp_path):
    """(The recipe's test reloads the saved export in a fresh process.)"""
    model = make_model()
    batch = make_batch(lengths=(4, 1, 6))
    export = CANInference(model)
    path = tmp_path / "can.pt"
    optest.script_roundtrip(export, batch, path)
    with torch.no_grad():
        expected = model.predict_proba(*batch)
    torch.testing.assert_close(expected.sum(dim=1), torch.ones(3))
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(path))(*batch), expected)


# -- Table 4's ablations and Eq. 11-12 ---------------------------------------------------------
def _shared_weights(source, target):
    """``target`` with every parameter of ``source`` whose name and shape it shares."""
    own = target.state_dict()
    own.update({k: v for k, v in source.state_dict().items()
                if k in own and own[k].shape == v.shape})
    target.load_state_dict(own)
    return target


def test_own_context_side_heads_read_c_tt_and_c_aa_alone():
    """Eq. 11-12: ŷ_T = W_T c_tt + b_T, ŷ_A = W_A c_aa + b_A; ŷ is unchanged."""
    base = make_model(dtype=torch.float64)
    own = _shared_weights(base, make_model(dtype=torch.float64, side_heads="own_context"))
    assert own.text_classifier.in_features == own.audio_classifier.in_features == 8 * 2
    batch = make_batch(dtype=torch.float64)
    with torch.no_grad():
        logits, text, audio = own(*batch)
        h_text = own.text(batch[0], batch[3])
        h_audio = own.audio(batch[1], batch[2], batch[3], batch[0].shape[1])
        c_tt, _, c_aa, _ = own.cross(h_text, h_audio, batch[3])
        torch.testing.assert_close(text, own.text_classifier(c_tt))
        torch.testing.assert_close(audio, own.audio_classifier(c_aa))
        torch.testing.assert_close(logits, base(*batch)[0])


def test_without_stop_gradient_only_the_gradients_through_the_crossed_weights_change():
    """The forward pass is unchanged; the crossed contexts' losses now reach the attending
    query: with sg the text head's loss leaves q_audio and the audio encoder untouched, without
    it they take a gradient (equal to autograd of the formulation without sg)."""
    sg = make_model(dtype=torch.float64)
    free = _shared_weights(sg, make_model(dtype=torch.float64, stop_gradient=False))
    assert free.cross.stop_gradient is False and sg.cross.stop_gradient is True
    batch = make_batch(dtype=torch.float64)
    outputs = [m(*batch) for m in (sg, free)]
    for a, b in zip(*outputs):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)
    for model, out in zip((sg, free), outputs):
        F.cross_entropy(out[1], torch.tensor([0, 1, 2])).backward()
    assert float(sg.cross.q_audio.grad.abs().sum()) == 0.0
    assert float(free.cross.q_audio.grad.abs().sum()) > 0.0
    # the text side's own gradients are the same
    torch.testing.assert_close(free.text_classifier.weight.grad, sg.text_classifier.weight.grad)


def test_without_cross_attention_the_prediction_reads_c_tt_and_c_aa_and_nothing_else():
    model = make_model(dtype=torch.float64, cross_attention=False)
    assert model.classifier.in_features == 2 * 16
    assert not any(n.startswith(("text_classifier", "audio_classifier"))
                   for n, _ in model.named_parameters())
    batch = make_batch(dtype=torch.float64)
    logits, text, audio = model(*batch)
    assert text is None and audio is None
    with torch.no_grad():
        h_text = model.text(batch[0], batch[3])
        h_audio = model.audio(batch[1], batch[2], batch[3], batch[0].shape[1])
        c_tt, _, c_aa, _ = model.cross(h_text, h_audio, batch[3])
        torch.testing.assert_close(logits, model.classifier(torch.cat([c_tt, c_aa], dim=1)))
    labels = torch.tensor([0, 1, 2])
    torch.testing.assert_close(can_loss(logits, text, audio, labels, 0.1),
                               F.cross_entropy(logits, labels))
    torch.testing.assert_close(model.predict_proba(*batch), logits.float().softmax(dim=1))
    with pytest.raises(ValueError, match="side_heads must be one of"):
        make_model(side_heads="text")
