#!/usr/bin/python3
"""Reference numbers for tests/test_nn_layers.c: PyTorch's LSTMCell, GRUCell and
MultiheadAttention on inputs and weights filled by the same formula as the test
(fill(k, salt) = sin(0.37 k + salt) / 2, element k in row-major order), float64.
Our weights are [in, out], the transpose of torch's [out, in]."""
import math
import torch

torch.set_default_dtype(torch.float64)


def fill(shape, salt):
    n = math.prod(shape)
    return torch.tensor([math.sin(0.37 * k + salt) / 2 for k in range(n)]).reshape(shape)


def show(name, t):
    vals = ", ".join("%.17g" % v for v in t.flatten().tolist())
    print("static const double %s[] = {%s};" % (name, vals))


N, IN, H = 3, 4, 5
x, h, c = fill((N, IN), 1.0), fill((N, H), 2.0), fill((N, H), 3.0)

lstm = torch.nn.LSTMCell(IN, H)
with torch.no_grad():
    lstm.weight_ih.copy_(fill((IN, 4 * H), 4.0).T)
    lstm.weight_hh.copy_(fill((H, 4 * H), 5.0).T)
    lstm.bias_ih.copy_(fill((4 * H,), 6.0))
    lstm.bias_hh.copy_(fill((4 * H,), 7.0))
h2, c2 = lstm(x, (h, c))
show("lstm_h", h2)
show("lstm_c", c2)
h0, c0 = lstm(x)
show("lstm_h_zero", h0)

gru = torch.nn.GRUCell(IN, H)
with torch.no_grad():
    gru.weight_ih.copy_(fill((IN, 3 * H), 4.0).T)
    gru.weight_hh.copy_(fill((H, 3 * H), 5.0).T)
    gru.bias_ih.copy_(fill((3 * H,), 6.0))
    gru.bias_hh.copy_(fill((3 * H,), 7.0))
show("gru_h", gru(x, h))
show("gru_h_zero", gru(x))

B, T, D, HEADS = 2, 3, 4, 2
xa = fill((B, T, D), 8.0)
mha = torch.nn.MultiheadAttention(D, HEADS, batch_first=True)
with torch.no_grad():
    wq, wk, wv = fill((D, D), 9.0), fill((D, D), 10.0), fill((D, D), 11.0)
    mha.in_proj_weight.copy_(torch.cat([wq.T, wk.T, wv.T]))
    mha.in_proj_bias.copy_(torch.cat([fill((D,), 12.0), fill((D,), 13.0), fill((D,), 14.0)]))
    mha.out_proj.weight.copy_(fill((D, D), 15.0).T)
    mha.out_proj.bias.copy_(fill((D,), 16.0))
mask = torch.triu(torch.full((T, T), float("-inf")), diagonal=1)
show("mha_causal", mha(xa, xa, xa, attn_mask=mask, need_weights=False)[0])
show("mha_plain", mha(xa, xa, xa, need_weights=False)[0])
