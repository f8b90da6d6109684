"""S4S and S4S-Alt learning (docs/learning.md), installed as `s4s_export.learn`.

pipeline.learn(LearnRequest) runs it all: teacher_cache (teacher pairs on disk), student (the
step-form solver module and its initialisation from a base), relax (the relaxed noise),
distances (the training distance; LPIPS lives in core, `s4s_export/lpips.py`), trainer (epochs, validation,
rollback, resume).
"""
