"""gradcheck, edge cases, layouts and dtypes, the minimax, and effective kernel sizes."""

import pytest
import torch
from torch.func import functional_call

from aafcore.losses import AdaptiveAffinityFieldLoss, AffinityFieldLoss
from cases import random_case, random_labels, randomise_weights, rel_err
from naive_aaf import naive_aaf

# every test runs on both CPU backends of the pair sums (torch ops and the fused C++ kernel)
pytestmark = pytest.mark.usefixtures("pair_backend")


@pytest.mark.parametrize("weight_by", ["label", "channel"])
def test_gradcheck_aaf(weight_by):
    logits, labels = random_case(2, 4, 9, 8, seed=1)
    loss = randomise_weights(AdaptiveAffinityFieldLoss(4, kernel_sizes=(3, 5), weight_by=weight_by).double())
    edge, not_edge = (loss.edge_logits.detach().clone().requires_grad_(),
                      loss.not_edge_logits.detach().clone().requires_grad_())

    def f(x, we, wn):
        return functional_call(loss, {"edge_logits": we, "not_edge_logits": wn}, (x, labels))

    assert torch.autograd.gradcheck(f, (logits, edge, not_edge), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_gradcheck_affinity():
    logits, labels = random_case(1, 3, 7, 9, seed=2)
    assert torch.autograd.gradcheck(lambda x: AffinityFieldLoss(3)(x, labels), (logits,), eps=1e-6,
                                    atol=1e-8, rtol=1e-6)


def _value_and_grad(loss, logits, labels):
    logits = logits.detach().clone().requires_grad_()
    value = loss(logits, labels)
    (grad,) = torch.autograd.grad(value, logits)
    return value.detach(), grad


def test_all_pixels_ignored_gives_zero_loss_and_zero_gradient():
    logits, _ = random_case(2, 5, 10, 10)
    labels = torch.full((2, 10, 10), 255)
    for loss in (AffinityFieldLoss(5), AdaptiveAffinityFieldLoss(5).double()):
        value, grad = _value_and_grad(loss, logits, labels)
        assert value.item() == 0.0
        assert torch.isfinite(grad).all() and grad.abs().max() == 0


def test_single_class_has_no_edge_terms():
    logits, _ = random_case(2, 4, 12, 12, seed=3)
    labels = torch.full((2, 12, 12), 2)
    labels[0, :2] = 255
    loss = randomise_weights(AdaptiveAffinityFieldLoss(4).double())
    value, grad = _value_and_grad(loss, logits, labels)
    ref = naive_aaf(logits, labels, loss.edge_logits, loss.not_edge_logits)
    assert torch.isfinite(value) and value > 0
    assert rel_err(value, ref.detach()) < 1e-9
    # only non-edge terms: lambda_edge has no effect
    no_edge = AdaptiveAffinityFieldLoss(4, lambda_edge=0.0).double()
    no_edge.load_state_dict(loss.state_dict())
    assert torch.allclose(no_edge(logits, labels), value, rtol=1e-12)


@pytest.mark.parametrize("hw", [(1, 1), (2, 2), (3, 3), (4, 6), (2, 50), (50, 2), (6, 6)])
def test_image_smaller_than_the_kernel(hw):
    h, w = hw
    logits, labels = random_case(2, 3, h, w, seed=h * 100 + w, ignore_frac=0.0)
    loss = randomise_weights(AdaptiveAffinityFieldLoss(3).double())
    value, grad = _value_and_grad(loss, logits, labels)
    ref = naive_aaf(logits, labels, loss.edge_logits, loss.not_edge_logits)
    (g_ref,) = torch.autograd.grad(ref, logits)
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    assert abs(value.item() - ref.item()) < 1e-9
    assert (grad - g_ref).abs().max() < 1e-9
    if max(h, w) < 3:  # no pair has both i - o and i + o inside the image
        assert value.item() == 0.0


def test_two_classes_batch_of_one():
    logits, labels = random_case(1, 2, 13, 17, seed=4)
    loss = randomise_weights(AdaptiveAffinityFieldLoss(2).double())
    value, grad = _value_and_grad(loss, logits, labels)
    ref = naive_aaf(logits, labels, loss.edge_logits, loss.not_edge_logits)
    assert rel_err(value, ref.detach()) < 1e-9


def test_non_contiguous_and_channels_last_inputs():
    logits, labels = random_case(2, 6, 14, 18, seed=5)
    loss = randomise_weights(AdaptiveAffinityFieldLoss(6).double())
    value, grad = _value_and_grad(loss, logits, labels)
    # channels_last
    cl = logits.detach().contiguous(memory_format=torch.channels_last)
    v_cl, g_cl = _value_and_grad(loss, cl, labels)
    assert torch.allclose(v_cl, value, rtol=1e-12) and torch.allclose(g_cl, grad, rtol=1e-10, atol=1e-14)
    # transposed views of the same data
    t_logits = logits.detach().transpose(2, 3).contiguous().transpose(2, 3)
    t_labels = labels.transpose(1, 2).contiguous().transpose(1, 2)
    assert not t_logits.is_contiguous() and not t_labels.is_contiguous()
    v_t, g_t = _value_and_grad(loss, t_logits, t_labels)
    assert torch.allclose(v_t, value, rtol=1e-12) and torch.allclose(g_t, grad, rtol=1e-10, atol=1e-14)
    # a strided slice along the batch
    strided = torch.stack([logits.detach(), torch.zeros_like(logits.detach())], 1).flatten(0, 1)[::2]
    strided_labels = torch.stack([labels, labels], 1).flatten(0, 1)[::2]
    assert not strided.is_contiguous()
    v_s, g_s = _value_and_grad(loss, strided, strided_labels)
    assert torch.allclose(v_s, value, rtol=1e-12) and torch.allclose(g_s, grad, rtol=1e-10, atol=1e-14)


def test_float32_and_float64_agree():
    logits, labels = random_case(2, 7, 16, 16, seed=6)
    loss64 = randomise_weights(AdaptiveAffinityFieldLoss(7).double())
    loss32 = AdaptiveAffinityFieldLoss(7)
    loss32.load_state_dict({k: v.float() for k, v in loss64.state_dict().items()})
    v64, g64 = _value_and_grad(loss64, logits, labels)
    v32, g32 = _value_and_grad(loss32, logits.float(), labels)
    assert v32.dtype == torch.float32 and g32.dtype == torch.float32
    assert abs(v32.double() - v64) / v64 < 1e-5
    assert rel_err(g32.double(), g64) < 1e-4


def test_half_precision_logits_are_computed_in_float32():
    logits, labels = random_case(2, 5, 12, 12, seed=8, dtype=torch.float32)
    loss = AdaptiveAffinityFieldLoss(5)
    v32, _ = _value_and_grad(loss, logits, labels)
    v16, g16 = _value_and_grad(loss, logits.detach().half(), labels)
    assert v16.dtype == torch.float32 and g16.dtype == torch.float16
    assert abs(v16 - v32) / v32 < 1e-2


def test_integer_label_dtypes_are_accepted():
    logits, labels = random_case(1, 4, 10, 10, seed=9)
    loss = AdaptiveAffinityFieldLoss(4).double()
    ref = loss(logits, labels)
    for dtype in (torch.int32, torch.uint8, torch.int16):
        assert torch.equal(loss(logits, labels.to(dtype)), ref)


def test_minimax_one_step():
    """One SGD step lowers the loss through the network and raises it through the weight logits."""
    torch.manual_seed(0)
    c = 4
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, c, 1))
    image = torch.randn(2, 3, 20, 20)
    labels = random_labels(2, 20, 20, c, seed=1, ignore_frac=0.05, block=5)
    aaf = AdaptiveAffinityFieldLoss(c)
    net_opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    w_opt = torch.optim.SGD(aaf.parameters(), lr=0.05, momentum=0.9, maximize=True)

    loss = aaf(net(image), labels)
    net_opt.zero_grad()
    w_opt.zero_grad()
    loss.backward()
    assert aaf.edge_logits.grad.abs().sum() > 0 and aaf.not_edge_logits.grad.abs().sum() > 0
    before_w = [p.detach().clone() for p in aaf.parameters()]
    net_opt.step()
    with torch.no_grad():
        after_net = aaf(net(image), labels)
    assert after_net < loss.detach()
    w_opt.step()
    assert all(not torch.equal(a, b) for a, b in zip(before_w, aaf.parameters()))
    with torch.no_grad():
        after_both = aaf(net(image), labels)
    assert after_both > after_net


def test_effective_kernel_size():
    aaf = AdaptiveAffinityFieldLoss(3, kernel_sizes=(3, 5, 7))
    assert torch.allclose(aaf.effective_kernel_size(), torch.full((3,), 5.0))
    with torch.no_grad():
        aaf.edge_logits.copy_(torch.tensor([[10.0, 0, 0], [0, 0, 10.0], [0, 0, 0]]))
        aaf.not_edge_logits.fill_(0.0)
    expected = torch.softmax(aaf.edge_logits.detach(), 1) @ torch.tensor([3.0, 5.0, 7.0])
    ks = aaf.effective_kernel_size()
    assert torch.allclose(ks, expected)
    assert ks[0] < 3.01 and ks[1] > 6.99 and abs(ks[2] - 5) < 1e-6
    assert torch.allclose(aaf.effective_kernel_size("not_edge"), torch.full((3,), 5.0))
    assert aaf.edge_logits.shape == (3, 3) and isinstance(aaf.edge_logits, torch.nn.Parameter)


@pytest.mark.parametrize("shape", [(2, 21, 16, 16), (8, 21, 42, 42)])
def test_float32_value_is_accurate_with_mostly_edge_pairs(shape):
    """i.i.d. labels make nearly every pair an edge pair: the non-edge sum is then a small
    difference of large sums, which float32 accumulation alone would spoil (observed: 4e-6)."""
    n, c, h, w = shape
    g = torch.Generator().manual_seed(0)
    logits = 2 * torch.randn(shape, generator=g, dtype=torch.float64)
    labels = torch.randint(0, c, (n, h, w), generator=g)
    truth, g_truth = _value_and_grad(AdaptiveAffinityFieldLoss(c).double(), logits, labels)
    value, grad = _value_and_grad(AdaptiveAffinityFieldLoss(c), logits.float(), labels)
    assert abs(value.double() - truth) / truth < 2e-7
    assert rel_err(grad.double(), g_truth) < 1e-5


@pytest.mark.parametrize("weight_by", ["label", "channel"])
def test_functional_forms_are_the_modules(weight_by):
    """affinity_field_loss / adaptive_affinity_field_loss compute exactly what the modules do, with
    the same gradients for the logits and both weight tensors (and match the naive oracle)."""
    from aafcore.losses import adaptive_affinity_field_loss, affinity_field_loss

    logits, labels = random_case(2, 5, 11, 10, seed=4)
    module = randomise_weights(AdaptiveAffinityFieldLoss(5, kernel_sizes=(3, 7), margin=2.0, weight_by=weight_by))
    x1, x2 = logits.detach().float().requires_grad_(), logits.detach().float().requires_grad_()
    we = module.edge_logits.detach().clone().requires_grad_()
    wn = module.not_edge_logits.detach().clone().requires_grad_()
    a = module(x1, labels)
    b = adaptive_affinity_field_loss(x2, labels, we, wn, (3, 7), margin=2.0, weight_by=weight_by)
    a.backward()
    b.backward()
    assert torch.equal(a, b) and torch.equal(x1.grad, x2.grad)
    assert torch.equal(module.edge_logits.grad, we.grad) and torch.equal(module.not_edge_logits.grad, wn.grad)
    oracle = naive_aaf(logits.detach(), labels, module.edge_logits.detach().double(),
                       module.not_edge_logits.detach().double(), (3, 7), margin=2.0, weight_by=weight_by)
    assert rel_err(b.detach().double(), oracle) < 1e-5
    assert torch.equal(affinity_field_loss(logits, labels, margin=2.0), AffinityFieldLoss(5, margin=2.0)(logits, labels))


def test_functional_forms_check_their_arguments():
    from aafcore.losses import adaptive_affinity_field_loss, affinity_field_loss

    logits, labels = random_case(1, 3, 6, 6, seed=5)
    with pytest.raises(ValueError, match=r"edge_logits must be a tensor \[C, K\] = \[3, 2\]"):
        adaptive_affinity_field_loss(logits, labels, torch.zeros(3, 3), torch.zeros(3, 2), (3, 5))
    with pytest.raises(ValueError, match="kernel_sizes must be distinct odd integers"):
        adaptive_affinity_field_loss(logits, labels, torch.zeros(3, 2), torch.zeros(3, 2), (3, 4))
    with pytest.raises(ValueError, match="label value 3 is outside"):
        affinity_field_loss(logits, torch.full_like(labels, 3))
