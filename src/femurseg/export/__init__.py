"""Outputs beyond the label map: STL meshes per femur and DICOM-SEG for DICOM input.

::

    write_femur_meshes(labels, affine, folder, case, config=None) -> {"femur_left": Path, ...}
        one closed, smoothed binary STL per femur, world LPS+ mm (3D Slicer's STL frame).
    mask_mesh(mask, affine, config=None) -> trimesh.Trimesh
    write_dicom_seg(labels, volume, path, config=None) -> Path
        binary DICOM-SEG referencing the DICOM CT series ``volume`` was read from (highdicom).

highdicom is imported only when a DICOM-SEG is written.
"""

from femurseg.export.mesh import MeshConfig, mask_mesh, mesh_path, write_femur_meshes

__all__ = [
    "DicomSegConfig",
    "MeshConfig",
    "mask_mesh",
    "mesh_path",
    "write_dicom_seg",
    "write_femur_meshes",
]


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    # Lazy: DICOM-SEG support pulls in pydicom/highdicom only when used.
    if name in ("DicomSegConfig", "write_dicom_seg", "build_dicom_seg"):
        from femurseg.export import dicom_seg

        return getattr(dicom_seg, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
