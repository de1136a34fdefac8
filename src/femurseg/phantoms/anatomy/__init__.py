"""Anatomy layer: bone shapes (LLP26 meshes or procedural), femur deformation, posing with
joint spaces, landmarks, the true femur measurements, and the geometry helpers (signed
distances, exact voxelisation, the render grid). Knows nothing of HU or scanners."""
