"""torch.compile of the methods' models: whole-graph capture with the fused ops inside the
graph, predictions and gradients equal to eager; the trainer's ``compile`` option."""

from __future__ import annotations

import math

import pytest
import torch

from fastser.checkpoint import load_checkpoint
from fastser.methods import METHODS, recipe_class
from fastser.train.trainer import TrainConfig, Trainer
from random_models import demo_recipe

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")

#: Methods whose model compiles as one graph (fullgraph=True), with the fused op it calls.
#: GLRF's and CAN's do not (CAN: Dynamo does not trace nn.LSTM; GLRF: the captured backward
#: fails a view after dropout) and compile with graph breaks.
FULLGRAPH = {"mstr": "fastser.fractal_attention", "transformer": None, "sap": None,
             "mmtl": None}
#: Every gradient-trained method (egemaps is fitted by scikit-learn). MTL's loss calls
#: MultiTaskNet.heads (both heads) rather than forward, so torch.compile of the module
#: (``--compile``) leaves its training step eager; its predictions go through forward.
TRAINED = sorted(m for m in METHODS if recipe_class(m).gradient_trained)


class GraphRecorder:
    """A torch.compile backend that keeps the captured FX graphs and runs them as they are."""

    def __init__(self):
        self.graphs: list[str] = []

    def __call__(self, gm, example_inputs):
        self.graphs.append(str(gm.graph))
        return gm.forward


@pytest.mark.parametrize("name", TRAINED)
def test_compiled_model_matches_eager(name, tiny_corpus, tmp_path):
    torch._dynamo.reset()
    recipe = demo_recipe(name, tiny_corpus, tmp_path)
    items = recipe.featurize(list(tiny_corpus)[:8])
    recipe.fit_extra(items)
    torch.manual_seed(0)
    eager = recipe.build_model().train()
    compiled = recipe.build_model().train()
    compiled.load_state_dict(eager.state_dict())
    recorder = GraphRecorder()
    compiled.compile(fullgraph=name in FULLGRAPH, dynamic=True, backend=recorder)
    batch = recipe.collate(items)

    def gradients(model):
        torch.manual_seed(1)  # the same dropout masks
        model.zero_grad()
        loss = recipe.loss(model, batch)
        loss.backward()
        return loss, [p.grad for p in model.parameters()]

    loss, grads = gradients(eager)
    compiled_loss, compiled_grads = gradients(compiled)
    assert recorder.graphs or name == "mtl", "the model's forward was not compiled"
    torch.testing.assert_close(compiled_loss, loss, atol=1e-5, rtol=1e-5)
    for got, expected in zip(compiled_grads, grads):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    eager.eval(), compiled.eval()
    with torch.no_grad():
        torch.testing.assert_close(recipe.predict(compiled, batch).probs,
                                   recipe.predict(eager, batch).probs, atol=1e-5, rtol=1e-5)
    assert recorder.graphs, "the model's forward was not compiled"
    if FULLGRAPH.get(name):
        assert any(FULLGRAPH[name] in graph for graph in recorder.graphs)


def test_trainer_compiles_the_model(tiny_corpus, tmp_path):
    torch._dynamo.reset()
    recipe = demo_recipe("mstr", tiny_corpus, tmp_path)
    items = recipe.featurize(list(tiny_corpus))
    config = TrainConfig(epochs=1, batch_size=8, progress=False, device="cpu", amp="off",
                         compile=True)
    result = Trainer(recipe, config, tmp_path / "run").fit(items[:32], items[32:])
    assert math.isfinite(result.history[0]["train_loss"])
    assert hasattr(result.model, "_compiled_call_impl") and result.model._compiled_call_impl
    fresh = recipe.build_model()  # the checkpoint's keys are the eager model's
    fresh.load_state_dict(load_checkpoint(tmp_path / "run" / "last.pt")["model"])
