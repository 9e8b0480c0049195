import numpy as np
import pytest
import torch

from digitocr.config import ModelConfig
from digitocr.model import build_model, count_parameters


def np_conv_same(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross-correlation with zero 'SAME' padding, written out with numpy: x (B,C,H,W), w (O,C,k,k)."""
    k = w.shape[-1]
    pad = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    _, _, h, wd = x.shape
    out = np.zeros((x.shape[0], w.shape[0], h, wd))
    for dy in range(k):
        for dx in range(k):
            patch = xp[:, :, dy:dy + h, dx:dx + wd]  # (B, C, H, W)
            out += np.einsum("bchw,oc->bohw", patch, w[:, :, dy, dx])
    return out + b[None, :, None, None]


def np_maxpool2(x: np.ndarray) -> np.ndarray:
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def np_seed_forward(params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    h = relu(np_maxpool2(np_conv_same(x, params["conv1.weight"], params["conv1.bias"])))
    h = relu(np_maxpool2(np_conv_same(h, params["conv2.weight"], params["conv2.bias"])))
    h = relu(h.reshape(len(h), -1) @ params["fc1.weight"].T + params["fc1.bias"])
    return h @ params["fc2.weight"].T + params["fc2.bias"]


def test_seed_network_has_the_notebooks_parameter_count():
    assert count_parameters(build_model(ModelConfig())) == 242_062


@pytest.mark.parametrize("arch", ["seed", "best", "simple"])
def test_output_shapes(arch):
    model = build_model(ModelConfig(arch=arch)).eval()
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)
    c1, c2 = model.conv_layers(torch.zeros(2, 1, 28, 28))
    if arch == "seed":
        assert c1.shape == (2, 16, 14, 14) and c2.shape == (2, 36, 7, 7)
    if arch == "simple":  # unpadded 5x5 convs shrink the image by 4 each: 28 -> 24 -> ... -> 8
        assert c1.shape == (2, 32, 24, 24) and c2.shape == (2, 160, 8, 8)


@pytest.mark.parametrize("kernel", [3, 5, 7])
def test_simple_presets_are_an_et_al_networks_at_half_width(kernel):
    from digitocr.config import SIMPLE_CHANNELS, preset

    model = build_model(preset(f"simple{kernel}").model)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(kernel, kernel)] * len(SIMPLE_CHANNELS[kernel])
    assert all(c.padding == (0, 0) for c in convs)  # no padding, no pooling: the image shrinks by k - 1 a conv
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_simple_network_that_leaves_no_image_is_refused():
    from digitocr.errors import DigitocrError

    with pytest.raises(DigitocrError, match="leave no image"):
        build_model(ModelConfig(arch="simple", kernel=7, channels=(8,) * 5))


def test_forward_equals_plain_numpy_network():
    torch.manual_seed(3)
    model = build_model(ModelConfig()).double().eval()
    x = torch.rand(4, 1, 28, 28, dtype=torch.float64)
    params = {k: v.numpy() for k, v in model.state_dict().items()}
    np.testing.assert_allclose(model(x).detach().numpy(), np_seed_forward(params, x.numpy()),
                               rtol=1e-9, atol=1e-9)


def test_init_is_the_notebooks_truncated_normal():
    torch.manual_seed(0)
    model = build_model(ModelConfig())
    w = model.fc1.weight.detach()
    assert w.abs().max() <= 0.1 + 1e-7  # truncated at two standard deviations
    assert abs(w.std().item() - 0.05 * 0.88) < 0.003  # a normal truncated at 2 sigma keeps ~0.88 of its std
    assert torch.all(model.conv1.bias == 0.05)


@pytest.mark.parametrize("arch", ["best", "simple"])
def test_folding_batchnorm_keeps_the_function_and_leaves_the_trained_model_alone(arch):
    from digitocr.inference import fold_batchnorm

    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch))
    model.train()
    for _ in range(3):  # running statistics and affine parameters away from their identity start
        model(torch.rand(32, 1, 28, 28) * 2)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("spec", ["seed", "best"])
def test_inference_copy_holds_plain_networks_in_bf16_and_computes_as_autocast(spec):
    from digitocr.inference import fold_batchnorm, inference_copy, predict_logits
    from digitocr.registry import load_model

    trained = load_model(spec).model.eval()  # the bundled networks: trained BatchNorm statistics, real logits
    fast = inference_copy(trained, bf16=True)
    assert {p.dtype for p in fast.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in trained.parameters()} == {torch.float32}  # the trained network is not touched
    torch.manual_seed(0)
    x = torch.rand(16, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    # bit for bit what autocast computes with the same folded weights: it runs these layers in bf16 too
    assert torch.equal(predict_logits(fast, x, bf16=True), predict_logits(fold_batchnorm(trained), x, bf16=True))
    reference = predict_logits(trained, x)  # fp32, unfolded
    assert (predict_logits(fast, x) - reference).abs().max() <= 0.05 * reference.abs().max()
    assert {p.dtype for p in inference_copy(trained, bf16=False).parameters()} == {torch.float32}


def test_inference_copy_leaves_networks_with_other_layers_to_autocast():
    from digitocr.ensemble import Ensemble
    from digitocr.inference import inference_copy

    simple, best = build_model(ModelConfig(arch="simple")), build_model(ModelConfig(arch="best"))
    # SimpleNet's head keeps a BatchNorm1d that is not folded; an Ensemble averages softmaxes
    for net in (simple, Ensemble([best, simple])):
        assert {p.dtype for p in inference_copy(net, bf16=True).parameters()} == {torch.float32}


def test_bestnet_runs_as_a_conv_relu_chain_bit_for_bit():
    from digitocr.inference import ConvReluChain, fold_batchnorm, inference_copy, predict_logits
    from digitocr.registry import load_model

    trained = load_model("best").model.eval()
    chain = inference_copy(trained, bf16=True)
    assert isinstance(chain, ConvReluChain) and len(chain.convs) == 7
    nested = fold_batchnorm(trained).to(torch.bfloat16)  # the same weights, run through its Sequentials
    torch.manual_seed(1)
    for n in (1, 10, 37):
        x = torch.rand(n, 1, 28, 28).contiguous(memory_format=torch.channels_last)
        assert torch.equal(predict_logits(chain, x, bf16=True), predict_logits(nested, x, bf16=True))
    assert ConvReluChain.of(fold_batchnorm(load_model("seed").model)) is None  # max-pools in its forward
    odd = fold_batchnorm(trained)
    odd.stage2[1] = torch.nn.Sequential(torch.nn.Conv2d(64, 64, 3), torch.nn.Tanh())  # not a ReLU
    assert ConvReluChain.of(odd) is None


@pytest.mark.parametrize("flags, precision, expected", [
    ({"amx_bf16", "avx512_bf16"}, "auto", True),  # AMX: bf16 is the fast path
    ({"avx512_bf16"}, "auto", False),  # AVX512-BF16 alone runs bf16 slower than fp32
    ({"avx512_bf16"}, "bf16", True),  # ... but runs it when asked
    ({"avx512f"}, "auto", False),
    ({"amx_bf16"}, "fp32", False),
])
def test_precision_auto_picks_bf16_only_where_it_is_faster(monkeypatch, flags, precision, expected):
    import digitocr.runtime as runtime

    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset(flags))
    assert runtime.use_bf16(precision, torch.device("cpu")) is expected


def test_precision_bf16_without_native_support_is_one_line(monkeypatch):
    import digitocr.runtime as runtime
    from digitocr.errors import DigitocrError

    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx512f"}))
    with pytest.raises(DigitocrError, match="no native bf16 on this cpu"):
        runtime.use_bf16("bf16", torch.device("cpu"))
