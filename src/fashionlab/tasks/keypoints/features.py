"""The keypoint heads read the whole feature pyramid (see ``fashionlab.models.features``)."""
from __future__ import annotations

from ...models.features import FeatureBackbone, create_feature_backbone, feature_model

__all__ = ["FeatureBackbone", "create_feature_backbone", "feature_model"]
