"""The comparison baselines: pixel embedding (Eq. 9) and the GAN (Eq. 8)."""

import pytest
import torch
import torch.nn.functional as F

from aafcore.losses import (PatchDiscriminator, PixelEmbeddingLoss, discriminator_loss, downsample_labels,
                            gan_label_maps, segmenter_adversarial_loss)
from cases import random_labels, rel_err
from naive_aaf import naive_embedding


def test_downsample_labels_follows_tensorflow_nearest():
    labels = torch.arange(16 * 24).view(1, 16, 24) % 251
    labels[0, 0, 0] = 255
    small = downsample_labels(labels, (4, 6))
    rows = torch.tensor([r * 16 // 4 for r in range(4)])
    cols = torch.tensor([c * 24 // 6 for c in range(6)])
    assert torch.equal(small[0], labels[0][rows][:, cols])
    assert small[0, 0, 0] == 255 and small.dtype == labels.dtype
    odd = downsample_labels(labels, (3, 5))  # floor(r * H / h)
    assert torch.equal(odd[0], labels[0][[0, 5, 10]][:, [0, 4, 9, 14, 19]])


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_embedding_matches_loops(kernel_size):
    g = torch.Generator().manual_seed(kernel_size)
    features = torch.randn(2, 6, 9, 10, generator=g, dtype=torch.float64, requires_grad=True)
    labels = random_labels(2, 36, 40, 4, seed=kernel_size, block=8)
    small = downsample_labels(labels, (9, 10))
    loss = PixelEmbeddingLoss(kernel_size=kernel_size)
    value = loss(features, labels)
    ref = naive_embedding(features, small, kernel_size=kernel_size)
    (g1,) = torch.autograd.grad(value, features)
    (g2,) = torch.autograd.grad(ref, features)
    assert rel_err(value.detach(), ref.detach()) < 1e-10
    assert rel_err(g1, g2) < 1e-10


def test_embedding_gradcheck_and_margin():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(1, 4, 7, 7, generator=g, dtype=torch.float64, requires_grad=True)
    labels = random_labels(1, 7, 7, 3, seed=2)
    assert torch.autograd.gradcheck(lambda f: PixelEmbeddingLoss()(f, labels), (features,))
    # two classes with opposite unit embeddings: distance 2 > margin, same-class distance 0 -> loss 0
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[:, :, 4:] = 1
    feats = torch.zeros(1, 2, 8, 8, dtype=torch.float64)
    feats[:, 0, :, :4] = 1.0
    feats[:, 0, :, 4:] = -1.0
    assert PixelEmbeddingLoss(margin=0.2)(feats, labels).item() == 0.0
    # identical embeddings across the boundary: the edge term is the full margin
    same = torch.ones(1, 2, 8, 8, dtype=torch.float64)
    assert abs(PixelEmbeddingLoss(margin=0.2, lambda_not_edge=0.0)(same, labels).item() - 0.2) < 2e-6  # sqrt(1e-12) floor


def test_gan_label_maps_and_discriminator_shapes():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 16, 16, requires_grad=True)
    labels = random_labels(2, 16, 16, 5, seed=1)
    real, fake = gan_label_maps(logits, labels, 5)
    ignored = labels == 255
    assert torch.equal(real.sum(1), (~ignored).float()) and (fake.sum(1)[ignored] == 0).all()
    assert torch.allclose(fake.sum(1)[~ignored], torch.ones(()))
    d = PatchDiscriminator(5, depth=3)
    assert d(real).shape == (2, 1, 2, 2)
    with_image = PatchDiscriminator(5, image_channels=3, depth=2)
    assert with_image(fake, torch.randn(2, 3, 128, 128)).shape == (2, 1, 4, 4)
    with pytest.raises(ValueError):
        with_image(fake)
    with pytest.raises(ValueError):
        d(real, torch.randn(2, 3, 16, 16))
    with pytest.raises(ValueError):
        d(real[:, :4])


def test_gan_losses_follow_eq8():
    z_real, z_fake = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    expected = -(torch.log(torch.sigmoid(z_real)).mean() + torch.log(1 - torch.sigmoid(z_fake)).mean())
    assert torch.allclose(discriminator_loss(z_real, z_fake), expected, atol=1e-6)
    assert torch.allclose(segmenter_adversarial_loss(z_fake), torch.log(1 - torch.sigmoid(z_fake)).mean(), atol=1e-6)
    assert torch.allclose(segmenter_adversarial_loss(z_fake, non_saturating=True),
                          -torch.log(torch.sigmoid(z_fake)).mean(), atol=1e-6)


def test_gan_training_separates_and_pushes_the_segmenter():
    torch.manual_seed(0)
    logits = torch.randn(4, 3, 16, 16, requires_grad=True)
    labels = random_labels(4, 16, 16, 3, seed=3, block=4)
    d = PatchDiscriminator(3, width=16, depth=2)
    opt = torch.optim.Adam(d.parameters(), lr=1e-2)
    real, fake = gan_label_maps(logits, labels, 3)
    first = discriminator_loss(d(real), d(fake.detach())).item()
    for _ in range(30):
        opt.zero_grad()
        loss = discriminator_loss(d(real), d(fake.detach()))
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first  # soft predictions vs one-hot truth are easy to tell apart
    d.eval()
    seg = segmenter_adversarial_loss(d(fake))
    (grad,) = torch.autograd.grad(seg, logits)
    assert grad.abs().sum() > 0 and torch.isfinite(grad).all()
    assert (grad[labels[:, None].expand_as(grad) == 255] == 0).all()  # ignored pixels are masked
