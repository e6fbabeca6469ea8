"""Evaluation: model outputs on an evaluation set, blind pairwise judgments (people or an LLM judge), reports.

Everything is a revision in the store, so it can be queried with SQL, diffed and pushed like any dataset:

- an **outputs** revision holds one model's answers on a set (`eval generate`, or imported);
- an **annotations** revision holds pairwise judgments between two outputs revisions (`eval judge`,
  `eval rate`, or imported from AlpacaEval's annotation files);
- `eval report` reads an annotations revision and follows its lineage back to the models and their data.

The record layouts and the recipe keys that link them are in `alpaca_data.eval.annotations`.
"""
