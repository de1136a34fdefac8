"""Evaluation: stage-1 box and stage-2 mask metrics, folder scoring and reports.

::

    metrics   overlap_metrics, surface_metrics, segmentation_metrics (per side, per case),
              side_box_iou, average_precision, mean_average_precision (COCO-style, 3D boxes)
    evaluate  EvalConfig, match_cases, load_pair, read_report_boxes, evaluate_case,
              evaluate_pairs, evaluate_folders
    report    describe, summarise, markdown, write_report (per_case.csv, summary.json, summary.md)
"""
