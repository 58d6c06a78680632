"""Landmark tables (data): which source landmark denotes which FashionAI point, per category.

DeepFashion2 (Ge et al., CVPR 2019; github.com/switchablenorms/DeepFashion2 README and its Figure 2,
``images/cls.jpg``): per item, ``landmarks`` = [x1, y1, v1, ...] in the category's own order, 1-based
numbers below; counts 25/33/31/39/15/15/10/14/8/29/37/19/19 (294 in all, offsets as in
``evaluation/deepfashion2_to_coco.py``). Every category's outline is numbered the same way: 1 the back
neck centre, 2..6 the neckline from the image-left outer corner (2) through the centre front (4) to
the image-right outer corner (6), then from the image-left shoulder down the left side (sleeve outer
edge, cuff outer, cuff inner, sleeve inner edge, armpit, side seam), across the hem (image-left
corner, centre, image-right corner) and up the right side in mirror order; outwear numbers the
opening (lapels, front edges) after the outline. The left/right pairs follow the flip pairs of
svip-lab/HRNet-for-Fashion-Landmark-Estimation.PyTorch (``lib/dataset/deepfashion2.py``; the same in
mmpose ``configs/_base_/datasets/deepfashion2.py``); the side-seam points (armpit, waist, hip) follow
the measurement instructions of lygitdata/GarmentIQ, which name the 294 points. Like FashionAI and
fashionlab's synthetic set, ``*_left`` is the IMAGE's left (smaller x for a front view).

Not read off one authoritative text (the definition is a figure), so stated as assumptions:
- short sleeve outwear: the flip table pairs 2<->26 and 4<->6, unlike long sleeve outwear (2<->6,
  4<->34); read here as a transposition, so its neckline_right is 6 (override with ``--mapping``);
- waistline of tops/outwear (FashionAI outwear has it) is the lower of the two side-seam points
  between armpit and hem; of dresses, the side point after the one just below the armpit;
- vest and sling: point 8/14 (where the side seam starts) is the armpit; shoulder 7/15 is the
  strap/shoulder point; they have no cuffs (-1).
"""
from __future__ import annotations

_TOP = {"neckline_left": 2, "neckline_right": 6, "center_front": 4}
_SLEEVELESS = {**_TOP, "shoulder_left": 7, "shoulder_right": 15, "armpit_left": 8, "armpit_right": 14,
               "top_hem_left": 10, "top_hem_right": 12}
_SLEEVELESS_DRESS = {**_TOP, "shoulder_left": 7, "shoulder_right": 19, "armpit_left": 8, "armpit_right": 18,
                     "waistline_left": 9, "waistline_right": 17, "hemline_left": 12, "hemline_right": 14}

# category_id: (category_name, landmarks, FashionAI category, {FashionAI point: DeepFashion2 landmark number})
DEEPFASHION2: dict[int, tuple[str, int, str, dict[str, int]]] = {
    1: ("short sleeve top", 25, "blouse", {
        **_TOP, "shoulder_left": 7, "shoulder_right": 25, "armpit_left": 12, "armpit_right": 20,
        "cuff_left_out": 9, "cuff_left_in": 10, "cuff_right_in": 22, "cuff_right_out": 23,
        "top_hem_left": 15, "top_hem_right": 17}),
    2: ("long sleeve top", 33, "blouse", {
        **_TOP, "shoulder_left": 7, "shoulder_right": 33, "armpit_left": 16, "armpit_right": 24,
        "cuff_left_out": 11, "cuff_left_in": 12, "cuff_right_in": 28, "cuff_right_out": 29,
        "top_hem_left": 19, "top_hem_right": 21}),
    3: ("short sleeve outwear", 31, "outwear", {
        "neckline_left": 2, "neckline_right": 6, "shoulder_left": 7, "shoulder_right": 25,
        "armpit_left": 12, "armpit_right": 20, "waistline_left": 14, "waistline_right": 18,
        "cuff_left_out": 9, "cuff_left_in": 10, "cuff_right_in": 22, "cuff_right_out": 23,
        "top_hem_left": 15, "top_hem_right": 17}),
    4: ("long sleeve outwear", 39, "outwear", {
        "neckline_left": 2, "neckline_right": 6, "shoulder_left": 7, "shoulder_right": 33,
        "armpit_left": 16, "armpit_right": 24, "waistline_left": 18, "waistline_right": 22,
        "cuff_left_out": 11, "cuff_left_in": 12, "cuff_right_in": 28, "cuff_right_out": 29,
        "top_hem_left": 19, "top_hem_right": 21}),
    5: ("vest", 15, "blouse", _SLEEVELESS),
    6: ("sling", 15, "blouse", _SLEEVELESS),
    7: ("shorts", 10, "trousers", {
        "waistband_left": 1, "waistband_right": 3, "crotch": 7, "bottom_left_out": 5, "bottom_left_in": 6,
        "bottom_right_in": 8, "bottom_right_out": 9}),
    8: ("trousers", 14, "trousers", {
        "waistband_left": 1, "waistband_right": 3, "crotch": 9, "bottom_left_out": 6, "bottom_left_in": 7,
        "bottom_right_in": 11, "bottom_right_out": 12}),
    9: ("skirt", 8, "skirt", {"waistband_left": 1, "waistband_right": 3, "hemline_left": 5, "hemline_right": 7}),
    10: ("short sleeve dress", 29, "dress", {
        **_TOP, "shoulder_left": 7, "shoulder_right": 29, "armpit_left": 12, "armpit_right": 24,
        "waistline_left": 14, "waistline_right": 22, "cuff_left_out": 9, "cuff_left_in": 10,
        "cuff_right_in": 26, "cuff_right_out": 27, "hemline_left": 17, "hemline_right": 19}),
    11: ("long sleeve dress", 37, "dress", {
        **_TOP, "shoulder_left": 7, "shoulder_right": 37, "armpit_left": 16, "armpit_right": 28,
        "waistline_left": 18, "waistline_right": 26, "cuff_left_out": 11, "cuff_left_in": 12,
        "cuff_right_in": 32, "cuff_right_out": 33, "hemline_left": 21, "hemline_right": 23}),
    12: ("vest dress", 19, "dress", _SLEEVELESS_DRESS),
    13: ("sling dress", 19, "dress", _SLEEVELESS_DRESS),
}

# DeepFashion Fashion Landmark Detection (FLD; Liu et al., ECCV 2016) and the landmark lists of the other
# DeepFashion benchmarks (``list_landmarks*.txt``): clothes_type -> (landmark names in file order, default
# FashionAI category). A FLD "sleeve" point is the middle of the cuff, which FashionAI does not have (it has
# the cuff's inner and outer corners): sleeves are not mapped. FLD has no armpit: NE cannot normalise its
# blouse/outwear/dress rows, ``evaluate`` excludes them (``excluded_images``).
FLD_TYPES: dict[int, tuple[tuple[str, ...], str]] = {
    1: (("left collar", "right collar", "left sleeve", "right sleeve", "left hem", "right hem"), "blouse"),
    2: (("left waistline", "right waistline", "left hem", "right hem"), "skirt"),
    3: (("left collar", "right collar", "left sleeve", "right sleeve", "left waistline", "right waistline",
         "left hem", "right hem"), "dress"),
}
# FashionAI category -> {FLD landmark name: FashionAI point}
FLD: dict[str, dict[str, str]] = {
    "blouse": {"left collar": "neckline_left", "right collar": "neckline_right",
               "left hem": "top_hem_left", "right hem": "top_hem_right"},
    "outwear": {"left collar": "neckline_left", "right collar": "neckline_right",
                "left hem": "top_hem_left", "right hem": "top_hem_right"},
    "skirt": {"left waistline": "waistband_left", "right waistline": "waistband_right",
              "left hem": "hemline_left", "right hem": "hemline_right"},
    # a trouser leg's FLD hem point is one point per leg, neither bottom_*_in nor bottom_*_out: not mapped
    "trousers": {"left waistline": "waistband_left", "right waistline": "waistband_right"},
    "dress": {"left collar": "neckline_left", "right collar": "neckline_right", "left waistline": "waistline_left",
              "right waistline": "waistline_right", "left hem": "hemline_left", "right hem": "hemline_right"},
}
