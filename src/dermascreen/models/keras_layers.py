"""Every model's layers as Keras lists them, each with the torch modules it stands for.

The seed froze its Keras models by position: ``for layer in base.layers[:-N]: layer.trainable =
False``. Keras lists every layer, with or without weights (the input, paddings, activations,
pooling, adds, reshapes), so "the last N layers" only means the same thing here if the count is
the same. ``model.keras_layers()`` returns that list for each model of this package; every entry
(``KerasLayer``) names the torch modules, or single parameters, that play its part, and
``set_trainable`` unfreezes the parameters of the last N entries. Parameter-free entries map to
parameter-free torch modules, or to nothing where torch needs no module (an input, a padding done
inside a convolution, an add done in ``forward``).

The lists are generated from the torch model's structure, by these rules (docs/models.md):

- timm ``resnet50`` -> ``keras.applications.ResNet50(include_top=False)``, 175 layers: the stem
  (input, conv1_pad, conv1_conv, conv1_bn, conv1_relu, pool1_pad, pool1_pool), then per bottleneck
  ``_1_conv _1_bn _1_relu _2_conv _2_bn _2_relu [_0_conv] _3_conv [_0_bn] _3_bn _add _out``.
  Keras' functional models list layers by decreasing distance to the output, ties in the order of
  a depth-first walk from the output; that walk reaches the shortcut (the ``Add``'s first input)
  first, which puts ``_0_conv`` before ``_3_conv`` and ``_0_bn`` before ``_3_bn``.
- timm ``vgg16`` (fully connected layers pruned) -> ``VGG16(include_top=False)``, 19 layers:
  input, then ``blockB_convC`` (a Keras ``Conv2D(activation="relu")``: the conv and its ReLU) and
  ``blockB_pool``.
- timm ``efficientnet_b0`` -> ``EfficientNetB0(include_top=False)``, 237 layers: input,
  rescaling, normalization, stem_conv_pad, stem_conv, stem_bn, stem_activation; per MBConv block
  Keras' ``block()``: ``[expand_conv expand_bn expand_activation] [dwconv_pad] dwconv bn activation
  se_squeeze se_reshape se_reduce se_expand se_excite project_conv project_bn [drop add]``; then
  top_conv, top_bn, top_activation. (Keras releases whose stem adds a second ``Rescaling`` when
  loading ImageNet weights list 238; that layer is at the input end, so "the last N" is the same.)
- ``cnn`` (this project's model) -> a Keras ``Sequential`` with the same layers, one Keras layer
  per torch module and no input layer (``Sequential.layers`` has none); the head's layers count
  too, as the seed's ``model.layers`` of a single Sequential did.
- ``resnet_cifar`` (this project's model) -> a Keras functional model built like
  keras.applications' ResNets at full resolution ("same" convolutions, so no padding layers):
  input, conv1_conv, conv1_bn, conv1_relu; per basic block ``_1_conv _1_bn _1_relu [_0_conv]
  _2_conv [_0_bn] _2_bn _add _out`` (shortcut interleaved as for ResNet50); then avg_pool,
  dropout, predictions (the head counts, as for ``cnn``).
- ``vit`` (this project's encoder) -> the layers of Keras' ViT example (keras.io,
  "Image classification with Vision Transformer"): input, resizing, patch embedding, class token;
  per block LayerNormalization, MultiHeadAttention, Add, LayerNormalization, Dense, Dropout, Dense,
  Dropout, Add; then the final LayerNormalization.
"""

from __future__ import annotations

from dataclasses import dataclass

from timm.models._efficientnet_blocks import DepthwiseSeparableConv, InvertedResidual
from timm.models.efficientnet import EfficientNet
from timm.models.resnet import ResNet
from timm.models.vgg import VGG
from torch import nn


@dataclass(frozen=True)
class KerasLayer:
    """One Keras layer: its name, its Keras class, and what stands for it in the torch model.

    ``targets`` are names in the whole model (``model.get_submodule`` / ``get_parameter``): a
    module brings all its parameters, a parameter name only itself. Empty: nothing to train.
    """

    name: str
    kind: str
    targets: tuple[str, ...] = ()

    def parameters(self, model: nn.Module) -> list[nn.Parameter]:
        found = []
        for target in self.targets:
            try:
                found.extend(model.get_submodule(target).parameters())
            except AttributeError:  # not a module: a bare parameter such as the ViT's [CLS] token
                found.append(model.get_parameter(target))
        return found


def _layer(name: str, kind: str, prefix: str, *modules: str) -> KerasLayer:
    return KerasLayer(name, kind, tuple(prefix + module for module in modules))


BN = "BatchNormalization"

# ---- timm backbones -> keras.applications (names as Keras gives them) ----


def resnet_layers(net: ResNet, prefix: str) -> list[KerasLayer]:
    """ResNet50: 175 layers."""
    layers = [KerasLayer("input", "InputLayer"), KerasLayer("conv1_pad", "ZeroPadding2D"),
              _layer("conv1_conv", "Conv2D", prefix, "conv1"), _layer("conv1_bn", BN, prefix, "bn1"),
              _layer("conv1_relu", "Activation", prefix, "act1"), KerasLayer("pool1_pad", "ZeroPadding2D"),
              _layer("pool1_pool", "MaxPooling2D", prefix, "maxpool")]
    for s, stage in enumerate((net.layer1, net.layer2, net.layer3, net.layer4)):
        for b, block in enumerate(stage):
            name, at = f"conv{s + 2}_block{b + 1}_", f"{prefix}layer{s + 1}.{b}."
            parts = [("1_conv", "Conv2D", "conv1"), ("1_bn", BN, "bn1"), ("1_relu", "Activation", "act1"),
                     ("2_conv", "Conv2D", "conv2"), ("2_bn", BN, "bn2"), ("2_relu", "Activation", "act2")]
            if block.downsample is None:
                parts += [("3_conv", "Conv2D", "conv3"), ("3_bn", BN, "bn3")]
            else:  # the shortcut's conv and BN interleave with _3_conv/_3_bn in Keras' order
                parts += [("0_conv", "Conv2D", "downsample.0"), ("3_conv", "Conv2D", "conv3"),
                          ("0_bn", BN, "downsample.1"), ("3_bn", BN, "bn3")]
            layers += [_layer(name + part, kind, at, module) for part, kind, module in parts]
            layers += [KerasLayer(name + "add", "Add"), _layer(name + "out", "Activation", at, "act3")]
    return layers


def vgg_layers(net: VGG, prefix: str) -> list[KerasLayer]:
    """VGG16 without its fully connected layers: 19 layers."""
    layers, block, conv = [KerasLayer("input", "InputLayer")], 1, 0
    features = list(net.features)
    for index, module in enumerate(features):
        if isinstance(module, nn.Conv2d):
            if not isinstance(features[index + 1], nn.ReLU):
                raise TypeError(f"vgg features.{index}: expected a ReLU after the convolution")
            conv += 1
            layers.append(_layer(f"block{block}_conv{conv}", "Conv2D", prefix,
                                 f"features.{index}", f"features.{index + 1}"))
        elif isinstance(module, nn.MaxPool2d):
            layers.append(_layer(f"block{block}_pool", "MaxPooling2D", prefix, f"features.{index}"))
            block, conv = block + 1, 0
        elif not isinstance(module, nn.ReLU):  # ReLUs belong to the Conv2D before them
            raise TypeError(f"vgg features.{index}: unexpected {type(module).__name__}")
    return layers


def efficientnet_layers(net: EfficientNet, prefix: str) -> list[KerasLayer]:
    """EfficientNetB0: 237 layers."""
    layers = [KerasLayer("input", "InputLayer"), KerasLayer("rescaling", "Rescaling"),
              KerasLayer("normalization", "Normalization"), KerasLayer("stem_conv_pad", "ZeroPadding2D"),
              _layer("stem_conv", "Conv2D", prefix, "conv_stem"), _layer("stem_bn", BN, prefix, "bn1"),
              _layer("stem_activation", "Activation", prefix, "bn1.act")]
    for i, stage in enumerate(net.blocks):
        for j, block in enumerate(stage):
            layers += _mbconv_layers(block, f"block{i + 1}{chr(ord('a') + j)}_", f"{prefix}blocks.{i}.{j}.")
    return layers + [_layer("top_conv", "Conv2D", prefix, "conv_head"), _layer("top_bn", BN, prefix, "bn2"),
                     _layer("top_activation", "Activation", prefix, "bn2.act")]


def _mbconv_layers(block: nn.Module, name: str, at: str) -> list[KerasLayer]:
    # timm's BatchNormAct2d holds the activation Keras has as its own layer (``bnX.act``).
    if isinstance(block, InvertedResidual):
        parts = [("expand_conv", "Conv2D", ("conv_pw",)), ("expand_bn", BN, ("bn1",)),
                 ("expand_activation", "Activation", ("bn1.act",))]
        depthwise_bn, project, project_bn = "bn2", "conv_pwl", "bn3"
    elif isinstance(block, DepthwiseSeparableConv):  # expand ratio 1 (block1a): no expansion layers
        parts, depthwise_bn, project, project_bn = [], "bn1", "conv_pw", "bn2"
    else:
        raise TypeError(f"efficientnet {at}: unexpected block {type(block).__name__}")
    if block.conv_dw.stride[0] == 2:  # Keras pads explicitly before a strided depthwise conv
        parts.append(("dwconv_pad", "ZeroPadding2D", ()))
    parts += [("dwconv", "DepthwiseConv2D", ("conv_dw",)), ("bn", BN, (depthwise_bn,)),
              ("activation", "Activation", (f"{depthwise_bn}.act",)),
              ("se_squeeze", "GlobalAveragePooling2D", ()), ("se_reshape", "Reshape", ()),
              ("se_reduce", "Conv2D", ("se.conv_reduce", "se.act1")),
              ("se_expand", "Conv2D", ("se.conv_expand", "se.gate")), ("se_excite", "Multiply", ()),
              ("project_conv", "Conv2D", (project,)), ("project_bn", BN, (project_bn,))]
    if block.has_skip:  # Keras: drop-connect Dropout (rate > 0 for every skip block of B0), then the add
        parts += [("drop", "Dropout", ("drop_path",)), ("add", "Add", ())]
    return [_layer(name + part, kind, at, *modules) for part, kind, modules in parts]


TIMM_RULES = {ResNet: resnet_layers, VGG: vgg_layers, EfficientNet: efficientnet_layers}


def timm_layers(backbone: nn.Module, prefix: str) -> list[KerasLayer]:
    """The keras.applications layer list of a timm backbone (``prefix``: its name in the model)."""
    rule = TIMM_RULES.get(type(backbone))
    if rule is None:
        raise TypeError(f"no Keras layer list for timm model {type(backbone).__name__}")
    return rule(backbone, prefix)


# ---- this project's models ----

KERAS_KINDS = {nn.Conv2d: "Conv2D", nn.BatchNorm2d: BN, nn.ReLU: "Activation", nn.MaxPool2d: "MaxPooling2D",
               nn.Dropout: "Dropout", nn.Flatten: "Flatten", nn.Linear: "Dense"}
CNN_BLOCK_NAMES = ("conv", "bn", "relu", "pool", "dropout")
CNN_HEAD_NAMES = ("flatten", "dense", "dense_relu", "dense_dropout", "predictions")


def cnn_layers(backbone: nn.Sequential, head: nn.Sequential) -> list[KerasLayer]:
    """The custom CNN as a Keras Sequential: 5 layers per conv block + 5 in the head."""
    layers = [KerasLayer(f"block{i + 1}_{name}", KERAS_KINDS[type(module)], (f"backbone.{i}.{j}",))
              for i, block in enumerate(backbone)
              for j, (name, module) in enumerate(zip(CNN_BLOCK_NAMES, block, strict=True))]
    return layers + [KerasLayer(name, KERAS_KINDS[type(module)], (f"head.{j}",))
                     for j, (name, module) in enumerate(zip(CNN_HEAD_NAMES, head, strict=True))]


def resnet_cifar_layers(backbone: nn.Sequential, head: nn.Sequential) -> list[KerasLayer]:
    """The CIFAR-style ResNet: 4 + 9 per block (11 with a projection shortcut) + 3 layers."""
    layers = [KerasLayer("input", "InputLayer"), KerasLayer("conv1_conv", "Conv2D", ("backbone.0.0",)),
              KerasLayer("conv1_bn", BN, ("backbone.0.1",)), KerasLayer("conv1_relu", "Activation", ("backbone.0.2",))]
    stages = list(backbone)[1:-2]  # between the stem and (pool, flatten)
    for s, stage in enumerate(stages):
        for b, block in enumerate(stage):
            name, at = f"conv{s + 2}_block{b + 1}_", f"backbone.{s + 1}.{b}."
            parts = [("1_conv", "Conv2D", "conv1"), ("1_bn", BN, "bn1"), ("1_relu", "Activation", "act1")]
            if block.downsample is None:
                parts += [("2_conv", "Conv2D", "conv2"), ("2_bn", BN, "bn2")]
            else:  # Keras' order, as in resnet_layers
                parts += [("0_conv", "Conv2D", "downsample.0"), ("2_conv", "Conv2D", "conv2"),
                          ("0_bn", BN, "downsample.1"), ("2_bn", BN, "bn2")]
            layers += [_layer(name + part, kind, at, module) for part, kind, module in parts]
            layers += [KerasLayer(name + "add", "Add"), _layer(name + "out", "Activation", at, "act2")]
    pool = len(backbone) - 2
    return layers + [KerasLayer("avg_pool", "GlobalAveragePooling2D", (f"backbone.{pool}", f"backbone.{pool + 1}")),
                     KerasLayer("dropout", "Dropout", ("head.0",)), KerasLayer("predictions", "Dense", ("head.1",))]


def vit_layers(blocks: nn.ModuleList, prefix: str) -> list[KerasLayer]:
    """The ViT encoder as Keras' ViT example builds it: 4 + 9 per block + 1 layers."""
    layers = [KerasLayer("input", "InputLayer"), KerasLayer("resizing", "Resizing"),
              _layer("patch_embed", "Conv2D", prefix, "patch_embed"),
              _layer("class_token", "ClassToken", prefix, "cls_token")]
    for i in range(len(blocks)):
        parts = [("norm1", "LayerNormalization", ("norm1",)), ("attention", "MultiHeadAttention", ("attn",)),
                 ("attention_add", "Add", ("ls1", "drop_path1")), ("norm2", "LayerNormalization", ("norm2",)),
                 ("mlp_dense1", "Dense", ("mlp.fc1", "mlp.act")), ("mlp_dropout1", "Dropout", ("mlp.drop1",)),
                 ("mlp_dense2", "Dense", ("mlp.norm", "mlp.fc2")), ("mlp_dropout2", "Dropout", ("mlp.drop2",)),
                 ("mlp_add", "Add", ("ls2", "drop_path2"))]
        layers += [_layer(f"block{i + 1}_{part}", kind, f"{prefix}blocks.{i}.", *modules)
                   for part, kind, modules in parts]
    return layers + [_layer("norm", "LayerNormalization", prefix, "norm")]
