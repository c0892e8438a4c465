import pytest
import torch

from mtvision.evaluation.topk_accuracy import TopKAccuracy, gt_ranks


def _evaluate(metric, scores, labels, batch=7):
    for start in range(0, len(labels), batch):
        predictions = [
            {"pred_score": s, "gt_label": int(g)}
            for s, g in zip(
                scores[start : start + batch], labels[start : start + batch], strict=True
            )
        ]
        metric.process({}, predictions)
    return metric.compute_metrics(metric.results)


def test_topk_matches_torch_topk_on_random_scores():
    generator = torch.Generator().manual_seed(0)
    scores = torch.rand(200, 10, generator=generator)
    labels = torch.randint(0, 10, (200,), generator=generator)
    metrics = _evaluate(TopKAccuracy(topk=(1, 3, 5)), scores, labels)
    for k in (1, 3, 5):
        expected = (scores.topk(k, dim=1).indices == labels[:, None]).any(dim=1).float().mean()
        assert metrics[f"top{k}"] == pytest.approx(float(expected))


def test_perfect_and_worst_predictions():
    labels = torch.arange(6)
    perfect = torch.nn.functional.one_hot(labels, 6).float()
    assert _evaluate(TopKAccuracy(topk=(1,)), perfect, labels) == {"top1": 1.0}
    worst = 1.0 - perfect
    metrics = _evaluate(TopKAccuracy(topk=(1, 5)), worst, labels)
    assert metrics == {"top1": 0.0, "top5": 0.0}


def test_k_larger_than_classes_is_clipped():
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.5, 0.2, 0.3]])
    labels = torch.tensor([2, 1])
    metrics = _evaluate(TopKAccuracy(topk=(1, 5)), scores, labels)
    assert metrics == {"top1": 0.0, "top5": 1.0}


def test_ties_are_broken_like_a_stable_sort():
    scores = torch.tensor([[0.5, 0.5, 0.0]] * 3)
    assert gt_ranks(scores, torch.tensor([0, 1, 2])).tolist() == [0, 1, 2]
    generator = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 4, (50, 7), generator=generator).float()  # many ties
    labels = torch.randint(0, 7, (50,), generator=generator)
    order = torch.argsort(scores, dim=1, descending=True, stable=True)
    expected = (order == labels[:, None]).int().argmax(dim=1)
    assert torch.equal(gt_ranks(scores, labels), expected)


def test_missing_ground_truth_is_an_error():
    metric = TopKAccuracy()
    with pytest.raises(KeyError, match="gt_label"):
        metric.process({}, [{"pred_score": torch.ones(3)}])


def test_invalid_topk():
    with pytest.raises(ValueError):
        TopKAccuracy(topk=(0,))
