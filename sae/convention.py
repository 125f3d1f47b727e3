"""Does a dictionary expect the activations that were captured?

A dictionary trained on TransformerLens-processed activations (e.g. GPT-2 `res-jb`, whose residual stream has the
per-token mean removed by `center_writing_weights`) decodes raw Hugging Face activations into plausible-looking but
wrong features. The capture envelope says what was captured; a mismatch is reported on the trace instead of decoded.
"""

from __future__ import annotations

from sae.dictionary import SAEDictionary

_DIFFERENCE = {
    frozenset({"hf_raw", "transformer_lens"}): "TransformerLens-processed activations are the raw ones minus the "
                                               "per-token mean (center_writing_weights)",
}


def check_convention(dictionary: SAEDictionary, captured_convention: str | None) -> str | None:
    """A readable mismatch message, or None when they agree or either side does not say."""
    expected = dictionary.activation_convention
    if not captured_convention or expected in (None, "unknown") or captured_convention == "unknown":
        return None
    if captured_convention == expected:
        return None
    hook = f" at hook {dictionary.hook_name}" if dictionary.hook_name else ""
    why = _DIFFERENCE.get(frozenset({expected, captured_convention}), "the two conventions are not interchangeable")
    return (f"activation convention mismatch: the {dictionary.format} dictionary in {dictionary.folder} expects "
            f"{expected} activations{hook}, but the trace captured {captured_convention}; {why}. Capture with the "
            f"matching convention or use a dictionary trained on {captured_convention} activations.")
