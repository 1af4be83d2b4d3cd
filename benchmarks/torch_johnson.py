"""The same networks in idiomatic PyTorch, as the speed reference for benchmarks/speed.py: the Johnson et al.
transformation network with our `channels` conditioning (RGB + constant style planes, plus a learned shift of the
plane values after every instance norm) or `none`, and VGG16 features loaded from our converted weights cache.
Benchmark-only: nothing in the project imports it."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class ConvIN(nn.Module):
    def __init__(self, cin, cout, kernel, stride=1, planes=0, relu=True):
        super().__init__()
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(cin, cout, kernel, stride)
        self.norm = nn.InstanceNorm2d(cout, affine=True)
        self.shift = nn.Linear(planes, cout, bias=False) if planes else None
        self.relu = relu

    def forward(self, x, w):
        x = self.norm(self.conv(self.pad(x)))
        if self.shift is not None:
            x = x + self.shift(w)[:, :, None, None]
        return F.relu(x) if self.relu else x


class Residual(nn.Module):
    def __init__(self, planes):
        super().__init__()
        self.a = ConvIN(128, 128, 3, planes=planes)
        self.b = ConvIN(128, 128, 3, planes=planes, relu=False)

    def forward(self, x, w):
        return x + self.b(self.a(x, w), w)


class JohnsonNet(nn.Module):
    def __init__(self, num_styles=2, conditioning="channels"):
        super().__init__()
        p = num_styles if conditioning == "channels" else 0
        self.planes = p
        self.c1 = ConvIN(3 + p, 32, 9, planes=p)
        self.c2 = ConvIN(32, 64, 3, 2, planes=p)
        self.c3 = ConvIN(64, 128, 3, 2, planes=p)
        self.res = nn.ModuleList([Residual(p) for _ in range(5)])
        self.u1 = ConvIN(128, 64, 3, planes=p)
        self.u2 = ConvIN(64, 32, 3, planes=p)
        self.out = nn.Sequential(nn.ReflectionPad2d(4), nn.Conv2d(32, 3, 9))

    def forward(self, x, w):
        if self.planes:
            x = torch.cat([x, w[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])], 1)
        x = self.c3(self.c2(self.c1(x, w), w), w)
        for block in self.res:
            x = block(x, w)
        x = self.u1(F.interpolate(x, scale_factor=2, mode="nearest"), w)
        x = self.u2(F.interpolate(x, scale_factor=2, mode="nearest"), w)
        return torch.sigmoid(self.out(x))


VGG_CONVS = [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2), (3, 3), (4, 1), (4, 2), (4, 3)]


class VGGFeatures(nn.Module):
    """VGG16 up to relu4_3 from the converted npz (HWIO kernels -> OIHW)."""

    def __init__(self, weights: dict):
        super().__init__()
        self.convs = nn.ModuleList()
        for b, c in VGG_CONVS:
            k = torch.from_numpy(np.ascontiguousarray(weights[f"conv{b}_{c}/kernel"].transpose(3, 2, 0, 1)))
            conv = nn.Conv2d(k.shape[1], k.shape[0], 3, padding=1)
            conv.weight.data.copy_(k)
            conv.bias.data.copy_(torch.from_numpy(weights[f"conv{b}_{c}/bias"]))
            self.convs.append(conv)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x):
        x = (x - self.mean) / self.std
        out = {}
        for (b, c), conv in zip(VGG_CONVS, self.convs):
            if c == 1 and b > 1:
                x = F.max_pool2d(x, 2)
            x = F.relu(conv(x))
            out[f"relu{b}_{c}"] = x
        return out


def gram(f):
    b, c, h, w = f.shape
    f = f.reshape(b, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def make_train_step(net, vgg, target_grams, lr=1e-3, content_weight=1.0, style_weight=10.0, tv_weight=10.0):
    """The same loss as stylizer.py: content at relu2_2, Frobenius Gram loss at four layers, squared TV."""
    opt = torch.optim.Adam(net.parameters(), lr)
    layers = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")

    def step(content, w):
        out = net(content, w)
        fo = vgg(out)
        with torch.no_grad():
            fc = vgg(content)["relu2_2"]
        c = ((fo["relu2_2"] - fc) ** 2).mean(dim=(1, 2, 3))
        s = sum(((gram(fo[n]) - target_grams[n]) ** 2).sum(dim=(1, 2)) for n in layers)
        tv = ((out[:, :, 1:] - out[:, :, :-1]) ** 2).mean(dim=(1, 2, 3)) + \
            ((out[:, :, :, 1:] - out[:, :, :, :-1]) ** 2).mean(dim=(1, 2, 3))
        loss = (content_weight * c + style_weight * s + tv_weight * tv).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss)

    return step


def copy_from_keras(keras_net, net: JohnsonNet) -> JohnsonNet:
    """Load the weights of our Keras network (stylizer_net.build_stylizer with `channels` or `none` conditioning, the
    same style count) into `net`: convolutions in the order they run (HWIO -> OIHW), each instance norm's scale and
    shift, and the learned shift of the style planes. Returns `net`."""
    import keras

    from stylizer_net import InstanceNorm

    convs = [layer for layer in keras_net.layers if isinstance(layer, keras.layers.Conv2D)]
    norms = [layer for layer in keras_net.layers if isinstance(layer, InstanceNorm)]
    blocks = [net.c1, net.c2, net.c3, *[m for block in net.res for m in (block.a, block.b)], net.u1, net.u2]
    if len(convs) != len(blocks) + 1 or len(norms) != len(blocks):
        raise ValueError(f"{len(convs)} convolutions and {len(norms)} norms do not match JohnsonNet's blocks")

    def conv_weights(module, layer):
        kernel, bias = (np.asarray(v) for v in layer.get_weights())
        module.weight.data.copy_(torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))))
        module.bias.data.copy_(torch.from_numpy(bias))

    with torch.no_grad():
        for block, conv, norm in zip(blocks, convs, norms):
            conv_weights(block.conv, conv)
            block.norm.weight.copy_(torch.from_numpy(np.asarray(norm.gamma)[0]))
            block.norm.bias.copy_(torch.from_numpy(np.asarray(norm.beta)[0]))
            if block.shift is not None:
                block.shift.weight.copy_(torch.from_numpy(np.asarray(norm.plane_kernel).T.copy()))
        conv_weights(net.out[1], convs[-1])
    return net
