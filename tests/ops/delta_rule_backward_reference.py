"""Independent float64 PyTorch autograd reference for the Gated DeltaNet core backward.

Reads raw float32 inputs written by delta_rule_backward_test.cpp from DIR and writes the gradients
(float64) back: conv output qkv [T, 2 nk dk + nv dv] -> l2norm(q) * dk^-0.5, l2norm(k), GVA by
repeat_interleave, gates beta = sigmoid(b), g = -exp(A_log) softplus(a + dt_bias) per value head,
the token-by-token recurrence from an initial state; loss = sum(o * d_out) + <S_T, d_final_state>.

Usage: delta_rule_backward_reference.py DIR T NK NV DK DV
"""
import sys

import numpy as np
import torch


def main():
    folder = sys.argv[1]
    T, nk, nv, dk, dv = (int(x) for x in sys.argv[2:7])

    def load(name, shape, grad=True):
        values = np.fromfile(f"{folder}/{name}.f32", dtype=np.float32).astype(np.float64)
        tensor = torch.from_numpy(values.reshape(shape))
        return tensor.requires_grad_(grad)

    inputs = {
        "qkv": load("qkv", (T, 2 * nk * dk + nv * dv)),
        "b": load("b", (T, nv)),
        "a": load("a", (T, nv)),
        "A_log": load("A_log", (nv,)),
        "dt_bias": load("dt_bias", (nv,)),
        "initial_state": load("initial_state", (nv, dk, dv)),
    }
    d_out = load("d_out", (T, nv * dv), grad=False)
    d_final_state = load("d_final_state", (nv, dk, dv), grad=False)

    qkv = inputs["qkv"]
    q = qkv[:, : nk * dk].reshape(T, nk, dk)
    k = qkv[:, nk * dk : 2 * nk * dk].reshape(T, nk, dk)
    v = qkv[:, 2 * nk * dk :].reshape(T, nv, dv)

    def l2norm(x):
        return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + 1e-6)

    q = l2norm(q) * dk**-0.5
    k = l2norm(k)
    q = q.repeat_interleave(nv // nk, dim=1)
    k = k.repeat_interleave(nv // nk, dim=1)
    beta = torch.sigmoid(inputs["b"])
    g = -inputs["A_log"].exp() * torch.nn.functional.softplus(inputs["a"] + inputs["dt_bias"])

    S = inputs["initial_state"]
    outputs = []
    for t in range(T):
        S = S * g[t].exp()[:, None, None]
        predicted = torch.einsum("hij,hi->hj", S, k[t])
        u = beta[t][:, None] * (v[t] - predicted)
        S = S + torch.einsum("hi,hj->hij", k[t], u)
        outputs.append(torch.einsum("hij,hi->hj", S, q[t]))
    o = torch.stack(outputs).reshape(T, nv * dv)
    loss = (o * d_out).sum() + (S * d_final_state).sum()
    loss.backward()
    for name, tensor in inputs.items():
        tensor.grad.numpy().astype(np.float64).tofile(f"{folder}/grad_{name}.f64")


if __name__ == "__main__":
    main()
