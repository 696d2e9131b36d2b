"""The book's tables, figures and claims ledger, computed from the results under ``results/``.

The notebooks only call these functions and display what they return, so that everything a
reader sees is tested (``tests/test_report.py``, ``tests/test_report_tables.py``).

Modules (each imports only those above it):

* :mod:`~aafcore.report.results`: the paper's tables, :func:`load_results` (one row per run and
  evaluation), class information, benchmark files, prediction folders, training logs;
* :mod:`~aafcore.report.tables`: paper-style method tables, gains over the base beside the
  paper's (Tables 2-9, 11), kernel sizes (Table 10, Fig. 4);
* :mod:`~aafcore.report.cost`: Table 1 (training and run-time cost);
* :mod:`~aafcore.report.claims`: the claims ledger and its verdict rules (v1, unpaired);
* :mod:`~aafcore.report.ledger`: the study's claims ledger (the protocol's claims, paired
  statistics of :mod:`~aafcore.report.stats`) and the check that its runs follow the protocol's commit;
* :mod:`~aafcore.report.performance`: the benchmark tables of the performance page;
* :mod:`~aafcore.report.run`: one training run or evaluation (the train and evaluate notebooks);
* :mod:`~aafcore.report.figures`: training curves, Fig. 4 and Fig. 5 and what their page states;
* :mod:`~aafcore.report.domain` (not re-exported): the unseen-domain page's samples and findings.

``from aafcore import report`` gives every public name of these modules.
"""

from aafcore.report.results import (METHOD_ORDER, PAPER_TABLES, at_project_root, base_label, benchmark_note,
                                    benchmark_path, boundary_note, class_info, class_names, dataset_label, describe_results, load_benchmark,
                                    load_results, method_label, paper_caption, paper_table, paper_view, prediction_dirs,
                                    read_train_log, select_rows)
from aafcore.report.tables import (KERNEL_SIZE_SETS, METRICS, class_order, compare_gains, domain_gains, gains_table,
                                   kernel_size_summary, kernel_size_table, kernel_sizes_frame, method_table,
                                   seed_values, table)
from aafcore.report.cost import cost_table, inference_cost_note, run_time_table, training_cost_table
from aafcore.report.claims import CLAIMS, VERDICT_RULES, Claim, claims_ledger, ledger_table, verdict, verdict_summary
from aafcore.report.performance import (GPU_STEP_BENCHMARKS, LOSS_LABELS, cuda_check_table, gpu_runs_table, gpu_step_table,
                                        inference_benchmark_table, loss_benchmark_file, loss_benchmark_table, provenance_line,
                                        short_commit, step_benchmark_table)
from aafcore.report.run import (evaluation_time_sentence, metrics_sentence, metrics_summary, per_class_frame,
                                run_summary)
from aafcore.report.figures import (BOOK_DPI, BOOK_WIDTH, PAPER_EDGE_SIZES, class_legend, comparison_findings,
                                    comparison_limitations, effective_sizes, evaluation_prediction_dirs,
                                    kernel_findings, kernel_limitations, kernel_weight_table, kernel_weights_frame,
                                    plot_comparison, plot_kernel_sizes, plot_kernel_weights, plot_predictions,
                                    plot_training, saved_ids, thin_iou_table, thin_rich_ids, thin_window)

__all__ = [
    # results
    "PAPER_TABLES", "METHOD_ORDER", "at_project_root", "paper_table", "paper_view", "paper_caption", "method_label", "base_label",
    "dataset_label", "load_results", "describe_results", "class_info", "class_names", "select_rows",
    "benchmark_path", "load_benchmark", "prediction_dirs", "read_train_log", "benchmark_note", "boundary_note",
    # tables
    "METRICS", "KERNEL_SIZE_SETS", "method_table", "table", "seed_values", "compare_gains", "gains_table",
    "domain_gains", "kernel_size_table", "kernel_sizes_frame", "class_order", "kernel_size_summary",
    # cost
    "run_time_table", "cost_table", "inference_cost_note", "training_cost_table",
    # claims
    "VERDICT_RULES", "verdict", "Claim", "CLAIMS", "claims_ledger", "ledger_table", "verdict_summary",
    # performance
    "GPU_STEP_BENCHMARKS", "LOSS_LABELS", "short_commit", "provenance_line", "loss_benchmark_file", "loss_benchmark_table",
    "step_benchmark_table",
    "inference_benchmark_table", "gpu_step_table", "cuda_check_table", "gpu_runs_table",
    # run
    "per_class_frame", "run_summary", "metrics_sentence", "metrics_summary", "evaluation_time_sentence",
    # figures
    "plot_training", "plot_predictions", "plot_kernel_sizes", "BOOK_WIDTH", "BOOK_DPI", "PAPER_EDGE_SIZES",
    "kernel_weights_frame", "effective_sizes", "kernel_weight_table", "plot_kernel_weights", "kernel_findings",
    "kernel_limitations", "evaluation_prediction_dirs", "thin_window", "thin_rich_ids", "class_legend",
    "plot_comparison", "thin_iou_table", "comparison_findings", "saved_ids", "comparison_limitations",
]

# The study's paired statistics (aafcore.report.stats: paired differences, paired t-test, Holm,
# Bonferroni intervals, verdicts; its ``verdict`` is exported as ``ci_verdict``, ``verdict`` being
# the current ledger's) and its pre-registered protocol (aafcore.report.protocol: protocol/study.yaml
# and its check in git).
from aafcore.report.stats import (ALTERNATIVES, PAIRED_VERDICT_RULES, VERDICT_COLOURS, VERDICTS, PairedTest,
                                  ci_verdict, corrected_alpha, every_class_verdict, holm, ledger_frame, metric_scale,
                                  paired_differences, paired_test, style_ledger)
from aafcore.report.protocol import (CLAIM_KINDS, PROTOCOL_PATH, ClaimSpec, Protocol, RunGroup, Side, load_protocol,
                                     protocol_commit, protocol_dirty, rules_match, runs_after_protocol)
from aafcore.report.ledger import (LEDGER_COLUMNS, claim_differences, commit_date, ledger_view, provenance_check,
                                   provenance_sentence, study_ledger)

__all__ += [
    # stats
    "VERDICTS", "ALTERNATIVES", "PAIRED_VERDICT_RULES", "VERDICT_COLOURS", "metric_scale", "paired_differences",
    "PairedTest", "paired_test", "holm", "corrected_alpha", "ci_verdict", "every_class_verdict", "ledger_frame",
    "style_ledger",
    # protocol
    "PROTOCOL_PATH", "CLAIM_KINDS", "Side", "RunGroup", "ClaimSpec", "Protocol", "load_protocol", "rules_match",
    "protocol_commit", "protocol_dirty", "runs_after_protocol",
    # the study's ledger
    "LEDGER_COLUMNS", "claim_differences", "study_ledger", "ledger_view", "provenance_check", "commit_date",
    "provenance_sentence",
    # the study's tuning rules
    "TuningDecision", "tuning_table", "apply_tuning_rules",
]
from aafcore.report.tuning import TuningDecision, apply_tuning_rules, tuning_table  # noqa: E402
