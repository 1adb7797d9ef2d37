"""The Imagen mask-based edit (inpainting insertion) as a Vertex AI `:predict` body.

The shape is the Vertex AI reference "Edit images" for `imagen-3.0-capability-001`
(https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/imagen-api-edit):
`instances[0]` holds the prompt and `referenceImages`, the photo as `REFERENCE_TYPE_RAW` and the
mask as `REFERENCE_TYPE_MASK` with `maskImageConfig.maskMode = MASK_MODE_USER_PROVIDED`;
`parameters.editMode` is one of the EditMode enum
(https://cloud.google.com/vertex-ai/generative-ai/docs/reference/rest/Shared.Types/EditMode).
`maskImageConfig.dilation` is a fraction of the image, as google-genai 2.34 sends its
`mask_dilation` (`_MaskReferenceConfig_to_vertex`). The reply is the generate models' one:
`predictions[].bytesBase64Encoded`, at the photo's size."""

from __future__ import annotations

import base64
from typing import Any

EDIT_MODE = "EDIT_MODE_INPAINT_INSERTION"  # new content inside the mask, the rest kept
RAW_ID, MASK_ID = 1, 2
# Grows the mask by 1 % of the image, so the new planting blends into the marked edge rather
# than stopping at a hard seam.
MASK_DILATION = 0.01
# The edit model reads the prompt as what to put in the masked area (at most 480 tokens).
PROMPT_LEAD = "New landscaping in the marked area of this photo of a garden, in the photo's light and perspective:"


def instances(prompt: str, photo: bytes, mask_png: bytes) -> list[dict[str, Any]]:
    return [
        {
            "prompt": f"{PROMPT_LEAD} {prompt}",
            "referenceImages": [
                {
                    "referenceType": "REFERENCE_TYPE_RAW",
                    "referenceId": RAW_ID,
                    "referenceImage": {"bytesBase64Encoded": _b64(photo)},
                },
                {
                    "referenceType": "REFERENCE_TYPE_MASK",
                    "referenceId": MASK_ID,
                    "referenceImage": {"bytesBase64Encoded": _b64(mask_png)},
                    "maskImageConfig": {"maskMode": "MASK_MODE_USER_PROVIDED", "dilation": MASK_DILATION},
                },
            ],
        }
    ]


def parameters(seed: int, negative_prompt: str) -> dict[str, Any]:
    params: dict[str, Any] = {
        "editMode": EDIT_MODE,
        "sampleCount": 1,
        "seed": seed,
        "addWatermark": False,  # a seed is only honoured without the watermark
        "includeRaiReason": True,
        "outputOptions": {"mimeType": "image/png"},
    }
    if negative_prompt:  # the edit API documents a negativePrompt parameter (generate models ignore it)
        params["negativePrompt"] = negative_prompt
    return params


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
