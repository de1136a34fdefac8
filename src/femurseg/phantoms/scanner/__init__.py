"""Scanner layer: which part of the body an image covers (fields of view), rendering the tissue
layers onto the output grid with the labels, and the acquisition model (blur, slice profile,
noise, metal streaks, stored values)."""
