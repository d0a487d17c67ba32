"""walls.zero_sync: InternEvo's hybrid-ZeRO parameter broadcasts (fa7337b greedy owners, NCCL 2.14.3 protocol).

Reference values by hand from the module's equations (NCCL 2.14.3 src/graph/tuning.cc constants), batched ==
scalar, jax.grad vs finite differences, float32 stays float32.
"""
import jax
import jax.numpy as jnp
import numpy as np

from mlsys_opt.walls import zero_sync as Z

BI, BE = 2.349e11, 5e9          # A100 NVLink ring rate, eth_100g per-GPU NIC rate (catalog values), B/s


def test_ring_broadcast_reference_values():
    # 1024 ranks, 8 per node: flat ring bytes 1023/1024·M·0.125/β_e; LL (3.6 + 1024·2.7 µs + 4·bytes) beats Simple
    b = 1023 / 1024 * 90.4e6 * 0.125 / BE
    ll, simple = 3.6e-6 + 1024 * 2.7e-6 + 4 * b, 8.4e-6 + 1024 * 28e-6 + b
    assert ll < simple
    np.testing.assert_allclose(float(Z.ring_broadcast_s(90.4e6, 1024.0, 8.0, BI, BE)), ll, rtol=1e-12)
    np.testing.assert_allclose(ll, 0.0117996, rtol=1e-5)
    # one node, 1.83 GB: Simple (8.4 + 8·28 µs + 7/8·M/β_i) beats LL (3× the bytes, 0.47 µs steps, 87.7 GB/s cap)
    b1 = 7 / 8 * 1.83e9 / BI
    simple1 = 8.4e-6 + 8 * 28e-6 + b1
    ll1 = 3.6e-6 + 8 * 0.47e-6 + max(3 * b1, 7 / 8 * 1.83e9 / 87.7e9)
    assert simple1 < ll1
    np.testing.assert_allclose(float(Z.ring_broadcast_s(1.83e9, 8.0, 8.0, BI, BE)), simple1, rtol=1e-12)
    # two nodes, a small message: LL latency with NET steps; LL's 39 GB/s cap does not bind at 5 GB/s per GPU
    b2 = 15 / 16 * 1e6 * 0.125 / BE
    np.testing.assert_allclose(float(Z.ring_broadcast_s(1e6, 16.0, 8.0, BI, BE)),
                               min(3.6e-6 + 16 * 2.7e-6 + 4 * b2, 8.4e-6 + 16 * 28e-6 + b2), rtol=1e-12)
    # a fast network (50 GB/s per GPU): LL is capped by llMaxBw 20.4 GB/s (> 2 nodes)
    bf = 1023 / 1024 * 90.4e6 * max(0.875 / BI, 0.125 / 50e9)
    cap = 1023 / 1024 * 90.4e6 / 20.4e9
    assert cap > 4 * bf
    np.testing.assert_allclose(float(Z.ring_broadcast_s(90.4e6, 1024.0, 8.0, BI, 50e9)),
                               min(3.6e-6 + 1024 * 2.7e-6 + cap, 8.4e-6 + 1024 * 28e-6 + bf), rtol=1e-12)
    # a tensor of a few kB: the LL latency alone; one rank: no broadcast
    np.testing.assert_allclose(float(Z.ring_broadcast_s(0.0, 1024.0, 8.0, BI, BE)), 3.6e-6 + 1024 * 2.7e-6, rtol=1e-12)
    assert float(Z.ring_broadcast_s(1e9, 1.0, 1.0, BI, BE)) == 0.0


def test_owners_and_total_reference_values():
    # InternLM-7B, 32 layers: 5·32 + 2 = 162 large tensors, 4·32 + 1 = 129 small ones (fa7337b greedy partition)
    for d, want in ((1024.0, (162.0, 129.0)), (291.0, (162.0, 129.0)), (256.0, (162.0, 94.0)),
                    (128.0, (128.0, 0.0)), (8.0, (8.0, 0.0)), (1.0, (1.0, 0.0))):
        assert tuple(float(x) for x in Z.broadcast_messages(d, 32.0)) == want
    w = 14.64e9
    per = float(Z.ring_broadcast_s(w / 162, 1024.0, 8.0, BI, BE))
    tiny = 3.6e-6 + 1024 * 2.7e-6
    total = float(Z.broadcast_params_s(w, 1024.0, 8.0, 32.0, BI, BE))
    np.testing.assert_allclose(total, 162 * per + 129 * tiny, rtol=1e-12)
    np.testing.assert_allclose(total, 2.2682, rtol=1e-4)
    # zero1 = 8 (one node): 8 owners of W/8 at Simple, no small-only owners
    np.testing.assert_allclose(float(Z.broadcast_params_s(w, 8.0, 8.0, 32.0, BI, BE)),
                               8 * (8.4e-6 + 8 * 28e-6 + 7 / 8 * (w / 8) / BI), rtol=1e-12)
    assert float(Z.broadcast_params_s(w, 1.0, 1.0, 32.0, BI, BE)) == 0.0


def test_batched_equals_scalar_and_grad():
    m = np.array([90.4e6, 1.83e9, 1e6, 0.0, 5e8])
    n = np.array([1024.0, 8.0, 16.0, 1024.0, 256.0])
    loc = np.array([8.0, 8.0, 8.0, 8.0, 4.0])
    be = np.array([BE, BE, BE, 50e9, BE])
    batched = np.asarray(Z.ring_broadcast_s(m, n, loc, BI, be))
    scalar = [float(Z.ring_broadcast_s(*a, BI, e)) for a, e in zip(zip(m, n, loc), be)]
    np.testing.assert_allclose(batched, scalar, rtol=0)
    d = np.array([1024.0, 512.0, 256.0, 128.0, 8.0])
    tb = np.asarray(Z.broadcast_params_s(14.64e9, d, np.full(5, 8.0), 32.0, BI, BE))
    np.testing.assert_allclose(tb, [float(Z.broadcast_params_s(14.64e9, x, 8.0, 32.0, BI, BE)) for x in d], rtol=0)

    def f(x):       # W (GB) and the NIC rate (GB/s), away from the protocol switch and the max() kinks
        return Z.broadcast_params_s(x[0] * 1e9, 1024.0, 8.0, 32.0, BI, x[1] * 1e9)
    x0 = jnp.array([14.64, 5.0])
    g = np.asarray(jax.grad(f)(x0))
    h = 1e-6
    fd = [(float(f(x0.at[i].add(h))) - float(f(x0.at[i].add(-h)))) / (2 * h) for i in range(2)]
    np.testing.assert_allclose(g, fd, rtol=1e-6)
    # LL bytes: dt/dW = 4·(1023/1024)·0.125/β_e per byte (each large owner's share is W/162)
    np.testing.assert_allclose(g[0], 4 * 1023 / 1024 * 0.125 / 5.0, rtol=1e-9)


def test_float32_stays_float32():
    with jax.enable_x64(False):
        t = Z.broadcast_params_s(jnp.float32(14.64e9), jnp.float32(1024.0), jnp.float32(8.0), jnp.float32(32.0),
                                 jnp.float32(BI), jnp.float32(BE))
        assert t.dtype == jnp.float32
        np.testing.assert_allclose(float(t), 2.2682, rtol=1e-4)
