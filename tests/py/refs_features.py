"""Feature-extraction references: torchvision's `create_feature_extractor` on the same networks,
for `zoo features` parity. Names end in `_features`; the zoo architecture is the name without it.
Each extra output is named `node:<torchvision node>`; the Rust test maps it to the zoo layer.
Every 4-D node also gets `avg:<node>` and `max:<node>`, torch's global average and max pools of
it (`adaptive_avg_pool2d` / `adaptive_max_pool2d`, flattened): what `zoo features --pool avg|max`
must give.
"""
import os
import sys

import torch
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference import Ref  # noqa: E402

NODES = {
    # VGG-16: FC7 after its ReLU, and the last conv's ReLU.
    "vgg16": ["classifier.4", "features.29", "features.30"],
    # ResNet-50: a stage, the pooled features (pre-logits), a batch norm's output (which the
    # traced engines fold into the convolution before it) and a convolution's before its norm.
    "resnet50": ["layer3", "flatten", "layer2.0.bn1", "layer1.0.conv2"],
    # DenseNet-121: a dense block and a transition.
    "densenet121": ["features.denseblock3", "features.transition2"],
}


def extractor(nodes):
    def extra(model, x):
        # torchvision's blocks apply one ReLU(inplace=True) to their norms' outputs, so a traced
        # graph's `bn1` node would hand back the tensor after that ReLU overwrote it: the taps
        # must see each node's own output.
        for m in model.modules():
            if isinstance(m, torch.nn.ReLU):
                m.inplace = False
        fx = create_feature_extractor(model, return_nodes=nodes).eval()  # dropout off, as zoo's eval
        out = {}
        with torch.no_grad():
            for k, v in fx(x).items():
                out[f"node:{k}"] = v
                if v.dim() == 4:
                    out[f"avg:{k}"] = torch.nn.functional.adaptive_avg_pool2d(v, 1).flatten(1)
                    out[f"max:{k}"] = torch.nn.functional.adaptive_max_pool2d(v, 1).flatten(1)
        return out

    return extra


MODELS = {
    f"{name}_features": Ref(build=(lambda n=name: getattr(torchvision.models, n)(weights=None)), extra=extractor(nodes), legacy=False)
    for name, nodes in NODES.items()
}
