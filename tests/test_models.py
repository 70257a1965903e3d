"""Tests for crl_helpers.models: shapes, structure, parameter and FLOP counts against hand counts,
the context head against a GRU written out as a float64 loop."""
import math

import pytest
import torch
from torch import nn

from crl_helpers.models import (
    ENCODERS,
    ContextHead,
    ProjectionHead,
    ResNet18Encoder,
    SimCLRModel,
    SmallConvNet,
    build_encoder,
    count_flops,
    count_parameters,
    resnet18_cifar,
    resnet18_imagenet,
)

EXPECTED_FEATURE_DIM = {"convnet": 128, "resnet18": 512, "resnet18-imagenet": 512}


def _layer_names(module: nn.Module) -> list[str]:
    return [type(layer).__name__ for layer in module]


# ------------------------------------------------------------------ encoders
@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_output_shape_matches_feature_dim(name):
    torch.manual_seed(0)
    encoder = build_encoder(name)
    v = encoder(torch.randn(2, 3, 32, 32))
    assert v.shape == (2, EXPECTED_FEATURE_DIM[name])
    assert encoder.feature_dim == EXPECTED_FEATURE_DIM[name]


def test_encoders_tuple_lists_the_three_names():
    assert ENCODERS == ("convnet", "resnet18", "resnet18-imagenet")


@pytest.mark.parametrize("width, feature_dim, has_linear", [(8, 64, False), (8, 10, True), (4, 32, False)])
def test_small_convnet_adds_a_linear_only_when_feature_dim_differs_from_8w(width, feature_dim, has_linear):
    net = SmallConvNet(width=width, feature_dim=feature_dim)
    assert isinstance(net.fc, nn.Linear) is has_linear
    assert net(torch.randn(3, 3, 32, 32)).shape == (3, feature_dim)
    assert net.feature_dim == feature_dim


def test_small_convnet_accepts_any_image_size():
    net = SmallConvNet(width=4, feature_dim=16)
    for h, w in [(8, 8), (20, 28), (64, 64)]:
        assert net(torch.randn(2, 3, h, w)).shape == (2, 16)


def test_small_convnet_halves_resolution_three_times():
    net = SmallConvNet(width=4)
    assert net.features(torch.randn(2, 3, 32, 32)).shape == (2, 32, 4, 4)  # 8w channels, 32 / 2**3
    strides = [m.stride for m in net.features if isinstance(m, nn.Conv2d)]
    assert strides == [(2, 2), (1, 1), (1, 1), (1, 1)]  # only the stem downsamples by stride
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.features) == 2


def test_small_convnet_parameter_count_by_hand():
    w, fd = 8, 10
    conv = 9 * (3 * w + w * 2 * w + 2 * w * 4 * w + 4 * w * 8 * w)  # 3x3 kernels, no bias
    bn = 2 * (w + 2 * w + 4 * w + 8 * w)  # gamma and beta
    fc = 8 * w * fd + fd
    assert count_parameters(SmallConvNet(width=w, feature_dim=fd)) == conv + bn + fc


@pytest.mark.parametrize("kwargs, error", [
    ({"width": 0}, ValueError), ({"feature_dim": -3}, ValueError), ({"width": 1.5}, TypeError), ({"width": True}, TypeError),
])
def test_small_convnet_rejects_bad_sizes(kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        SmallConvNet(**kwargs)


def test_cifar_stem_is_3x3_stride_1_without_max_pool():
    encoder = resnet18_cifar()
    first_conv = next(m for m in encoder.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.kernel_size == (3, 3) and first_conv.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in encoder.modules())
    assert isinstance(encoder.fc, nn.Identity)


@pytest.mark.parametrize("make, layer1_size", [(resnet18_cifar, 32), (resnet18_imagenet, 8)])
def test_stem_resolution_reaching_the_first_residual_stage(make, layer1_size):
    """The CIFAR stem keeps 32x32 into layer1; the ImageNet stem has shrunk it 4x."""
    encoder, seen = make().eval(), []
    encoder.layer1.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape[-2:]))
    with torch.no_grad():
        encoder(torch.randn(2, 3, 32, 32))
    assert tuple(seen[0]) == (layer1_size, layer1_size)


def test_imagenet_stem_keeps_7x7_stride_2_and_max_pool():
    encoder = resnet18_imagenet()
    assert encoder.conv1.kernel_size == (7, 7) and encoder.conv1.stride == (2, 2)
    assert any(isinstance(m, nn.MaxPool2d) for m in encoder.modules())


def test_resnet18_parameter_counts():
    # torchvision's resnet18 has 11,689,512 parameters; minus its fc (512 * 1000 + 1000) ...
    no_fc = 11_689_512 - (512 * 1000 + 1000)
    assert count_parameters(resnet18_imagenet()) == no_fc
    # ... and the CIFAR stem trades a 7x7 conv for a 3x3 one (3 -> 64 channels, no bias).
    assert count_parameters(resnet18_cifar()) == no_fc - 3 * 64 * (49 - 9)


def test_resnet_rejects_unknown_stem():
    with pytest.raises(ValueError, match="stem='tiny'"):
        ResNet18Encoder(stem="tiny")


def test_build_encoder_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        build_encoder("vit")
    for name in ENCODERS:
        assert name in str(info.value)


def test_build_encoder_passes_options_and_rejects_them_for_resnets():
    assert build_encoder("convnet", width=4, feature_dim=20).feature_dim == 20
    with pytest.raises(TypeError, match="feature_dim"):
        build_encoder("resnet18", feature_dim=128)


# --------------------------------------------------------------------- heads
@pytest.mark.parametrize("depth", [0, 1, 2, 3])
@pytest.mark.parametrize("batch_norm", [True, False])
def test_head_output_has_unit_norm(depth, batch_norm):
    torch.manual_seed(0)
    head = ProjectionHead(12, hidden_dim=10, out_dim=6, depth=depth, batch_norm=batch_norm)
    z = head(torch.randn(5, 12) * 7.0)
    assert z.shape == (5, 6 if depth else 12)
    assert head.out_dim == z.shape[1]
    torch.testing.assert_close(z.double().pow(2).sum(dim=1), torch.ones(5, dtype=torch.float64))


@pytest.mark.parametrize("depth, batch_norm, expected", [
    (0, True, []),
    (1, True, ["Linear"]),
    (2, True, ["Linear", "BatchNorm1d", "ReLU", "Linear"]),
    (2, False, ["Linear", "ReLU", "Linear"]),
    (3, True, ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear"]),
])
def test_head_layer_structure(depth, batch_norm, expected):
    head = ProjectionHead(8, hidden_dim=6, out_dim=4, depth=depth, batch_norm=batch_norm)
    assert _layer_names(head.mlp) == expected
    linears = [m for m in head.mlp if isinstance(m, nn.Linear)]
    if linears:
        assert linears[0].in_features == 8 and linears[-1].out_features == 4
        assert all(lin.out_features == 6 for lin in linears[:-1])
        assert linears[-1].bias is not None  # nothing after the last layer to supply a shift


def test_identity_head_is_v_over_its_norm():
    v = torch.randn(4, 5, dtype=torch.float64)
    expected = torch.stack([row / sum(x * x for x in row.tolist()) ** 0.5 for row in v])
    torch.testing.assert_close(ProjectionHead(5, depth=0).double()(v), expected)


@pytest.mark.parametrize("depth, batch_norm", [(1, True), (2, True), (2, False), (3, True)])
def test_head_parameter_count_closed_form(depth, batch_norm):
    i, h, o = 5, 7, 3
    if depth == 1:
        expected = i * o + o
    else:
        hidden_bias = 0 if batch_norm else 1  # BatchNorm's beta replaces the bias
        bn = 2 * h if batch_norm else 0  # gamma and beta
        first = i * h + hidden_bias * h + bn
        middle = (depth - 2) * (h * h + hidden_bias * h + bn)
        expected = first + middle + h * o + o
    head = ProjectionHead(i, hidden_dim=h, out_dim=o, depth=depth, batch_norm=batch_norm)
    assert count_parameters(head) == expected


def test_count_parameters_trainable_only():
    head = ProjectionHead(5, hidden_dim=7, out_dim=3, depth=2, batch_norm=False)
    head.mlp[0].requires_grad_(False)  # freeze the first linear: 5 * 7 + 7
    assert count_parameters(head, trainable_only=True) == 7 * 3 + 3
    assert count_parameters(head) == 5 * 7 + 7 + 7 * 3 + 3


@pytest.mark.parametrize("kwargs, error, word", [
    ({"in_dim": 0}, ValueError, "in_dim"),
    ({"in_dim": 4, "hidden_dim": 0}, ValueError, "hidden_dim"),
    ({"in_dim": 4, "out_dim": 2.0}, TypeError, "out_dim"),
    ({"in_dim": 4, "depth": -1}, ValueError, "depth"),
    ({"in_dim": 4, "depth": 2.0}, TypeError, "depth"),
    ({"in_dim": 4, "batch_norm": "yes"}, TypeError, "batch_norm"),
])
def test_head_validates_arguments(kwargs, error, word):
    with pytest.raises(error, match=word):
        ProjectionHead(**kwargs)


# ------------------------------------------------------------- SimCLR model
def test_simclr_model_returns_v_and_z():
    torch.manual_seed(0)
    model = SimCLRModel(SmallConvNet(width=4, feature_dim=16), ProjectionHead(16, hidden_dim=8, out_dim=5))
    v, z = model(torch.randn(3, 3, 32, 32))
    assert v.shape == (3, 16) and z.shape == (3, 5)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(3))


def test_drop_head_returns_the_same_encoder_whose_output_is_v():
    torch.manual_seed(0)
    encoder = SmallConvNet(width=4, feature_dim=16)
    model = SimCLRModel(encoder, ProjectionHead(16, hidden_dim=8, out_dim=5)).eval()
    x = torch.randn(3, 3, 32, 32)
    kept = model.drop_head()
    assert kept is encoder and kept is model.encoder
    with torch.no_grad():
        torch.testing.assert_close(kept(x), model(x)[0], rtol=0, atol=0)


def test_simclr_model_checks_dims_and_types():
    with pytest.raises(ValueError, match="feature_dim=16"):
        SimCLRModel(SmallConvNet(width=4, feature_dim=16), ProjectionHead(32))
    with pytest.raises(TypeError, match="head"):
        SimCLRModel(SmallConvNet(width=4), lambda v: v)


def test_sizes_accept_numpy_integers_as_plain_ints():
    import numpy as np

    net = SmallConvNet(width=np.int64(4), feature_dim=np.int32(8))
    head = ProjectionHead(np.int64(8), hidden_dim=np.int64(4), out_dim=np.int16(3), depth=np.int8(2))
    assert (type(net.width), type(head.out_dim), type(head.depth)) == (int, int, int)
    assert head(net(torch.randn(2, 3, 8, 8))).shape == (2, 3)


# ------------------------------------------------------------------- FLOPs
def test_small_convnet_flops_closed_form():
    # Multiply-adds of a 3x3 conv: H_out * W_out * 9 * C_in * C_out; FLOPs = 2 * MACs.
    w = 16
    macs = 16 * 16 * 9 * 3 * w + 16 * 16 * 9 * w * 2 * w + 8 * 8 * 9 * 2 * w * 4 * w + 4 * 4 * 9 * 4 * w * 8 * w
    assert macs == 3_649_536  # the "3.65 M multiply-adds" of SmallConvNet's docstring
    assert count_flops(SmallConvNet().eval(), torch.randn(1, 3, 32, 32)) == 2 * macs


def test_flop_ratio_quoted_in_the_docstring():
    x = torch.randn(1, 3, 32, 32)
    small, resnet = count_flops(SmallConvNet().eval(), x), count_flops(resnet18_cifar().eval(), x)
    assert round(resnet / 1e9, 2) == 1.11 and round(resnet / small) == 152


def test_count_flops_of_linear_layers():
    mlp = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    assert count_flops(mlp, torch.randn(5, 6)) == 2 * 5 * (6 * 4 + 4 * 3)


# ------------------------------------------------------------- context head
def gru_loop(head: ContextHead, v_seq: torch.Tensor) -> torch.Tensor:
    """The GRU of Cho et al. (2014) as PyTorch defines it, one step at a time, in float64."""
    g = head.gru
    w_ih, w_hh = g.weight_ih_l0.double(), g.weight_hh_l0.double()  # (3H, d), (3H, H): rows r, z, n
    b_ih, b_hh = g.bias_ih_l0.double(), g.bias_hh_l0.double()  # (3H,)
    hidden = head.out_dim
    rows = []
    for sequence in v_seq.double():  # (T, d)
        h = torch.zeros(hidden, dtype=torch.float64)
        for v_t in sequence:  # (d,)
            gi, gh = w_ih @ v_t + b_ih, w_hh @ h + b_hh  # (3H,)
            r = 1 / (1 + torch.exp(-(gi[:hidden] + gh[:hidden])))
            z = 1 / (1 + torch.exp(-(gi[hidden:2 * hidden] + gh[hidden:2 * hidden])))
            n = torch.tanh(gi[2 * hidden:] + r * gh[2 * hidden:])
            h = (1 - z) * n + z * h
        rows.append(h)
    return torch.stack(rows)  # (N, H)


@pytest.mark.parametrize("normalize", [False, True])
def test_context_head_is_the_last_gru_state(normalize):
    torch.manual_seed(0)
    head = ContextHead(in_dim=5, out_dim=4, normalize=normalize)
    v_seq = torch.randn(3, 7, 5)  # (N, T, d)
    expected = gru_loop(head, v_seq)
    if normalize:
        expected = expected / expected.norm(dim=1, keepdim=True)
    torch.testing.assert_close(head(v_seq).double(), expected, atol=1e-5, rtol=1e-5)


def test_context_head_depends_on_order_and_on_every_step():
    torch.manual_seed(0)
    head = ContextHead(in_dim=4, out_dim=6)
    v_seq = torch.randn(2, 5, 4)
    c = head(v_seq)
    assert c.shape == (2, 6)
    assert not torch.allclose(c, head(v_seq.flip(1)), atol=1e-4)  # a GRU is not a pooled average
    changed = v_seq.clone()
    changed[:, 0] += 1.0  # the first step still reaches the context
    assert not torch.allclose(c, head(changed), atol=1e-4)


def test_context_head_one_step_closed_form():
    # T = 1 and h_0 = 0: h_1 = (1 - z) * n with z = sigmoid(W_iz v + b_iz + b_hz), n = tanh(W_in v + b_in + r * b_hn).
    torch.manual_seed(1)
    head = ContextHead(in_dim=3, out_dim=2, normalize=False)
    v = torch.randn(1, 3, dtype=torch.float64)
    g, hidden = head.gru, 2
    gi = g.weight_ih_l0.double() @ v[0] + g.bias_ih_l0.double()
    gh = g.bias_hh_l0.double()
    r = torch.sigmoid(gi[:hidden] + gh[:hidden])
    z = torch.sigmoid(gi[hidden:2 * hidden] + gh[hidden:2 * hidden])
    n = torch.tanh(gi[2 * hidden:] + r * gh[2 * hidden:])
    torch.testing.assert_close(head(v[:, None].float())[0].double(), (1 - z) * n, atol=1e-6, rtol=1e-5)


def test_context_head_parameter_count_closed_form():
    d, h = 5, 4
    assert count_parameters(ContextHead(d, h)) == 3 * (h * d + h * h + 2 * h)  # gates r, z, n; two biases each


@pytest.mark.parametrize("kwargs, error, word", [
    ({"in_dim": 0}, ValueError, "in_dim"), ({"in_dim": 4, "out_dim": 1.5}, TypeError, "out_dim"),
    ({"in_dim": 4, "normalize": 1}, TypeError, "normalize"),
])
def test_context_head_validates_arguments(kwargs, error, word):
    with pytest.raises(error, match=word):
        ContextHead(**kwargs)


@pytest.mark.parametrize("v_seq, word", [(torch.randn(2, 4), "3-D"), (torch.randn(2, 3, 5), "d=5")])
def test_context_head_rejects_wrong_shapes(v_seq, word):
    with pytest.raises(ValueError, match=word):
        ContextHead(4, 2)(v_seq)


def test_context_head_gradients_reach_the_gru():
    head = ContextHead(3, 2)
    head(torch.randn(2, 4, 3)).sum().backward()
    assert all(p.grad is not None and math.isfinite(float(p.grad.abs().sum())) for p in head.parameters())
