"""The two backends of torch.ops.fastser (fastser/ops/_library.py): one schema file for both,
and the reference backend that serves the ops when the compiled extension is not loaded (one
warning, `fastser info` naming it and why, the same results).  The op, model and CLI tests
run on the reference backend too: FASTSER_REFERENCE_OPS=1 pytest ... (.ci/run)."""

from __future__ import annotations

import json

import pytest
import torch

import fastser
import optest
from fastser.ops import _library


def test_every_registered_schema_is_the_schema_file():
    registered = {str(getattr(torch.ops.fastser, name.split("::")[1]).default._schema)
                  for name in fastser.ops.registered_ops()}
    assert registered == {f"fastser::{schema}" for schema in _library.schemas()}
    assert len(_library.schemas()) == 6


def test_schema_parsing_drops_comments_and_joins_lines():
    text = '''// outside the literal
R"schemas(
# a comment; with a semicolon
f(Tensor x,   # the input
  int n) -> Tensor;
g() -> ();
)schemas"'''
    assert _library.parse_schemas(text) == ["f(Tensor x, int n) -> Tensor", "g() -> ()"]
    with pytest.raises(RuntimeError, match="ends without ';'"):
        _library.parse_schemas('R"schemas(f() -> ()\n)schemas"')


def _run(code: str, **env: str) -> str:
    return optest.run_in_fresh_process(code, env=env)


# Inputs of every op, and their outputs and gradients, as a fresh process computes them.
EVERY_OP = """
    import json, warnings, torch
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import fastser
    from fastser.ops import cross_attention, fractal_attention, head_k_pooling_loss
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 20, 2, 8, generator=gen, requires_grad=True) for _ in range(3))
    h_text, h_audio = (torch.randn(3, 20, 2, 8, generator=gen, requires_grad=True)
                       for _ in range(2))
    q_text, q_audio = (torch.randn(2, 8, generator=gen, requires_grad=True) for _ in range(2))
    lengths = torch.tensor([20, 7, 1])
    logits = torch.randn(28, 4, generator=gen, requires_grad=True)
    outputs = [fractal_attention(q, k, v, lengths),
               *cross_attention(h_text, h_audio, q_text, q_audio, lengths, scale=0.5),
               head_k_pooling_loss(logits, lengths, torch.tensor([0, 3, 1]), neutral_class=0)]
    leaves = [q, k, v, h_text, h_audio, q_text, q_audio, logits]
    grads = torch.autograd.grad([o.sum() for o in outputs], leaves)
    warned = [str(w.message) for w in caught if w.category is fastser.ops.ReferenceOpsWarning]
    print(json.dumps({"backend": fastser.build_config()["backend"], "warnings": warned,
                      "values": [t.tolist() for t in outputs + list(grads)]}))
"""


def test_reference_backend_gives_the_compiled_results_with_one_warning():
    reference = json.loads(_run(EVERY_OP, FASTSER_REFERENCE_OPS="1"))
    assert reference["backend"] == "reference"
    assert len(reference["warnings"]) == 1
    assert "FASTSER_REFERENCE_OPS=1 asks for the reference ops" in reference["warnings"][0]
    compiled = json.loads(_run(EVERY_OP, FASTSER_REFERENCE_OPS="0"))
    if compiled["backend"] != "compiled":
        pytest.skip("fastser's extension is not built here: nothing to compare with")
    assert compiled["warnings"] == []
    for got, want in zip(reference["values"], compiled["values"]):
        torch.testing.assert_close(torch.tensor(got), torch.tensor(want), atol=2e-5, rtol=2e-5)


def test_info_names_the_reference_backend_and_why():
    out = _run("""
        import sys
        from fastser.cli import main
        sys.exit(main(["info"]))
    """, FASTSER_REFERENCE_OPS="1")
    assert "reference fallback (PyTorch): FASTSER_REFERENCE_OPS=1 asks for the reference ops" \
        in out
    rows = {line.split()[0]: line.split(None, 1)[1] for line in out.splitlines()
            if line.startswith("  ")}
    assert rows == {op: "reference (PyTorch, fastser.ops.fallback)"
                    for op in ("cross_attention", "fractal_attention", "head_k_pooling_loss")}


@pytest.mark.skipif(_library.build_info().get("extension") is False,
                    reason="this install has no compiled extension (its build was skipped or "
                           "failed): the warning names that reason instead")
def test_an_extension_that_fails_to_load_falls_back_with_the_reason():
    """A broken fastser._C (e.g. built against another torch): import fastser still works,
    the reason is in the warning and in build_config; library_path is a clear error."""
    out = _run("""
        import importlib.abc, json, sys, warnings

        class Broken(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "fastser._C":
                    raise ImportError("undefined symbol: _ZN3c104impl")

        sys.meta_path.insert(0, Broken())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import fastser
        import torch
        cfg = fastser.build_config()
        try:
            fastser.ops.library_path()
        except RuntimeError as error:
            library = str(error)
        x = torch.randn(2, 5, 1, 4)
        out = fastser.ops.fractal_attention(x, x, x)
        print(json.dumps({"cfg": cfg, "library": library, "shape": list(out.shape),
                          "warnings": [str(w.message) for w in caught]}))
    """, FASTSER_REFERENCE_OPS="0")
    result = json.loads(out)
    reason = result["cfg"]["extension_error"]
    assert result["cfg"]["backend"] == "reference" and result["cfg"]["backends"] == []
    assert "fastser._C failed to load" in reason and "undefined symbol" in reason
    assert any(reason in w for w in result["warnings"])
    assert "no compiled library to load" in result["library"] and reason in result["library"]
    assert result["shape"] == [2, 5, 1, 4]
