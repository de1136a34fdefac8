"""Synthetic lower-limb CT phantoms with exact femur labels, in three layers.

``generate.generate_case`` reads top to bottom like the physics: **anatomy** (which bones, their
shapes and pose) -> **tissues** (what fills the body, in HU) -> **scanner** (how a CT of a given
field of view sees it). Each layer imports only the layers before it; ``params`` (every setting
and its range) sits under all three, ``generate`` and ``dataset`` above them.

Where to change what (paths under ``femurseg/phantoms/``):

- the bone meshes used (LLP26 subjects, mirroring, scaling): ``anatomy/shapes.py``
- procedural bones (no mesh files): ``anatomy/procedural.py``, ``sdf.py``
- femur shape variety (torsion, bowing, length, neck angle): ``anatomy/deform.py``
- pose, hip / knee joint spaces, legs touching: ``anatomy/assemble.py``, ``contact.py``
- landmarks (head centre, condyles, pelvis top): ``anatomy/landmarks.py``
- the true femur measurements recorded per case: ``anatomy/truth.py``
- HU of each tissue, per-case draws, texture fields, the slice painters' ``put``:
  ``tissues/materials.py``
- cortex thickness, marrow, trabecular texture, osteoporosis: ``tissues/bone.py``
- body outline, legs, trunk, table: ``tissues/body.py``; position along a leg and the bone
  vertices at a height, shared with the vessels: ``tissues/slabs.py``
- muscles, fat, skin, pelvic organs (slice painter): ``tissues/softtissue.py``
- where the abdominal organs sit: ``tissues/organs.py``; how they are painted:
  ``tissues/abdomen.py``
- lumbar spine: ``tissues/spine.py``; the lower chest (thoracic spine, ribs, lungs, heart):
  ``tissues/thorax.py``
- hip / knee replacements, fracture fixation (metal): ``tissues/implants.py``
- intravenous contrast, arteries and veins, calcified plaques: ``tissues/vessels.py``
- fields of view (full leg, hip, knee, legs only, abdomen): ``scanner/fov.py``
- blur, slice profile, noise, metal streaks, stored values: ``scanner/acquisition.py``
- the render order and the label map (metal is not femur): ``scanner/render.py``
- ranges of any setting, ``--config`` keys: ``params.py``
- one case end to end, its metadata; a dataset folder: ``generate.py``, ``dataset.py``
"""
