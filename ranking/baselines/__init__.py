"""Reference rankers the multi-task model is measured against on the same features:
``popularity`` (each track's mean label in training) and ``linear`` (one linear model
per head over every transformed feature, ids included).
"""
