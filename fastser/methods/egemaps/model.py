"""The eGeMAPS baseline's model: a scikit-learn linear classifier's weights in an nn.Module, so
that checkpoints, evaluation, prediction and export treat it like every other method's model.

forward(features (B, D)) -> class scores (B, C): the functionals standardised with the training
set's mean and standard deviation, then K linear scores. K = number of training classes P for
logistic regression and the one-vs-rest linear SVM (P = 2: scikit-learn's one binary score s
becomes the pair (0, s)); K = P (P - 1) / 2 pairwise scores for the one-vs-one SVM, turned into
class scores as scikit-learn's ``decision_function_shape="ovr"`` does (votes plus a confidence
term in (-1/3, 1/3)). Classes absent from the training set score ``ABSENT_SCORE``. Scriptable.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: The score of a class the classifier never saw in training.
ABSENT_SCORE = -1.0e4


def pairs_of(num_classes: int) -> Tensor:
    """The class pairs (i, j), i < j, of one-vs-one classification in scikit-learn's order,
    int64 (P (P - 1) / 2, 2)."""
    return torch.combinations(torch.arange(num_classes), 2).reshape(-1, 2)


def one_vs_one_scores(decisions: Tensor, pairs: Tensor, num_classes: int) -> Tensor:
    """Class scores (B, P) from pairwise decisions (B, K) (> 0: the pair's first class):
    votes + c / (3 (|c| + 1)), c the sum of the decisions for (+) and against (-) the class."""
    batch = decisions.shape[0]
    first, second = pairs[:, 0], pairs[:, 1]
    votes = decisions.new_zeros(batch, num_classes)
    votes.index_add_(1, first, (decisions >= 0).to(decisions.dtype))
    votes.index_add_(1, second, (decisions < 0).to(decisions.dtype))
    confidence = decisions.new_zeros(batch, num_classes)
    confidence.index_add_(1, first, decisions)
    confidence.index_add_(1, second, -decisions)
    return votes + confidence / (3 * (confidence.abs() + 1))


class LinearFunctionals(nn.Module):
    """Standardisation, linear scores and (one-vs-one) the class scores, over the classes
    ``classes`` (P,) int64 the classifier was trained on, placed among ``num_classes``."""

    def __init__(self, num_features: int, num_classes: int, classes: Tensor,
                 one_vs_one: bool) -> None:
        super().__init__()
        present = int(classes.numel())
        scores = present * (present - 1) // 2 if one_vs_one else present
        self.num_classes, self.present, self.one_vs_one = num_classes, present, one_vs_one
        self.absent_score = ABSENT_SCORE
        self.register_buffer("feature_mean", torch.zeros(num_features))
        self.register_buffer("feature_std", torch.ones(num_features))
        self.register_buffer("classes", classes.clone())
        self.register_buffer("pairs", pairs_of(present), persistent=False)
        # fitted by scikit-learn (fastser.methods.egemaps.recipe), not by gradient descent
        self.weight = nn.Parameter(torch.zeros(scores, num_features), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(scores), requires_grad=False)

    def forward(self, features: Tensor) -> Tensor:
        return self.scores(self.standardise(features))

    def standardise(self, features: Tensor) -> Tensor:
        """The functionals (B, D) standardised with the training statistics: what the linear
        classifier reads (the method's embedding)."""
        return (features - self.feature_mean) / self.feature_std

    def scores(self, x: Tensor) -> Tensor:
        """Class scores (B, num_classes) of standardised functionals (B, D)."""
        scores = nn.functional.linear(x, self.weight, self.bias)
        if self.one_vs_one:
            scores = one_vs_one_scores(scores, self.pairs, self.present)
        out = scores.new_full((scores.shape[0], self.num_classes), self.absent_score)
        return out.index_copy(1, self.classes, scores)


class ClassProbabilities(nn.Module):
    """The export module: functionals (B, D) -> softmax of the class scores (B, C)."""

    def __init__(self, model: LinearFunctionals) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: Tensor) -> Tensor:
        return self.model(features).softmax(dim=1)
