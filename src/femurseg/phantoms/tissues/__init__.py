"""Tissue layer: what fills the posed anatomy, in HU: tissue classes and their per-case values,
bone interiors, body outline and table, soft tissue and organs, spine, metal implants."""
