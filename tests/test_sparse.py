"""twist_lib.sparse against dense torch conv3d / conv_transpose3d (the independent reference).

A sparse tensor is scattered into a zero-filled dense grid; the submanifold convolution must equal
the dense convolution read at the active sites, the k2 s2 convolution the dense strided one read at
the output sites, and the transposed convolution the dense transposed one read at the target sites.
Forward and gradients (features and weights) are compared in float64.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from twist_lib import sparse
from twist_lib.sparse import minkowski_backend, native, spconv_backend, torch_backend

HAVE_ME = minkowski_backend.is_available()
NO_ME_REASON = f"MinkowskiEngine is not installed ({minkowski_backend.IMPORT_ERROR})"
HAVE_SPCONV = spconv_backend.is_available()
NO_SPCONV_REASON = f"spconv is not installed ({spconv_backend.IMPORT_ERROR})"
SPCONV = pytest.param("spconv", marks=pytest.mark.skipif(not HAVE_SPCONV,
                                                         reason=NO_SPCONV_REASON))
OPTIONAL_BACKENDS = [
    pytest.param("minkowski", marks=[pytest.mark.minkowski,
                                     pytest.mark.skipif(not HAVE_ME, reason=NO_ME_REASON)]),
    SPCONV,
]
BACKENDS = ["torch"] + OPTIONAL_BACKENDS
LO = -8           # dense grid origin (a multiple of 4 so that stride-2 cells align with floor)
EXTENT = 16       # dense grid size per axis, coordinates in [LO, LO + EXTENT)
BATCH = 2


def random_coords(seed, n=260, stride=1, extent=EXTENT):
    """Unique (batch, x, y, z) with negative and positive coordinates, multiples of stride."""
    gen = np.random.default_rng(seed)
    cells = extent // stride
    pts = np.stack([gen.integers(0, BATCH, n)] +
                   [LO + stride * gen.integers(0, cells, n) for _ in range(3)], axis=1)
    return torch.from_numpy(np.unique(pts, axis=0)).int()


def to_dense(coords, feats, stride):
    """Scatter features into (B, C, G, G, G) on the stride grid (differentiable in feats)."""
    grid = EXTENT // stride
    idx = ((coords[:, 1:].long() - LO) // stride).unbind(1)
    dense = feats.new_zeros(BATCH, grid, grid, grid, feats.shape[1])
    dense = dense.index_put((coords[:, 0].long(),) + idx, feats)
    return dense.permute(0, 4, 1, 2, 3)


def read_dense(dense, coords, stride):
    idx = ((coords[:, 1:].long() - LO) // stride).unbind(1)
    return dense.permute(0, 2, 3, 4, 1)[(coords[:, 0].long(),) + idx]


def dense_weight(weight, ksize):
    """(K, cin, cout) in lexicographic (dx, dy, dz) order -> conv3d weight (cout, cin, k, k, k)."""
    return weight.reshape(ksize, ksize, ksize, *weight.shape[1:]).permute(4, 3, 0, 1, 2)


def grads_of(out, feats, weight, seed=0):
    """Gradients of a fixed random linear functional of ``out``."""
    probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed),
                        dtype=out.dtype)
    return torch.autograd.grad((out * probe).sum(), (feats, weight))


def assert_close(actual, expected, rtol=1e-6):
    scale = expected.abs().max().clamp_min(1e-12)
    err = (actual - expected).abs().max() / scale
    assert err < rtol, f"relative error {err:.3g}"


def make_input(seed, cin, stride=1, backend="torch", n=260):
    coords = random_coords(seed, n=n, stride=stride)
    feats = torch.randn(len(coords), cin, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(seed)).requires_grad_()
    return coords, feats, sparse.SparseTensor(coords, feats, stride=stride, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("stride,ksize", [(1, 3), (2, 3), (1, 5), (1, 1)])
def test_submanifold_matches_dense_conv(backend, stride, ksize):
    coords, feats, x = make_input(1 + stride + ksize, 3, stride, backend)
    conv = sparse.SubMConv3d(3, 4, kernel_size=ksize, bias=True).double()
    out = conv(x)
    assert torch.equal(out.coords, x.coords)
    dense = F.conv3d(to_dense(coords, feats, stride), dense_weight(conv.weight, ksize),
                     conv.bias, padding=ksize // 2)
    expected = read_dense(dense, coords, stride)
    assert_close(out.feats, expected)
    for got, want in zip(grads_of(out.feats, feats, conv.weight),
                         grads_of(expected, feats, conv.weight)):
        assert_close(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("stride", [1, 2])
def test_down_conv_matches_dense_strided_conv(backend, stride):
    coords, feats, x = make_input(7 + stride, 3, stride, backend)
    conv = sparse.DownConv3d(3, 5).double()
    out = conv(x)
    step = 2 * stride
    parents = {(b, *(np.floor_divide(xyz, step) * step)) for b, *xyz in coords.tolist()}
    assert out.stride == step
    assert sorted(map(tuple, out.coords.tolist())) == sorted(parents)
    dense = F.conv3d(to_dense(coords, feats, stride), dense_weight(conv.weight, 2), stride=2)
    expected = read_dense(dense, out.coords, step)
    assert_close(out.feats, expected)
    for got, want in zip(grads_of(out.feats, feats, conv.weight),
                         grads_of(expected, feats, conv.weight)):
        assert_close(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("stride", [1, 2])
def test_up_conv_matches_dense_transposed_conv(backend, stride):
    coords, _, fine = make_input(11 + stride, 3, stride, backend)
    coarse_coords = sparse.DownConv3d(3, 3).double()(fine).coords
    coarse_feats = torch.randn(len(coarse_coords), 4, dtype=torch.float64).requires_grad_()
    coarse = sparse.SparseTensor.from_manager(fine.manager, 2 * stride, coarse_feats, backend)
    conv = sparse.UpConv3d(4, 6, bias=True).double()
    out = conv(coarse, fine)
    assert torch.equal(out.coords, fine.coords)
    w_t = conv.weight.reshape(2, 2, 2, 4, 6).permute(3, 4, 0, 1, 2)
    dense = F.conv_transpose3d(to_dense(coarse_coords, coarse_feats, 2 * stride), w_t,
                               conv.bias, stride=2)
    expected = read_dense(dense, coords, stride)
    assert_close(out.feats, expected)
    for got, want in zip(grads_of(out.feats, coarse_feats, conv.weight),
                         grads_of(expected, coarse_feats, conv.weight)):
        assert_close(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_entries_do_not_leak(backend):
    xyz = random_coords(3)[:, 1:]
    xyz = torch.from_numpy(np.unique(xyz.numpy(), axis=0))
    coords = torch.cat([torch.cat([torch.full((len(xyz), 1), b, dtype=torch.int32), xyz], 1)
                        for b in range(2)])
    feats = torch.randn(len(coords), 2, dtype=torch.float64)
    sub, down = sparse.SubMConv3d(2, 3).double(), sparse.DownConv3d(2, 3).double()
    up = sparse.UpConv3d(3, 3).double()

    def batch0_outputs(f):
        x = sparse.SparseTensor(coords, f, backend=backend)
        y = down(x)
        return sub(x).feats[:len(xyz)], up(y, x).feats[:len(xyz)]

    changed = feats.clone()
    changed[len(xyz):] = torch.randn(len(xyz), 2, dtype=torch.float64) * 100
    for before, after in zip(batch0_outputs(feats), batch0_outputs(changed)):
        assert torch.equal(before, after)


@pytest.mark.parametrize("backend", BACKENDS)
def test_isolated_voxels_only_see_the_kernel_centre(backend):
    coords = torch.tensor([[0, -9, 0, 3], [0, 0, 0, 0], [1, 0, 0, 0], [0, 7, -5, 0]],
                          dtype=torch.int32)
    feats = torch.randn(4, 3, dtype=torch.float64)
    conv = sparse.SubMConv3d(3, 2).double()
    out = conv(sparse.SparseTensor(coords, feats, backend=backend))
    assert_close(out.feats, feats @ conv.weight[13].detach())
    down = sparse.DownConv3d(3, 2).double()
    y = down(sparse.SparseTensor(coords, feats, backend=backend))
    # each voxel is alone in its 2x2x2 cell: (-9,0,3) -> (-10,0,2) uses offset (1,0,1) = index 5
    row = y.coords.tolist().index([0, -10, 0, 2])
    assert_close(y.feats[row], feats[0] @ down.weight[5].detach())


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_tensor(backend):
    x = sparse.SparseTensor(torch.zeros(0, 4, dtype=torch.int32),
                            torch.zeros(0, 3, requires_grad=True), backend=backend)
    y = sparse.SubMConv3d(3, 4)(x)
    assert y.feats.shape == (0, 4)
    y.feats.sum().backward()


def plain_autograd_conv(feats, weight, kmap):
    """Reference: the same gather-GEMM-scatter written with out-of-place autograd ops."""
    out = feats.new_zeros(kmap.n_out, weight.shape[2])
    rows = torch.arange(len(feats))
    for pair, w in zip(kmap.pairs, weight):
        i, o = (rows, rows) if pair is None else pair
        out = out.index_add(0, o, feats[i] @ w)
    return out


def test_custom_backward_matches_plain_autograd_and_gradcheck():
    coords, feats, x = make_input(5, 3, n=120)
    weight = torch.randn(27, 3, 2, dtype=torch.float64, requires_grad=True)
    kmap = torch_backend.submanifold_map(x.manager, 1, 3)
    out = torch_backend.sparse_conv(feats, weight, kmap)
    expected = plain_autograd_conv(feats, weight, kmap)
    assert_close(out, expected, rtol=1e-12)
    for got, want in zip(grads_of(out, feats, weight), grads_of(expected, feats, weight)):
        assert_close(got, want, rtol=1e-12)
    small = torch.randn(len(coords), 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f, w: torch_backend.sparse_conv(f, w, kmap),
                                    (small, weight[:, :2].detach().requires_grad_()))


def test_neighbour_maps_are_built_once_per_resolution(monkeypatch):
    _, _, x = make_input(2, 3)
    calls = []
    lookup = x.manager.lookup
    monkeypatch.setattr(x.manager, "lookup", lambda *a: calls.append(a[0]) or lookup(*a))
    a, b = sparse.SubMConv3d(3, 3).double(), sparse.SubMConv3d(3, 3).double()
    b(sparse.ReLU()(a(x)))
    assert len(calls) == 13  # half of the 26 non-centre offsets, searched once for both layers
    down, up = sparse.DownConv3d(3, 3).double(), sparse.UpConv3d(3, 3).double()
    y = down(x)
    up(down(x), x)
    assert down(x).coords is y.coords


def test_autocast_bfloat16_runs_in_low_precision():
    coords, feats, _ = make_input(4, 8)
    feats = feats.detach().float()
    conv = sparse.SubMConv3d(8, 8)
    reference = conv(sparse.SparseTensor(coords, feats, backend="torch")).feats
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(sparse.SparseTensor(coords, feats, backend="torch")).feats
    assert out.dtype == torch.bfloat16
    assert_close(out.float(), reference, rtol=3e-2)
    out.float().sum().backward()
    assert conv.weight.grad.dtype == torch.float32


@pytest.mark.skipif(not HAVE_SPCONV, reason=NO_SPCONV_REASON)
def test_spconv_under_cpu_autocast_runs_in_float32():
    """spconv has no bfloat16 kernels: under CPU autocast it runs (and back-propagates, even when
    backward() is called inside the autocast region) in float32."""
    coords, feats, _ = make_input(4, 8)
    feats = feats.detach().float()
    net = tiny_unet(8).float()
    reference = run_unet(net, sparse.SparseTensor(coords, feats, backend="torch"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = run_unet(net, sparse.SparseTensor(coords, feats, backend="spconv"))
        out.sum().backward()
    assert out.dtype == torch.float32
    assert_close(out, reference, rtol=1e-5)
    assert net["stem"].weight.grad.dtype == torch.float32


def test_batchnorm_relu_cat_act_on_feature_rows():
    coords, feats, x = make_input(6, 3)
    bn = sparse.BatchNorm(3).double()
    y = sparse.ReLU()(bn(x))
    mean, var = feats.mean(0), feats.var(0, unbiased=False)
    assert_close(y.feats, torch.relu((feats - mean) / torch.sqrt(var + bn.eps)))
    z = sparse.cat(x, y)
    assert torch.equal(z.feats, torch.cat([feats, y.feats], 1)) and z.coords is x.coords


def test_bad_inputs_raise_clear_errors(monkeypatch):
    coords = torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]], dtype=torch.int32)
    with pytest.raises(ValueError, match="unique"):
        sparse.SparseTensor(coords, torch.zeros(2, 1), backend="torch")
    with pytest.raises(ValueError, match="multiples of stride"):
        sparse.SparseTensor(coords[:1], torch.zeros(1, 1), stride=2, backend="torch")
    with pytest.raises(TypeError, match="integers"):
        sparse.SparseTensor(coords.float(), torch.zeros(2, 1), backend="torch")
    _, _, x = make_input(8, 3)
    with pytest.raises(ValueError, match="input channels"):
        sparse.SubMConv3d(4, 4)(x)
    _, _, other = make_input(9, 3)
    with pytest.raises(ValueError, match="down-sampled from"):
        sparse.UpConv3d(3, 3)(sparse.DownConv3d(3, 3)(other), x)
    with pytest.raises(ValueError, match="unknown sparse backend"):
        sparse.resolve_backend("torchsparse")
    monkeypatch.setattr(minkowski_backend, "ME", None)
    # spconv failing to import (CI does not install it), simulated on the lazy-import state
    monkeypatch.setattr(spconv_backend, "_TRIED", True)
    monkeypatch.setattr(spconv_backend, "_SPCONV", None)
    monkeypatch.setattr(spconv_backend, "IMPORT_ERROR", "ImportError: No module named 'spconv'")
    assert sparse.available_backends() == ["torch"] and sparse.resolve_backend() == "torch"
    with pytest.raises(ImportError, match="MinkowskiEngine"):
        sparse.resolve_backend("minkowski")
    with pytest.raises(ImportError, match="spconv cannot be imported .*No module named 'spconv'"):
        sparse.resolve_backend("spconv")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert sparse.resolve_backend() == "torch"
    with pytest.raises(ImportError, match="spconv is not available"):
        sparse.SubMConv3d(3, 3).double()(sparse.SparseTensor.from_manager(x.manager, 1, x.feats,
                                                                          "spconv"))


def test_auto_picks_torch_on_cpu_and_spconv_first_on_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert sparse.resolve_backend("auto") == "torch"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(spconv_backend, "is_available", lambda: True)
    assert sparse.resolve_backend("auto") == "spconv"
    monkeypatch.setattr(spconv_backend, "is_available", lambda: False)
    monkeypatch.setattr(minkowski_backend, "is_available", lambda: True)
    assert sparse.resolve_backend("auto") == "minkowski"


def tiny_unet(cin=3, m=4):
    """Two levels: SubM, down, SubM, up, skip concat, SubM."""
    return torch.nn.ModuleDict(dict(
        stem=sparse.SubMConv3d(cin, m), bn=sparse.BatchNorm(m), down=sparse.DownConv3d(m, 2 * m),
        mid=sparse.SubMConv3d(2 * m, 2 * m), up=sparse.UpConv3d(2 * m, m),
        head=sparse.SubMConv3d(2 * m, 2, bias=True))).double()


def run_unet(net, x):
    skip = sparse.ReLU()(net["bn"](net["stem"](x)))
    deep = net["up"](net["mid"](net["down"](skip)), skip)
    return net["head"](sparse.cat(skip, deep)).feats


@pytest.mark.parametrize("backend", OPTIONAL_BACKENDS)
def test_backends_agree_and_share_checkpoints(backend):
    coords = random_coords(21, n=400)
    feats = torch.randn(len(coords), 3, dtype=torch.float64)
    net_torch = tiny_unet()
    net_other = tiny_unet()
    net_other.load_state_dict(net_torch.state_dict())
    outs, grads = [], []
    for net, name in ((net_torch, "torch"), (net_other, backend)):
        f = feats.clone().requires_grad_()
        out = run_unet(net, sparse.SparseTensor(coords, f, backend=name))
        params = [f] + list(net.parameters())
        probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(3),
                            dtype=out.dtype)
        outs.append(out)
        grads.append(torch.autograd.grad((out * probe).sum(), params))
    assert_close(outs[1], outs[0], rtol=1e-10)
    for got, want in zip(grads[1], grads[0]):
        assert_close(got, want, rtol=1e-10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("backend", ["torch", SPCONV])
def test_backend_on_cuda_matches_cpu(backend):
    coords, feats, x = make_input(13, 3)
    net = tiny_unet()
    expected = run_unet(net, x)
    out = run_unet(net.cuda(), sparse.SparseTensor(coords.cuda(), feats.detach().cuda(),
                                                   backend=backend))
    assert_close(out.cpu(), expected.detach(), rtol=1e-10)


def test_kernel_map_counts_pairs_and_flops_by_hand():
    """Two face-adjacent voxels and one far away: the identity gives 3 pairs, the two
    neighbours see each other through one offset each (2 pairs); the down map of 3 voxels has
    3 pairs. FLOPs = 2 x pairs x C_in x C_out (the roofline's count)."""
    coords = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 1], [0, 5, 5, 5]], dtype=torch.int32)
    x = sparse.SparseTensor(coords, torch.zeros(3, 1), backend="torch")
    subm = torch_backend.submanifold_map(x.manager, 1, 3)
    assert subm.num_pairs() == 5 and subm.flops(3, 4) == 2 * 5 * 3 * 4
    down = torch_backend.down_map(x.manager, 1)
    assert down.num_pairs() == 3 and down.transposed().num_pairs() == 3


# ----------------------------------------------------------------------------------------------
# the compiled CPU kernels (twist_lib/sparse/native.py) in float32, against dense conv3d
# ----------------------------------------------------------------------------------------------
NATIVE = pytest.mark.skipif(native.library() is None,
                            reason=f"compiled kernels unavailable ({native.BUILD_ERROR})")


@pytest.fixture
def one_thread_counting(monkeypatch):
    """One torch thread (where the kernels run) and a count of the kernels' calls."""
    calls = {"gemm": 0, "outer": 0, "bn": 0}
    gemm, outer, bn = native.gemm_pairs, native.outer_pairs, native.bn_relu_forward

    def counted(name, fn):
        def call(*args):
            calls[name] += 1
            return fn(*args)
        return call
    monkeypatch.setattr(native, "gemm_pairs", counted("gemm", gemm))
    monkeypatch.setattr(native, "outer_pairs", counted("outer", outer))
    monkeypatch.setattr(native, "bn_relu_forward", counted("bn", bn))
    monkeypatch.setattr(native, "enabled", True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield calls
    torch.set_num_threads(threads)


def float32_case(kind, cin, cout, seed):
    """One layer in float32 on the torch backend, and its dense float64 reference built from the
    same inputs and weights: ``(out32, (feats32, weight32), ref64, (feats64, weight64))``."""
    coords, feats64, x64 = make_input(seed, cin, 1, n=400)
    feats64 = feats64.detach().requires_grad_()
    if kind == "up":  # the input lives on the coarse grid of the k2 s2 convolution
        coarse = sparse.DownConv3d(cin, cin)(x64).coords
        feats64 = torch.randn(len(coarse), cin, dtype=torch.float64,
                              generator=torch.Generator().manual_seed(seed)).requires_grad_()
    feats = feats64.detach().float().requires_grad_()
    conv = {"subm": lambda: sparse.SubMConv3d(cin, cout, kernel_size=3),
            "down": lambda: sparse.DownConv3d(cin, cout),
            "up": lambda: sparse.UpConv3d(cin, cout)}[kind]()
    w64 = conv.weight.detach().double().requires_grad_()
    fine = sparse.SparseTensor(coords, feats if kind != "up" else torch.zeros(len(coords), cin),
                               backend="torch")
    if kind == "subm":
        out = conv(fine)
        ref = read_dense(F.conv3d(to_dense(coords, feats64, 1), dense_weight(w64, 3), padding=1),
                         coords, 1)
    elif kind == "down":
        out = conv(fine)
        ref = read_dense(F.conv3d(to_dense(coords, feats64, 1), dense_weight(w64, 2), stride=2),
                         out.coords, 2)
    else:
        out = conv(sparse.SparseTensor.from_manager(fine.manager, 2, feats, "torch"), fine)
        w_t = w64.reshape(2, 2, 2, cin, cout).permute(3, 4, 0, 1, 2)
        ref = read_dense(F.conv_transpose3d(to_dense(coarse, feats64, 2), w_t, stride=2),
                         coords, 1)
    return out.feats, (feats, conv.weight), ref, (feats64, w64)


@NATIVE
@pytest.mark.parametrize("kind", ["subm", "down", "up"])
@pytest.mark.parametrize("cin,cout", [(16, 16), (32, 48), (80, 64), (6, 16), (16, 7)])
def test_compiled_kernels_match_dense_conv_in_float32(one_thread_counting, kind, cin, cout):
    out, leaves, ref, ref_leaves = float32_case(kind, cin, cout, seed=cin + cout)
    assert_close(out.double(), ref, rtol=2e-6)
    probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(3))
    grads = torch.autograd.grad((out * probe).sum(), leaves)
    ref_grads = torch.autograd.grad((ref * probe.double()).sum(), ref_leaves)
    for got, want in zip(grads, ref_grads):
        assert_close(got.double(), want, rtol=2e-6)
    # the kernels ran where the widths allow: forward and weight gradient need cout in
    # WIDTHS, the input gradient cin
    calls = one_thread_counting
    fused = (cout in native.WIDTHS) + (cin in native.WIDTHS)
    assert calls["bn"] == 0
    assert (calls["gemm"] > 0) == (fused > 0) and (calls["outer"] > 0) == (cout in native.WIDTHS)


def test_compiled_kernels_stay_off_where_they_do_not_apply(monkeypatch):
    """float64, several threads or TWIST_NATIVE=0 (enabled False): the torch ops run."""
    monkeypatch.setattr(native, "gemm_pairs", lambda *a: pytest.fail("kernel ran"))
    monkeypatch.setattr(native, "outer_pairs", lambda *a: pytest.fail("kernel ran"))
    _, feats, x = make_input(5, 16)
    sparse.SubMConv3d(16, 16).double()(x).feats.sum().backward()  # float64
    monkeypatch.setattr(native, "enabled", False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        y = sparse.SparseTensor(x.coords, feats.detach().float().requires_grad_(), backend="torch")
        sparse.SubMConv3d(16, 16)(y).feats.sum().backward()
    finally:
        torch.set_num_threads(threads)


@NATIVE
@pytest.mark.parametrize("width", [16, 48, 160])
def test_fused_batch_norm_relu_matches_torch_in_float64(one_thread_counting, width):
    """BatchNorm then ReLU in a sparse.Sequential (fused: BatchNormReLU) against F.batch_norm and
    F.relu in float64: output, the gradients of the input, gamma and beta, the running statistics
    and the batch counter after two steps; the state_dict is nn.Sequential's."""
    gen = torch.Generator().manual_seed(width)
    coords = random_coords(width, n=500)
    seq = sparse.Sequential(sparse.BatchNorm(width), sparse.ReLU())
    ref_bn = nn.BatchNorm1d(width).double()
    with torch.no_grad():
        for bn in (seq[0], ref_bn):
            bn.weight.copy_(torch.rand(width, generator=torch.Generator().manual_seed(1)) + 0.5)
            bn.bias.copy_(torch.randn(width, generator=torch.Generator().manual_seed(2)))
    assert list(seq.state_dict()) == list(nn.Sequential(nn.BatchNorm1d(width)).state_dict())
    for step in range(2):
        x64 = (torch.randn(len(coords), width, generator=gen, dtype=torch.float64) * 3 + 1)
        x64.requires_grad_()
        x32 = x64.detach().float().requires_grad_()
        out = seq(sparse.SparseTensor(coords, x32, backend="torch")).feats
        ref = F.relu(ref_bn(x64))
        assert_close(out.double(), ref, rtol=2e-6)
        probe = torch.randn(out.shape, generator=gen)
        grads = torch.autograd.grad((out * probe).sum(), (x32, seq[0].weight, seq[0].bias))
        ref_grads = torch.autograd.grad((ref * probe.double()).sum(),
                                        (x64, ref_bn.weight, ref_bn.bias))
        for got, want in zip(grads, ref_grads):
            assert_close(got.double(), want, rtol=2e-5)
    for name in ("running_mean", "running_var"):
        assert_close(getattr(seq[0], name).double(), getattr(ref_bn, name), rtol=2e-6)
    assert int(seq[0].num_batches_tracked) == int(ref_bn.num_batches_tracked) == 2
    assert one_thread_counting["bn"] == 2  # the fused path ran, once a step
    seq.eval()  # eval: running statistics, the modules one by one, as nn.Sequential
    x = torch.randn(len(coords), width)
    got = seq(sparse.SparseTensor(coords, x, backend="torch")).feats
    torch.testing.assert_close(got, F.relu(F.batch_norm(
        x, seq[0].running_mean, seq[0].running_var, seq[0].weight, seq[0].bias)))


def _relu_zeros(net):
    """Hooks that count the zeros of every convolution's input and of ``net``'s output: the
    masks of the ReLUs before them (the stem's input has none)."""
    counts = []
    for module in net.modules():
        if isinstance(module, (sparse.SubMConv3d, sparse.DownConv3d, sparse.UpConv3d)):
            module.register_forward_pre_hook(
                lambda m, inp: counts.append(int((inp[0].feats == 0).sum())) and None)
    net.register_forward_hook(lambda m, i, out: counts.append(int((out.feats == 0).sum())))
    return counts


@NATIVE
def test_unet_step_with_compiled_kernels_matches_float64(one_thread_counting):
    """The small U-Net's forward and backward on the compiled kernels (float32) against the
    same network in float64 (torch ops: the path the dense-conv tests above check).

    The gradient of batch norm + ReLU jumps where a pre-activation crosses 0: a float32 rounding
    that moves one entry across shifts its whole channel's input gradient (through the batch
    mean), in any float32 implementation. So the comparison holds only where float32 and float64
    put every pre-activation on the same side of 0, which the test checks first (the ReLU masks'
    zero counts agree; seed 0 has that property)."""
    from twist_lib.network import MODEL_SIZES, SparseUNet
    torch.manual_seed(0)
    coords = random_coords(3, n=1500, extent=EXTENT)
    net = SparseUNet(3, MODEL_SIZES["small"])
    net64 = SparseUNet(3, MODEL_SIZES["small"]).double()
    net64.load_state_dict(net.state_dict())
    zeros, zeros64 = _relu_zeros(net), _relu_zeros(net64)
    x64 = torch.randn(len(coords), 3, dtype=torch.float64,
                      generator=torch.Generator().manual_seed(0))
    out = net(sparse.SparseTensor(coords, x64.float(), backend="torch")).feats
    ref = net64(sparse.SparseTensor(coords, x64, backend="torch")).feats
    assert_close(out.double(), ref, rtol=1e-4)
    assert zeros == zeros64 and len(zeros) == 28 and min(zeros[1:]) > 0
    probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * probe).sum().backward()
    (ref * probe.double()).sum().backward()
    for p, p64 in zip(net.parameters(), net64.parameters()):
        assert_close(p.grad.double(), p64.grad, rtol=1e-3)
    assert min(one_thread_counting.values()) > 0  # convolutions and batch norms both fused
