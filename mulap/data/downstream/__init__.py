"""Downstream datasets, one reader per publisher layout (mtt, jamendo, emomusic, fma, nsynth) plus your
own labelled folder (csv). The task registry that names them is `mulap.data.tasks`."""
