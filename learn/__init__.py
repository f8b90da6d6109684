"""S4S and S4S-Alt learning (method §4), installed as `s4s_export.learn`.

pipeline.learn(LearnRequest) runs it all: teacher_cache (teacher pairs on disk), student (the
step-form solver module and its initialisation from a base), relax (the relaxed noise),
distances / lpips (the training distance), trainer (epochs, validation, rollback, resume).
"""
