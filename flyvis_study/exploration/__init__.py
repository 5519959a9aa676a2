"""The study's own loop: an adaptive exploration over configs, resumable in an Optuna study.

An exploration searches named config parameters, each over its allowed values
(``exploration.space``), for the config that maximises an objective (default: V_rest_R2)
subject to connectivity_R2 >= the gold standard's - a tolerance on the same seed pairs. Each
iteration a proposer (``exploration.proposers``: the seed's own rule, a UCB tree, Optuna's TPE
and GP samplers, random) picks a parent node and a mutation, the config runs as an ordinary
run (content-keyed, reused if it exists), and the seed's two files are written: the analysis
log (appended) and the working memory (rewritten) (``exploration.logs``). Every trial lives in
an Optuna storage (SQLite file by default), so an interrupted exploration resumes
(``exploration.search``).

Pipeline: parameters -> space -> proposer -> runs (``study.run``) -> history -> logs -> report.
"""
