"""The ImageNet channel statistics (RGB on a 0–1 scale) that pretrained backbones expect and the
recipes normalise with by default: one definition for checkpoints, recipes and backbone loading."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
